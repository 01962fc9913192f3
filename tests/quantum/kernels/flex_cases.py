"""Random FlexAttention cases and a dense float64 reference, shared by the quantum_flex tests."""

from __future__ import annotations

import torch


def dense_reference(q, k, v, cos_c, sin_c, gate, omega, scaling, causal=False, keep=None, additive=None):
    """softmax(s + g Phi(omega s) [+ additive], masked) v, and its lse, by plain autograd-able torch ops."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = (q @ k.transpose(-1, -2)) * scaling
    terms = torch.arange(cos_c.shape[-1], dtype=scores.dtype, device=scores.device)
    angle = terms * (omega * scores)[..., None]
    heads = cos_c.shape[0]
    phi = (
        cos_c.view(1, heads, 1, 1, -1) * torch.cos(angle) + sin_c.view(1, heads, 1, 1, -1) * torch.sin(angle)
    ).sum(-1)
    modified = scores + gate.view(1, heads, 1, 1) * phi
    if additive is not None:
        modified = modified + additive
    q_len, kv_len = scores.shape[-2:]
    kept = torch.ones(q_len, kv_len, dtype=torch.bool, device=scores.device)
    if causal:
        positions = torch.arange(max(q_len, kv_len), device=scores.device)
        kept = positions[None, :kv_len] <= positions[:q_len, None]
    if keep is not None:
        kept = kept & keep
    modified = modified.masked_fill(~kept, float("-inf"))
    # A query that keeps no key outputs 0 and has lse = -inf, as FlexAttention (torch.softmax would give NaN).
    has_keys = kept.expand_as(modified).any(-1, keepdim=True)
    probs = torch.softmax(modified.masked_fill(~has_keys, 0.0), -1) * has_keys
    return probs @ v, torch.logsumexp(modified, -1)


def flex_inputs(
    batch=2, heads=4, kv_heads=2, q_len=37, kv_len=37, head_dim=8, terms=9, dtype=torch.float64, seed=0
):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_len, head_dim, generator=g, dtype=dtype)
    k = torch.randn(batch, kv_heads, kv_len, head_dim, generator=g, dtype=dtype)
    v = torch.randn(batch, kv_heads, kv_len, head_dim, generator=g, dtype=dtype)
    cos_c = (0.3 * torch.randn(heads, terms, generator=g, dtype=dtype)).requires_grad_()
    sin_c = (0.3 * torch.randn(heads, terms, generator=g, dtype=dtype)).requires_grad_()
    gate = (0.5 + torch.rand(heads, generator=g, dtype=dtype)).requires_grad_()
    return q, k, v, cos_c, sin_c, gate
