"""The ``"eager"`` circuit kernel: plain torch ops on chunks of scores; the readable reference and the fallback.

Scores arrive as a ``[blocks, block_size]`` matrix (one row per (batch, head) block) and a per-block
coefficient table ``[blocks, 2K+2]`` holding cosine coefficients in columns ``0..K`` and sine coefficients
in columns ``K+1..2K+1`` (see :mod:`hf_superpositional.quantum.kernels`). The basis ``cos(j t)``,
``sin(j t)`` of one chunk is built by the angle-addition formulas and contracted with one batched matmul, so
the extra memory is one chunk's basis, never ``O(K * scores)``.
"""

from __future__ import annotations

import torch

from ..masks import causal_mask
from ..simulation import circuit_readout_by_layers

__all__ = ["backward", "forward", "mask_gradients", "mask_output_", "masked_scores", "sample"]

# At most this many basis elements per chunk, and at most a quarter of the number of scores (peak memory
# stays close to the attention's own), but at least MIN_BASIS_ELEMENTS (bigger chunks mean fewer torch
# calls: the per-call overhead dominates small chunks).
BASIS_ELEMENTS_PER_CHUNK = 1 << 21
MIN_BASIS_ELEMENTS = 1 << 16


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
    budget = min(BASIS_ELEMENTS_PER_CHUNK, max(MIN_BASIS_ELEMENTS, n_blocks * block_size // 4))
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


def masked_scores(query_len: int, block_size: int, device) -> torch.Tensor:
    """``[query_len, block_size // query_len]`` boolean, ``True`` where the causal mask removes a score."""
    return ~causal_mask(query_len, block_size // query_len, device=device)


def mask_output_(out: torch.Tensor, query_len: int) -> torch.Tensor:
    """Set the causally masked scores of a ``[blocks, block_size]`` output to the lowest finite value, in place."""
    masked = masked_scores(query_len, out.shape[1], out.device)
    out.view(out.shape[0], *masked.shape).masked_fill_(masked, torch.finfo(out.dtype).min)
    return out


def mask_gradients(grads: torch.Tensor, query_len: int, grad_is_ours: bool) -> torch.Tensor:
    """``grads`` with the causally masked scores' entries zeroed: they were constants of the forward.

    Written in place when ``grad_is_ours`` (a temporary of the caller), else into a copy.
    """
    masked = masked_scores(query_len, grads.shape[1], grads.device).view(1, -1)
    return grads.masked_fill_(masked, 0.0) if grad_is_ours else grads.masked_fill(masked, 0.0)


def forward(scores, table, frequency: float, scale: float, query_len: int, causal: bool) -> torch.Tensor:
    """``z + sum_j table_j * basis_j(frequency z)``, ``z = scale * scores``, chunk by chunk; causally masked
    scores (each block ``[query_len, block_size / query_len]``) come out as the lowest finite value."""
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
    if causal:  # in place on our own output: nothing score-sized is saved for it
        mask_output_(out, query_len)
    return out


def backward(
    grads, scores, derivative, frequency: float, scale: float, query_len: int, causal: bool,
    need_logits: bool, need_moments: bool, grad_is_ours: bool,
):  # fmt: skip
    """``grad * (1 + sum_j derivative_j basis_j) * scale`` and the per-block moments ``sum grad * basis_j``.

    Causally masked scores are constants of the forward: their gradient is zero and they add nothing to the
    moments. ``grad_is_ours``: ``grads`` is a temporary of the caller, so the mask and the logits' gradient
    may be written over it (each chunk is read before it is overwritten).
    """
    width = derivative.shape[1]
    dtype, device = derivative.dtype, scores.device
    if causal:
        grads, grad_is_ours = mask_gradients(grads, query_len, grad_is_ours), True
    in_place = grad_is_ours and grads.dtype == dtype and grads.is_contiguous()
    grad_logits = None
    if need_logits:
        grad_logits = grads if in_place else torch.empty(scores.shape, dtype=dtype, device=device)
    moments = torch.zeros(scores.shape[0], width, 1, dtype=dtype, device=device) if need_moments else None
    slopes = derivative.unsqueeze(1)
    one = torch.ones(1, 1, 1, dtype=dtype, device=device)
    basis = None
    for b0, b1, m0, m1 in _chunks(*scores.shape, width // 2 - 1):
        if basis is None or basis.shape != (b1 - b0, width, m1 - m0):
            basis = _new_basis(b1 - b0, width, m1 - m0, dtype, device)
        chunk = scores[b0:b1, m0:m1].to(dtype)
        _fill_basis(basis, chunk * scale if scale != 1.0 else chunk, frequency)
        grad_chunk = grads[b0:b1, m0:m1].to(dtype)
        if moments is not None:
            moments[b0:b1] += torch.bmm(basis, grad_chunk.unsqueeze(-1))
        if grad_logits is not None:
            factor = torch.baddbmm(one, slopes[b0:b1], basis)  # 1 + gate * s * Phi'
            torch.mul(grad_chunk, factor.squeeze(1), out=grad_logits[b0:b1, m0:m1])
            if scale != 1.0:  # the chain rule through z = scale * scores
                grad_logits[b0:b1, m0:m1].mul_(scale)
    return grad_logits, (moments.squeeze(-1) if moments is not None else None)


def sample(points: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor, readout: str, dtype: torch.dtype):
    """``Phi`` at ``points`` by the torch simulation (any device, ordinary autograd)."""
    return circuit_readout_by_layers(points.to(dtype), ry, rz, readout)
