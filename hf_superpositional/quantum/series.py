"""Trigonometric polynomials: the form the circuit readout takes, and how it is evaluated (SPEC section 3).

The input ``x`` enters the circuit only through ``K = n * depth`` rotations ``exp(-i x Y / 2)``, so the
readout is exactly a trigonometric polynomial::

    Phi(x) = sum_{j=0..K} a_j cos(j * omega * x) + b_j sin(j * omega * x)

with ``omega = 1`` for ``"expval_z"`` (a probability: products of ``e^{+-ix/2}`` pairs, integer frequencies)
and ``omega = 1/2`` for ``"amplitude"`` (an amplitude: half-integer frequencies). This module holds the
maths of such series and nothing else: the coefficient layout (``[..., 2, K+1]``: row 0 the ``a_j``, row 1
the ``b_j``), the series (:func:`fourier_series`), its basis (:func:`fourier_basis`), the plain reference
(:func:`evaluate_fourier`), and the exact sampling that recovers the coefficients from ``2K+1`` values
(:func:`fourier_sampling`), and the two pieces of its calculus the kernels' backward passes share
(:func:`derivative_rows`, :func:`gated_series_gradients`). Every evaluation of ``Phi`` in Python goes through :func:`fourier_series` or
:func:`fourier_basis`; the C++ and Triton kernels implement the same recurrences.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
import torch

from .simulation import check_readout

__all__ = [
    "check_coefficients",
    "check_positive_finite",
    "derivative_rows",
    "evaluate_fourier",
    "fourier_basis",
    "fourier_sampling",
    "fourier_series",
    "gated_series_gradients",
    "readout_frequency",
]

_FREQUENCIES = {"expval_z": 1.0, "amplitude": 0.5}


def readout_frequency(readout: str) -> float:
    """Base angular frequency ``omega`` of ``Phi`` in ``x``: 1.0 for ``expval_z``, 0.5 for ``amplitude``.

    Example:
        >>> readout_frequency("amplitude")
        0.5
    """
    return _FREQUENCIES[check_readout(readout)]


def check_coefficients(coefficients: torch.Tensor) -> int:
    """Validate a ``[..., 2, K+1]`` coefficient tensor (cosine row, sine row) and return its degree ``K``.

    Example:
        >>> check_coefficients(torch.zeros(4, 2, 9))
        8
    """
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


def check_positive_finite(name: str, value: float) -> float:
    """``value`` as a float if it is a positive, finite Python number; else a ``ValueError`` naming ``name``.

    Example:
        >>> check_positive_finite("omega", 1)
        1.0
    """
    if (
        isinstance(value, (bool, torch.Tensor))
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite Python number, got {value!r}")
    return float(value)


def evaluate_fourier(x: torch.Tensor, coefficients: torch.Tensor, omega: float) -> torch.Tensor:
    """Reference evaluation of the trigonometric polynomial with plain torch ops (``cos(j*omega*x)`` directly).

    Materialises ``K + 1`` values per point, so it is meant for tests and small inputs; attention scores go
    through :func:`hf_superpositional.quantum.ops.add_circuit_term`. Ordinary autograd applies.

    Args:
        x: points ``[..., P]``.
        coefficients: ``[..., 2, K + 1]`` (e.g. from :func:`~hf_superpositional.quantum.fourier.fourier_coefficients`);
            leading dims broadcast with ``x``'s leading dims (e.g. ``x: [H, P]`` with ``coefficients: [H, 2, K + 1]``).
        omega: base frequency, see :func:`readout_frequency`.

    Returns:
        ``Phi(x)``, shape ``broadcast(x.shape[:-1], coefficients.shape[:-2]) + [P]``.

    Example:
        >>> coefficients = torch.tensor([[1.0, 0.5], [0.0, 2.0]])  # 1 + 0.5 cos x + 2 sin x
        >>> evaluate_fourier(torch.tensor([0.0]), coefficients, 1.0)
        tensor([1.5000])
    """
    degree = check_coefficients(coefficients)
    omega = check_positive_finite("omega", omega)
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


def fourier_basis(t: torch.Tensor, degree: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(j, cos(j t), sin(j t))`` for ``j = 1 .. degree`` by the angle-addition recurrence.

    One ``sin``/``cos`` of ``t``, then one complex multiplication per order; each order is produced, used
    and dropped, so a caller that reduces over it (the gradients of the coefficients, ``sum g cos(j t)``)
    holds two score-sized tensors at a time, never ``K``.

    Example:
        >>> [(j, round(float(c), 6)) for j, c, _ in fourier_basis(torch.tensor(math.pi / 3), 3)]  # cos(j pi/3)
        [(1, 0.5), (2, -0.5), (3, -1.0)]
    """
    cos_t, sin_t = torch.cos(t), torch.sin(t)
    cos_j, sin_j = cos_t, sin_t
    for j in range(1, degree + 1):
        yield j, cos_j, sin_j
        if j < degree:
            cos_j, sin_j = cos_j * cos_t - sin_j * sin_t, sin_j * cos_t + cos_j * sin_t


@functools.cache
def fourier_sampling(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample points ``t_m = 2 pi m / N`` (``N = 2K + 1``) and the ``[N, 2K+2]`` matrix mapping samples to coefficients.

    For ``f(t) = a_0 + sum_j a_j cos(jt) + b_j sin(jt)`` the discrete orthogonality of cos/sin over ``N``
    equispaced points gives ``a_0 = mean f(t_m)``, ``a_j = (2/N) sum_m f(t_m) cos(j t_m)`` and
    ``b_j = (2/N) sum_m f(t_m) sin(j t_m)`` exactly, since ``N = 2K+1`` leaves no aliased frequencies. So
    ``samples @ transform``, unflattened to ``(2, K+1)``, is the coefficient tensor.

    Example:
        >>> points, transform = fourier_sampling(1)
        >>> samples = 1 + 0.5 * np.cos(points) + 2 * np.sin(points)
        >>> np.round(samples @ transform, 12).reshape(2, 2).tolist()
        [[1.0, 0.5], [0.0, 2.0]]
    """
    n_samples = 2 * degree + 1
    points = 2.0 * np.pi * np.arange(n_samples) / n_samples
    orders = np.arange(degree + 1)
    weight = np.where(orders == 0, 1.0, 2.0) / n_samples
    angles = np.outer(points, orders)
    transform = np.concatenate((np.cos(angles) * weight, np.sin(angles) * weight), axis=1)
    transform[:, degree + 1] = 0.0  # b_0: sin(0) = 0 exactly
    return points, transform


def derivative_rows(rows: torch.Tensor) -> torch.Tensor:
    """The coefficient rows of the series' derivative in ``t``, in the kernels' flat layout.

    ``rows[..., :K+1]`` are the ``a_j`` and ``rows[..., K+1:]`` the ``b_j`` (last dimension ``2K+2``); since
    ``d/dt [a_j cos(j t) + b_j sin(j t)] = (j b_j) cos(j t) + (-j a_j) sin(j t)``, the result holds ``j b_j`` in
    the cosine half and ``-j a_j`` in the sine half.

    Example:
        >>> derivative_rows(torch.tensor([[0.5, 1.0, 0.0, 2.0]]))  # 0.5 + cos t + 2 sin t -> 2 cos t - sin t
        tensor([[ 0.,  2., -0., -1.]])
    """
    degree = rows.shape[-1] // 2 - 1
    orders = torch.arange(degree + 1, dtype=rows.dtype, device=rows.device)
    return torch.cat((rows[..., degree + 1 :] * orders, -rows[..., : degree + 1] * orders), dim=-1)


def gated_series_gradients(
    moments: torch.Tensor,
    coefficients: torch.Tensor,
    gate: torch.Tensor,
    dtype: torch.dtype,
    need_coefficients: bool,
    need_gate: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of the gated term ``gate_h * sum_j c_hj basis_j(t)`` from the per-head moments of the backward.

    ``moments[h, j] = sum over head h's scores of dL/dterm * basis_j(t)`` (``[H, 2K+2]``, cosine half then sine
    half), which is all a kernel's backward has to reduce over the scores. Then ``dL/dc_hj = gate_h *
    moments[h, j]`` and ``dL/dgate_h = sum_j c_hj moments[h, j]``, summed over the heads where the coefficients
    (``[2, K+1]`` or ``[1, 2, K+1]``) or the gate (``[1]``) are shared.

    Args:
        moments: ``[H, 2K+2]`` per-head moments.
        coefficients: ``[2, K+1]``, ``[1, 2, K+1]`` or ``[H, 2, K+1]``.
        gate: ``[1]`` or ``[H]``.
        dtype: the dtype the products are computed in.
        need_coefficients, need_gate: which gradients to compute (``None`` for the other).

    Returns:
        ``(grad_coefficients, grad_gate)`` in the shapes and dtypes of ``coefficients`` and ``gate``.

    Example:
        >>> grad_c, grad_g = gated_series_gradients(torch.ones(2, 4), torch.ones(2, 2), torch.tensor([0.5]),
        ...                                         torch.float64, True, True)
        >>> grad_c.tolist(), grad_g.tolist()
        ([[1.0, 1.0], [1.0, 1.0]], [8.0])
    """
    width = moments.shape[-1]
    grad_coefficients = grad_gate = None
    if need_coefficients:
        grad_c = gate.to(dtype).view(-1, 1) * moments
        if coefficients.ndim == 2 or coefficients.shape[0] == 1:
            grad_c = grad_c.sum(0, keepdim=True)
        grad_coefficients = grad_c.reshape(coefficients.shape).to(coefficients.dtype)
    if need_gate:
        grad_g = (coefficients.to(dtype).reshape(-1, width) * moments).sum(1)
        if gate.shape[0] == 1:
            grad_g = grad_g.sum(0, keepdim=True)
        grad_gate = grad_g.to(gate.dtype)
    return grad_coefficients, grad_gate
