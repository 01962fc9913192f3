"""Trigonometric polynomials (quantum/series.py) against direct sums and numpy."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.quantum.series import fourier_series, readout_frequency


def test_frequencies():
    assert readout_frequency("expval_z") == 1.0
    assert readout_frequency("amplitude") == 0.5


def test_fourier_series_matches_direct_sum():
    t = torch.linspace(-60, 60, 101, dtype=torch.float64)
    cosine, sine = [0.3, -1.0, 0.5, 2.0], [0.0, 0.7, -0.2, 1.5]
    direct = sum(
        a * torch.cos(j * t) + b * torch.sin(j * t) for j, (a, b) in enumerate(zip(cosine, sine, strict=True))
    )
    torch.testing.assert_close(fourier_series(t, cosine, sine), direct, rtol=0, atol=1e-12)


def test_derivative_rows_are_the_series_derivative_by_autograd():
    from hf_superpositional.quantum.series import derivative_rows

    g = torch.Generator().manual_seed(3)
    degree = 5
    rows = torch.randn(3, 2 * degree + 2, generator=g, dtype=torch.float64)
    t = torch.linspace(-7, 7, 41, dtype=torch.float64, requires_grad=True)
    orders = torch.arange(degree + 1, dtype=torch.float64)

    def series(r, x):  # [H, 2K+2] rows in the kernels' flat layout, summed term by term
        angles = x[:, None, None] * orders
        return (torch.cos(angles) * r[:, : degree + 1] + torch.sin(angles) * r[:, degree + 1 :]).sum(-1)

    for h in range(3):  # d/dt of one row's series by autograd, against the series of its derivative rows
        (expected,) = torch.autograd.grad(series(rows[h : h + 1], t).sum(), t)
        got = series(derivative_rows(rows[h : h + 1]), t.detach())[:, 0]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "coefficient_shape, gate_shape",
    [((4, 2, 6), (4,)), ((2, 6), (4,)), ((1, 2, 6), (1,)), ((4, 2, 6), (1,))],
    ids=["per-head", "shared-coefficients", "all-shared", "shared-gate"],
)
def test_gated_series_gradients_equal_autograd_of_the_gated_term(coefficient_shape, gate_shape):
    from hf_superpositional.quantum.series import gated_series_gradients

    g = torch.Generator().manual_seed(0)
    heads, width = 4, 12
    coefficients = torch.randn(coefficient_shape, generator=g, dtype=torch.float64, requires_grad=True)
    gate = torch.rand(gate_shape, generator=g, dtype=torch.float64, requires_grad=True)
    moments = torch.randn(heads, width, generator=g, dtype=torch.float64)
    # The loss is linear in the term, so sum_h gate_h * <c_h, moments_h> has exactly these gradients.
    rows = coefficients.reshape(-1, width).expand(heads, width)
    loss = (gate.reshape(-1, 1).expand(heads, 1) * rows * moments).sum()
    expected = torch.autograd.grad(loss, (coefficients, gate))
    got = gated_series_gradients(moments, coefficients.detach(), gate.detach(), torch.float64, True, True)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert gated_series_gradients(moments, coefficients, gate, torch.float64, False, True)[0] is None
