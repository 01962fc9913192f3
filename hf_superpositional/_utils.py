"""Small helpers every tier shares: one ``key=value`` grammar, one "did you mean", optional imports, and
the unwrapping of wrapped optimizers. A leaf: it imports nothing from the package."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from typing import Any

__all__ = [
    "TESTED_TRANSFORMERS_VERSION",
    "did_you_mean",
    "parse_key_value_pairs",
    "require",
    "unwrap_optimizer",
]

TESTED_TRANSFORMERS_VERSION = "5.25"
"""The transformers release whose private hooks (optimizer registry, loading path, push ignore patterns)
this package was written and tested against."""


def parse_key_value_pairs(text: str, what: str) -> dict[str, str]:
    """Split ``"key=value,key=value"`` into an ordered ``{key: raw value}`` dict; the one grammar of the package.

    Spaces around keys, values and commas are ignored; an empty or blank string is no pairs. Every piece
    must hold exactly one ``=`` and a non-empty key (so ``"a=1,"`` is malformed, as transformers' own
    ``optim_args`` parser has it); a key may appear once. Values stay strings: each caller types them
    (``optim_args`` by its key table, ``config_overrides`` as literals).

    Args:
        text: the string to parse.
        what: its name in error messages (``"optim_args"``, ``"config_overrides"``).

    Raises:
        ValueError: naming ``what`` and the bad piece.

    Example:
        >>> parse_key_value_pairs("quantum_weight=0.5, n_qubits=4", "optim_args")
        {'quantum_weight': '0.5', 'n_qubits': '4'}
    """
    out: dict[str, str] = {}
    if not text.strip():
        return out
    for piece in (p.strip() for p in text.split(",")):
        key, sep, raw = piece.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or "=" in raw:
            raise ValueError(
                f"{what}: malformed piece {piece!r} in {text!r}: expected exactly one 'key=value' per "
                "comma-separated piece."
            )
        if key in out:
            raise ValueError(f"{what}: key {key!r} is given twice in {text!r}.")
        out[key] = raw
    return out


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """``"did you mean 'x' or 'y'?"`` for the candidates closest to ``name``, or ``""`` when none is close.

    Example:
        >>> did_you_mean("n_qubit", ["n_qubits", "depth"])
        "did you mean 'n_qubits'?"
    """
    close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=cutoff)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def require(module: str, purpose: str, install: str) -> Any:
    """Import an optional dependency, or raise an ``ImportError`` saying what needs it and how to install it.

    Example:
        >>> require("math", "this example", "nothing").pi > 3
        True
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{purpose} needs {module}: `pip install {install}`.") from error


def unwrap_optimizer(optimizer: Any) -> Any:
    """The optimizer inside wrappers (accelerate's ``AcceleratedOptimizer`` keeps it in ``.optimizer``, and so does
    DeepSpeed's ZeRO optimizer, which is no torch ``Optimizer`` itself).

    Example:
        >>> import torch
        >>> inner = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> class Wrapper(torch.optim.Optimizer):
        ...     def __init__(self, optimizer): self.optimizer = optimizer
        >>> unwrap_optimizer(Wrapper(inner)) is inner
        True
    """
    import torch

    # Under DeepSpeed the chain is accelerate's wrapper -> the ZeRO optimizer (not a torch Optimizer itself)
    # -> the basic optimizer: walk every `.optimizer` link and keep the innermost torch Optimizer.
    found, current = optimizer, optimizer
    for _ in range(8):
        current = getattr(current, "optimizer", None)
        if current is None:
            break
        if isinstance(current, torch.optim.Optimizer):
            found = current
    return found
