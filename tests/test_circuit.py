"""The torch statevector simulation against Qiskit, and the Qiskit / Aer side (circuits.py).

Every exactness check compares against Qiskit (``Statevector``, ``AerSimulator``) or against the
parameter-shift rule evaluated with Qiskit, never against our own torch code.
"""

import math

import numpy as np
import pytest
import torch

qiskit = pytest.importorskip("qiskit")
from qiskit.quantum_info import Statevector  # noqa: E402

from hf_superpositional.quantum.fourier import fourier_coefficients  # noqa: E402
from hf_superpositional.quantum.qiskit import (  # noqa: E402
    aer_fourier_coefficients,
    build_circuit,
    parameter_shift,
    qiskit_readout,
    readout_observable,
)
from hf_superpositional.quantum.simulation import (  # noqa: E402
    circuit_readout,
    circuit_readout_by_layers,
    circuit_statevector,
    readout_from_statevector,
)


def _angles(shape, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator, dtype=dtype) * 4 - 2) * math.pi


def _qiskit_state(n_qubits, depth, x, ry, rz):
    return Statevector(build_circuit(n_qubits, depth, x=x, ry=ry, rz=rz)).data


# ---------------------------------------------------------------- torch simulation vs Qiskit Statevector


@pytest.mark.parametrize("n_qubits", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_statevector_matches_qiskit(n_qubits, depth):
    ry, rz = (
        _angles((depth, n_qubits), 10 * n_qubits + depth),
        _angles((depth, n_qubits), 100 + n_qubits + depth),
    )
    xs = torch.tensor([-7.3, -0.4, 0.0, 1.1, 42.0], dtype=torch.float64)
    ours = circuit_statevector(xs, ry, rz)
    assert ours.dtype == torch.complex128 and ours.shape == (5, 2**n_qubits)
    reference = np.stack([_qiskit_state(n_qubits, depth, x, ry.numpy(), rz.numpy()) for x in xs.tolist()])
    # Compared as complex vectors: endianness and the global phase must both agree.
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=1e-12)


def test_statevector_broadcasts_heads_and_float32():
    ry, rz = _angles((3, 2, 2), 1, torch.float32), _angles((3, 2, 2), 2, torch.float32)
    xs = torch.tensor([0.25, -1.5], dtype=torch.float32)
    ours = circuit_statevector(xs, ry, rz)
    assert ours.dtype == torch.complex64 and ours.shape == (3, 2, 4)
    for head in range(3):
        for i, x in enumerate(xs.tolist()):
            reference = _qiskit_state(2, 2, x, ry[head].double().numpy(), rz[head].double().numpy())
            np.testing.assert_allclose(ours[head, i].numpy(), reference, atol=2e-6)
    # Per-head x as well: x [H, P] with angles [H, depth, n].
    per_head = circuit_statevector(xs.expand(3, 2) + torch.arange(3.0)[:, None], ry, rz)
    np.testing.assert_allclose(
        per_head[2, 1].numpy(),
        _qiskit_state(2, 2, float(xs[1]) + 2.0, ry[2].double().numpy(), rz[2].double().numpy()),
        atol=2e-6,
    )


@pytest.mark.parametrize("readout", ["expval_z", "amplitude"])
def test_readout_matches_qiskit(readout):
    ry, rz = _angles((2, 3), 5), _angles((2, 3), 6)
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
    ry = _angles((2, 2), 7).requires_grad_()
    rz = _angles((2, 2), 8).requires_grad_()
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
    ry, rz = _angles((depth, n_qubits), 31 + n_qubits), _angles((depth, n_qubits), 41 + depth)
    xs = torch.linspace(-20, 20, 7, dtype=torch.float64)
    ours = circuit_readout_by_layers(xs, ry, rz, readout).numpy()
    reference = qiskit_readout(xs.numpy(), ry.numpy(), rz.numpy(), readout)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("readout", ["expval_z", "amplitude"])
def test_layer_matrix_readout_gradients_and_broadcasting(readout):
    ry = _angles((3, 2, 4), 51).requires_grad_()
    rz = _angles((3, 2, 4), 52).requires_grad_()
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
    rz = _angles((1, 3), 61).requires_grad_()
    (grad,) = torch.autograd.grad(
        circuit_readout_by_layers(torch.zeros(2), _angles((1, 3), 62), rz).sum(), rz
    )
    assert grad is not None and float(grad.abs().max()) < 1e-12


# ---------------------------------------------------------------- build_circuit and observables


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
    ry, rz = _angles((2, 2), 11), _angles((2, 2), 12)
    xs = np.linspace(-6, 6, 7)
    for readout in ("expval_z", "amplitude"):
        statevector = qiskit_readout(xs, ry, rz, readout, simulator="qiskit")
        aer = qiskit_readout(xs, ry, rz, readout, simulator="aer")
        np.testing.assert_allclose(aer, statevector, rtol=0, atol=1e-10)


def test_parameter_shift_rule_is_exact_for_both_readouts():
    # Against a central finite difference of Qiskit's own readout (an independent check of the rule).
    ry, rz = _angles((1, 2), 13).numpy(), _angles((1, 2), 14).numpy()
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


# ---------------------------------------------------------------- Aer coefficients with parameter-shift backward


@pytest.mark.parametrize("readout", ["expval_z", "amplitude"])
def test_aer_coefficients_and_gradients_match_torch(readout):
    ry = _angles((2, 2, 2), 21).requires_grad_()  # two heads, depth 2, 2 qubits
    rz = _angles((2, 2, 2), 22).requires_grad_()
    aer = aer_fourier_coefficients(ry, rz, readout)
    torch_path = fourier_coefficients(ry, rz, readout)
    assert aer.shape == torch_path.shape == (2, 2, 5)
    torch.testing.assert_close(aer, torch_path, rtol=0, atol=1e-8)
    weights = torch.randn(aer.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    aer_grads = torch.autograd.grad((aer * weights).sum(), (ry, rz))
    torch_grads = torch.autograd.grad((torch_path * weights).sum(), (ry, rz))
    for ours, reference in zip(aer_grads, torch_grads, strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=1e-8)


# ---------------------------------------------------------------- bad input


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
