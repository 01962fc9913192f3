"""Trigonometric polynomials (quantum/series.py) against direct sums and numpy."""

from __future__ import annotations

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
