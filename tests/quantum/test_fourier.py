"""The exact Fourier compilation (quantum/fourier.py) against Qiskit's Statevector, a closed form and the parameter-shift rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit.quantum_info import SparsePauliOp, Statevector

from hf_superpositional.quantum.fourier import fourier_coefficients
from hf_superpositional.quantum.ops import add_circuit_term
from hf_superpositional.quantum.qiskit import build_circuit
from hf_superpositional.quantum.series import evaluate_fourier, readout_frequency
from tests.quantum.circuit_cases import FAST_KERNELS, KERNELS, READOUTS, random_angles


def qiskit_phi(x, ry, rz, readout):
    """Phi at one x by Qiskit: Statevector.expectation_value(sum_k Z_k), or the first n amplitudes' real parts."""
    depth, n_qubits = ry.shape
    state = Statevector(build_circuit(n_qubits, depth, x=float(x), ry=np.asarray(ry), rz=np.asarray(rz)))
    if readout == "expval_z":
        observable = SparsePauliOp.from_sparse_list([("Z", [k], 1.0) for k in range(n_qubits)], n_qubits)
        return float(state.expectation_value(observable).real)
    return float(state.data[:n_qubits].real.sum())


def test_one_qubit_closed_form():
    # H|0> = |+>; RY(x) turns the Bloch vector (1, 0, 0) about Y into (cos x, 0, -sin x); RZ leaves <Z>:
    # Phi(x) = -sin x, i.e. a = [0, 0], b = [0, -1].
    coefficients = fourier_coefficients(
        torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), 0.3, dtype=torch.float64)
    )
    torch.testing.assert_close(
        coefficients, torch.tensor([[0.0, 0.0], [0.0, -1.0]], dtype=torch.float64), atol=1e-15, rtol=0
    )


@pytest.mark.parametrize("readout", READOUTS)
def test_coefficients_shape_and_sine_constant(readout):
    coefficients = fourier_coefficients(random_angles((3, 2, 4), 1), random_angles((3, 2, 4), 2), readout)
    assert coefficients.shape == (3, 2, 9)
    assert torch.all(coefficients[:, 1, 0] == 0)


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("readout", READOUTS)
def test_fourier_phi_matches_qiskit_float64(readout, kernel):
    n_heads, depth, n_qubits = 2, 2, 3
    ry, rz = random_angles((n_heads, depth, n_qubits), 3), random_angles((n_heads, depth, n_qubits), 4)
    coefficients = fourier_coefficients(ry, rz, readout, kernel=kernel)
    omega = readout_frequency(readout)
    generator = torch.Generator().manual_seed(5)
    logits = torch.rand(2, n_heads, 3, 4, generator=generator, dtype=torch.float64) * 100 - 50
    reference = torch.tensor(
        [
            [
                [[qiskit_phi(x, ry[h], rz[h], readout) for x in row] for row in logits[b, h].tolist()]
                for h in range(n_heads)
            ]
            for b in range(2)
        ],
        dtype=torch.float64,
    )
    gate = torch.ones(n_heads, dtype=torch.float64)
    out = add_circuit_term(logits, coefficients, gate, omega=omega, kernel=kernel)
    torch.testing.assert_close(out - logits, reference, rtol=0, atol=1e-10)
    per_head_points = logits.transpose(0, 1).reshape(
        n_heads, -1
    )  # evaluate_fourier: x [H, P], coefficients [H, 2, K+1]
    torch.testing.assert_close(
        evaluate_fourier(per_head_points, coefficients, omega),
        reference.transpose(0, 1).reshape(n_heads, -1),
        rtol=0,
        atol=1e-10,
    )


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("readout", READOUTS)
def test_fourier_phi_matches_qiskit_float32(readout, kernel):
    n_heads, depth, n_qubits = 2, 2, 4
    ry, rz = (
        random_angles((n_heads, depth, n_qubits), 6, torch.float32),
        random_angles((n_heads, depth, n_qubits), 7, torch.float32),
    )
    coefficients = fourier_coefficients(ry, rz, readout, kernel=kernel)
    assert coefficients.dtype == torch.float32
    generator = torch.Generator().manual_seed(8)
    # 2 x 40 scores: more than one 16-lane vector per head, and a partial one.
    logits = torch.rand(1, n_heads, 4, 10, generator=generator) * 100 - 50
    omega = readout_frequency(readout)
    out = add_circuit_term(logits, coefficients, torch.ones(n_heads), omega=omega, kernel=kernel)
    assert out.dtype == torch.float32
    for h in range(n_heads):
        reference = [
            qiskit_phi(x, ry[h].double(), rz[h].double(), readout)
            for x in logits[0, h].flatten().double().tolist()
        ]
        np.testing.assert_allclose(
            (out[0, h].double() - logits[0, h].double()).flatten().numpy(), reference, rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("readout", READOUTS)
def test_gradcheck_full_chain_from_angles(readout, kernel):
    ry = random_angles((2, 1, 2), 10).requires_grad_()  # 2 heads, depth 1, 2 qubits
    rz = random_angles((2, 1, 2), 11).requires_grad_()
    generator = torch.Generator().manual_seed(12)
    logits = (torch.rand(1, 2, 2, 3, generator=generator, dtype=torch.float64) * 6 - 3).requires_grad_()
    gate = torch.tensor([0.8, -1.3], dtype=torch.float64, requires_grad=True)

    def chain(a, b, x, g):
        coefficients = fourier_coefficients(a, b, readout, kernel=kernel)
        return add_circuit_term(
            x, coefficients, g, omega=readout_frequency(readout), input_scale=1.9, kernel=kernel
        )

    assert torch.autograd.gradcheck(chain, (ry, rz, logits, gate))


@pytest.mark.parametrize("kernel", FAST_KERNELS, indirect=True)
@pytest.mark.parametrize("readout", READOUTS)
def test_angle_gradients_match_qiskit_parameter_shift(readout, kernel):
    depth, n_qubits = 2, 2
    ry, rz = random_angles((depth, n_qubits), 13).requires_grad_(), random_angles((depth, n_qubits), 14).requires_grad_()
    xs = torch.tensor([-31.0, -0.6, 2.5, 17.25], dtype=torch.float64)
    logits = xs.view(1, 1, 1, -1)
    out = add_circuit_term(
        logits,
        fourier_coefficients(ry, rz, readout, kernel=kernel),
        torch.ones(1, dtype=torch.float64),
        omega=readout_frequency(readout),
        kernel=kernel,
    )
    grad_ry, grad_rz = torch.autograd.grad(out.sum(), (ry, rz))
    # Each angle sits in one exp(-i theta P/2): Phi is a sinusoid of frequency 1 (expectation) or 1/2
    # (amplitude) in theta, so dPhi/dtheta = (Phi(+pi/2) - Phi(-pi/2))/2, resp. (Phi(+pi) - Phi(-pi))/4.
    shift, factor = (math.pi / 2, 0.5) if readout == "expval_z" else (math.pi, 0.25)
    for name, grad in (("ry", grad_ry), ("rz", grad_rz)):
        for index in np.ndindex(depth, n_qubits):
            total = 0.0
            for sign in (1.0, -1.0):
                angles = {"ry": ry.detach().numpy().copy(), "rz": rz.detach().numpy().copy()}
                angles[name][index] += sign * shift
                total += sign * sum(qiskit_phi(x, angles["ry"], angles["rz"], readout) for x in xs.tolist())
            assert float(grad[index]) == pytest.approx(factor * total, abs=1e-9)
