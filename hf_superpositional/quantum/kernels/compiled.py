"""The ``"compiled"`` circuit kernel: the term's maths written elementwise and fused by ``torch.compile``.

One read and one write per score, the recurrence in registers: the default on CUDA, where the eager kernel's
chunked ops would each be a kernel launch. The first call per dtype and degree compiles for tens of seconds
(in every process); if compilation fails, the kernel warns once and runs the eager kernel's maths instead.
"""

from __future__ import annotations

import warnings

import torch

from ..series import fourier_basis, fourier_series
from ..simulation import layer_readout_arguments, layer_readout_math
from . import eager

__all__ = ["backward", "forward", "sample"]


def forward_math(scores: torch.Tensor, table: torch.Tensor, frequency: float, scale: float = 1.0):
    """``z + Phi(frequency z)`` with ``z = scale * scores`` and ``Phi`` from the per-block ``table``."""
    degree = table.shape[1] // 2 - 1
    x = scores.to(table.dtype) * scale
    cosine = [table[:, j : j + 1] for j in range(degree + 1)]
    sine = [table[:, degree + 1 + j : degree + 2 + j] for j in range(degree + 1)]
    return x + fourier_series(x * frequency, cosine, sine)


def backward_math(
    grad, scores, derivative, frequency: float, need_logits: bool, need_moments: bool, scale: float = 1.0
):
    """The eager backward's maths, elementwise: each order of the basis used at once for the slope
    (``1 + gate * s * Phi'``) and the moments, then dropped."""
    degree = derivative.shape[1] // 2 - 1
    g = grad.to(derivative.dtype)
    t = scores.to(derivative.dtype) * scale * frequency
    slope = 1.0  # the derivative table's order-0 entries are 0: d/dx of a constant
    moments_cos, moments_sin = [g.sum(-1)], [torch.zeros_like(g[:, 0])]
    for j, cos_j, sin_j in fourier_basis(t, degree):
        if need_logits:
            slope = (
                slope
                + derivative[:, j : j + 1] * cos_j
                + derivative[:, degree + 1 + j : degree + 2 + j] * sin_j
            )
        if need_moments:
            moments_cos.append((g * cos_j).sum(-1))
            moments_sin.append((g * sin_j).sum(-1))
    grad_logits = g * slope * scale if need_logits else None
    moments = torch.stack(moments_cos + moments_sin, dim=-1) if need_moments else None
    return grad_logits, moments


class _Compiled:
    """``torch.compile`` of each maths function, made on first use; ``None`` once compiling has failed."""

    def __init__(self) -> None:
        self.functions: dict[str, object] = {}

    def run(self, name: str, source, fallback, *args):
        function = self.functions.get(name, False)
        if function is None:  # compilation failed before: stay eager
            return fallback(*args)
        try:
            if function is False:
                # dynamic=True: one kernel for every sequence length; the sampler has fixed, tiny shapes.
                function = torch.compile(source, dynamic=name != "readout", fullgraph=True)
                self.functions[name] = function
            return function(*args)
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - any compiler/toolchain failure falls back to eager
            warnings.warn(
                f"torch.compile of the circuit {name} kernel failed ({type(error).__name__}: {error}); "
                "falling back to the eager kernel",
                RuntimeWarning,
                stacklevel=4,
            )
            self.functions[name] = None
            return fallback(*args)


_COMPILED = _Compiled()


def forward(scores, table, frequency: float, scale: float, query_len: int, causal: bool) -> torch.Tensor:
    """The compiled forward; causally masked scores come out as the lowest finite value (as :mod:`.eager`)."""
    out = _COMPILED.run("forward", forward_math, _eager_forward, scores.contiguous(), table, frequency, scale)
    return eager.mask_output_(out, query_len) if causal else out


def backward(
    grads, scores, derivative, frequency: float, scale: float, query_len: int, causal: bool,
    need_logits: bool, need_moments: bool, grad_is_ours: bool,
):  # fmt: skip
    """The compiled backward (arguments as :func:`.eager.backward`)."""
    if causal:
        grads = eager.mask_gradients(grads, query_len, grad_is_ours)
    arguments = (grads.contiguous(), scores.contiguous(), derivative, frequency, need_logits, need_moments, scale)
    return _COMPILED.run("backward", backward_math, _eager_backward, *arguments)


def _eager_forward(scores, table, frequency, scale):
    return eager.forward(scores, table, frequency, scale, 1, False)


def _eager_backward(grads, scores, derivative, frequency, need_logits, need_moments, scale):
    return eager.backward(
        grads, scores, derivative, frequency, scale, 1, False, need_logits, need_moments, grad_is_ours=False
    )


def sample(points: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor, readout: str, dtype: torch.dtype):
    """``Phi`` at ``points`` by the torch simulation, fused: ~80 small kernels per call become a few (the
    circuit runs once per layer per step, and on CUDA each launch costs as much as the work)."""
    arguments = layer_readout_arguments(points.to(dtype), ry, rz, readout)
    return _COMPILED.run("readout", layer_readout_math, layer_readout_math, *arguments)
