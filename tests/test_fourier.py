"""Fourier compilation and the fast circuit term (quantum/fourier.py, quantum/ops.py, quantum/kernels/).

References: Qiskit's ``Statevector`` (values), the parameter-shift rule evaluated with Qiskit (angle
gradients), ``torch.autograd.gradcheck`` (every other gradient), a closed form for one qubit, and plain
torch autograd through ``evaluate_fourier`` / ``torch.where`` / ``torch.softmax`` (masking, scaling and the
fused softmax). Every kernel runs the same tests: ``eager``, ``cpp`` (skipped if no compiler here) and
``compiled`` (``torch.compile``; slow).
"""

import math

import numpy as np
import pytest
import torch

qiskit = pytest.importorskip("qiskit")
from qiskit.quantum_info import SparsePauliOp, Statevector  # noqa: E402

from hf_superpositional.quantum import kernels  # noqa: E402
from hf_superpositional.quantum.fourier import fourier_coefficients  # noqa: E402
from hf_superpositional.quantum.kernels import cpp, eager  # noqa: E402
from hf_superpositional.quantum.ops import add_circuit_term, circuit_attention_probs, circuit_softmax  # noqa: E402
from hf_superpositional.quantum.qiskit import build_circuit, qiskit_readout  # noqa: E402
from hf_superpositional.quantum.series import evaluate_fourier, fourier_series, readout_frequency  # noqa: E402

READOUTS = ["expval_z", "amplitude"]
# "compiled" compiles for tens of seconds per dtype and degree: only with the slow tests.
KERNELS = ["eager", "cpp", pytest.param("compiled", marks=pytest.mark.slow)]
FAST_KERNELS = ["eager", "cpp"]


@pytest.fixture
def kernel(request):
    """The kernel named by the test's parameter, skipping "cpp" where the extension cannot be built."""
    name = request.param
    if name == "cpp" and cpp.load_cpu_extension() is None:
        pytest.skip("the C++ circuit kernel could not be built on this machine (see its RuntimeWarning)")
    return name


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
        monkeypatch.setattr(eager, "BASIS_ELEMENTS_PER_CHUNK", scores * (2 * degree + 2))

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


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("readout", READOUTS)
def test_fourier_phi_matches_qiskit_float64(readout, kernel):
    n_heads, depth, n_qubits = 2, 2, 3
    ry, rz = _angles((n_heads, depth, n_qubits), 3), _angles((n_heads, depth, n_qubits), 4)
    coefficients = fourier_coefficients(ry, rz, readout, kernel=kernel)
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
        _angles((n_heads, depth, n_qubits), 6, torch.float32),
        _angles((n_heads, depth, n_qubits), 7, torch.float32),
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
@pytest.mark.parametrize(
    "kernel, scores_per_chunk",
    [
        ("eager", None),
        ("eager", 7),
        ("eager", 40),
        ("cpp", None),
        pytest.param("compiled", None, marks=pytest.mark.slow),
    ],
    indirect=["kernel"],
)
def test_gradcheck_circuit_term(
    readout, coefficient_heads, gate_heads, kernel, scores_per_chunk, small_chunks
):
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
        return add_circuit_term(x, c, g, omega=omega, input_scale=0.7, kernel=kernel)

    assert torch.autograd.gradcheck(term, (logits, coefficients, gate))


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
def test_gradcheck_masked_scaled_softmax(kernel):
    generator = torch.Generator().manual_seed(24)
    logits = (torch.rand(1, 2, 3, 4, generator=generator, dtype=torch.float64) * 8 - 4).requires_grad_()
    coefficients = torch.randn(2, 2, 5, generator=generator, dtype=torch.float64).requires_grad_()
    gate = torch.randn(2, generator=generator, dtype=torch.float64).requires_grad_()

    def masked_softmax(x, c, g):
        return circuit_softmax(
            x, c, g, omega=0.5, input_scale=0.7, kernel=kernel, causal=True, logit_scale=1.3
        )

    assert torch.autograd.gradcheck(masked_softmax, (logits, coefficients, gate))


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("readout", READOUTS)
def test_gradcheck_full_chain_from_angles(readout, kernel):
    ry = _angles((2, 1, 2), 10).requires_grad_()  # 2 heads, depth 1, 2 qubits
    rz = _angles((2, 1, 2), 11).requires_grad_()
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
    ry, rz = _angles((depth, n_qubits), 13).requires_grad_(), _angles((depth, n_qubits), 14).requires_grad_()
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
                total += sign * sum(_qiskit_phi(x, angles["ry"], angles["rz"], readout) for x in xs.tolist())
            assert float(grad[index]) == pytest.approx(factor * total, abs=1e-9)


# ---------------------------------------------------------------- memory, dtypes, edge cases


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
def test_saves_only_its_inputs(kernel, causal):
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    coefficients = torch.randn(3, 2, 9, requires_grad=True)
    gate = torch.ones(3, requires_grad=True)
    for fused_softmax in (False, True):
        saved = []

        def pack(tensor, saved=saved):
            saved.append(tensor)
            return tensor

        function = circuit_softmax if fused_softmax else add_circuit_term
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = function(
                logits, coefficients, gate, omega=1.0, kernel=kernel, causal=causal, logit_scale=0.5
            )
        score_shaped = [t.data_ptr() for t in saved if t.numel() >= logits.numel()]
        # The term saves its inputs only; the fused softmax also its output, as a separate softmax would.
        expected = [logits.data_ptr(), out.data_ptr()] if fused_softmax else [logits.data_ptr()]
        assert score_shaped == expected
        assert len(saved) == len(expected) + 2
        out.sum().backward()  # still differentiable after the hooks
        assert logits.grad is not None and coefficients.grad is not None and gate.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
def test_attention_probs_from_query_and_key_equal_circuit_softmax_and_keep_no_logits(kernel, causal, dtype):
    """circuit_attention_probs = circuit_softmax(q @ k^T) bit for bit (values and every gradient), and the
    only score-sized tensor it saves is the probabilities (the logits are recomputed in backward). fp16/bf16:
    = circuit_softmax((q @ k^T * scale).float()), the scale applied in half precision as eager attention does."""
    generator = torch.Generator().manual_seed(81)
    query = torch.randn(2, 3, 8, 4, generator=generator).to(dtype).requires_grad_()
    key = torch.randn(2, 3, 8, 4, generator=generator).to(dtype).requires_grad_()
    coefficients = torch.randn(3, 2, 9, generator=generator, requires_grad=True)
    gate = torch.rand(3, generator=generator).add(0.5).requires_grad_()
    options = dict(omega=1.0, input_scale=0.7, kernel=kernel, causal=causal, logit_scale=0.5)
    grad = torch.randn(2, 3, 8, 8, generator=generator)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        probs = circuit_attention_probs(query, key, coefficients, gate, **options)
    assert [t.data_ptr() for t in saved if t.numel() >= 2 * 3 * 8 * 8] == [probs.data_ptr()]
    got = torch.autograd.grad(probs, (query, key, coefficients, gate), grad)
    logits = torch.matmul(query, key.transpose(2, 3))
    if dtype != torch.float32:
        logits, options = (logits * options["logit_scale"]).float(), {**options, "logit_scale": 1.0}
    reference = circuit_softmax(logits, coefficients, gate, **options)
    expected = torch.autograd.grad(reference, (query, key, coefficients, gate), grad)
    assert torch.equal(probs, reference)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
def test_attention_probs_with_a_padding_mask_equal_the_separate_ops(kernel, dtype):
    """A boolean mask (padded keys, a query with no key left) inside the recomputing node gives what
    add_circuit_term -> apply_attention_mask -> softmax give, values and gradients, and saves no logits."""
    from hf_superpositional.quantum.masks import apply_attention_mask

    generator = torch.Generator().manual_seed(83)
    query = torch.randn(2, 3, 8, 4, generator=generator).to(dtype).requires_grad_()
    key = torch.randn(2, 3, 8, 4, generator=generator).to(dtype).requires_grad_()
    coefficients = torch.randn(3, 2, 9, generator=generator, requires_grad=True)
    gate = torch.rand(3, generator=generator).add(0.5).requires_grad_()
    keys = torch.ones(2, 8, dtype=torch.bool)
    keys[1, :3] = False  # left padding
    mask = (torch.ones(8, 8, dtype=torch.bool).tril() & keys[:, None, :])[:, None]  # [2, 1, 8, 8]; row 0 of
    # batch 1 keeps no key
    grad = torch.randn(2, 3, 8, 8, generator=generator)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    options = dict(omega=1.0, input_scale=0.7, kernel=kernel)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        probs = circuit_attention_probs(query, key, coefficients, gate, logit_scale=0.5, mask=mask, **options)
    assert [t.data_ptr() for t in saved if t.numel() >= 2 * 3 * 8 * 8] == [probs.data_ptr()]
    got = torch.autograd.grad(probs, (query, key, coefficients, gate), grad)
    logits = torch.matmul(query, key.transpose(2, 3))
    if dtype == torch.float32:
        term = add_circuit_term(logits, coefficients, gate, logit_scale=0.5, **options)
    else:
        term = add_circuit_term((logits * 0.5).float(), coefficients, gate, **options)
    reference = torch.softmax(apply_attention_mask(term, mask, causal=False), -1)
    expected = torch.autograd.grad(reference, (query, key, coefficients, gate), grad)
    torch.testing.assert_close(probs, reference, rtol=0, atol=1e-7)
    assert torch.allclose(probs[1, :, 0], torch.full((3, 8), 1 / 8))  # no key left: uniform, as eager
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_attention_probs_rejects_mismatched_query_and_key():
    coefficients, gate = torch.zeros(2, 3), torch.ones(1)
    with pytest.raises(ValueError, match=r"key \(1, 2, 5, 4\) must match query \(1, 4, 5, 4\)"):
        circuit_attention_probs(
            torch.randn(1, 4, 5, 4), torch.randn(1, 2, 5, 4), coefficients, gate, omega=1.0
        )
    with pytest.raises(ValueError, match=r"query must be a 4-D float tensor \[B, H, L, D\], got \(5, 4\)"):
        circuit_attention_probs(torch.randn(5, 4), torch.randn(5, 4), coefficients, gate, omega=1.0)


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
        kernels.set_circuit_kernel("fast")


# ---------------------------------------------------------------- kernels, masking, scaling, fused softmax


def _reference_term(logits, coefficients, gate, omega, input_scale, logit_scale, causal):
    """The term by plain torch autograd: evaluate_fourier (cos(j w x) directly), torch.where for the mask."""
    z = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32) * logit_scale
    n_heads = logits.shape[1]
    per_head = coefficients if coefficients.ndim == 3 else coefficients.expand(n_heads, *coefficients.shape)
    points = (input_scale * z).transpose(0, 1).reshape(n_heads, -1)  # [H, B*Lq*Lk]
    phi = evaluate_fourier(points, per_head, omega).reshape(n_heads, z.shape[0], *z.shape[2:]).transpose(0, 1)
    out = z + gate.view(1, -1, 1, 1) * phi
    if causal:
        keep = torch.ones(z.shape[-2:], dtype=torch.bool).tril()
        out = torch.where(keep, out, torch.finfo(out.dtype).min)
    return out


def _random_case(seed, dtype, per_head, shape=(2, 3, 7, 37)):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=generator, dtype=dtype) * 4
    coefficient_shape = (shape[1], 2, 9) if per_head else (2, 9)
    coefficients = torch.randn(coefficient_shape, generator=generator, dtype=dtype) * 0.4
    gate = torch.randn(shape[1] if per_head else 1, generator=generator, dtype=dtype)
    grad = torch.randn(*shape, generator=generator, dtype=dtype)
    return logits, coefficients, gate, grad


def _value_and_grads(function, logits, coefficients, gate, grad, **kwargs):
    leaves = [t.detach().requires_grad_() for t in (logits, coefficients, gate)]
    out = function(*leaves, **kwargs)
    return (out, *torch.autograd.grad(out, leaves, grad))


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("per_head", [True, False])
@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("causal", [False, True])
def test_kernels_match_the_plain_torch_reference(kernel, dtype, per_head, readout, causal):
    # Non-contiguous logits (a transposed view), input_scale != 1, logit_scale != 1, a row length that is
    # not a multiple of the vector width, and per-head or shared coefficients and gate.
    logits, coefficients, gate, grad = _random_case(18, dtype, per_head, shape=(2, 3, 37, 7))
    logits = logits.transpose(-1, -2)  # [2, 3, 7, 37], not contiguous
    grad = grad.transpose(-1, -2)
    options = dict(omega=readout_frequency(readout), input_scale=1.7, logit_scale=0.6, causal=causal)
    expected = _value_and_grads(
        lambda x, c, g: _reference_term(x, c, g, options["omega"], 1.7, 0.6, causal),
        logits,
        coefficients,
        gate,
        grad,
    )
    got = _value_and_grads(add_circuit_term, logits, coefficients, gate, grad, kernel=kernel, **options)
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-4)
    for name, a, b in zip(("value", "d logits", "d coefficients", "d gate"), got, expected, strict=True):
        torch.testing.assert_close(a, b, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("causal", [False, True])
def test_fused_softmax_is_softmax_of_the_term(kernel, causal):
    logits, coefficients, gate, grad = _random_case(19, torch.float32, per_head=True, shape=(2, 3, 9, 9))
    options = dict(omega=0.5, input_scale=1.2, logit_scale=0.3, causal=causal, kernel=kernel)
    fused = _value_and_grads(circuit_softmax, logits, coefficients, gate, grad, **options)
    separate = _value_and_grads(
        lambda *a: torch.softmax(add_circuit_term(*a, **options), -1), logits, coefficients, gate, grad
    )
    # The same torch softmax kernels on the same term: identical values, gradients up to rounding.
    torch.testing.assert_close(fused[0], separate[0], rtol=0, atol=0)
    for a, b in zip(fused[1:], separate[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if causal:
        assert torch.all(fused[0].triu(1) == 0) and torch.all(fused[1].triu(1) == 0)
    # And against plain torch autograd (evaluate_fourier, torch.where, torch.softmax).
    reference = _value_and_grads(
        lambda x, c, g: torch.softmax(_reference_term(x, c, g, 0.5, 1.2, 0.3, causal), -1),
        logits.double(),
        coefficients.double(),
        gate.double(),
        grad.double(),
    )
    for a, b in zip(fused, reference, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel", FAST_KERNELS, indirect=True)
def test_angles_beyond_the_fast_sin_cos_range_stay_exact(kernel):
    # |omega * x| above the vectorised sin/cos range (8192 in float32, 2^19 in float64) sends a tile to
    # the scalar libm path; NaN propagates. Compared with plain torch in float64.
    logits, coefficients, gate, grad = _random_case(20, torch.float64, per_head=True, shape=(1, 3, 4, 40))
    logits[0, 1, 2, 5] = 7.0e5
    logits[0, 2, 3, 0] = -3.0e4
    expected = _value_and_grads(
        lambda x, c, g: _reference_term(x, c, g, 1.0, 1.0, 1.0, False), logits, coefficients, gate, grad
    )
    got = _value_and_grads(add_circuit_term, logits, coefficients, gate, grad, omega=1.0, kernel=kernel)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-7)
    # The fused softmax's backward overwrites its own buffer: the fallback must still see the gradient.
    logits32 = logits.float()
    logits32[0, 1, 2, 5] = 2.0e4
    options = dict(omega=1.0, kernel=kernel, causal=True)
    fused = _value_and_grads(
        circuit_softmax, logits32, coefficients.float(), gate.float(), grad.float(), **options
    )
    separate = _value_and_grads(
        lambda *a: torch.softmax(add_circuit_term(*a, **options), -1),
        logits32,
        coefficients.float(),
        gate.float(),
        grad.float(),
    )
    for a, b in zip(fused, separate, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    nan_logits = logits.clone()
    nan_logits[0, 0, 1, 1] = float("nan")
    out = add_circuit_term(nan_logits, coefficients, gate, omega=1.0, kernel=kernel)
    assert torch.isnan(out[0, 0, 1, 1]) and torch.isfinite(out[0, 0, 1, 2])


@pytest.mark.parametrize("kernel", ["cpp"], indirect=True)
def test_cpp_kernel_is_deterministic_across_thread_counts(kernel):
    # Moments are summed per fixed tile, then tile by tile in order: the thread count cannot change a bit.
    logits, coefficients, gate, grad = _random_case(21, torch.float32, per_head=True, shape=(2, 3, 96, 128))
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(
                _value_and_grads(add_circuit_term, logits, coefficients, gate, grad, omega=1.0, kernel=kernel)
            )
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kernel", ["cpp"], indirect=True)
@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("shape", [(2, 4), (3, 2, 4), (2, 1, 3)])
def test_cpp_sampler_matches_the_torch_simulation(kernel, readout, shape):
    generator = torch.Generator().manual_seed(22)
    ry = (torch.rand(shape, generator=generator, dtype=torch.float64) * 6 - 3).requires_grad_()
    rz = (torch.rand(shape, generator=generator, dtype=torch.float64) * 6 - 3).requires_grad_()
    fast = fourier_coefficients(ry, rz, readout, kernel="cpp")
    reference = fourier_coefficients(ry, rz, readout, kernel="eager")  # circuit_readout, torch autograd
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-13)
    weights = torch.randn(fast.shape, generator=generator, dtype=torch.float64)
    for a, b in zip(
        torch.autograd.grad(fast, (ry, rz), weights),
        torch.autograd.grad(reference, (ry, rz), weights),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert fourier_coefficients(ry.float(), rz.float(), readout, kernel="cpp").dtype == torch.float32


def test_failed_build_warns_once_and_falls_back_to_eager(monkeypatch):
    def broken_build(sources, flags):
        raise RuntimeError("Error building extension\nkernel.cpp:1:1: error: simulated compiler failure")

    monkeypatch.setattr(cpp, "_EXTENSION", cpp._Extension())
    monkeypatch.setattr(cpp, "_build", broken_build)
    logits, coefficients, gate, _ = _random_case(23, torch.float32, per_head=True, shape=(1, 3, 4, 4))
    with pytest.warns(RuntimeWarning, match="simulated compiler failure") as record:
        out = add_circuit_term(logits, coefficients, gate, omega=1.0, kernel="cpp")
        again = add_circuit_term(logits, coefficients, gate, omega=1.0)  # "auto"
        coefficients_again = fourier_coefficients(torch.zeros(2, 2), torch.zeros(2, 2), kernel="cpp")
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    expected = add_circuit_term(logits, coefficients, gate, omega=1.0, kernel="eager")
    assert torch.equal(out, expected) and torch.equal(again, expected)
    assert coefficients_again.shape == (2, 5)


def test_kernel_names_and_devices():
    assert kernels.KERNEL_CHOICES == ("auto", "cpp", "compiled", "eager")
    previous = kernels.set_circuit_kernel("eager")
    try:
        assert kernels.set_circuit_kernel("auto") == "eager"
        with kernels.circuit_kernel("eager"):
            assert kernels.get_circuit_kernel() == "eager"
        assert kernels.get_circuit_kernel() == "auto"
    finally:
        kernels.set_circuit_kernel(previous)
    with pytest.raises(ValueError, match="CPU"):
        add_circuit_term(
            torch.zeros(1, 1, 2, 2, device="meta"), torch.zeros(2, 3), torch.ones(1), omega=1.0, kernel="cpp"
        )
    with pytest.raises(ValueError, match="causal"):
        add_circuit_term(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(1), omega=1.0, causal=True)
    with pytest.raises(ValueError, match="logit_scale"):
        circuit_softmax(
            torch.zeros(1, 1, 2, 2), torch.zeros(2, 3), torch.ones(1), omega=1.0, logit_scale=float("inf")
        )
    empty = circuit_softmax(torch.zeros(1, 2, 0, 3), torch.zeros(2, 3), torch.ones(1), omega=1.0)
    assert empty.shape == (1, 2, 0, 3)


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
