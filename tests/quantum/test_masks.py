"""The one causal rule and how masks are applied (quantum/masks.py), against SDPA's ``is_causal`` and
FlexAttention's own mask materialisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hf_superpositional.quantum.masks import apply_attention_mask, causal_mask, causal_mask_mod


@pytest.mark.parametrize("q_len, kv_len", [(5, 5), (3, 7), (6, 2)])
def test_causal_mask_is_sdpas_is_causal(q_len, kv_len):
    generator = torch.Generator().manual_seed(q_len * 10 + kv_len)
    q = torch.randn(1, 2, q_len, 8, generator=generator, dtype=torch.float64)
    k, v = (torch.randn(1, 2, kv_len, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    logits = apply_attention_mask(q @ k.transpose(-1, -2) / 8**0.5, None, causal=True)
    torch.testing.assert_close(torch.softmax(logits, -1) @ v, expected, rtol=0, atol=1e-12)


def test_mask_mod_and_tensor_are_the_same_rule():
    from torch.nn.attention.flex_attention import create_mask

    materialised = create_mask(causal_mask_mod, None, None, 6, 9, device="cpu")
    assert torch.equal(materialised[0, 0], causal_mask(6, 9))
    assert torch.equal(causal_mask(2, 9, q_start=4), causal_mask(6, 9)[4:])


def test_boolean_and_additive_masks():
    logits = torch.arange(12.0).view(1, 1, 3, 4)
    keep = torch.tensor([[True, True, False, False, True]]).view(1, 1, 1, 5)  # one column too many: ignored
    masked = apply_attention_mask(logits, keep, causal=True)  # a mask given: `causal` is not applied on top
    assert torch.equal(masked[..., :2], logits[..., :2]) and bool(
        (masked[..., 2:] == torch.finfo().min).all()
    )
    additive = torch.full((1, 1, 1, 4), -5.0)
    assert torch.equal(apply_attention_mask(logits, additive, causal=False), logits - 5)
    assert apply_attention_mask(logits, None, causal=False) is logits


def test_a_query_with_no_key_left_gets_a_uniform_row_not_nan():
    logits = torch.randn(1, 1, 2, 3)
    nothing = torch.zeros(1, 1, 1, 3, dtype=torch.bool)
    probs = torch.softmax(apply_attention_mask(logits, nothing, causal=False), -1)
    torch.testing.assert_close(probs, torch.full_like(probs, 1 / 3))
