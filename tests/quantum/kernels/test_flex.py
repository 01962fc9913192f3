"""The FlexAttention score_mod (quantum/kernels/flex.py): per head, the score plus gate times the series,
with boolean and additive score masks applied inside."""

from __future__ import annotations

import torch

from hf_superpositional.quantum.kernels.flex import circuit_score_mod
from hf_superpositional.quantum.series import evaluate_fourier


def test_score_mod_adds_the_gated_series_per_head():
    generator = torch.Generator().manual_seed(0)
    heads, terms = 3, 5
    cosine, sine = (torch.randn(heads, terms, generator=generator) for _ in range(2))
    sine[:, 0] = 0.0
    gate = torch.randn(heads, generator=generator)
    scores = torch.randn(heads, 11, generator=generator) * 4
    head_idx = torch.arange(heads)[:, None].expand_as(scores)
    mod = circuit_score_mod(cosine, sine, gate, omega=0.6)
    got = mod(
        scores, torch.zeros_like(head_idx), head_idx, torch.zeros_like(head_idx), torch.zeros_like(head_idx)
    )
    expected = scores + gate[:, None] * evaluate_fourier(scores, torch.stack((cosine, sine), dim=1), 0.6)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_score_masks_apply_inside():
    one = torch.ones(1, 2)
    keep = torch.tensor([[[[True, False]]]])  # [batch, 1, q_len, kv_len]
    additive = torch.tensor([[[[0.0, -3.0]]]])
    score, b, h, q = (
        torch.tensor([0.5, 0.5]),
        torch.zeros(2, dtype=torch.long),
        torch.zeros(2, dtype=torch.long),
        torch.zeros(2, dtype=torch.long),
    )
    kv = torch.arange(2)
    unmasked = circuit_score_mod(one, torch.zeros(1, 2), one[0, :1], 1.0)(score, b, h, q, kv)
    kept = circuit_score_mod(one, torch.zeros(1, 2), one[0, :1], 1.0, keep)(score, b, h, q, kv)
    added = circuit_score_mod(one, torch.zeros(1, 2), one[0, :1], 1.0, additive)(score, b, h, q, kv)
    assert kept[0] == unmasked[0] and kept[1] == -float("inf")
    torch.testing.assert_close(added, unmasked + torch.tensor([0.0, -3.0]))
