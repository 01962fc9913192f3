"""Exact, batched, differentiable statevector simulation of the attention circuit (SPEC section 2).

The circuit on ``n`` qubits with ``depth`` layers, for one input value ``x``::

    |0...0>  ->  H on every qubit
    for each layer l:  for each qubit i:  RY(ry[l, i] + x), then RZ(rz[l, i])
                       then CNOT(i -> i+1) for i = 0 .. n-2

Conventions are Qiskit's, so that :func:`circuit_statevector` equals
``qiskit.quantum_info.Statevector`` of :func:`hf_superpositional.quantum.qiskit.build_circuit` amplitude for
amplitude, global phase included:

* little-endian qubit order: basis index ``sum_k bit_k * 2**k``, qubit 0 is the least significant bit;
* ``RY(a) = exp(-i a Y / 2) = [[cos(a/2), -sin(a/2)], [sin(a/2), cos(a/2)]]``;
* ``RZ(a) = exp(-i a Z / 2) = diag(exp(-i a/2), exp(i a/2))`` (not the phase gate: the global phase matters
  for the ``"amplitude"`` readout).

Everything is plain torch, so gradients with respect to ``x``, ``ry`` and ``rz`` come from autograd.
"""

from __future__ import annotations

import functools
import math

import torch

READOUTS = ("expval_z", "amplitude")
"""Allowed values of ``readout``: ``sum_k <Z_k>`` or ``sum_{k<n} Re <k|psi>``."""

__all__ = [
    "READOUTS",
    "check_readout",
    "check_angles",
    "circuit_statevector",
    "circuit_readout",
    "circuit_readout_by_layers",
    "readout_from_statevector",
]


def check_readout(readout: str) -> str:
    """Return ``readout`` unchanged, or raise ``ValueError`` naming the allowed values."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    return readout


def check_angles(ry: torch.Tensor, rz: torch.Tensor) -> tuple[int, int]:
    """Validate a pair of angle tensors ``[..., depth, n]`` and return ``(depth, n_qubits)``."""
    if not isinstance(ry, torch.Tensor) or not isinstance(rz, torch.Tensor):
        raise ValueError(f"ry and rz must be tensors, got {type(ry).__name__} and {type(rz).__name__}")
    if ry.ndim < 2:
        raise ValueError(f"ry must have shape [..., depth, n_qubits], got shape {tuple(ry.shape)}")
    if ry.shape != rz.shape:
        raise ValueError(
            f"ry and rz must have the same shape, got ry {tuple(ry.shape)} and rz {tuple(rz.shape)}"
        )
    if ry.is_complex() or not ry.is_floating_point() or not rz.is_floating_point():
        raise ValueError(f"ry and rz must be real floating-point tensors, got {ry.dtype} and {rz.dtype}")
    depth, n_qubits = ry.shape[-2], ry.shape[-1]
    if depth < 1 or n_qubits < 1:
        raise ValueError(f"ry and rz need depth >= 1 and n_qubits >= 1, got shape {tuple(ry.shape)}")
    return depth, n_qubits


@functools.cache
def _cnot_chain_permutation(n_qubits: int) -> tuple[int, ...]:
    """Gather index ``perm`` with ``psi_after = psi_before[perm]`` for CNOT(0->1), ..., CNOT(n-2->n-1).

    A CNOT maps basis state ``|b>`` to ``|g(b)>`` (flip the target bit when the control bit is set), so
    ``psi'[c] = psi[g^-1(c)] = psi[g(c)]`` because ``g`` is its own inverse. Composing the chain in gate
    order gives ``perm = g_0(g_1(...g_{n-2}(c)))``, built here by applying each gate to the index array.
    """
    perm = list(range(2**n_qubits))
    for i in range(n_qubits - 1):
        control, target = 1 << i, 1 << (i + 1)
        flipped = [c ^ target if c & control else c for c in range(2**n_qubits)]
        perm = [perm[f] for f in flipped]
    return tuple(perm)


@functools.cache
def _z_weights(n_qubits: int) -> tuple[int, ...]:
    """``sum_k <basis|Z_k|basis>`` per basis index: ``n - 2 * popcount(index)``."""
    return tuple(n_qubits - 2 * bin(index).count("1") for index in range(2**n_qubits))


def _real_dtype(*tensors: torch.Tensor) -> torch.dtype:
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"circuit inputs must be float32 or float64 (or lower precision), got {dtype}")
    return dtype


def circuit_statevector(x: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor) -> torch.Tensor:
    """Statevector of the circuit for every input value, batched and differentiable.

    Args:
        x: input values, shape ``[..., P]``.
        ry: RY angles, shape ``[..., depth, n]``; leading dims broadcast with those of ``x`` (e.g. heads).
        rz: RZ angles, same shape as ``ry``.

    Returns:
        Complex tensor ``[..., P, 2**n]`` (``complex64`` for float32 inputs, ``complex128`` for float64), with
        Qiskit's little-endian basis order (index ``sum_k bit_k * 2**k``).

    Example:
        >>> import torch
        >>> psi = circuit_statevector(torch.zeros(1), torch.zeros(1, 1), torch.zeros(1, 1))
        >>> torch.allclose(psi.abs() ** 2, torch.full((1, 2), 0.5))
        True
    """
    depth, n_qubits = check_angles(ry, rz)
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError(f"x must be a tensor of shape [..., P], got {getattr(x, 'shape', type(x).__name__)}")
    real = _real_dtype(x, ry, rz)
    complex_dtype = torch.complex128 if real == torch.float64 else torch.complex64
    x, ry, rz = x.to(real), ry.to(real), rz.to(real)

    batch = torch.broadcast_shapes(x.shape[:-1], ry.shape[:-2])
    n_points, dim = x.shape[-1], 2**n_qubits
    x = x.expand(*batch, n_points)
    ry = ry.expand(*batch, depth, n_qubits)
    rz = rz.expand(*batch, depth, n_qubits)

    # H on every qubit of |0...0> is the uniform superposition.
    state = torch.full((*batch, n_points, dim), 2.0 ** (-n_qubits / 2), dtype=complex_dtype, device=x.device)
    perm = torch.tensor(_cnot_chain_permutation(n_qubits), device=x.device) if n_qubits > 1 else None

    # Every gate of the circuit as one 2x2 matrix RZ(rz) @ RY(ry + x), all built at once:
    # [[e c, -e s], [conj(e) s, conj(e) c]] with c, s = cos, sin((ry + x)/2) and e = exp(-i rz/2).
    half_y = 0.5 * (ry.unsqueeze(-3) + x[..., :, None, None])  # [..., P, depth, n]
    cos_y, sin_y = torch.cos(half_y).to(complex_dtype), torch.sin(half_y).to(complex_dtype)
    phase = torch.polar(torch.ones_like(rz), -0.5 * rz).unsqueeze(-3)  # [..., 1, depth, n]
    gates = torch.stack(
        (phase * cos_y, -phase * sin_y, phase.conj() * sin_y, phase.conj() * cos_y), dim=-1
    ).reshape(*batch, n_points, depth, n_qubits, 1, 2, 2)

    for layer in range(depth):
        for qubit in range(n_qubits):
            # Qubit k is bit k of the flat index, i.e. the middle axis of [..., P, 2**(n-1-k), 2, 2**k].
            view = state.reshape(*batch, n_points, 2 ** (n_qubits - 1 - qubit), 2, 2**qubit)
            state = torch.matmul(gates[..., layer, qubit, :, :, :], view).reshape(*batch, n_points, dim)
        if perm is not None:
            state = state[..., perm]
    return state


def readout_from_statevector(state: torch.Tensor, readout: str = "expval_z") -> torch.Tensor:
    """``Phi`` from a statevector ``[..., 2**n]``: ``sum_k <Z_k>`` or ``sum_{k<n} Re <k|psi>``.

    Args:
        state: complex statevector(s), last dim ``2**n``.
        readout: one of :data:`READOUTS`.

    Example:
        >>> import torch
        >>> readout_from_statevector(torch.tensor([1.0 + 0j, 0.0]), "expval_z")
        tensor(1.)
    """
    check_readout(readout)
    dim = state.shape[-1]
    n_qubits = int(round(math.log2(dim)))
    if 2**n_qubits != dim:
        raise ValueError(f"state's last dimension must be a power of two, got {dim}")
    if readout == "expval_z":
        probabilities = state.real.square() + state.imag.square()
        weights = torch.tensor(_z_weights(n_qubits), dtype=probabilities.dtype, device=state.device)
        return probabilities @ weights
    # The paper's "k-th amplitude": basis states |0>, |1>, ..., |n-1> (flat indices), real parts summed.
    return state[..., :n_qubits].real.sum(-1)


def circuit_readout(
    x: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor, readout: str = "expval_z"
) -> torch.Tensor:
    """``Phi(x)`` of the circuit by exact simulation (the reference the Fourier path is compiled from).

    Args:
        x: input values ``[..., P]``.
        ry, rz: angles ``[..., depth, n]`` (leading dims broadcast with ``x``'s).
        readout: ``"expval_z"`` (``sum_k <Z_k>``) or ``"amplitude"`` (``sum_{k<n} Re <k|psi>``).

    Returns:
        Real tensor ``[..., P]``.

    Example:
        >>> import torch
        >>> phi = circuit_readout(torch.linspace(-1, 1, 5), torch.zeros(2, 3), torch.zeros(2, 3))
        >>> phi.shape
        torch.Size([5])
    """
    check_readout(readout)
    return readout_from_statevector(circuit_statevector(x, ry, rz), readout)


@functools.cache
def _layer_tables(n_qubits: int) -> tuple[tuple[int, ...], tuple[tuple[float, ...], ...]]:
    """Index and sign tables of :func:`circuit_readout_by_layers`, with the CNOT chain's row order folded in.

    * ``gather[k][r][c] = 4k + 2 bit_k(perm[r]) + bit_k(c)``: entry ``(r, c)`` of the layer's RY matrix
      ``prod_k RY_k[bit_k(out), bit_k(in)]`` with output row ``perm[r]`` (the CNOT chain applied after it);
    * ``signs[k][r] = (2 bit_k(perm[r]) - 1) / 2``: the RZ layer's phase on row ``perm[r]`` is
      ``sum_k signs[k][r] * rz_k`` (``RZ(a) = diag(exp(-ia/2), exp(ia/2))``).
    """
    dim = 2**n_qubits
    perm = _cnot_chain_permutation(n_qubits) if n_qubits > 1 else (0, 1)
    gather = tuple(
        4 * k + 2 * ((perm[r] >> k) & 1) + ((c >> k) & 1)
        for k in range(n_qubits)
        for r in range(dim)
        for c in range(dim)
    )
    signs = tuple(tuple((2 * ((perm[r] >> k) & 1) - 1) / 2 for r in range(dim)) for k in range(n_qubits))
    return gather, signs


def circuit_readout_by_layers(
    x: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor, readout: str = "expval_z"
) -> torch.Tensor:
    """``Phi(x)``, the same values as :func:`circuit_readout`, from whole-layer matrices in real arithmetic.

    Each layer is ``CNOT-chain . (x)RZ . (x)RY(ry + x)``: the RY part is a real ``2**n x 2**n`` matrix (a
    Kronecker product: each qubit's factors picked by one 0/1 matrix product, then multiplied), the RZ part a
    diagonal phase ``exp(i alpha)`` independent of ``x``, the CNOT chain a row permutation folded into both.
    The state is kept as (real, imaginary) parts. Within :func:`~.fourier.fourier_coefficients` at ``n = 4,
    depth = 2`` that is 24 torch operators forward and 49 backward, against 31 and 120 (and two
    host-to-device copies per call) for the gate-by-gate :func:`circuit_statevector`
    (``recipes/benchmarks/bench_circuit.py``): what matters where every operation is a kernel launch (CUDA).

    Args:
        x: input values ``[..., P]``.
        ry, rz: angles ``[..., depth, n]`` (leading dims broadcast with ``x``'s).
        readout: ``"expval_z"`` or ``"amplitude"``.

    Returns:
        Real tensor ``[..., P]`` (float32, or float64 if any input is float64).

    Example:
        >>> import torch
        >>> x, ry, rz = torch.linspace(-2, 2, 5), torch.randn(2, 3), torch.randn(2, 3)
        >>> torch.allclose(circuit_readout_by_layers(x, ry, rz), circuit_readout(x, ry, rz), atol=1e-6)
        True
    """
    return layer_readout_math(*layer_readout_arguments(x, ry, rz, readout))


def layer_readout_arguments(x: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor, readout: str) -> tuple:
    """Checked, converted arguments of :func:`layer_readout_math` (``circuit_readout_by_layers`` = both)."""
    depth, n_qubits = check_angles(ry, rz)
    check_readout(readout)
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError(f"x must be a tensor of shape [..., P], got {getattr(x, 'shape', type(x).__name__)}")
    real = _real_dtype(x, ry, rz)
    return (x.to(real), ry.to(real), rz.to(real), *_layer_tensors(n_qubits, real, x.device), readout)


def layer_readout_math(x, ry, rz, gather, signs, z_weights, readout: str) -> torch.Tensor:
    """The tensor maths of :func:`circuit_readout_by_layers` alone (no checks, no Python-side caches), so
    that ``torch.compile(..., fullgraph=True)`` can fuse it."""
    depth, n_qubits = ry.shape[-2], ry.shape[-1]
    half = 0.5 * (ry.unsqueeze(-3) + x[..., :, None, None])  # [..., P, depth, n]
    cos_y, sin_y = torch.cos(half), torch.sin(half)
    entries = torch.stack((cos_y, -sin_y, sin_y, cos_y), dim=-1).flatten(-2)  # [..., P, depth, 4n]
    # Each qubit's factor of every matrix entry, picked by a 0/1 matrix product (exact: one 1 per column;
    # its backward is another product, where an index would scatter-add), then the Kronecker product over
    # qubits as plain multiplies (torch.prod's backward synchronises with the device).
    factors = (
        (entries @ gather).unflatten(-1, (n_qubits, -1, 2**n_qubits)).unbind(-3)
    )  # n x [..., P, depth, dim, dim]
    rotations = factors[0]
    for factor in factors[1:]:
        rotations = rotations * factor
    rotations = rotations.unbind(-3)  # depth x [..., P, dim, dim], rows in CNOT-chain order
    # RZ phases exp(i alpha) as 2x2 rotations of the (re, im) pair: [..., depth, dim, 2, 2].
    alpha = rz @ signs
    cos_a, sin_a = torch.cos(alpha), torch.sin(alpha)
    phases = torch.stack((cos_a, -sin_a, sin_a, cos_a), dim=-1).unflatten(-1, (2, 2)).unsqueeze(-5).unbind(-4)

    # Layer 0 acts on the uniform superposition H|0...0>: its rows' sums, scaled, times the phase.
    # The last layer's phases do not change |psi|^2, but they stay in the graph: every angle then gets a
    # gradient (exactly 0 there), which DDP without find_unused_parameters requires.
    amplitude = rotations[0].sum(-1) * 2.0 ** (-n_qubits / 2)  # real, [..., P, dim]
    state = amplitude[..., None] * phases[0][..., 0]  # (re, im) = amplitude * (cos, sin): [..., P, dim, 2]
    for layer in range(1, depth):
        state = torch.matmul(rotations[layer], state)
        state = torch.matmul(phases[layer], state.unsqueeze(-1)).squeeze(-1)
    if readout == "expval_z":
        return state.square().sum(-1) @ z_weights
    return state[..., :n_qubits, 0].sum(-1)


@functools.lru_cache(maxsize=64)
def _layer_tensors(n_qubits: int, dtype: torch.dtype, device: torch.device):
    """:func:`_layer_tables` and the Z weights as tensors on ``device``, made once (a fresh host-to-device
    copy per call would synchronise a CUDA stream)."""
    dim = 2**n_qubits
    gather, signs = _layer_tables(n_qubits)
    selector = torch.zeros(4 * n_qubits, n_qubits * dim * dim, dtype=dtype)
    selector[torch.tensor(gather), torch.arange(n_qubits * dim * dim)] = 1.0
    return (
        selector.to(device),
        torch.tensor(signs, dtype=dtype, device=device),
        torch.tensor(_z_weights(n_qubits), dtype=dtype, device=device),
    )
