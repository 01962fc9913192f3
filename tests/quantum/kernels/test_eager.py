"""The eager circuit kernel (quantum/kernels/eager.py), the reference the others are held to: its chunked
basis equals the direct trigonometric series, chunk boundaries change nothing, and the causal mask is
exact in both directions."""

from __future__ import annotations

import torch

from hf_superpositional.quantum.kernels import eager
from hf_superpositional.quantum.series import evaluate_fourier


def case(blocks=3, size=40, degree=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(blocks, size, generator=generator, dtype=torch.float64) * 3
    table = torch.randn(blocks, 2 * degree + 2, generator=generator, dtype=torch.float64)
    table[:, degree + 1] = 0.0  # b_0 multiplies sin(0)
    grads = torch.randn(blocks, size, generator=generator, dtype=torch.float64)
    return scores, table, grads


def test_forward_is_the_direct_series():
    scores, table, _ = case()
    out = eager.forward(scores, table, frequency=0.7, scale=1.3, query_len=1, causal=False)
    z = 1.3 * scores
    expected = z + evaluate_fourier(z, table.view(3, 2, -1), 0.7)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_backward_moments_and_slope_against_autograd():
    scores, table, grads = case(seed=1)
    degree = table.shape[1] // 2 - 1
    orders = torch.arange(degree + 1, dtype=torch.float64)
    cosine, sine = table[:, : degree + 1], table[:, degree + 1 :]
    derivative = torch.cat((sine * orders, -cosine * orders), dim=1) * 0.7  # d/dz of the series at t = 0.7 z
    grad_scores, moments = eager.backward(
        grads, scores, derivative, 0.7, 1.0, 1, False, True, True, grad_is_ours=False
    )

    leaf, coefficients = scores.clone().requires_grad_(), table.view(3, 2, -1).clone().requires_grad_()
    out = leaf + evaluate_fourier(0.7 * leaf, coefficients, 1.0)
    expected_scores, expected_coefficients = torch.autograd.grad(out, (leaf, coefficients), grads)
    torch.testing.assert_close(grad_scores, expected_scores, rtol=0, atol=1e-10)
    torch.testing.assert_close(moments, expected_coefficients.reshape(3, -1), rtol=0, atol=1e-10)


def test_chunk_boundaries_change_nothing(monkeypatch):
    scores, table, grads = case(blocks=4, size=50, seed=2)
    derivative = table * 0.3
    whole = (
        eager.forward(scores, table, 0.9, 1.0, 5, True),
        *eager.backward(grads, scores, derivative, 0.9, 1.0, 5, True, True, True, grad_is_ours=False),
    )
    for basis_elements in (7 * 12, 130 * 12):  # rows cut into pieces; several rows per chunk
        monkeypatch.setattr(eager, "BASIS_ELEMENTS_PER_CHUNK", basis_elements)
        monkeypatch.setattr(eager, "MIN_BASIS_ELEMENTS", 1)
        chunked = (
            eager.forward(scores, table, 0.9, 1.0, 5, True),
            *eager.backward(grads, scores, derivative, 0.9, 1.0, 5, True, True, True, grad_is_ours=False),
        )
        for got, expected in zip(chunked, whole, strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_causal_mask_in_both_directions():
    scores, table, grads = case(blocks=2, size=4 * 6, seed=3)  # blocks of 4 queries x 6 keys
    masked = eager.masked_scores(4, 24, scores.device).reshape(-1)
    out = eager.forward(scores, table, 1.0, 1.0, 4, True)
    assert bool((out[:, masked] == torch.finfo(out.dtype).min).all())
    plain = eager.forward(scores, table, 1.0, 1.0, 1, False)
    assert torch.equal(out[:, ~masked], plain[:, ~masked])

    grad_scores, moments = eager.backward(
        grads, scores, table * 0.5, 1.0, 1.0, 4, True, True, True, grad_is_ours=False
    )
    zeroed = grads.masked_fill(masked, 0.0)
    expected_scores, expected_moments = eager.backward(
        zeroed, scores, table * 0.5, 1.0, 1.0, 1, False, True, True, grad_is_ours=False
    )
    assert bool((grad_scores[:, masked] == 0).all())
    torch.testing.assert_close(grad_scores, expected_scores, rtol=0, atol=0)
    torch.testing.assert_close(moments, expected_moments, rtol=0, atol=0)
