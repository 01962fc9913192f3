"""The torch.compile kernel (quantum/kernels/compiled.py): its circuit sampling against Qiskit and the eager kernel (slow: it compiles)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_superpositional.quantum.fourier import fourier_coefficients
from hf_superpositional.quantum.qiskit import qiskit_readout
from hf_superpositional.quantum.series import evaluate_fourier, readout_frequency
from tests.quantum.circuit_cases import READOUTS


@pytest.mark.slow
@pytest.mark.parametrize("readout", READOUTS)
def test_compiled_circuit_sampling_matches_qiskit_and_eager(readout, recwarn):
    """kernel="compiled" (the CUDA default) samples the circuit through torch.compile: same values and
    gradients as the eager simulation, coefficients that reproduce Qiskit, and no fallback warning."""
    generator = torch.Generator().manual_seed(71)
    ry = (torch.rand(3, 2, 4, generator=generator) * 6 - 3).requires_grad_()
    rz = (torch.rand(3, 2, 4, generator=generator) * 6 - 3).requires_grad_()
    compiled = fourier_coefficients(ry, rz, readout, kernel="compiled")
    eager = fourier_coefficients(ry, rz, readout, kernel="eager")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    torch.testing.assert_close(compiled, eager, rtol=0, atol=2e-6)
    weights = torch.randn(compiled.shape, generator=generator)
    for a, b in zip(
        torch.autograd.grad(compiled, (ry, rz), weights),
        torch.autograd.grad(eager, (ry, rz), weights),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-6)
    xs = np.array([-3.0, 0.4, 2.5])
    reference = qiskit_readout(xs, ry[1].detach().double().numpy(), rz[1].detach().double().numpy(), readout)
    ours = evaluate_fourier(
        torch.tensor(xs, dtype=torch.float64), compiled[1].detach().double(), readout_frequency(readout)
    )
    np.testing.assert_allclose(ours.numpy(), reference, atol=2e-5)
