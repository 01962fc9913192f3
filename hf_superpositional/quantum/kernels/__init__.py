"""The circuit kernels: one record per implementation, and the choice of which one runs.

A kernel computes three things for :mod:`hf_superpositional.quantum.ops` and
:mod:`hf_superpositional.quantum.fourier`:

- ``forward(scores, table, frequency, scale, query_len, causal)``: the circuit term over a
  ``[blocks, block_size]`` score matrix (one row per (batch, head) block), ``z + sum_j table_j basis_j(t)``
  with ``z = scale * scores`` and ``t = frequency * z``, where ``table`` is ``[blocks, 2K+2]`` (cosine
  coefficients in columns ``0..K``, sine coefficients in ``K+1..2K+1``). With ``causal`` each block is
  ``[query_len, block_size / query_len]`` and the scores the causal mask removes come out as the lowest
  finite value;
- ``backward(grads, scores, derivative, frequency, scale, query_len, causal, need_logits, need_moments,
  grad_is_ours)``: the scores' gradient ``scale * grad * (1 + sum_j derivative_j basis_j)`` and the per-block
  moments ``sum grad * basis_j`` (from which the coefficient and gate gradients follow);
- ``sample(points, ry, rz, readout, dtype)``: the circuit readout ``Phi`` at the Fourier sample points,
  differentiable in the angles.

Three records implement them with the same maths and memory contract (only the inputs are saved for the
backward; no score-sized temporaries beyond the outputs and one small chunk):

- ``"cpp"``: the fused C++ CPU kernel (:mod:`.cpp`, built on first use);
- ``"compiled"``: the maths fused by ``torch.compile`` (:mod:`.compiled`);
- ``"eager"``: chunked torch ops (:mod:`.eager`), the reference.

``"auto"`` (the default) picks ``"cpp"`` for CPU tensors when the C++ kernel builds, ``"compiled"`` for
CUDA tensors and ``"eager"`` otherwise. :func:`set_circuit_kernel` changes the default for the process and
:func:`circuit_kernel` for a ``with`` block; a ``kernel=`` argument overrides it for one call.

On CPU, ``attn_implementation="quantum"`` also has a fused attention kernel with the circuit term inside
(:mod:`.flash`), used where its masks apply and the ``"cpp"`` kernel runs; :func:`set_flash_attention` and
:func:`flash_attention` switch it off (the dense reference path then runs) and on. These two choices are the
only process-wide settings of the circuit maths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from . import compiled, cpp, eager

__all__ = [
    "CIRCUIT_KERNELS",
    "KERNEL_CHOICES",
    "CircuitKernel",
    "circuit_kernel",
    "flash_attention",
    "flash_attention_enabled",
    "get_circuit_kernel",
    "resolve_circuit_kernel",
    "set_circuit_kernel",
    "set_flash_attention",
]


@dataclass(frozen=True)
class CircuitKernel:
    """One implementation of the circuit maths (see the module docstring for the three functions).

    Attributes:
        name: the name users select it by.
        forward, backward, sample: the three functions.
        runs_on: whether it can run on a device now (the C++ kernel needs a CPU and a successful build).
    """

    name: str
    forward: Callable
    backward: Callable
    sample: Callable
    runs_on: Callable[[torch.device], bool]


CIRCUIT_KERNELS: dict[str, CircuitKernel] = {
    "cpp": CircuitKernel("cpp", cpp.forward, cpp.backward, cpp.sample, cpp.runs_on),
    "compiled": CircuitKernel(
        "compiled", compiled.forward, compiled.backward, compiled.sample, lambda device: True
    ),
    "eager": CircuitKernel("eager", eager.forward, eager.backward, eager.sample, lambda device: True),
}
"""The circuit kernels by name."""

KERNEL_CHOICES: tuple[str, ...] = ("auto", *CIRCUIT_KERNELS)
"""Valid values of every ``kernel=`` argument: ``"auto"`` or a name of :data:`CIRCUIT_KERNELS`."""

# The process-wide settings, the only mutable state of the circuit maths: the default circuit kernel, and
# whether attn_implementation="quantum" may take the fused attention kernel (:mod:`.flash`).
_settings = {"kernel": "auto", "flash_attention": True}


def _check_choice(kernel: str, argument: str = "kernel") -> str:
    if kernel not in KERNEL_CHOICES:
        raise ValueError(f"{argument} must be one of {KERNEL_CHOICES}, got {kernel!r}")
    return kernel


def get_circuit_kernel() -> str:
    """The default kernel choice (``"auto"`` unless changed by :func:`set_circuit_kernel`).

    Example:
        >>> get_circuit_kernel() in KERNEL_CHOICES
        True
    """
    return _settings["kernel"]


def set_circuit_kernel(kernel: str) -> str:
    """Choose the default circuit kernel for this process; returns the previous choice.

    Args:
        kernel: ``"auto"``, ``"cpp"``, ``"compiled"`` or ``"eager"`` (see the module docstring).

    Example:
        >>> previous = set_circuit_kernel("eager")
        >>> _ = set_circuit_kernel(previous)
    """
    previous, _settings["kernel"] = _settings["kernel"], _check_choice(kernel)
    return previous


@contextlib.contextmanager
def circuit_kernel(kernel: str) -> Iterator[str]:
    """Use ``kernel`` as the default inside a ``with`` block, then restore the previous choice.

    Example:
        >>> with circuit_kernel("eager"):
        ...     get_circuit_kernel()
        'eager'
    """
    previous = set_circuit_kernel(kernel)
    try:
        yield kernel
    finally:
        set_circuit_kernel(previous)


def resolve_circuit_kernel(kernel: str | None, device: torch.device) -> CircuitKernel:
    """The kernel that runs the choice ``kernel`` (``None``: the default) for tensors on ``device``.

    ``"cpp"`` on a CPU whose C++ build failed runs ``"eager"`` (the build failure was warned once).

    Raises:
        ValueError: an unknown choice, or ``"cpp"`` for a tensor that is not on a CPU.

    Example:
        >>> resolve_circuit_kernel("eager", torch.device("cpu")).name
        'eager'
    """
    kernel = _check_choice(get_circuit_kernel() if kernel is None else kernel)
    if kernel == "auto":
        if device.type == "cpu":
            kernel = "cpp" if CIRCUIT_KERNELS["cpp"].runs_on(device) else "eager"
        else:
            kernel = "compiled" if device.type == "cuda" else "eager"
    elif kernel == "cpp":
        if device.type != "cpu":
            raise ValueError(f"kernel 'cpp' runs on CPU tensors only, got tensors on {device.type!r}")
        if not CIRCUIT_KERNELS["cpp"].runs_on(device):
            kernel = "eager"
    return CIRCUIT_KERNELS[kernel]


def flash_attention_enabled() -> bool:
    """Whether ``attn_implementation="quantum"`` may use the fused CPU kernel (:mod:`.flash`; default ``True``).

    Example:
        >>> flash_attention_enabled() in (True, False)
        True
    """
    return _settings["flash_attention"]


def set_flash_attention(enabled: bool) -> bool:
    """Allow (``True``) or forbid the fused CPU kernel in ``attn_implementation="quantum"``; returns the previous setting.

    Forbidden, quantum attention runs its dense reference path (scores materialised) on CPU as well.

    Example:
        >>> previous = set_flash_attention(False)
        >>> _ = set_flash_attention(previous)
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be a bool, got {enabled!r}")
    previous, _settings["flash_attention"] = _settings["flash_attention"], enabled
    return previous


@contextlib.contextmanager
def flash_attention(enabled: bool) -> Iterator[bool]:
    """:func:`set_flash_attention` inside a ``with`` block (or as a decorator), then the previous setting again.

    Example:
        >>> with flash_attention(False):
        ...     flash_attention_enabled()
        False
    """
    previous = set_flash_attention(enabled)
    try:
        yield enabled
    finally:
        set_flash_attention(previous)
