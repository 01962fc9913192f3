"""Parse and validate the ``optim_args`` string of ``TrainingArguments`` for SuperpositionalAdamW.

``TrainingArguments(optim="superpositional_adamw", optim_args="quantum_weight=0.5,n_qubits=4")`` carries the
optimizer's own hyper-parameters as one ``key=value,key=value`` string. transformers' built-in parser keeps
every value as a string and fails with an opaque unpacking error on a piece without ``=`` (or with two), so
this module parses the string itself into typed keyword arguments for
:class:`~hf_superpositional.optim.adamw.SuperpositionalAdamW` and names the bad piece when it cannot.

``lr``, ``betas``, ``eps`` and ``weight_decay`` are deliberately NOT valid keys here: they come from
``TrainingArguments`` (``learning_rate``, ``adam_beta1``/``adam_beta2``, ``adam_epsilon``, ``weight_decay``),
and accepting them twice would leave two sources of truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._utils import parse_key_value_pairs
from .adamw import PERTURBATION_BACKENDS
from .functional import MODES
from .masks import SCOPES

__all__ = [
    "OPTIM_ARG_SPECS",
    "VALID_OPTIM_ARG_KEYS",
    "OptimArgSpec",
    "format_optim_args",
    "parse_optim_args",
    "validate_optim_kwargs",
]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_NONE = frozenset({"none", "null", "auto"})


@dataclass(frozen=True)
class OptimArgSpec:
    """How one ``optim_args`` key is typed and which values it accepts.

    Args:
        kind: ``"float"``, ``"int"``, ``"str"`` or ``"bool"``.
        choices: the allowed values of a ``"str"`` key (``None``: any string).
        nullable: whether ``none`` (also ``null``/``auto``) parses to ``None`` (torch's "pick for me" for
            ``foreach``/``fused``).
        help: one line for error messages and documentation.
    """

    kind: str
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    help: str = ""


OPTIM_ARG_SPECS: dict[str, OptimArgSpec] = {
    "quantum_weight": OptimArgSpec("float", help="lambda, the weight of the sin(pi*theta)*g term (>= 0)"),
    "n_qubits": OptimArgSpec("int", help="number of perturbed elements per tensor for scope=first_n (>= 1)"),
    # Choices come from the optimizer's own constants, so the two cannot drift apart.
    "mode": OptimArgSpec("str", choices=tuple(MODES), help="where the perturbation enters"),
    "scope": OptimArgSpec("str", choices=tuple(SCOPES), help="which elements are perturbed"),
    "perturbation_backend": OptimArgSpec(
        "str", choices=tuple(PERTURBATION_BACKENDS), help="how sin(pi*theta) is evaluated"
    ),
    "foreach": OptimArgSpec("bool", nullable=True, help="multi-tensor path (none: let torch choose)"),
    "fused": OptimArgSpec("bool", nullable=True, help="fused path (none: let torch choose)"),
    "track_diagnostics": OptimArgSpec("bool", help="record quantum/... norms every step for logging"),
}
"""The keys ``optim_args`` may carry, in the order they are documented."""

VALID_OPTIM_ARG_KEYS: tuple[str, ...] = tuple(OPTIM_ARG_SPECS)
"""The valid ``optim_args`` keys (``lr``/``betas``/``eps``/``weight_decay`` come from TrainingArguments)."""


def _valid_keys_text() -> str:
    return ", ".join(VALID_OPTIM_ARG_KEYS)


def _describe(key: str, spec: OptimArgSpec) -> str:
    if spec.choices is not None:
        return f"one of {list(spec.choices)}"
    text = {"float": "a finite number", "int": "an integer", "bool": "true or false", "str": "a string"}[
        spec.kind
    ]
    return f"{text} or none" if spec.nullable else text


def _convert(key: str, raw: str, piece: str) -> Any:
    """Turn the string ``raw`` into the typed value of ``key``; ``piece`` is quoted in errors."""
    spec = OPTIM_ARG_SPECS[key]
    text = raw.strip()
    lowered = text.lower()
    if spec.nullable and lowered in _NONE:
        return None
    try:
        if spec.kind == "float":
            value: Any = float(text)
            if not math.isfinite(value):
                raise ValueError
        elif spec.kind == "int":
            value = int(text)
        elif spec.kind == "bool":
            if lowered in _TRUE:
                value = True
            elif lowered in _FALSE:
                value = False
            else:
                raise ValueError
        else:
            value = text
            if spec.choices is not None and value not in spec.choices:
                raise ValueError
    except ValueError:
        raise ValueError(
            f"optim_args: bad value in {piece!r}: {key} must be {_describe(key, spec)}, got {raw.strip()!r}. "
            f"Valid keys: {_valid_keys_text()}."
        ) from None
    return value


def parse_optim_args(optim_args: str | None) -> dict[str, Any]:
    """Parse a ``"key=value,key=value"`` string into typed SuperpositionalAdamW keyword arguments.

    The grammar is the package's one ``key=value`` grammar (spaces around keys, values and commas are
    ignored, and so is an empty piece such as a trailing comma). Keys are case-sensitive; boolean values accept
    ``true/false/1/0/yes/no/on/off`` in any case; ``foreach`` and ``fused`` also accept ``none``.

    Args:
        optim_args: the ``TrainingArguments.optim_args`` string, or ``None``/empty for no overrides.

    Returns:
        A dict whose keys are a subset of :data:`VALID_OPTIM_ARG_KEYS` and whose values are typed
        (``float``, ``int``, ``str``, ``bool`` or ``None``).

    Raises:
        ValueError: for a piece without exactly one ``=``, an unknown or repeated key, or a value of the
            wrong type or outside the allowed choices. The message quotes the bad piece and lists the
            valid keys.

    Example:
        >>> parse_optim_args("quantum_weight=0.5, n_qubits=4, mode=update, scope=first_n")
        {'quantum_weight': 0.5, 'n_qubits': 4, 'mode': 'update', 'scope': 'first_n'}
    """
    if optim_args is None:
        return {}
    if not isinstance(optim_args, str):
        raise ValueError(
            f"optim_args must be a string like 'quantum_weight=0.5,n_qubits=4', got {type(optim_args).__name__}."
        )
    if not optim_args.strip():
        return {}
    try:
        pieces = parse_key_value_pairs(optim_args, "optim_args")
    except ValueError as error:
        raise ValueError(f"{error} Valid keys: {_valid_keys_text()}.") from None
    parsed: dict[str, Any] = {}
    for key, raw in pieces.items():
        if key not in OPTIM_ARG_SPECS:
            raise ValueError(
                f"optim_args: unknown key {key!r} in {f'{key}={raw}'!r}. Valid keys: {_valid_keys_text()} "
                "(lr, betas, eps and weight_decay come from TrainingArguments)."
            )
        parsed[key] = _convert(key, raw, f"{key}={raw}")
    return parsed


def validate_optim_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Check already-typed ``optim_args`` keyword arguments (as passed from Python rather than a string).

    Values are checked for type and choices the same way :func:`parse_optim_args` checks parsed strings;
    strings are accepted and converted, so ``{"n_qubits": "4"}`` becomes ``{"n_qubits": 4}``.

    Args:
        kwargs: a mapping whose keys must be in :data:`VALID_OPTIM_ARG_KEYS`.

    Returns:
        A new dict with typed values.

    Raises:
        ValueError: for an unknown key or a value of the wrong type or outside the allowed choices.

    Example:
        >>> validate_optim_kwargs({"quantum_weight": 1, "fused": None})
        {'quantum_weight': 1.0, 'fused': None}
    """
    typed: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key not in OPTIM_ARG_SPECS:
            raise ValueError(f"optim_args: unknown key {key!r}. Valid keys: {_valid_keys_text()}.")
        spec = OPTIM_ARG_SPECS[key]
        piece = f"{key}={value!r}"
        if isinstance(value, str):
            typed[key] = _convert(key, value, piece)
        elif value is None and spec.nullable:
            typed[key] = None
        elif spec.kind == "bool" and isinstance(value, bool):
            typed[key] = value
        elif spec.kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            typed[key] = value
        elif spec.kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            typed[key] = _convert(key, repr(float(value)), piece)
        else:
            raise ValueError(
                f"optim_args: bad value in {piece!r}: {key} must be {_describe(key, spec)}. "
                f"Valid keys: {_valid_keys_text()}."
            )
    return typed


def format_optim_args(kwargs: Mapping[str, Any]) -> str:
    """Write typed keyword arguments back as an ``optim_args`` string (the inverse of :func:`parse_optim_args`).

    Args:
        kwargs: a mapping accepted by :func:`validate_optim_kwargs`.

    Returns:
        ``"key=value,..."`` in the order given; booleans as ``true``/``false``, ``None`` as ``none``.

    Example:
        >>> format_optim_args({"quantum_weight": 0.5, "n_qubits": 4, "fused": None})
        'quantum_weight=0.5,n_qubits=4,fused=none'
    """
    typed = validate_optim_kwargs(kwargs)

    def text(value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return ",".join(f"{key}={text(value)}" for key, value in typed.items())
