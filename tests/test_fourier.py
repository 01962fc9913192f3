"""Fourier compilation and the fast circuit term (functional/fourier.py).

References: Qiskit's ``Statevector`` (values), the parameter-shift rule evaluated with Qiskit (angle
gradients), ``torch.autograd.gradcheck`` (every other gradient) and a closed form for one qubit.
"""

import math

import numpy as np
import pytest
import torch

qiskit = pytest.importorskip("qiskit")
from qiskit.quantum_info import SparsePauliOp, Statevector  # noqa: E402

from hf_superpositional.circuits import build_circuit  # noqa: E402
from hf_superpositional.functional import fourier  # noqa: E402
from hf_superpositional.functional.fourier import (  # noqa: E402
    add_circuit_term,
    evaluate_fourier,
    fourier_coefficients,
    fourier_series,
    readout_frequency,
)

READOUTS = ["expval_z", "amplitude"]


def _angles(shape, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator, dtype=dtype) * 4 - 2) * math.pi


def _qiskit_phi(x, ry, rz, readout):
    """Phi at one x by Qiskit: Statevector.expectation_value(sum_k Z_k), or the first n amplitudes' real parts."""
    depth, n_qubits = ry.shape
    state = Statevector(build_circuit(n_qubits, depth, x=float(x), ry=np.asarray(ry), rz=np.asarray(rz)))
    if readout == "expval_z":
        observable = SparsePauliOp.from_sparse_list([("Z", [k], 1.0) for k in range(n_qubits)], n_qubits)
        return float(state.expectation_value(observable).real)
    return float(state.data[:n_qubits].real.sum())


@pytest.fixture
def small_chunks(monkeypatch):
    """Force many chunks so that tile boundaries are exercised on small tensors."""

    def set_scores_per_chunk(scores, degree):
        monkeypatch.setattr(fourier, "_BASIS_ELEMENTS_PER_CHUNK", scores * (2 * degree + 2))

    return set_scores_per_chunk


# ---------------------------------------------------------------- coefficients


def test_frequencies():
    assert readout_frequency("expval_z") == 1.0
    assert readout_frequency("amplitude") == 0.5


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
    coefficients = fourier_coefficients(_angles((3, 2, 4), 1), _angles((3, 2, 4), 2), readout)
    assert coefficients.shape == (3, 2, 9)
    assert torch.all(coefficients[:, 1, 0] == 0)


@pytest.mark.parametrize("readout", READOUTS)
def test_fourier_phi_matches_qiskit_float64(readout):
    n_heads, depth, n_qubits = 2, 2, 3
    ry, rz = _angles((n_heads, depth, n_qubits), 3), _angles((n_heads, depth, n_qubits), 4)
    coefficients = fourier_coefficients(ry, rz, readout)
    omega = readout_frequency(readout)
    generator = torch.Generator().manual_seed(5)
    logits = torch.rand(2, n_heads, 3, 4, generator=generator, dtype=torch.float64) * 100 - 50
    reference = torch.tensor(
        [
            [
                [[_qiskit_phi(x, ry[h], rz[h], readout) for x in row] for row in logits[b, h].tolist()]
                for h in range(n_heads)
            ]
            for b in range(2)
        ],
        dtype=torch.float64,
    )
    out = add_circuit_term(logits, coefficients, torch.ones(n_heads, dtype=torch.float64), omega=omega)
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


@pytest.mark.parametrize("readout", READOUTS)
def test_fourier_phi_matches_qiskit_float32(readout):
    n_heads, depth, n_qubits = 2, 2, 4
    ry, rz = (
        _angles((n_heads, depth, n_qubits), 6, torch.float32),
        _angles((n_heads, depth, n_qubits), 7, torch.float32),
    )
    coefficients = fourier_coefficients(ry, rz, readout)
    assert coefficients.dtype == torch.float32
    generator = torch.Generator().manual_seed(8)
    logits = torch.rand(1, n_heads, 4, 5, generator=generator) * 100 - 50
    out = add_circuit_term(logits, coefficients, torch.ones(n_heads), omega=readout_frequency(readout))
    assert out.dtype == torch.float32
    for h in range(n_heads):
        reference = [
            _qiskit_phi(x, ry[h].double(), rz[h].double(), readout)
            for x in logits[0, h].flatten().double().tolist()
        ]
        np.testing.assert_allclose(
            (out[0, h].double() - logits[0, h].double()).flatten().numpy(), reference, rtol=0, atol=1e-5
        )


def test_fourier_series_matches_direct_sum():
    t = torch.linspace(-60, 60, 101, dtype=torch.float64)
    cosine, sine = [0.3, -1.0, 0.5, 2.0], [0.0, 0.7, -0.2, 1.5]
    direct = sum(
        a * torch.cos(j * t) + b * torch.sin(j * t) for j, (a, b) in enumerate(zip(cosine, sine, strict=True))
    )
    torch.testing.assert_close(fourier_series(t, cosine, sine), direct, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize(
    "coefficient_heads, gate_heads", [(2, 2), (0, 1), (0, 2), (2, 1)]
)  # 0: shared [2, K+1]
@pytest.mark.parametrize("scores_per_chunk", [None, 7, 40])
def test_gradcheck_circuit_term(readout, coefficient_heads, gate_heads, scores_per_chunk, small_chunks):
    n_heads, degree = 2, 4
    if scores_per_chunk is not None:
        small_chunks(scores_per_chunk, degree)  # 7: rows cut into pieces; 40: several rows per chunk
    generator = torch.Generator().manual_seed(9)
    logits = (torch.rand(2, n_heads, 3, 5, generator=generator, dtype=torch.float64) * 8 - 4).requires_grad_()
    shape = (coefficient_heads, 2, degree + 1) if coefficient_heads else (2, degree + 1)
    coefficients = torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_()
    gate = torch.randn(gate_heads, generator=generator, dtype=torch.float64).requires_grad_()
    omega = readout_frequency(readout)

    def term(x, c, g):
        return add_circuit_term(x, c, g, omega=omega, input_scale=0.7)

    assert torch.autograd.gradcheck(term, (logits, coefficients, gate))


@pytest.mark.parametrize("readout", READOUTS)
def test_gradcheck_full_chain_from_angles(readout):
    ry = _angles((2, 1, 2), 10).requires_grad_()  # 2 heads, depth 1, 2 qubits
    rz = _angles((2, 1, 2), 11).requires_grad_()
    generator = torch.Generator().manual_seed(12)
    logits = (torch.rand(1, 2, 2, 3, generator=generator, dtype=torch.float64) * 6 - 3).requires_grad_()
    gate = torch.tensor([0.8, -1.3], dtype=torch.float64, requires_grad=True)

    def chain(a, b, x, g):
        return add_circuit_term(
            x, fourier_coefficients(a, b, readout), g, omega=readout_frequency(readout), input_scale=1.9
        )

    assert torch.autograd.gradcheck(chain, (ry, rz, logits, gate))


@pytest.mark.parametrize("readout", READOUTS)
def test_angle_gradients_match_qiskit_parameter_shift(readout):
    depth, n_qubits = 2, 2
    ry, rz = _angles((depth, n_qubits), 13).requires_grad_(), _angles((depth, n_qubits), 14).requires_grad_()
    xs = torch.tensor([-31.0, -0.6, 2.5, 17.25], dtype=torch.float64)
    logits = xs.view(1, 1, 1, -1)
    out = add_circuit_term(
        logits,
        fourier_coefficients(ry, rz, readout),
        torch.ones(1, dtype=torch.float64),
        omega=readout_frequency(readout),
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
                total += sign * sum(_qiskit_phi(x, angles["ry"], angles["rz"], readout) for x in xs.tolist())
            assert float(grad[index]) == pytest.approx(factor * total, abs=1e-9)


# ---------------------------------------------------------------- memory, dtypes, edge cases


def test_saves_only_its_inputs():
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    coefficients = torch.randn(3, 2, 9, requires_grad=True)
    gate = torch.ones(3, requires_grad=True)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = add_circuit_term(logits, coefficients, gate, omega=1.0)
    score_shaped = [t for t in saved if t.numel() >= logits.numel()]
    assert len(score_shaped) == 1 and score_shaped[0].data_ptr() == logits.data_ptr()
    assert len(saved) == 3
    out.sum().backward()  # still differentiable after the hooks
    assert logits.grad is not None and coefficients.grad is not None and gate.grad is not None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_compute_in_float32(dtype):
    coefficients = fourier_coefficients(
        _angles((2, 2, 2), 15, torch.float32), _angles((2, 2, 2), 16, torch.float32)
    )
    gate = torch.tensor([0.5, -2.0])
    logits = (torch.randn(2, 2, 4, 4) * 3).to(dtype).requires_grad_()
    out = add_circuit_term(logits, coefficients, gate, omega=1.0)
    assert out.dtype == torch.float32
    reference_input = logits.detach().float().requires_grad_()
    reference = add_circuit_term(reference_input, coefficients, gate, omega=1.0)
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    grad = torch.randn_like(out)
    out.backward(grad)
    reference.backward(grad)
    assert logits.grad.dtype == dtype
    torch.testing.assert_close(logits.grad, reference_input.grad.to(dtype))


def test_empty_logits():
    out = add_circuit_term(torch.zeros(1, 2, 0, 3), torch.zeros(2, 2, 3), torch.ones(2), omega=1.0)
    assert out.shape == (1, 2, 0, 3)


def test_bad_inputs_raise_value_errors_naming_the_argument():
    logits = torch.zeros(1, 2, 3, 3)
    coefficients = torch.zeros(2, 2, 5)
    with pytest.raises(ValueError, match="gate"):
        add_circuit_term(logits, coefficients, torch.tensor(1.0), omega=1.0)  # 0-D gate
    with pytest.raises(ValueError, match="gate"):
        add_circuit_term(logits, coefficients, torch.ones(3), omega=1.0)
    with pytest.raises(ValueError, match="coefficients"):
        add_circuit_term(logits, torch.zeros(2, 3, 5), torch.ones(2), omega=1.0)
    with pytest.raises(ValueError, match="logits"):
        add_circuit_term(torch.zeros(1, 4, 3, 3), coefficients, torch.ones(2), omega=1.0)
    with pytest.raises(ValueError, match="omega"):
        add_circuit_term(logits, coefficients, torch.ones(2), omega=0.0)
    with pytest.raises(ValueError, match="input_scale"):
        add_circuit_term(logits, coefficients, torch.ones(2), omega=1.0, input_scale=float("nan"))
    with pytest.raises(ValueError, match="kernel"):
        add_circuit_term(logits, coefficients, torch.ones(2), omega=1.0, kernel="triton")
    with pytest.raises(ValueError, match="readout"):
        fourier_coefficients(torch.zeros(2, 2), torch.zeros(2, 2), "expval_x")
    with pytest.raises(ValueError, match="readout"):
        readout_frequency("amplitudes")
    with pytest.raises(ValueError, match="ry and rz"):
        fourier_coefficients(torch.zeros(2, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="kernel"):
        fourier.set_circuit_kernel("fast")


# ---------------------------------------------------------------- the torch.compile kernel


@pytest.mark.slow
def test_compiled_kernel_matches_eager():
    generator = torch.Generator().manual_seed(17)
    logits = (torch.randn(2, 3, 16, 24, generator=generator) * 5).requires_grad_()
    coefficients = (torch.randn(3, 2, 9, generator=generator) * 0.3).requires_grad_()
    gate = torch.randn(3, generator=generator).requires_grad_()
    grad = torch.randn(2, 3, 16, 24, generator=generator)
    results = {}
    for kernel in ("eager", "compiled"):
        out = add_circuit_term(logits, coefficients, gate, omega=0.5, input_scale=1.3, kernel=kernel)
        results[kernel] = (out, *torch.autograd.grad(out, (logits, coefficients, gate), grad))
    for eager, compiled in zip(results["eager"], results["compiled"], strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-4)
