"""Circuit gradients of quantum_flex (quantum/kernels/flex_gradient.py): the torch pass against autograd of a dense float64 attention written here (causal, none, GQA, key padding with fully masked queries, mask_mod, score masks)."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.quantum.kernels.flex_gradient import (
    FlexScoreMask,
    circuit_gradient_sums,
    flex_circuit_gradient,
)
from tests.quantum.kernels.flex_cases import dense_reference, flex_inputs


def grads_both_ways(
    q, k, v, cos_c, sin_c, gate, mask: FlexScoreMask, keep=None, additive=None, kernel="torch"
):
    omega, scaling = 0.8, q.shape[-1] ** -0.5
    out, lse = dense_reference(q, k, v, cos_c, sin_c, gate, omega, scaling, mask.causal, keep, additive)
    grad_out = torch.randn_like(out)
    expected = torch.autograd.grad((out * grad_out).sum(), (cos_c, sin_c, gate))
    wrapped = flex_circuit_gradient(
        out.detach().requires_grad_(), lse.detach(), q, k, v, cos_c, sin_c, gate,
        omega=omega, scaling=scaling, mask=mask, kernel=kernel,
    )  # fmt: skip
    got = torch.autograd.grad((wrapped * grad_out).sum(), (cos_c, sin_c, gate))
    return got, expected


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_gradient_sums_equal_autograd_of_dense_attention(causal, kv_heads):
    q, k, v, cos_c, sin_c, gate = flex_inputs(kv_heads=kv_heads, q_len=150, kv_len=150)  # > one 128-row chunk
    got, expected = grads_both_ways(q, k, v, cos_c, sin_c, gate, FlexScoreMask(causal=causal))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)
    assert expected[2].abs().max() > 1e-2  # the check has something to compare


def test_gradient_sums_with_more_keys_than_queries_causal_upper_left():
    q, k, v, cos_c, sin_c, gate = flex_inputs(q_len=9, kv_len=20)
    got, expected = grads_both_ways(q, k, v, cos_c, sin_c, gate, FlexScoreMask(causal=True))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_gradient_sums_with_a_mask_mod_padding_and_fully_masked_rows():
    q, k, v, cos_c, sin_c, gate = flex_inputs(q_len=12, kv_len=12)
    lengths = torch.tensor([12, 7])  # batch 1: keys 7.. are padding

    def padded_causal(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (kv_idx < lengths[b])

    keep = torch.stack([torch.arange(12)[None, :] < n for n in lengths])[:, None]  # [B, 1, 1, KV]
    got, expected = grads_both_ways(
        q, k, v, cos_c, sin_c, gate, FlexScoreMask(causal=True, mask_mod=padded_causal), keep=keep
    )
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_gradient_sums_with_key_padding_equal_the_same_mask_mod():
    q, k, v, cos_c, sin_c, gate = flex_inputs(q_len=12, kv_len=12)
    key_padding = torch.ones(2, 12, dtype=torch.bool)
    key_padding[1, :5] = False  # left padding: batch 1's first queries keep no key at all
    keep = key_padding[:, None, None, :]
    got, expected = grads_both_ways(
        q, k, v, cos_c, sin_c, gate, FlexScoreMask(causal=True, key_padding=key_padding), keep=keep
    )
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_gradient_sums_with_a_score_mask(kind):
    q, k, v, cos_c, sin_c, gate = flex_inputs(q_len=10, kv_len=10)
    g = torch.Generator().manual_seed(3)
    keep = torch.rand(2, 1, 10, 10, generator=g) > 0.3
    keep[..., 0] = True  # every row keeps a score
    if kind == "bool":
        mask, kwargs = FlexScoreMask(score_mask=keep), dict(keep=keep)
    else:
        additive = torch.randn(2, 1, 10, 10, generator=g, dtype=torch.float64)
        mask, kwargs = FlexScoreMask(score_mask=additive), dict(additive=additive)
    got, expected = grads_both_ways(q, k, v, cos_c, sin_c, gate, mask, **kwargs)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_zero_frequency_sum_vanishes_softmax_shift_invariance():
    q, k, v, cos_c, sin_c, gate = flex_inputs()
    out, lse = dense_reference(q, k, v, cos_c, sin_c, gate, 1.0, 0.5, causal=True)
    cos_sums, _ = circuit_gradient_sums(
        q, k, v, out, torch.randn_like(out), lse, cos_c.detach(), sin_c.detach(), gate.detach(),
        omega=1.0, scaling=0.5, mask=FlexScoreMask(causal=True),
    )  # fmt: skip
    assert cos_sums[:, 0].abs().max() < 1e-10
    assert cos_sums[:, 1:].abs().max() > 1e-3


def test_bad_kernel_names_and_masks_are_rejected():
    q, k, v, cos_c, sin_c, gate = flex_inputs(q_len=4, kv_len=4)
    out, lse = dense_reference(q, k, v, cos_c, sin_c, gate, 1.0, 0.5)
    with pytest.raises(ValueError, match=r"kernel must be one of \('auto', 'triton', 'torch'\), got 'cuda'"):
        flex_circuit_gradient(out, lse, q, k, v, cos_c, sin_c, gate, omega=1.0, scaling=0.5, kernel="cuda")
    with pytest.raises(ValueError, match="kernel='triton' handles causal and/or key-padding masks only"):
        circuit_gradient_sums(
            q, k, v, out, out, lse, cos_c, sin_c, gate, omega=1.0, scaling=0.5,
            mask=FlexScoreMask(mask_mod=lambda b, h, q_idx, kv_idx: kv_idx <= q_idx), kernel="triton",
        )  # fmt: skip
