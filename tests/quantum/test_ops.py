"""The circuit term as autograd operations (quantum/ops.py): gradcheck, memory contract, masks, every kernel against plain torch."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.quantum import kernels
from hf_superpositional.quantum.fourier import fourier_coefficients
from hf_superpositional.quantum.kernels import eager
from hf_superpositional.quantum.ops import add_circuit_term, circuit_attention_probs, circuit_softmax
from hf_superpositional.quantum.series import evaluate_fourier, readout_frequency
from tests.quantum.circuit_cases import (
    FAST_KERNELS,
    KERNELS,
    READOUTS,
    random_angles,
    random_term_case,
    value_and_grads,
)


@pytest.fixture
def small_chunks(monkeypatch):
    """Force many chunks so that tile boundaries are exercised on small tensors."""

    def set_scores_per_chunk(scores, degree):
        monkeypatch.setattr(eager, "BASIS_ELEMENTS_PER_CHUNK", scores * (2 * degree + 2))

    return set_scores_per_chunk


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
        random_angles((2, 2, 2), 15, torch.float32), random_angles((2, 2, 2), 16, torch.float32)
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


def reference_term(logits, coefficients, gate, omega, input_scale, logit_scale, causal):
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


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("per_head", [True, False])
@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("causal", [False, True])
def test_kernels_match_the_plain_torch_reference(kernel, dtype, per_head, readout, causal):
    # Non-contiguous logits (a transposed view), input_scale != 1, logit_scale != 1, a row length that is
    # not a multiple of the vector width, and per-head or shared coefficients and gate.
    logits, coefficients, gate, grad = random_term_case(18, dtype, per_head, shape=(2, 3, 37, 7))
    logits = logits.transpose(-1, -2)  # [2, 3, 7, 37], not contiguous
    grad = grad.transpose(-1, -2)
    options = dict(omega=readout_frequency(readout), input_scale=1.7, logit_scale=0.6, causal=causal)
    expected = value_and_grads(
        lambda x, c, g: reference_term(x, c, g, options["omega"], 1.7, 0.6, causal),
        logits,
        coefficients,
        gate,
        grad,
    )
    got = value_and_grads(add_circuit_term, logits, coefficients, gate, grad, kernel=kernel, **options)
    tolerance = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-4)
    for name, a, b in zip(("value", "d logits", "d coefficients", "d gate"), got, expected, strict=True):
        torch.testing.assert_close(a, b, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("causal", [False, True])
def test_fused_softmax_is_softmax_of_the_term(kernel, causal):
    logits, coefficients, gate, grad = random_term_case(19, torch.float32, per_head=True, shape=(2, 3, 9, 9))
    options = dict(omega=0.5, input_scale=1.2, logit_scale=0.3, causal=causal, kernel=kernel)
    fused = value_and_grads(circuit_softmax, logits, coefficients, gate, grad, **options)
    separate = value_and_grads(
        lambda *a: torch.softmax(add_circuit_term(*a, **options), -1), logits, coefficients, gate, grad
    )
    # The same torch softmax kernels on the same term: identical values, gradients up to rounding.
    torch.testing.assert_close(fused[0], separate[0], rtol=0, atol=0)
    for a, b in zip(fused[1:], separate[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if causal:
        assert torch.all(fused[0].triu(1) == 0) and torch.all(fused[1].triu(1) == 0)
    # And against plain torch autograd (evaluate_fourier, torch.where, torch.softmax).
    reference = value_and_grads(
        lambda x, c, g: torch.softmax(reference_term(x, c, g, 0.5, 1.2, 0.3, causal), -1),
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
    logits, coefficients, gate, grad = random_term_case(20, torch.float64, per_head=True, shape=(1, 3, 4, 40))
    logits[0, 1, 2, 5] = 7.0e5
    logits[0, 2, 3, 0] = -3.0e4
    expected = value_and_grads(
        lambda x, c, g: reference_term(x, c, g, 1.0, 1.0, 1.0, False), logits, coefficients, gate, grad
    )
    got = value_and_grads(add_circuit_term, logits, coefficients, gate, grad, omega=1.0, kernel=kernel)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-7)
    # The fused softmax's backward overwrites its own buffer: the fallback must still see the gradient.
    logits32 = logits.float()
    logits32[0, 1, 2, 5] = 2.0e4
    options = dict(omega=1.0, kernel=kernel, causal=True)
    fused = value_and_grads(
        circuit_softmax, logits32, coefficients.float(), gate.float(), grad.float(), **options
    )
    separate = value_and_grads(
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
