"""Helpers shared by the attention tests: random query/key/value, the circuit parameters of a model."""

from __future__ import annotations

import torch

from hf_superpositional.naming import is_quantum_parameter_name


def random_qkv(batch=1, heads=2, kv_heads=2, length=4, head_dim=4, seed=0, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, head_dim, generator=g) * scale
    k = torch.randn(batch, kv_heads, length, head_dim, generator=g) * scale
    v = torch.randn(batch, kv_heads, length, head_dim, generator=g)
    return q, k, v


def circuit_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if is_quantum_parameter_name(n)}
