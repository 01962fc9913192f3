"""Exact Fourier compilation of the circuit readout and its fast evaluation over attention scores.

The input ``x`` enters the circuit only through ``K = n * depth`` rotations ``exp(-i x Y / 2)``, so the
readout is exactly a trigonometric polynomial (SPEC section 3)::

    Phi(x) = sum_{j=0..K} a_j cos(j * omega * x) + b_j sin(j * omega * x)

with ``omega = 1`` for ``"expval_z"`` (a probability: products of ``e^{+-ix/2}`` pairs, integer frequencies)
and ``omega = 1/2`` for ``"amplitude"`` (an amplitude: half-integer frequencies). Sampling ``Phi`` at
``2K + 1`` equispaced points of ``t = omega * x`` over one period and taking the real DFT gives the
``2K + 1`` coefficients exactly (no aliasing: the polynomial has degree ``K`` in ``t``).

:func:`add_circuit_term` then evaluates ``logits + gate * Phi(input_scale * logits)`` for every score with
one ``sin``/``cos`` and ``O(K)`` multiply-adds, in a single ``torch.autograd.Function`` whose backward
recomputes the trigonometric basis instead of saving it; it can also apply attention's softmax scale and
causal mask in the same pass, and :func:`circuit_softmax` adds the softmax in the same buffer. Three kernels
implement it (see :func:`set_circuit_kernel`; ``"auto"``, the default, picks the fastest for the device):

- ``"cpp"``: a fused C++ CPU kernel (``_circuit_kernel.cpp``, built on first use by :mod:`.cpu_kernel`),
  one vectorised, multi-threaded pass over the scores per direction; the default on CPU, 10-30x faster
  than ``"eager"``. The same extension samples the circuit for :func:`fourier_coefficients`;
- ``"compiled"``: the same maths written elementwise and fused by ``torch.compile``; the default on CUDA;
- ``"eager"``: plain torch ops on chunks of scores (the basis of a chunk built by the angle-addition
  formulas, contracted with one batched matmul); the readable reference and the fallback everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import numpy as np
import torch

from .circuit import (
    READOUTS,
    check_angles,
    check_readout,
    circuit_readout_by_layers,
    layer_readout_arguments,
    layer_readout_math,
)
from .cpu_kernel import load_cpu_kernel

__all__ = [
    "READOUTS",
    "readout_frequency",
    "fourier_coefficients",
    "evaluate_fourier",
    "add_circuit_term",
    "circuit_softmax",
    "circuit_attention_probs",
    "fourier_series",
    "KERNELS",
    "set_circuit_kernel",
]

_FREQUENCIES = {"expval_z": 1.0, "amplitude": 0.5}

# The eager kernel processes scores in chunks, so its extra memory is one chunk's (2K+2)-row trigonometric
# basis, never O(K * scores): at most this many basis elements, and at most a quarter of the number of
# scores (peak memory stays close to the attention's own), but at least _MIN_BASIS_ELEMENTS (bigger chunks
# mean fewer torch calls: the per-call overhead dominates small chunks).
_BASIS_ELEMENTS_PER_CHUNK = 1 << 21
_MIN_BASIS_ELEMENTS = 1 << 16


def readout_frequency(readout: str) -> float:
    """Base angular frequency ``omega`` of ``Phi`` in ``x``: 1.0 for ``expval_z``, 0.5 for ``amplitude``.

    Example:
        >>> readout_frequency("amplitude")
        0.5
    """
    return _FREQUENCIES[check_readout(readout)]


def fourier_coefficients(
    ry: torch.Tensor, rz: torch.Tensor, readout: str = "expval_z", *, kernel: str | None = None
) -> torch.Tensor:
    """Exact Fourier coefficients of the circuit readout, differentiable in the angles.

    Args:
        ry: RY angles ``[..., depth, n]`` (e.g. ``[heads, depth, n]``).
        rz: RZ angles, same shape.
        readout: ``"expval_z"`` or ``"amplitude"``.
        kernel: how ``Phi`` is sampled; the same names and default as :func:`set_circuit_kernel`. Where it
            resolves to ``"cpp"`` (CPU, the default), by the C++ statevector simulator in float64, with exact
            gradients by the adjoint method (first order: no double backward); otherwise by the torch
            simulation :func:`~.circuit.circuit_readout_by_layers` (any device, ordinary autograd; few
            operations, which matters where each is a kernel launch).

    Returns:
        ``[..., 2, K + 1]`` with ``K = n * depth``: row 0 the cosine coefficients ``a_j``, row 1 the sine
        coefficients ``b_j`` (``b_0 = 0``), such that
        ``Phi(x) = sum_j a_j cos(j * omega * x) + b_j sin(j * omega * x)``, ``omega = readout_frequency(readout)``.
        Gradients flow to ``ry`` and ``rz`` through the simulation and the (linear) real DFT.

    Example:
        >>> import torch
        >>> from hf_superpositional.functional.circuit import circuit_readout
        >>> ry, rz = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
        >>> coefficients = fourier_coefficients(ry, rz)
        >>> x = torch.linspace(-3, 3, 7, dtype=torch.float64)
        >>> torch.allclose(evaluate_fourier(x, coefficients, 1.0), circuit_readout(x, ry, rz))
        True
    """
    depth, n_qubits = check_angles(ry, rz)
    omega = readout_frequency(readout)
    kernel = _default_kernel if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS} or None, got {kernel!r}")
    degree = depth * n_qubits
    dtype = torch.promote_types(torch.promote_types(ry.dtype, rz.dtype), torch.float32)
    points, transform = _sampling_tensors(degree, omega, dtype, ry.device)
    resolved = _resolve_kernel(kernel, ry.device)
    if resolved == "cpp" and dtype in (torch.float32, torch.float64):
        samples = _SampledReadout.apply(ry, rz, points, readout == "amplitude", dtype)
    elif resolved == "compiled":
        # ~80 small kernels per call (forward and backward) fused into a few: the circuit runs once per
        # layer per step, and on CUDA each launch costs as much as the work.
        arguments = layer_readout_arguments(points.to(dtype), ry, rz, readout)
        samples = _run_fused("readout", layer_readout_math, *arguments)
    else:
        samples = circuit_readout_by_layers(points.to(dtype), ry, rz, readout)
    # The real DFT as one small matrix product (the same numbers as torch.fft.rfft, without FFT planning
    # overhead on a 2K+1-point transform, in forward and backward).
    coefficients = samples @ transform  # [..., 2K+2]
    return coefficients.unflatten(-1, (2, degree + 1))


class _SampledReadout(torch.autograd.Function):
    """``Phi`` at the sample points by the C++ simulator (float64); backward by its adjoint method."""

    @staticmethod
    def forward(ctx, ry, rz, points, amplitude, dtype):
        shape = ry.shape
        sets_ry = ry.detach().reshape(-1, *shape[-2:]).to(torch.float64).contiguous()
        sets_rz = rz.detach().reshape(-1, *shape[-2:]).to(torch.float64).contiguous()
        ctx.sets, ctx.points, ctx.amplitude = (sets_ry, sets_rz), points, amplitude
        ctx.dtypes, ctx.shape = (ry.dtype, rz.dtype), shape
        samples = load_cpu_kernel().circuit_samples(sets_ry, sets_rz, points, amplitude)
        return samples.view(*shape[:-2], points.shape[0]).to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        sets_ry, sets_rz = ctx.sets
        grad = grad.reshape(-1, ctx.points.shape[0]).to(torch.float64).contiguous()
        grad_ry, grad_rz = load_cpu_kernel().circuit_samples_backward(
            sets_ry, sets_rz, ctx.points, ctx.amplitude, grad
        )
        grad_ry = grad_ry.view(ctx.shape).to(ctx.dtypes[0])
        return grad_ry, grad_rz.view(ctx.shape).to(ctx.dtypes[1]), None, None, None


@functools.lru_cache(maxsize=64)
def _sampling_tensors(degree: int, omega: float, dtype: torch.dtype, device: torch.device):
    """``(x_m = t_m / omega as float64, transform in dtype)`` on ``device``, built once per combination."""
    points, transform = _sampling(degree)
    # Ordinary tensors even when first built under inference_mode: autograd saves `transform` later.
    with torch.inference_mode(False):
        return (
            torch.as_tensor(points / omega, dtype=torch.float64, device=device),
            torch.as_tensor(transform, dtype=dtype, device=device),
        )


@functools.cache
def _sampling(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample points ``t_m = 2 pi m / N`` (``N = 2K + 1``) and the ``[N, 2K+2]`` matrix mapping samples to coefficients.

    For ``f(t) = a_0 + sum_j a_j cos(jt) + b_j sin(jt)`` the discrete orthogonality of cos/sin over ``N``
    equispaced points gives ``a_0 = mean f(t_m)``, ``a_j = (2/N) sum_m f(t_m) cos(j t_m)`` and
    ``b_j = (2/N) sum_m f(t_m) sin(j t_m)`` exactly, since ``N = 2K+1`` leaves no aliased frequencies.
    """
    n_samples = 2 * degree + 1
    points = 2.0 * np.pi * np.arange(n_samples) / n_samples
    orders = np.arange(degree + 1)
    weight = np.where(orders == 0, 1.0, 2.0) / n_samples
    angles = np.outer(points, orders)
    transform = np.concatenate((np.cos(angles) * weight, np.sin(angles) * weight), axis=1)
    transform[:, degree + 1] = 0.0  # b_0: sin(0) = 0 exactly
    return points, transform


def _check_coefficients(coefficients: torch.Tensor) -> int:
    if not isinstance(coefficients, torch.Tensor) or coefficients.ndim < 2 or coefficients.shape[-2] != 2:
        shape = (
            tuple(coefficients.shape)
            if isinstance(coefficients, torch.Tensor)
            else type(coefficients).__name__
        )
        raise ValueError(f"coefficients must have shape [..., 2, K+1] (cosine row, sine row), got {shape}")
    if not coefficients.is_floating_point():
        raise ValueError(f"coefficients must be a real floating-point tensor, got {coefficients.dtype}")
    return coefficients.shape[-1] - 1


def _check_positive_finite(name: str, value: float) -> float:
    if (
        isinstance(value, torch.Tensor)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite Python number, got {value!r}")
    return float(value)


def evaluate_fourier(x: torch.Tensor, coefficients: torch.Tensor, omega: float) -> torch.Tensor:
    """Reference evaluation of the trigonometric polynomial with plain torch ops (``cos(j*omega*x)`` directly).

    Materialises ``K + 1`` values per point, so it is meant for tests and small inputs; attention scores go
    through :func:`add_circuit_term`. Ordinary autograd applies.

    Args:
        x: points ``[..., P]``.
        coefficients: ``[..., 2, K + 1]`` as returned by :func:`fourier_coefficients`; leading dims broadcast
            with ``x``'s leading dims (e.g. ``x: [H, P]`` with ``coefficients: [H, 2, K + 1]``).
        omega: base frequency, see :func:`readout_frequency`.

    Returns:
        ``Phi(x)``, shape ``broadcast(x.shape[:-1], coefficients.shape[:-2]) + [P]``.

    Example:
        >>> import torch
        >>> coefficients = torch.tensor([[1.0, 0.5], [0.0, 2.0]])  # 1 + 0.5 cos x + 2 sin x
        >>> evaluate_fourier(torch.tensor([0.0]), coefficients, 1.0)
        tensor([1.5000])
    """
    degree = _check_coefficients(coefficients)
    omega = _check_positive_finite("omega", omega)
    orders = torch.arange(
        degree + 1, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device
    )
    angles = (omega * x).unsqueeze(-1) * orders  # [..., P, K+1]
    cosine, sine = coefficients[..., 0, :].unsqueeze(-2), coefficients[..., 1, :].unsqueeze(-2)
    return (torch.cos(angles) * cosine).sum(-1) + (torch.sin(angles) * sine).sum(-1)


def fourier_series(t: torch.Tensor, cosine, sine) -> torch.Tensor:
    """``sum_j cosine[j] cos(j t) + sine[j] sin(j t)`` elementwise, from one ``sin``/``cos`` of ``t``.

    The sum is ``Re P(z)`` with ``z = exp(i t)`` and ``P(z) = sum_j (cosine[j] - i sine[j]) z^j``, evaluated by
    Horner's rule in real arithmetic: the angle-addition recurrence folded into the running sum, 4
    multiply-adds per order and two running values, with rounding error growing linearly in ``K`` (``|z| = 1``).
    Plain elementwise torch ops, so it also works inside a FlexAttention ``score_mod`` or ``torch.compile``.

    Args:
        t: angles ``omega * x`` (any shape).
        cosine, sine: sequences of ``K + 1`` numbers or tensors broadcastable with ``t``
            (e.g. ``coefficients[h, 0, j]`` inside a ``score_mod``).

    Example:
        >>> import torch
        >>> fourier_series(torch.tensor([0.0]), [1.0, 0.5], [0.0, 2.0])
        tensor([1.5000])
    """
    degree = len(cosine) - 1
    if len(sine) != degree + 1:
        raise ValueError(f"cosine and sine must have the same length, got {len(cosine)} and {len(sine)}")
    if degree == 0:
        return torch.zeros_like(t) + cosine[0]
    cos_t, sin_t = torch.cos(t), torch.sin(t)
    # p = c_K, then p <- p * z + c_j for j = K-1 .. 0 with c_j = cosine[j] - i sine[j]; only Re p is needed
    # at the end. Written as "c + a*b - d*e" so that compilers contract each line into two FMAs.
    real, imag = cosine[degree], -sine[degree]
    for j in range(degree - 1, 0, -1):
        real, imag = cosine[j] + real * cos_t - imag * sin_t, real * sin_t + imag * cos_t - sine[j]
    return cosine[0] + real * cos_t - imag * sin_t


# ----------------------------------------------------------------------------------------------------
# Kernels. Scores arrive as a [blocks, block_size] matrix (one row per (batch, head) block, or a single
# row when every head shares the coefficients) and a per-block coefficient table [blocks, 2K+2] holding
# cosine coefficients in columns 0..K and sine coefficients in columns K+1..2K+1.
# ----------------------------------------------------------------------------------------------------


def _new_basis(n_rows: int, width: int, n_cols: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Basis buffer ``[n_rows, 2K+2, n_cols]`` with its constant rows ``cos(0 t) = 1``, ``sin(0 t) = 0`` set."""
    basis = torch.empty(n_rows, width, n_cols, dtype=dtype, device=device)
    basis[:, 0].fill_(1.0)
    basis[:, width // 2].zero_()
    return basis


def _fill_basis(basis: torch.Tensor, scores: torch.Tensor, frequency: float) -> None:
    """Write ``cos(j t)`` into rows ``1..K`` and ``sin(j t)`` into rows ``K+2..2K+1`` of ``basis``.

    ``basis``: ``[nb, 2K+2, mc]`` from :func:`_new_basis`; ``scores``: ``[nb, mc]``; ``t = frequency * scores``.
    One ``sin``/``cos`` per score, then the angle-addition formulas applied to whole blocks of orders at
    once: from orders ``1..m``, ``cos((i+m)t) = cos(it)cos(mt) - sin(it)sin(mt)`` (and the sine likewise)
    gives orders ``m+1..2m``. That is 4 in-place torch ops per doubling, ``log2(K)`` doublings, instead of 4
    per order, and each value is at most ``log2(K)`` products away from ``cos t``/``sin t``.
    """
    degree = basis.shape[1] // 2 - 1
    if degree == 0:
        return
    cos_rows, sin_rows = basis[:, : degree + 1], basis[:, degree + 1 :]
    t = scores.to(basis.dtype) * frequency
    torch.cos(t, out=cos_rows[:, 1])
    torch.sin(t, out=sin_rows[:, 1])
    known = 1
    while known < degree:
        count = min(known, degree - known)
        cos_m, sin_m = cos_rows[:, known : known + 1], sin_rows[:, known : known + 1]
        cos_low, sin_low = cos_rows[:, 1 : 1 + count], sin_rows[:, 1 : 1 + count]
        cos_new, sin_new = (
            cos_rows[:, known + 1 : known + 1 + count],
            sin_rows[:, known + 1 : known + 1 + count],
        )
        torch.mul(cos_low, cos_m, out=cos_new).addcmul_(sin_low, sin_m, value=-1.0)
        torch.mul(sin_low, cos_m, out=sin_new).addcmul_(cos_low, sin_m)
        known += count


def _chunks(n_blocks: int, block_size: int, degree: int):
    """Yield ``(b0, b1, m0, m1)`` tiles of a ``[n_blocks, block_size]`` matrix, each a contiguous region."""
    budget = min(_BASIS_ELEMENTS_PER_CHUNK, max(_MIN_BASIS_ELEMENTS, n_blocks * block_size // 4))
    target = max(1, budget // (2 * degree + 2))
    if block_size >= target:
        # Long rows: one block at a time, cut along the row (a contiguous column range of one row).
        for b in range(n_blocks):
            for m0 in range(0, block_size, target):
                yield b, b + 1, m0, min(m0 + target, block_size)
    else:
        rows = max(1, target // max(block_size, 1))
        for b0 in range(0, n_blocks, rows):
            yield b0, min(b0 + rows, n_blocks), 0, block_size


def _eager_forward(scores: torch.Tensor, table: torch.Tensor, frequency: float, scale: float = 1.0):
    """``z + sum_j table_j * basis_j(frequency z)``, ``z = scale * scores``, chunk by chunk: the basis of one
    chunk, then one batched matmul."""
    width = table.shape[1]
    out = torch.empty(scores.shape, dtype=table.dtype, device=scores.device)
    weights = table.unsqueeze(1)  # [blocks, 1, 2K+2]
    basis = None
    for b0, b1, m0, m1 in _chunks(*scores.shape, width // 2 - 1):
        chunk = scores[b0:b1, m0:m1].to(table.dtype)
        if scale != 1.0:
            chunk = chunk * scale
        if basis is None or basis.shape != (b1 - b0, width, m1 - m0):
            basis = _new_basis(b1 - b0, width, m1 - m0, table.dtype, scores.device)
        _fill_basis(basis, chunk, frequency)
        # out[b0:b1, m0:m1] is contiguous by construction of the tiles, so it can take baddbmm's result.
        torch.baddbmm(chunk.unsqueeze(1), weights[b0:b1], basis, out=out[b0:b1, m0:m1].unsqueeze(1))
    return out


def _eager_backward(
    grad, scores, derivative, frequency, need_logits, need_moments, scale=1.0, in_place=False
):
    """``grad * (1 + sum_j derivative_j basis_j) * scale`` and the per-block moments ``sum grad * basis_j``.

    ``in_place``: write the first result over ``grad`` (a contiguous tensor of the compute dtype that the
    caller owns; each chunk of it is read before it is overwritten).
    """
    width = derivative.shape[1]
    dtype, device = derivative.dtype, scores.device
    grad_logits = None
    if need_logits:
        grad_logits = grad if in_place else torch.empty(scores.shape, dtype=dtype, device=device)
    moments = torch.zeros(scores.shape[0], width, 1, dtype=dtype, device=device) if need_moments else None
    slopes = derivative.unsqueeze(1)
    one = torch.ones(1, 1, 1, dtype=dtype, device=device)
    basis = None
    for b0, b1, m0, m1 in _chunks(*scores.shape, width // 2 - 1):
        if basis is None or basis.shape != (b1 - b0, width, m1 - m0):
            basis = _new_basis(b1 - b0, width, m1 - m0, dtype, device)
        chunk = scores[b0:b1, m0:m1].to(dtype)
        _fill_basis(basis, chunk * scale if scale != 1.0 else chunk, frequency)
        grad_chunk = grad[b0:b1, m0:m1].to(dtype)
        if moments is not None:
            moments[b0:b1] += torch.bmm(basis, grad_chunk.unsqueeze(-1))
        if grad_logits is not None:
            factor = torch.baddbmm(one, slopes[b0:b1], basis)  # 1 + gate * s * Phi'
            torch.mul(grad_chunk, factor.squeeze(1), out=grad_logits[b0:b1, m0:m1])
            if scale != 1.0:  # the chain rule through z = scale * scores
                grad_logits[b0:b1, m0:m1].mul_(scale)
    return grad_logits, (moments.squeeze(-1) if moments is not None else None)


def _fused_forward_math(scores: torch.Tensor, table: torch.Tensor, frequency: float, scale: float = 1.0):
    # The same maths as _eager_forward, written elementwise so that torch.compile fuses it into one loop
    # (one read and one write per score, the recurrence in registers).
    degree = table.shape[1] // 2 - 1
    x = scores.to(table.dtype) * scale
    cosine = [table[:, j : j + 1] for j in range(degree + 1)]
    sine = [table[:, degree + 1 + j : degree + 2 + j] for j in range(degree + 1)]
    return x + fourier_series(x * frequency, cosine, sine)


def _fused_backward_math(
    grad, scores, derivative, frequency: float, need_logits: bool, need_moments: bool, scale: float = 1.0
):
    # The same maths as _eager_backward, elementwise: cos(jt)/sin(jt) by the angle-addition recurrence,
    # each order used at once for the slope (1 + gate * s * Phi') and the moments, then dropped.
    degree = derivative.shape[1] // 2 - 1
    g = grad.to(derivative.dtype)
    t = scores.to(derivative.dtype) * scale * frequency
    cos_t, sin_t = torch.cos(t), torch.sin(t)
    cos_j, sin_j = cos_t, sin_t
    slope = 1.0  # the derivative table's order-0 entries are 0: d/dx of a constant
    moments_cos, moments_sin = [g.sum(-1)], [torch.zeros_like(g[:, 0])]
    for j in range(1, degree + 1):
        if j > 1:
            cos_j, sin_j = cos_j * cos_t - sin_j * sin_t, sin_j * cos_t + cos_j * sin_t
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


KERNELS = ("auto", "cpp", "compiled", "eager")
"""Implementations of :func:`add_circuit_term`; ``"auto"`` (default) picks one per device, see :func:`set_circuit_kernel`."""

_default_kernel = "auto"
_compiled: dict[str, object] = {}


def set_circuit_kernel(kernel: str) -> str:
    """Choose the default implementation of :func:`add_circuit_term` (and :func:`circuit_softmax`,
    :func:`fourier_coefficients`); returns the previous choice.

    All kernels compute the same maths with the same memory contract (only the inputs are saved for the
    backward; no score-sized temporaries beyond the outputs and one small chunk):

    - ``"auto"`` (default): ``"cpp"`` for CPU tensors when the C++ kernel builds, ``"compiled"`` for CUDA
      tensors, ``"eager"`` otherwise.
    - ``"cpp"``: the fused, vectorised, multi-threaded C++ CPU kernel of :mod:`.cpu_kernel` (compiled once
      per machine on first use, 10-40 s, then cached; CPU tensors only), which also samples the circuit for
      :func:`fourier_coefficients`. If it cannot be built, one warning is issued and the torch kernels are
      used.
    - ``"compiled"``: the maths fused by ``torch.compile`` into one loop per pass (the first call per dtype
      and degree compiles for tens of seconds, in every process). If compilation fails, it warns once and
      falls back to eager.
    - ``"eager"``: chunked torch ops, no compilation; the reference implementation.

    Example:
        >>> previous = set_circuit_kernel("eager")
        >>> _ = set_circuit_kernel(previous)
    """
    global _default_kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    previous, _default_kernel = _default_kernel, kernel
    return previous


def _resolve_kernel(kernel: str, device: torch.device) -> str:
    """The concrete kernel (``"cpp"``, ``"compiled"`` or ``"eager"``) that runs ``kernel`` on ``device``."""
    if kernel == "auto":
        if device.type == "cpu":
            return "cpp" if load_cpu_kernel() is not None else "eager"
        return "compiled" if device.type == "cuda" else "eager"
    if kernel == "cpp":
        if device.type != "cpu":
            raise ValueError(f"kernel 'cpp' runs on CPU tensors only, got logits on {device.type!r}")
        return "cpp" if load_cpu_kernel() is not None else "eager"  # load_cpu_kernel warned already
    return kernel


def _compiled_kernel(name: str):
    if name not in _compiled:
        if name == "readout":  # the circuit sampled at 2K+1 points: fixed, tiny shapes
            _compiled[name] = torch.compile(layer_readout_math, dynamic=False, fullgraph=True)
        else:
            source = {"forward": _fused_forward_math, "backward": _fused_backward_math}[name]
            # dynamic=True: one compiled kernel for every sequence length instead of one per shape.
            _compiled[name] = torch.compile(source, dynamic=True, fullgraph=True)
    return _compiled[name]


def _run_fused(name: str, eager_fn, *args):
    if _compiled.get(name, True) is None:  # compilation failed before: stay eager
        return eager_fn(*args)
    try:
        return _compiled_kernel(name)(*args)
    except torch.OutOfMemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - any compiler/toolchain failure falls back to eager
        warnings.warn(
            f"torch.compile of the circuit-term {name} kernel failed ({type(error).__name__}: {error}); "
            "falling back to the eager kernel",
            RuntimeWarning,
            stacklevel=3,
        )
        _compiled[name] = None
        return eager_fn(*args)


def _per_block(table: torch.Tensor, n_lead: int, n_heads: int) -> torch.Tensor:
    """Repeat a per-head table ``[H, W]`` (or ``[1, W]``) to one row per ``(lead, head)`` block."""
    return table.expand(n_heads, table.shape[1]).repeat(n_lead, 1)


def _as_blocks(tensor: torch.Tensor) -> torch.Tensor:
    """View ``[B, H, ...]`` as ``[B*H, rest]``: one row per (batch, head) block, whose coefficients are fixed."""
    if tensor.ndim < 2:
        return tensor.reshape(1, -1)
    return tensor.reshape(tensor.shape[0] * tensor.shape[1], -1)


def _causal_keep(logits: torch.Tensor) -> torch.Tensor:
    """``[Lq, Lk]`` boolean, ``True`` where key index <= query index (upper-left aligned, as SDPA's ``is_causal``)."""
    q_len, kv_len = logits.shape[-2], logits.shape[-1]
    rows = torch.arange(q_len, device=logits.device)[:, None]
    return torch.arange(kv_len, device=logits.device)[None, :] <= rows


def _block_heads(logits: torch.Tensor) -> tuple[int, int]:
    """``(n_lead, n_heads)`` of the block rows: ``B`` and ``H`` for ``[B, H, ...]`` logits."""
    if logits.ndim < 2:
        return 1, 1
    return logits.shape[0], logits.shape[1]


@dataclasses.dataclass(frozen=True)
class _TermSpec:
    """The non-tensor arguments of a circuit-term evaluation, fixed by :func:`_check_term_arguments`."""

    frequency: float  # omega * input_scale
    dtype: torch.dtype  # compute dtype
    kernel: str  # "cpp", "compiled" or "eager" (resolved)
    causal: bool
    scale: float  # logit_scale


def _term_forward(logits, coefficients, gate, spec: _TermSpec) -> torch.Tensor:
    """``z + gate * Phi(frequency * z)``, ``z = scale * logits``, causally masked if asked; a fresh tensor."""
    dtype = spec.dtype
    width = coefficients.shape[-1] * 2
    # Shared coefficients are still laid out per (batch, head) row: more rows to parallelise over.
    scores = _as_blocks(logits)
    n_lead, n_heads = _block_heads(logits)
    # The gate is folded into the coefficients, so a chunk's whole term is one weighted basis sum.
    table = gate.to(dtype).view(-1, 1) * coefficients.to(dtype).reshape(-1, width)
    table = _per_block(table, n_lead, n_heads)
    if spec.kernel == "cpp":  # scales and masks in the same pass, and skips the masked scores
        query_len = logits.shape[-2] if spec.causal else 1
        scores = scores.to(dtype).contiguous()
        out = load_cpu_kernel().circuit_forward(
            scores, table, spec.scale, spec.frequency, query_len, spec.causal
        )
        return out.view(logits.shape)
    if spec.kernel == "compiled":
        out = _run_fused("forward", _eager_forward, scores.contiguous(), table, spec.frequency, spec.scale)
    else:
        out = _eager_forward(scores, table, spec.frequency, spec.scale)
    out = out.view(logits.shape)
    if spec.causal:  # in place on our own output: nothing score-sized is saved for it
        out.masked_fill_(~_causal_keep(logits), torch.finfo(dtype).min)
    return out


def _term_backward(logits, coefficients, gate, spec: _TermSpec, grad_out, needs, grad_is_ours=False):
    """Gradients of :func:`_term_forward` for ``(logits, coefficients, gate)`` (``None`` where not needed).

    ``grad_is_ours``: ``grad_out`` is a temporary of the caller, which the logits' gradient may overwrite.
    """
    dtype = spec.dtype
    need_logits, need_coefficients, need_gate = needs
    need_moments = need_coefficients or need_gate
    degree = coefficients.shape[-1] - 1
    width = 2 * degree + 2
    if spec.causal and spec.kernel != "cpp":  # masked scores are constants: no gradient flows through them
        keep = _causal_keep(logits)
        grad_out = grad_out.masked_fill_(~keep, 0.0) if grad_is_ours else grad_out.masked_fill(~keep, 0.0)
    scores, grads = _as_blocks(logits), _as_blocks(grad_out)
    n_lead, n_heads = _block_heads(logits)
    coef = coefficients.to(dtype).reshape(-1, width)  # [1 or H, 2K+2]
    gate_c = gate.to(dtype).view(-1, 1)
    # d/dx [gate Phi(s x)] = gate * s * omega * sum_j j (b_j cos(j t) - a_j sin(j t)),  t = s * omega * x.
    orders = torch.arange(degree + 1, dtype=dtype, device=logits.device)
    slope = torch.cat((coef[:, degree + 1 :] * orders, -coef[:, : degree + 1] * orders), dim=1)
    derivative = _per_block(gate_c * slope * spec.frequency, n_lead, n_heads)

    if spec.kernel == "cpp":
        query_len = logits.shape[-2] if spec.causal else 1
        in_place = grad_is_ours and grads.dtype == dtype and grads.is_contiguous()
        grads, scores = grads.to(dtype).contiguous(), scores.to(dtype).contiguous()
        grad_scores, moments = load_cpu_kernel().circuit_backward(
            grads,
            scores,
            derivative,
            spec.scale,
            spec.frequency,
            query_len,
            spec.causal,
            need_logits,
            need_moments,
            in_place,
        )
    else:
        args = (grads, scores, derivative, spec.frequency, need_logits, need_moments, spec.scale)
        if spec.kernel == "compiled":
            args = (grads.contiguous(), scores.contiguous(), *args[2:])
            grad_scores, moments = _run_fused("backward", _eager_backward, *args)
        else:
            in_place = grad_is_ours and grads.dtype == dtype and grads.is_contiguous()
            grad_scores, moments = _eager_backward(*args, in_place=in_place)

    grad_logits = grad_coefficients = grad_gate = None
    if need_logits:
        grad_logits = grad_scores.view(logits.shape).to(logits.dtype)
    if need_moments:
        per_head = moments.view(n_lead, n_heads, width).sum(0)  # sum over scores of grad * basis_j
        if need_coefficients:
            grad_c = gate_c * per_head
            if coefficients.ndim == 2 or coefficients.shape[0] == 1:
                grad_c = grad_c.sum(0, keepdim=True)
            grad_coefficients = grad_c.reshape(coefficients.shape).to(coefficients.dtype)
        if need_gate:
            grad_g = (coef * per_head).sum(1)
            if gate.shape[0] == 1:
                grad_g = grad_g.sum(0, keepdim=True)
            grad_gate = grad_g.to(gate.dtype)
    return grad_logits, grad_coefficients, grad_gate


class _CircuitTerm(torch.autograd.Function):
    """``logits + gate * Phi(input_scale * logits)`` with a recomputing backward (see add_circuit_term)."""

    @staticmethod
    def forward(ctx, logits, coefficients, gate, spec):
        # Only the inputs are saved: the backward recomputes sin/cos and the recurrence.
        ctx.save_for_backward(logits, coefficients, gate)
        ctx.spec = spec
        return _term_forward(logits, coefficients, gate, spec)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grads = _term_backward(*ctx.saved_tensors, ctx.spec, grad_out, ctx.needs_input_grad[:3])
        return (*grads, None)


class _CircuitSoftmax(torch.autograd.Function):
    """``softmax(term, dim=-1)`` of :func:`_term_forward` in one node (see circuit_softmax)."""

    @staticmethod
    def forward(ctx, logits, coefficients, gate, spec):
        term = _term_forward(logits, coefficients, gate, spec)
        # torch's own softmax kernel: the same numbers as torch.softmax(term, -1). On CPU in place on the
        # term (our own buffer; each row is reduced before it is written, tested), one score-sized tensor
        # instead of two.
        probs = torch._softmax(term, -1, False, out=term) if term.device.type == "cpu" else term.softmax(-1)
        ctx.save_for_backward(logits, coefficients, gate, probs)
        ctx.spec = spec
        return probs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_probs):
        logits, coefficients, gate, probs = ctx.saved_tensors
        grad_term = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        # grad_term is our temporary: the logits' gradient may be written over it.
        grads = _term_backward(
            logits, coefficients, gate, ctx.spec, grad_term, ctx.needs_input_grad[:3], grad_is_ours=True
        )
        return (*grads, None)


class _CircuitAttentionProbs(torch.autograd.Function):
    """``softmax(term(query @ key^T))`` keeping only the probabilities: the logits are recomputed in backward.

    ``half_scale``: for fp16/bf16 queries the logits are scaled in their own dtype and then widened, as eager
    attention and the module path do (``spec.scale`` is then 1); ``None`` for float32, where the kernel
    applies ``spec.scale`` itself. ``mask``: boolean (``True`` = attend), applied to the term as
    ``torch.where(mask, term, finfo.min)`` is, in place; its backward zeroes the masked scores' gradient.
    """

    @staticmethod
    def _logits(query, key, half_scale, dtype):
        logits = torch.matmul(query, key.transpose(-2, -1))
        return logits if half_scale is None else (logits * half_scale).to(dtype)

    @staticmethod
    def forward(ctx, query, key, coefficients, gate, spec, half_scale, mask):
        logits = _CircuitAttentionProbs._logits(query, key, half_scale, spec.dtype)
        term = _term_forward(logits, coefficients, gate, spec)
        del logits
        if mask is not None:
            term.masked_fill_(~mask, torch.finfo(term.dtype).min)
        probs = torch._softmax(term, -1, False, out=term) if term.device.type == "cpu" else term.softmax(-1)
        ctx.save_for_backward(query, key, coefficients, gate, probs, mask)
        ctx.spec, ctx.half_scale = spec, half_scale
        return probs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_probs):
        query, key, coefficients, gate, probs, mask = ctx.saved_tensors
        need_query, need_key, need_coefficients, need_gate = ctx.needs_input_grad[:4]
        grad_term = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        if mask is not None:  # as torch.where's backward: nothing flows through a masked score
            grad_term.masked_fill_(~mask, 0.0)
        # The same product (and scaling) as the forward's, again.
        logits = _CircuitAttentionProbs._logits(query, key, ctx.half_scale, ctx.spec.dtype)
        needs = (need_query or need_key, need_coefficients, need_gate)
        grad_logits, grad_coefficients, grad_gate = _term_backward(
            logits, coefficients, gate, ctx.spec, grad_term, needs, grad_is_ours=True
        )
        del logits
        if grad_logits is not None and ctx.half_scale is not None:
            # As autograd goes back through (query @ key^T * scale).to(float32): cast, then scale.
            grad_logits = grad_logits.to(query.dtype) * ctx.half_scale
        # As autograd differentiates torch.matmul(query, key.transpose(2, 3)): the same products, same numbers.
        grad_query = grad_logits.matmul(key) if need_query else None
        grad_key = query.transpose(-2, -1).matmul(grad_logits).transpose(-2, -1) if need_key else None
        return grad_query, grad_key, grad_coefficients, grad_gate, None, None, None


def _check_term_arguments(logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale):
    """Validate :func:`add_circuit_term`'s arguments; returns the :class:`_TermSpec`."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError(
            f"logits must be a floating-point tensor, got {getattr(logits, 'dtype', type(logits).__name__)}"
        )
    _check_coefficients(coefficients)
    if coefficients.ndim not in (2, 3):
        raise ValueError(
            f"coefficients must have shape [2, K+1] or [H, 2, K+1], got {tuple(coefficients.shape)}"
        )
    if not isinstance(gate, torch.Tensor) or gate.ndim != 1 or not gate.is_floating_point():
        shape = tuple(gate.shape) if isinstance(gate, torch.Tensor) else type(gate).__name__
        raise ValueError(f"gate must be a 1-D float tensor of shape [1] or [H] (never 0-D), got {shape}")
    omega = _check_positive_finite("omega", omega)
    for name, value in (("input_scale", input_scale), ("logit_scale", logit_scale)):
        if (
            isinstance(value, (bool, torch.Tensor))
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a finite Python number, got {value!r}")
    kernel = _default_kernel if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS} or None, got {kernel!r}")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be a bool, got {causal!r}")
    if causal and logits.ndim != 4:
        raise ValueError(f"causal=True needs logits of shape [B, H, Lq, Lk], got {tuple(logits.shape)}")

    coefficient_heads = coefficients.shape[0] if coefficients.ndim == 3 else 1
    n_heads = max(coefficient_heads, gate.shape[0])
    if coefficient_heads not in (1, n_heads) or gate.shape[0] not in (1, n_heads):
        raise ValueError(
            f"coefficients ({coefficient_heads} heads) and gate ({gate.shape[0]} heads) disagree: "
            "each must have 1 entry or one per head"
        )
    if n_heads > 1 and (logits.ndim < 2 or logits.shape[1] != n_heads):
        raise ValueError(
            f"per-head coefficients/gate ({n_heads} heads) need logits of shape [B, {n_heads}, ...], "
            f"got logits {tuple(logits.shape)}"
        )
    compute_dtype = torch.float32
    for tensor in (logits, coefficients, gate):
        compute_dtype = torch.promote_types(compute_dtype, tensor.dtype)
    frequency = omega * float(input_scale)
    kernel = _resolve_kernel(kernel, logits.device) if logits.numel() else "eager"
    return _TermSpec(frequency, compute_dtype, kernel, causal, float(logit_scale))


def add_circuit_term(
    logits: torch.Tensor,
    coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    input_scale: float = 1.0,
    kernel: str | None = None,
    causal: bool = False,
    logit_scale: float = 1.0,
) -> torch.Tensor:
    """``logits + gate * Phi(input_scale * logits)`` for every attention score, fast and memory-lean.

    ``Phi`` is the trigonometric polynomial given by ``coefficients`` (see :func:`fourier_coefficients`).
    Per score it costs one ``sin``/``cos`` and ``O(K)`` multiply-adds (angle-addition recurrence), in
    float32 (float64 if any input is float64). Autograd saves only ``logits``, ``coefficients`` and
    ``gate``; the backward recomputes the recurrence and gives exact gradients for the logits
    (``1 + gate * input_scale * Phi'``), the coefficients (summed per head) and the gate.

    Args:
        logits: scores ``[B, H, Lq, Lk]`` (any float dtype; fp16/bf16 are computed in float32).
        coefficients: ``[2, K + 1]`` shared by all heads, or ``[H, 2, K + 1]`` per head (dim 1 of ``logits``).
        gate: shape ``[1]`` or ``[H]``. Never 0-D, because FlexAttention cannot capture 0-D tensors.
        omega: base frequency of ``Phi`` (:func:`readout_frequency`).
        input_scale: ``Phi`` is evaluated at ``input_scale * logits``.
        kernel: ``"auto"``, ``"cpp"``, ``"compiled"`` or ``"eager"`` (see :func:`set_circuit_kernel`);
            ``None`` uses the default set there (``"auto"`` unless changed).
        causal: also apply attention's causal mask (``logits`` must be ``[B, H, Lq, Lk]``): scores whose key
            index exceeds their query index (upper-left aligned, as SDPA's ``is_causal``) come out as the
            lowest finite value of the result dtype, with zero gradient -- exactly what
            ``hf_superpositional.attention.apply_attention_mask(out, None, causal=True)`` gives, but in the
            same pass (the ``"cpp"`` kernel also skips their circuit term entirely).
        logit_scale: ``logits`` are first multiplied by this (rounded as ``logits * logit_scale`` is), i.e.
            the result is ``z + gate * Phi(input_scale * z)`` with ``z = logit_scale * logits``. Attention
            passes the unscaled ``QK^T`` and its softmax scale here, which saves the score-sized tensor of
            the separate multiplication in forward and in backward.

    Returns:
        float32 tensor shaped like ``logits`` (float64 if ``logits``, ``coefficients`` or ``gate`` is float64).

    Example:
        >>> import torch
        >>> ry, rz = torch.randn(4, 2, 4), torch.randn(4, 2, 4)  # 4 heads, depth 2, 4 qubits
        >>> coefficients = fourier_coefficients(ry, rz, "expval_z")  # [4, 2, 9]
        >>> logits = torch.randn(2, 4, 8, 8, requires_grad=True)
        >>> out = add_circuit_term(logits, coefficients, torch.ones(4), omega=1.0)
        >>> out.shape
        torch.Size([2, 4, 8, 8])
    """
    spec = _check_term_arguments(logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale)
    if logits.numel() == 0:
        return logits.to(spec.dtype) * logit_scale
    return _CircuitTerm.apply(logits, coefficients, gate, spec)


def circuit_softmax(
    logits: torch.Tensor,
    coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    input_scale: float = 1.0,
    kernel: str | None = None,
    causal: bool = False,
    logit_scale: float = 1.0,
) -> torch.Tensor:
    """``softmax(add_circuit_term(logits, ...), dim=-1)``: attention probabilities with the circuit term.

    The same numbers as ``torch.softmax`` of :func:`add_circuit_term`'s result (torch's own softmax kernels
    run in place on the term), as one autograd node that holds one score-sized buffer instead of two: the
    forward turns the term into the probabilities where it lies, and the backward writes the logits'
    gradient over the softmax gradient. Saved for backward: ``logits``, ``coefficients``, ``gate`` and
    the probabilities (which a separate softmax saves as well).

    Args:
        logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale: as
            :func:`add_circuit_term` (with ``causal=True`` the masked probabilities are exactly 0).

    Returns:
        The probabilities over the last dimension, float32 (float64 if an input is float64), shaped like
        ``logits``.

    Example:
        >>> import torch
        >>> coefficients = torch.tensor([[0.5, 1.0], [0.0, -0.5]])  # one qubit's worth: K = 1
        >>> probs = circuit_softmax(torch.randn(1, 1, 3, 3), coefficients, torch.ones(1), omega=1.0, causal=True)
        >>> probs.sum(-1)
        tensor([[[1., 1., 1.]]])
    """
    spec = _check_term_arguments(logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale)
    if logits.numel() == 0:
        return torch.softmax(logits.to(spec.dtype) * logit_scale, -1)
    return _CircuitSoftmax.apply(logits, coefficients, gate, spec)


def circuit_attention_probs(
    query: torch.Tensor,
    key: torch.Tensor,
    coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    input_scale: float = 1.0,
    kernel: str | None = None,
    causal: bool = False,
    logit_scale: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``circuit_softmax(query @ key^T, ...)`` that saves no logits: the backward recomputes ``query @ key^T``.

    Eager attention keeps one score-sized tensor per layer for its backward (the probabilities);
    :func:`circuit_softmax` keeps two (the logits too, for ``Phi'``). Taking ``query`` and ``key`` instead of
    their product brings the circuit back to eager attention's memory, for one more ``query @ key^T`` in
    the backward. Same values and gradients as ``circuit_softmax(torch.matmul(query, key.transpose(-2, -1)),
    ...)`` (bit for bit: the same kernels in the same order). fp16/bf16 ``query``/``key``: the logits are
    scaled by ``logit_scale`` in their own dtype and widened to float32 before the term, as eager attention
    scales them, i.e. the same as ``circuit_softmax((query @ key^T * logit_scale).float(), ...)``.

    Args:
        query: ``[B, H, Lq, D]``; key: ``[B, H, Lk, D]`` (already repeated for GQA).
        coefficients, gate, omega, input_scale, kernel, causal, logit_scale: as :func:`circuit_softmax`.
        mask: optional boolean mask (``True`` = attend) broadcastable to ``[B, H, Lq, Lk]`` (a padded batch's
            mask; extra key columns are ignored), applied before the softmax exactly as
            ``hf_superpositional.attention.apply_attention_mask`` applies it (masked scores become the lowest
            float32 value: a query with no key left gets a uniform row and no gradient).

    Returns:
        The probabilities ``[B, H, Lq, Lk]``, float32 (float64 for float64 inputs).

    Example:
        >>> import torch
        >>> q, k = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
        >>> coefficients, gate = torch.tensor([[0.5, 1.0], [0.0, -0.5]]), torch.ones(1)
        >>> probs = circuit_attention_probs(q, k, coefficients, gate, omega=1.0, causal=True, logit_scale=0.5)
        >>> torch.equal(probs, circuit_softmax(q @ k.transpose(-2, -1), coefficients, gate, omega=1.0,
        ...                                    causal=True, logit_scale=0.5))
        True
    """
    for name, tensor in (("query", query), ("key", key)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4 or not tensor.is_floating_point():
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name} must be a 4-D float tensor [B, H, L, D], got {shape}")
    if key.shape[:2] != query.shape[:2] or key.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"key {tuple(key.shape)} must match query {tuple(query.shape)} in batch, heads and head_dim "
            "(repeat key/value heads for GQA first)"
        )
    logits_shape = (*query.shape[:3], key.shape[2])
    meta_logits = torch.empty(logits_shape, dtype=torch.promote_types(query.dtype, key.dtype), device="meta")
    kernel = _default_kernel if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS} or None, got {kernel!r}")
    # Checked on a meta stand-in for the logits (never allocated); the kernel is resolved for query's device.
    spec = _check_term_arguments(
        meta_logits, coefficients, gate, omega, input_scale, "eager", causal, logit_scale
    )
    spec = dataclasses.replace(spec, kernel=_resolve_kernel(kernel, query.device))
    half_scale = None
    if query.dtype in (torch.float16, torch.bfloat16):
        half_scale, spec = float(logit_scale), dataclasses.replace(spec, scale=1.0)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.ndim != 4:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"mask must be a 4-D boolean tensor broadcastable to {logits_shape}, got {shape}"
            )
        mask = mask[..., : logits_shape[-1]]
        torch.broadcast_shapes(mask.shape, logits_shape)  # raises naming both shapes
    if meta_logits.numel() == 0:
        if mask is not None:
            raise ValueError("mask with empty attention (no query or no key) is not supported")
        return circuit_softmax(
            torch.matmul(query, key.transpose(-2, -1)),
            coefficients,
            gate,
            omega=omega,
            input_scale=input_scale,
            kernel=kernel,
            causal=causal,
            logit_scale=logit_scale,
        )
    return _CircuitAttentionProbs.apply(query, key, coefficients, gate, spec, half_scale, mask)
