"""Exact Fourier compilation of the circuit readout (SPEC section 3).

``Phi`` is a trigonometric polynomial of degree ``K = n * depth`` in ``t = omega * x`` (see
:mod:`.series`), so sampling it at the ``2K + 1`` equispaced points of one period and taking the real DFT
gives its ``2K + 1`` coefficients exactly (no aliasing). :func:`fourier_coefficients` does that, with the
circuit simulated by the selected kernel (:mod:`.kernels`) and gradients flowing to the angles through the
simulation and the (linear) DFT. The attention then evaluates ``Phi`` over every score from these
coefficients (:mod:`.ops`) at ``O(K)`` multiply-adds per score instead of one circuit simulation per score.
"""

from __future__ import annotations

import functools

import torch

from .kernels import resolve_circuit_kernel
from .series import fourier_sampling, readout_frequency
from .simulation import check_angles

__all__ = ["fourier_coefficients", "sampling_tensors"]


@functools.lru_cache(maxsize=64)
def sampling_tensors(degree: int, omega: float, dtype: torch.dtype, device: torch.device):
    """``(x_m = t_m / omega as float64, transform in dtype)`` on ``device``, built once per combination.

    The sample points and the ``[2K+1, 2K+2]`` DFT matrix of :func:`.series.fourier_sampling`, cached as
    tensors so that a call makes no host-to-device copy (which would synchronise a CUDA stream).

    Example:
        >>> points, transform = sampling_tensors(2, 1.0, torch.float32, torch.device("cpu"))
        >>> tuple(points.shape), tuple(transform.shape)
        ((5,), (5, 6))
    """
    points, transform = fourier_sampling(degree)
    # Ordinary tensors even when first built under inference_mode: autograd saves `transform` later.
    with torch.inference_mode(False):
        return (
            torch.as_tensor(points / omega, dtype=torch.float64, device=device),
            torch.as_tensor(transform, dtype=dtype, device=device),
        )


def fourier_coefficients(
    ry: torch.Tensor, rz: torch.Tensor, readout: str = "expval_z", *, kernel: str | None = None
) -> torch.Tensor:
    """Exact Fourier coefficients of the circuit readout, differentiable in the angles.

    Args:
        ry: RY angles ``[..., depth, n]`` (e.g. ``[heads, depth, n]``).
        rz: RZ angles, same shape.
        readout: ``"expval_z"`` or ``"amplitude"``.
        kernel: which circuit kernel samples ``Phi`` (:mod:`hf_superpositional.quantum.kernels`; ``None``: the
            default). ``"cpp"`` (CPU's default) runs the C++ statevector simulator in float64 with exact
            gradients by the adjoint method (first order: no double backward); the others run the torch
            simulation :func:`~hf_superpositional.quantum.simulation.circuit_readout_by_layers` (any device,
            ordinary autograd; few operations, which matters where each is a kernel launch).

    Returns:
        ``[..., 2, K + 1]`` with ``K = n * depth``: row 0 the cosine coefficients ``a_j``, row 1 the sine
        coefficients ``b_j`` (``b_0 = 0``), such that
        ``Phi(x) = sum_j a_j cos(j * omega * x) + b_j sin(j * omega * x)``, ``omega = readout_frequency(readout)``.

    Example:
        >>> from hf_superpositional.quantum.series import evaluate_fourier
        >>> from hf_superpositional.quantum.simulation import circuit_readout
        >>> ry, rz = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
        >>> coefficients = fourier_coefficients(ry, rz)
        >>> x = torch.linspace(-3, 3, 7, dtype=torch.float64)
        >>> torch.allclose(evaluate_fourier(x, coefficients, 1.0), circuit_readout(x, ry, rz))
        True
    """
    depth, n_qubits = check_angles(ry, rz)
    omega = readout_frequency(readout)
    selected = resolve_circuit_kernel(kernel, ry.device)
    degree = depth * n_qubits
    dtype = torch.promote_types(torch.promote_types(ry.dtype, rz.dtype), torch.float32)
    points, transform = sampling_tensors(degree, omega, dtype, ry.device)
    samples = selected.sample(points, ry, rz, readout, dtype)
    # The real DFT as one small matrix product (the same numbers as torch.fft.rfft, without FFT planning
    # overhead on a 2K+1-point transform, in forward and backward).
    coefficients = samples @ transform  # [..., 2K+2]
    return coefficients.unflatten(-1, (2, degree + 1))
