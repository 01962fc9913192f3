"""The Qiskit circuit and the Qiskit / Aer evaluations (quantum/qiskit.py): structure, observables, Aer against the reference statevector, parameter shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_superpositional.quantum.fourier import fourier_coefficients
from hf_superpositional.quantum.qiskit import (
    aer_fourier_coefficients,
    build_circuit,
    parameter_shift,
    qiskit_readout,
    readout_observable,
)
from hf_superpositional.quantum.simulation import (
    circuit_readout,
    circuit_statevector,
    readout_from_statevector,
)
from tests.quantum.circuit_cases import random_angles


def test_build_circuit_structure_and_parameters():
    circuit = build_circuit(3, 2)
    names = sorted(p.name for p in circuit.parameters)
    assert names == sorted(["x"] + [f"ry[{i}]" for i in range(6)] + [f"rz[{i}]" for i in range(6)])
    counts = circuit.count_ops()
    assert counts["h"] == 3 and counts["ry"] == 6 and counts["rz"] == 6 and counts["cx"] == 4
    # Parameter index l * n + i: binding ry[4] changes only layer 1, qubit 1.
    ry = np.zeros(6)
    ry[4] = 0.7
    bound = build_circuit(3, 2, x=0.0, ry=ry, rz=np.zeros(6))
    rotations = [inst for inst in bound.data if inst.operation.name == "ry"]
    assert float(rotations[4].operation.params[0]) == pytest.approx(0.7)
    assert bound.find_bit(rotations[4].qubits[0]).index == 1
    assert all(float(r.operation.params[0]) == 0.0 for i, r in enumerate(rotations) if i != 4)


def test_readout_observable():
    observable = readout_observable(3, "expval_z")
    assert sorted(observable.paulis.to_labels()) == ["IIZ", "IZI", "ZII"]
    np.testing.assert_allclose(observable.coeffs, [1, 1, 1])
    with pytest.raises(ValueError, match="readout"):
        readout_observable(3, "amplitude")


def test_qiskit_readout_aer_matches_statevector():
    ry, rz = random_angles((2, 2), 11), random_angles((2, 2), 12)
    xs = np.linspace(-6, 6, 7)
    for readout in ("expval_z", "amplitude"):
        statevector = qiskit_readout(xs, ry, rz, readout, simulator="qiskit")
        aer = qiskit_readout(xs, ry, rz, readout, simulator="aer")
        np.testing.assert_allclose(aer, statevector, rtol=0, atol=1e-10)


def test_parameter_shift_rule_is_exact_for_both_readouts():
    # Against a central finite difference of Qiskit's own readout (an independent check of the rule).
    ry, rz = random_angles((1, 2), 13).numpy(), random_angles((1, 2), 14).numpy()
    for readout in ("expval_z", "amplitude"):
        shift, factor = parameter_shift(readout)
        plus, minus = ry.copy(), ry.copy()
        plus[0, 1] += shift
        minus[0, 1] -= shift
        rule = factor * (qiskit_readout([0.9], plus, rz, readout) - qiskit_readout([0.9], minus, rz, readout))
        h = 1e-6
        plus[0, 1], minus[0, 1] = ry[0, 1] + h, ry[0, 1] - h
        finite = (qiskit_readout([0.9], plus, rz, readout) - qiskit_readout([0.9], minus, rz, readout)) / (
            2 * h
        )
        np.testing.assert_allclose(rule, finite, atol=1e-8)


@pytest.mark.parametrize("readout", ["expval_z", "amplitude"])
def test_aer_coefficients_and_gradients_match_torch(readout):
    ry = random_angles((2, 2, 2), 21).requires_grad_()  # two heads, depth 2, 2 qubits
    rz = random_angles((2, 2, 2), 22).requires_grad_()
    aer = aer_fourier_coefficients(ry, rz, readout)
    torch_path = fourier_coefficients(ry, rz, readout)
    assert aer.shape == torch_path.shape == (2, 2, 5)
    torch.testing.assert_close(aer, torch_path, rtol=0, atol=1e-8)
    weights = torch.randn(aer.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    aer_grads = torch.autograd.grad((aer * weights).sum(), (ry, rz))
    torch_grads = torch.autograd.grad((torch_path * weights).sum(), (ry, rz))
    for ours, reference in zip(aer_grads, torch_grads, strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=1e-8)


def test_bad_inputs_raise_value_errors_naming_the_argument():
    ry, rz = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="readout"):
        circuit_readout(torch.zeros(2), ry, rz, "probability")
    with pytest.raises(ValueError, match="ry and rz"):
        circuit_statevector(torch.zeros(2), ry, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="ry"):
        circuit_statevector(torch.zeros(2), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="x"):
        circuit_statevector(torch.tensor(1.0), ry, rz)
    with pytest.raises(ValueError, match="n_qubits"):
        build_circuit(0, 2)
    with pytest.raises(ValueError, match="depth"):
        build_circuit(2, 0)
    with pytest.raises(ValueError, match="ry"):
        build_circuit(2, 2, ry=np.zeros(3))
    with pytest.raises(ValueError, match="simulator"):
        qiskit_readout([0.0], ry, rz, simulator="ibm")
    with pytest.raises(ValueError, match="readout"):
        aer_fourier_coefficients(ry, rz, "amp")
    with pytest.raises(ValueError, match="ry and rz"):
        aer_fourier_coefficients(ry, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="readout"):
        readout_from_statevector(torch.ones(4, dtype=torch.complex64), "z")
