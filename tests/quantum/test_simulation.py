"""The torch statevector simulation (quantum/simulation.py) against Qiskit's Statevector and the parameter-shift rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector

from hf_superpositional.quantum.qiskit import (
    build_circuit,
    parameter_shift,
    qiskit_readout,
    readout_observable,
)
from hf_superpositional.quantum.simulation import (
    circuit_readout,
    circuit_readout_by_layers,
    circuit_statevector,
)
from tests.quantum.circuit_cases import random_angles


def qiskit_state(n_qubits, depth, x, ry, rz):
    return Statevector(build_circuit(n_qubits, depth, x=x, ry=ry, rz=rz)).data


@pytest.mark.parametrize("n_qubits", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_statevector_matches_qiskit(n_qubits, depth):
    ry, rz = (
        random_angles((depth, n_qubits), 10 * n_qubits + depth),
        random_angles((depth, n_qubits), 100 + n_qubits + depth),
    )
    xs = torch.tensor([-7.3, -0.4, 0.0, 1.1, 42.0], dtype=torch.float64)
    ours = circuit_statevector(xs, ry, rz)
    assert ours.dtype == torch.complex128 and ours.shape == (5, 2**n_qubits)
    reference = np.stack([qiskit_state(n_qubits, depth, x, ry.numpy(), rz.numpy()) for x in xs.tolist()])
    # Compared as complex vectors: endianness and the global phase must both agree.
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=1e-12)


def test_statevector_broadcasts_heads_and_float32():
    ry, rz = random_angles((3, 2, 2), 1, torch.float32), random_angles((3, 2, 2), 2, torch.float32)
    xs = torch.tensor([0.25, -1.5], dtype=torch.float32)
    ours = circuit_statevector(xs, ry, rz)
    assert ours.dtype == torch.complex64 and ours.shape == (3, 2, 4)
    for head in range(3):
        for i, x in enumerate(xs.tolist()):
            reference = qiskit_state(2, 2, x, ry[head].double().numpy(), rz[head].double().numpy())
            np.testing.assert_allclose(ours[head, i].numpy(), reference, atol=2e-6)
    # Per-head x as well: x [H, P] with angles [H, depth, n].
    per_head = circuit_statevector(xs.expand(3, 2) + torch.arange(3.0)[:, None], ry, rz)
    np.testing.assert_allclose(
        per_head[2, 1].numpy(),
        qiskit_state(2, 2, float(xs[1]) + 2.0, ry[2].double().numpy(), rz[2].double().numpy()),
        atol=2e-6,
    )


@pytest.mark.parametrize("readout", ["expval_z", "amplitude"])
def test_readout_matches_qiskit(readout):
    ry, rz = random_angles((2, 3), 5), random_angles((2, 3), 6)
    xs = torch.linspace(-50, 50, 9, dtype=torch.float64)
    ours = circuit_readout(xs, ry, rz, readout).numpy()
    reference = []
    for x in xs.tolist():
        state = Statevector(build_circuit(3, 2, x=x, ry=ry.numpy(), rz=rz.numpy()))
        if readout == "expval_z":
            reference.append(state.expectation_value(readout_observable(3)).real)
        else:
            reference.append(state.data[:3].real.sum())
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


def test_angle_gradients_of_simulation_match_qiskit_parameter_shift():
    ry = random_angles((2, 2), 7).requires_grad_()
    rz = random_angles((2, 2), 8).requires_grad_()
    xs = torch.tensor([0.3, -2.0, 4.0], dtype=torch.float64)
    grad_ry, grad_rz = torch.autograd.grad(circuit_readout(xs, ry, rz).sum(), (ry, rz))
    shift, factor = parameter_shift("expval_z")
    base_ry, base_rz = ry.detach().numpy(), rz.detach().numpy()
    for which, grad in (("ry", grad_ry), ("rz", grad_rz)):
        for index in np.ndindex(2, 2):
            total = 0.0
            for sign in (1.0, -1.0):
                angles = {"ry": base_ry.copy(), "rz": base_rz.copy()}
                angles[which][index] += sign * shift
                total += sign * qiskit_readout(xs.numpy(), angles["ry"], angles["rz"], "expval_z").sum()
            assert float(grad[index]) == pytest.approx(factor * total, abs=1e-10)


@pytest.mark.parametrize("readout", ["expval_z", "amplitude"])
@pytest.mark.parametrize(("n_qubits", "depth"), [(1, 1), (2, 3), (3, 1), (4, 2), (5, 2)])
def test_layer_matrix_readout_matches_qiskit(readout, n_qubits, depth):
    """circuit_readout_by_layers (what fourier_coefficients runs off the C++ path) against Qiskit directly."""
    ry, rz = random_angles((depth, n_qubits), 31 + n_qubits), random_angles((depth, n_qubits), 41 + depth)
    xs = torch.linspace(-20, 20, 7, dtype=torch.float64)
    ours = circuit_readout_by_layers(xs, ry, rz, readout).numpy()
    reference = qiskit_readout(xs.numpy(), ry.numpy(), rz.numpy(), readout)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("readout", ["expval_z", "amplitude"])
def test_layer_matrix_readout_gradients_and_broadcasting(readout):
    ry = random_angles((3, 2, 4), 51).requires_grad_()
    rz = random_angles((3, 2, 4), 52).requires_grad_()
    xs = torch.tensor([0.3, -2.0, 4.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: circuit_readout_by_layers(xs, a, b, readout), (ry, rz))
    grads = torch.autograd.grad(circuit_readout_by_layers(xs, ry, rz, readout).sum(), (ry, rz))
    expected = torch.autograd.grad(circuit_readout(xs, ry, rz, readout).sum(), (ry, rz))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # float32 per head, x broadcast against heads.
    single = circuit_readout_by_layers(xs.float(), ry.detach().float(), rz.detach().float(), readout)
    assert single.dtype == torch.float32 and single.shape == (3, 3)
    torch.testing.assert_close(
        single.double(), circuit_readout(xs, ry, rz, readout).detach(), atol=5e-6, rtol=0
    )


def test_layer_matrix_readout_keeps_every_angle_in_the_graph():
    # The last layer's RZ angles cannot change sum_k <Z_k>; they must still receive a (zero) gradient so that
    # DDP without find_unused_parameters sees every circuit parameter used.
    rz = random_angles((1, 3), 61).requires_grad_()
    (grad,) = torch.autograd.grad(
        circuit_readout_by_layers(torch.zeros(2), random_angles((1, 3), 62), rz).sum(), rz
    )
    assert grad is not None and float(grad.abs().max()) < 1e-12
