"""Exact gradients of the circuit coefficients for FlexAttention quantum attention, without atomics per score.

FlexAttention can differentiate a ``score_mod`` with respect to tensors it captures, but Inductor does it by
scattering one ``atomic_add`` per score into the captured buffer, and a buffer indexed more than once (our
``a_j`` and ``b_j`` rows, one index per Fourier term) is rejected when the backward is compiled. For
``[heads, K+1]`` coefficients that is every score of a head adding into the same few addresses. So
``"quantum_flex"`` hands FlexAttention *detached* coefficients -- its backward then yields the exact
``dQ, dK, dV`` for the coefficients' current values -- and :func:`flex_circuit_gradient` wraps the output in
an identity whose backward adds the coefficient and gate gradients from one extra pass over the scores.

The maths (per head ``h``; ``s`` the scaled score ``q.k * scaling``, ``x = omega * s``, ``s' = s + g Phi(x)
+ m`` the score after the ``score_mod`` and an optional additive mask ``m``): with the output ``O``, its
gradient ``dO`` and FlexAttention's log-sum-exp ``lse``,

    P = exp(s' - lse),   dP = dO . v,   Delta = dO . O,   dS' = P (dP - Delta)

(flash attention's backward, ``dS'`` the gradient of the loss with respect to ``s'``), and, since ``s'``
depends on ``a_j, b_j, g`` only through ``g Phi``,

    dL/da_j = g sum dS' cos(j x),   dL/db_j = g sum dS' sin(j x),   dL/dg = sum dS' Phi(x)

summed over batch, queries and keys. The sums ``T_j = sum dS' cos(j x)`` and ``U_j = sum dS' sin(j x)`` are
computed by :func:`circuit_gradient_sums`: a chunked torch pass over query blocks (any device, any mask; the
reference), or on CUDA, for causal and/or key-padding masks, a Triton kernel that keeps every score in
registers (:mod:`.flex_gradient_triton`). Cost: the two products ``q k^T`` and ``dO v^T`` again, about
two fifths of an attention backward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ..masks import causal_mask
from ..series import fourier_basis, fourier_series
from . import flex_gradient_triton  # imports Triton only when its kernel is first built

__all__ = [
    "FlexScoreMask",
    "circuit_gradient_sums",
    "flex_circuit_gradient",
    "GRADIENT_KERNELS",
]

GRADIENT_KERNELS = ("auto", "triton", "torch")
"""``"triton"``: the fused kernel (CUDA, or Triton's interpreter); ``"torch"``: the chunked reference;
``"auto"``: ``"triton"`` where it applies (CUDA tensors, Triton installed, causal and/or key-padding masks),
else ``"torch"``."""

# Query rows per chunk of the torch pass: its temporaries are a few [batch, heads, rows, kv_len] float32
# tensors, so memory stays a small fraction of what dense attention would hold for all rows.
_TORCH_QUERY_BLOCK = 128


@dataclasses.dataclass(frozen=True)
class FlexScoreMask:
    """Which scores a FlexAttention call kept, in the terms the gradient pass needs.

    Attributes:
        causal: ``kv_idx <= q_idx`` (upper-left aligned, as FlexAttention's causal block mask and SDPA).
        key_padding: ``[batch, >= kv_len]`` boolean, ``True`` for the keys that take part (a padded batch's
            2-D attention mask), applied on top of ``causal``; ``None`` for none.
        mask_mod: a FlexAttention ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (e.g. a ``BlockMask``'s), applied
            on top of the above; ``None`` for none.
        score_mask: a 4-D ``[batch, 1, q_len, kv_len]`` mask applied inside the ``score_mod``: boolean
            (``True`` = keep) or additive float; ``None`` for none.
    """

    causal: bool = False
    key_padding: torch.Tensor | None = None
    mask_mod: Callable | None = None
    score_mask: torch.Tensor | None = None

    @property
    def fused(self) -> bool:
        """True when the Triton kernel can apply this mask: causal or not, with or without key padding."""
        return self.mask_mod is None and self.score_mask is None


def _mask_mod_block(
    mask_mod: Callable, batch: int, q_idx: torch.Tensor, kv_idx: torch.Tensor
) -> torch.Tensor:
    """``mask_mod`` evaluated on ``[batch, 1, len(q_idx), len(kv_idx)]`` (vmapped, as FlexAttention's create_mask)."""
    b = torch.arange(batch, device=q_idx.device)
    h = torch.zeros(1, dtype=torch.long, device=q_idx.device)
    fn = mask_mod
    for in_dims in (
        (None, None, None, 0),
        (None, None, 0, None),
        (None, 0, None, None),
        (0, None, None, None),
    ):
        fn = torch.vmap(fn, in_dims=in_dims, out_dims=0)
    return fn(b, h, q_idx, kv_idx).to(torch.bool)


def _circuit_gradient_sums_torch(
    query, key, value, out, grad_out, lse, cos_coefficients, sin_coefficients, gate, omega, scaling, mask
):
    batch, heads, q_len, _ = query.shape
    kv_len = key.shape[2]
    num_terms = cos_coefficients.shape[-1]
    compute = torch.float64 if query.dtype == torch.float64 else torch.float32
    group = heads // key.shape[1]
    key = key.to(compute).repeat_interleave(group, dim=1) if group > 1 else key.to(compute)
    value = value.to(compute).repeat_interleave(group, dim=1) if group > 1 else value.to(compute)
    query, grad_out = query.to(compute), grad_out.to(compute)
    delta = (grad_out * out.to(compute)).sum(-1)  # [B, H, L]
    # A fully masked row has lse = -inf and no scores: make its probabilities 0, not exp(+inf).
    lse = lse.to(compute).masked_fill(torch.isneginf(lse), float("inf"))
    a = cos_coefficients.to(compute).view(1, heads, 1, 1, num_terms)
    b = sin_coefficients.to(compute).view(1, heads, 1, 1, num_terms)
    g = gate.to(compute).view(1, heads, 1, 1)
    cos_sums = torch.zeros(heads, num_terms, dtype=compute, device=query.device)
    sin_sums = torch.zeros(heads, num_terms, dtype=compute, device=query.device)
    kv_idx_all = torch.arange(kv_len, device=query.device)
    for start in range(0, q_len, _TORCH_QUERY_BLOCK):
        stop = min(q_len, start + _TORCH_QUERY_BLOCK)
        kv_stop = min(kv_len, stop) if mask.causal else kv_len  # later keys are all masked (causal)
        q_idx, kv_idx = torch.arange(start, stop, device=query.device), kv_idx_all[:kv_stop]
        scores = torch.matmul(query[:, :, start:stop], key[:, :, :kv_stop].transpose(-1, -2)) * scaling
        x = scores * omega
        phi = fourier_series(x, a.unbind(-1), b.unbind(-1))
        modified = scores + g * phi
        keep = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=query.device)
        if mask.causal:
            keep = keep & causal_mask(stop - start, kv_stop, q_start=start, device=query.device)
        if mask.key_padding is not None:
            keep = keep & mask.key_padding[:, None, None, :kv_stop].to(torch.bool)
        if mask.mask_mod is not None:
            keep = keep & _mask_mod_block(mask.mask_mod, batch, q_idx, kv_idx)
        if mask.score_mask is not None:
            block = mask.score_mask[:, :, start:stop, :kv_stop]
            if block.dtype == torch.bool:
                keep = keep & block
            else:
                modified = modified + block.to(compute)
        probs = torch.exp(modified - lse[:, :, start:stop, None]).masked_fill(~keep, 0.0)
        grad_probs = torch.matmul(grad_out[:, :, start:stop], value[:, :, :kv_stop].transpose(-1, -2))
        grad_scores = probs * (grad_probs - delta[:, :, start:stop, None])
        del probs, grad_probs, modified, phi
        cos_sums[:, 0] += grad_scores.sum((0, 2, 3))
        for j, cj, sj in fourier_basis(x, num_terms - 1):
            cos_sums[:, j] += (grad_scores * cj).sum((0, 2, 3))
            sin_sums[:, j] += (grad_scores * sj).sum((0, 2, 3))
    return cos_sums, sin_sums


def _triton_applies(query: torch.Tensor, mask: FlexScoreMask) -> bool:
    supported = query.dtype in (torch.float16, torch.bfloat16, torch.float32)
    return supported and mask.fused and flex_gradient_triton.available(query)


def circuit_gradient_sums(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    out: torch.Tensor,
    grad_out: torch.Tensor,
    lse: torch.Tensor,
    cos_coefficients: torch.Tensor,
    sin_coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    scaling: float,
    mask: FlexScoreMask = FlexScoreMask(),
    kernel: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``T_j = sum dS' cos(j x)`` and ``U_j = sum dS' sin(j x)`` per head (see the module docstring).

    Args:
        query: ``[batch, heads, q_len, head_dim]``; key, value: ``[batch, kv_heads, kv_len, head_dim]`` (GQA:
            ``heads`` a multiple of ``kv_heads``).
        out, grad_out: the attention output ``[batch, heads, q_len, head_dim]`` and its gradient.
        lse: FlexAttention's natural-log log-sum-exp of the modified scores, ``[batch, heads, q_len]``.
        cos_coefficients, sin_coefficients: ``[heads, K+1]``; gate: ``[heads]``.
        omega: the factor from scaled score to circuit input; scaling: the score scale.
        mask: the scores FlexAttention kept; kernel: one of :data:`GRADIENT_KERNELS`.

    Returns:
        ``(T, U)``, each ``[heads, K+1]`` in float32 (float64 for float64 inputs).

    Example:
        >>> import torch
        >>> q = k = v = dO = torch.randn(1, 2, 6, 4, dtype=torch.float64)
        >>> c, s, g = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64), torch.ones(2)
        >>> lse = torch.logsumexp((q @ k.transpose(-1, -2)) * 0.5, -1)
        >>> out = torch.softmax((q @ k.transpose(-1, -2)) * 0.5, -1) @ v
        >>> T, U = circuit_gradient_sums(q, k, v, out, dO, lse, c, s, g, omega=1.0, scaling=0.5)
        >>> bool(T[:, 0].abs().max() < 1e-12)  # sum of dS' over a softmax row is 0
        True
    """
    if kernel not in GRADIENT_KERNELS:
        raise ValueError(f"kernel must be one of {GRADIENT_KERNELS}, got {kernel!r}")
    if kernel == "triton" or (kernel == "auto" and _triton_applies(query, mask)):
        if not mask.fused:
            raise ValueError(
                "kernel='triton' handles causal and/or key-padding masks only (no mask_mod/score_mask)"
            )
        return flex_gradient_triton.circuit_gradient_sums_triton(
            query, key, value, out, grad_out, lse, cos_coefficients, sin_coefficients, gate,
            omega=omega, scaling=scaling, causal=mask.causal, key_padding=mask.key_padding,
        )  # fmt: skip
    return _circuit_gradient_sums_torch(
        query, key, value, out, grad_out, lse, cos_coefficients, sin_coefficients, gate, omega, scaling, mask
    )


class _FlexCircuitGradient(torch.autograd.Function):
    """Identity on the attention output; its backward adds the coefficient and gate gradients."""

    @staticmethod
    def forward(ctx, out, lse, query, key, value, cos_coefficients, sin_coefficients, gate, config):
        ctx.save_for_backward(out, lse, query, key, value, cos_coefficients, sin_coefficients, gate)
        ctx.config = config
        return out.view_as(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        out, lse, query, key, value, cos_coefficients, sin_coefficients, gate = ctx.saved_tensors
        omega, scaling, mask, kernel = ctx.config
        grad_cos = grad_sin = grad_gate = None
        needs_cos, needs_sin, needs_gate = ctx.needs_input_grad[5:8]
        if needs_cos or needs_sin or needs_gate:
            cos_sums, sin_sums = circuit_gradient_sums(
                query, key, value, out, grad_out, lse, cos_coefficients, sin_coefficients, gate,
                omega=omega, scaling=scaling, mask=mask, kernel=kernel,
            )  # fmt: skip
            g = gate.to(cos_sums.dtype)[:, None]
            grad_cos = (g * cos_sums).to(cos_coefficients.dtype) if needs_cos else None
            grad_sin = (g * sin_sums).to(sin_coefficients.dtype) if needs_sin else None
            if needs_gate:
                phi_sums = (
                    cos_coefficients.to(cos_sums.dtype) * cos_sums
                    + sin_coefficients.to(cos_sums.dtype) * sin_sums
                )
                grad_gate = phi_sums.sum(-1).to(gate.dtype)
        return grad_out, None, None, None, None, grad_cos, grad_sin, grad_gate, None


def flex_circuit_gradient(
    out: torch.Tensor,
    lse: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cos_coefficients: torch.Tensor,
    sin_coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    scaling: float,
    mask: FlexScoreMask = FlexScoreMask(),
    kernel: str = "auto",
) -> torch.Tensor:
    """Return ``out`` unchanged, routing the circuit's gradients into ``cos/sin_coefficients`` and ``gate``.

    ``out`` and ``lse`` must come from FlexAttention called with a ``score_mod`` built from the *detached*
    coefficients and gate (so its own backward gives ``dQ, dK, dV`` and nothing for the circuit); see
    :func:`hf_superpositional.attention.interface.quantum_flex_attention_forward`. ``query``/``key``/``value`` are
    saved, not differentiated here (FlexAttention already keeps them for its backward: no extra memory).

    Example:
        >>> import torch
        >>> q = k = v = torch.randn(1, 1, 4, 4)
        >>> scores = (q @ k.transpose(-1, -2)) * 0.5
        >>> out, lse = torch.softmax(scores, -1) @ v, torch.logsumexp(scores, -1)
        >>> c = torch.zeros(1, 3, requires_grad=True)
        >>> y = flex_circuit_gradient(out, lse, q, k, v, c, torch.zeros(1, 3), torch.ones(1), omega=1.0, scaling=0.5)
        >>> y.sum().backward(); c.grad.shape
        torch.Size([1, 3])
    """
    if kernel not in GRADIENT_KERNELS:
        raise ValueError(f"kernel must be one of {GRADIENT_KERNELS}, got {kernel!r}")
    config = (float(omega), float(scaling), mask, kernel)
    return _FlexCircuitGradient.apply(
        out, lse.detach(), query.detach(), key.detach(), value.detach(),
        cos_coefficients, sin_coefficients, gate, config,
    )  # fmt: skip
