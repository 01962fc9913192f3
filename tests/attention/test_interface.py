"""The attention functions registered in transformers (attention/interface.py): against a naive attention whose circuit Qiskit evaluates, masks, GQA, dropout, caches, checkpointing, half precision, FlexAttention's forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.interface import (
    QUANTUM_ATTENTION,
    QUANTUM_FLEX_ATTENTION,
    kept_scores,
    quantum_attention_forward,
    quantum_attention_mask,
    quantum_flex_attention_forward,
    register_quantum_attention,
)
from hf_superpositional.attention.patch import apply_quantum_attention
from hf_superpositional.quantum.kernels import flash_attention
from hf_superpositional.quantum.kernels.flash import flash_attention_runs_on
from tests.attention.attention_cases import random_qkv
from tests.tiny_models import tiny_causal_lm, tiny_input_ids, tiny_llama


def qiskit_phi(ry: np.ndarray, rz: np.ndarray, x: float, readout: str) -> float:
    """Phi(x) of the SPEC section 2 circuit, built gate by gate in Qiskit and read from its Statevector."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp, Statevector

    depth, n = ry.shape
    qc = QuantumCircuit(n)
    qc.h(range(n))
    for layer in range(depth):
        for q in range(n):
            qc.ry(float(ry[layer, q]) + x, q)
            qc.rz(float(rz[layer, q]), q)
        for q in range(n - 1):
            qc.cx(q, q + 1)
    state = Statevector(qc)
    if readout == "expval_z":
        # Qiskit Pauli labels are little-endian: the rightmost character acts on qubit 0.
        return float(
            sum(
                state.expectation_value(SparsePauliOp("I" * (n - 1 - k) + "Z" + "I" * k)).real
                for k in range(n)
            )
        )
    return float(sum(state.data[k].real for k in range(n)))


def naive_attention(q, k, v, scaling, circuit: QuantumCircuitParameters, causal=True, pad=None):
    """softmax(QK^T * s + gate * Phi(x) + mask) V in float64 NumPy, Phi from Qiskit per score.

    ``pad``: optional [B, Lk] boolean array of keys that may be attended to.
    """
    cfg = circuit.quantum_config
    q, k, v = (t.detach().double().numpy() for t in (q, k, v))
    batch, heads, lq, _ = q.shape
    n_rep = heads // k.shape[1]
    k, v = np.repeat(k, n_rep, axis=1), np.repeat(v, n_rep, axis=1)
    logits = q @ k.transpose(0, 1, 3, 2) * scaling
    ry = circuit.ry.detach().double().numpy()
    rz = circuit.rz.detach().double().numpy()
    gate = circuit.gate.detach().double().numpy()
    term = np.zeros_like(logits)
    input_scale = 1.0 / scaling if cfg.score_input == "raw" else 1.0
    for b, h, i, j in np.ndindex(logits.shape):
        head_ry, head_rz = (ry[h], rz[h]) if cfg.per_head else (ry, rz)
        head_gate = gate[h] if cfg.per_head else gate[0]
        term[b, h, i, j] = head_gate * qiskit_phi(
            head_ry, head_rz, input_scale * logits[b, h, i, j], cfg.readout
        )
    scores = logits + term
    allowed = np.ones(scores.shape, dtype=bool)
    if causal:
        allowed &= np.tril(np.ones((lq, k.shape[2]), dtype=bool))
    if pad is not None:
        allowed &= pad[:, None, None, :]
    scores = np.where(allowed, scores, -np.inf)
    with np.errstate(invalid="ignore"):  # fully masked (padding) query rows become NaN; callers skip them
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
    return (probs @ v).transpose(0, 2, 1, 3)


class AttentionStub(nn.Module):
    """What the attention functions read from a transformers attention module."""

    def __init__(self, num_key_value_groups=1, circuit=None):
        super().__init__()
        self.num_key_value_groups = num_key_value_groups
        self.is_causal = True
        if circuit is not None:
            self.quantum_circuit = circuit


def test_registration_is_idempotent_and_registers_masks():
    register_quantum_attention()
    register_quantum_attention()
    assert AttentionInterface()[QUANTUM_ATTENTION] is quantum_attention_forward
    assert AttentionInterface()[QUANTUM_FLEX_ATTENTION] is quantum_flex_attention_forward
    # Without these entries create_causal_mask returns None and the model loses its causal mask.
    assert QUANTUM_ATTENTION in AttentionMaskInterface._global_mapping
    assert QUANTUM_FLEX_ATTENTION in AttentionMaskInterface._global_mapping


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(per_head=True),
        dict(readout="amplitude", score_input="raw"),
        dict(n_qubits=3, depth=1, per_head=True, readout="amplitude"),
    ],
    ids=["default", "per_head", "amplitude_raw", "3q_d1_per_head_amplitude"],
)
@pytest.mark.parametrize("flash", [True, False], ids=["fused", "dense"])
def test_attention_function_matches_naive_qiskit_reference(overrides, flash):
    cfg = QuantumAttentionConfig(gate_init=0.8, init_seed=3, **overrides)
    circuit = QuantumCircuitParameters(cfg, num_heads=2, layer_idx=1)
    if cfg.per_head:  # make the heads' gates differ so a head mix-up cannot pass
        with torch.no_grad():
            circuit.gate.copy_(torch.tensor([0.8, -0.5]))
    module = AttentionStub(circuit=circuit)
    q, k, v = random_qkv()
    scaling = q.shape[-1] ** -0.5
    with flash_attention(flash):
        out, weights = quantum_attention_forward(module, q, k, v, None, scaling=scaling)
    expected = naive_attention(q, k, v, scaling, circuit)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=2e-5, rtol=1e-5)
    # The fused kernel keeps no probabilities (as SDPA); the dense path returns them.
    fused = flash and flash_attention_runs_on(q.device)
    assert weights is None if fused else weights.shape == (1, 2, 4, 4)
    # The circuit term matters here: with gate 0 the outputs differ from the gated ones.
    with torch.no_grad():
        circuit.gate.zero_()
    plain, _ = quantum_attention_forward(module, q, k, v, None, scaling=scaling)
    assert (plain - out).abs().max() > 1e-3


def test_attention_function_gqa_and_padding_mask_match_reference():
    cfg = QuantumAttentionConfig(gate_init=0.6, n_qubits=2, depth=2)
    circuit = QuantumCircuitParameters(cfg, num_heads=4, layer_idx=0)
    module = AttentionStub(num_key_value_groups=2, circuit=circuit)
    q, k, v = random_qkv(batch=2, heads=4, kv_heads=2, length=4)
    pad = np.array([[False, True, True, True], [True, True, True, True]])
    causal = np.tril(np.ones((4, 4), dtype=bool))
    bool_mask = torch.from_numpy(causal[None, None] & pad[:, None, None, :])
    scaling = 0.5
    out, _ = quantum_attention_forward(module, q, k, v, bool_mask, scaling=scaling)
    expected = naive_attention(q, k, v, scaling, circuit, causal=True, pad=pad)
    # Row 0 of batch 0 has every key masked (a padding query): only the real queries are compared.
    np.testing.assert_allclose(out[0, 1:].detach().numpy(), expected[0, 1:], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(out[1].detach().numpy(), expected[1], atol=2e-5, rtol=1e-5)
    # An additive float mask (transformers' eager convention) gives the same result.
    float_mask = torch.where(bool_mask, 0.0, torch.finfo(torch.float32).min)
    out_float, _ = quantum_attention_forward(module, q, k, v, float_mask, scaling=scaling)
    torch.testing.assert_close(out_float, out, rtol=0, atol=0)


@flash_attention(False)  # the dense path: its probabilities show which keys each query saw
def test_none_mask_is_causal_for_prefill_and_full_for_one_query():
    circuit = QuantumCircuitParameters(QuantumAttentionConfig(gate_init=0.5), num_heads=2)
    module = AttentionStub(circuit=circuit)
    q, k, v = random_qkv(length=5)
    causal_mask = torch.tril(torch.ones(5, 5, dtype=torch.bool))[None, None]
    out_none, w_none = quantum_attention_forward(module, q, k, v, None, scaling=0.5)
    out_mask, _ = quantum_attention_forward(module, q, k, v, causal_mask, scaling=0.5)
    torch.testing.assert_close(out_none, out_mask, rtol=0, atol=0)
    assert torch.all(w_none[..., 0, 1:] == 0)
    # A single decoding query with mask None attends to every cached key (as SDPA's is_causal=False).
    _, w_last = quantum_attention_forward(module, q[:, :, -1:], k, v, None, scaling=0.5)
    assert torch.all(w_last > 0)
    # A non-causal module with mask None attends everywhere.
    module.is_causal = False
    _, w_full = quantum_attention_forward(module, q, k, v, None, scaling=0.5)
    assert torch.all(w_full > 0)


def test_dropout_only_in_training_mode():
    circuit = QuantumCircuitParameters(QuantumAttentionConfig(gate_init=0.5), num_heads=2)
    module = AttentionStub(circuit=circuit).eval()
    q, k, v = random_qkv(length=6)
    ref, _ = quantum_attention_forward(module, q, k, v, None, scaling=0.5, dropout=0.0)
    evaluated, _ = quantum_attention_forward(module, q, k, v, None, scaling=0.5, dropout=0.5)
    torch.testing.assert_close(evaluated, ref, rtol=0, atol=0)
    module.train()
    torch.manual_seed(0)
    trained, weights = quantum_attention_forward(module, q, k, v, None, scaling=0.5, dropout=0.5)
    assert not torch.allclose(trained, ref)
    kept = weights[weights != 0]
    assert (weights == 0).sum() > 0 and kept.numel() > 0  # some probabilities dropped, survivors rescaled


@pytest.mark.parametrize(
    "model_type, overrides",
    [("llama", {}), ("qwen2", {}), ("mistral", {}), ("mistral", {"sliding_window": 4})],
    ids=["llama", "qwen2", "mistral", "mistral_sliding_window"],
)
def test_gate_zero_is_bit_identical_to_unpatched_eager(model_type, overrides):
    model = tiny_causal_lm(model_type, seed=1, **overrides)
    ids = tiny_input_ids(batch=2, length=12, seed=1)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding in row 0
    with torch.no_grad():
        ref = model(ids).logits
        ref_padded = model(ids, attention_mask=mask).logits
        apply_quantum_attention(model)
        assert model.config._attn_implementation == "quantum"
        out = model(ids).logits
        out_padded = model(ids, attention_mask=mask).logits
    assert torch.equal(out, ref)
    assert torch.equal(out_padded, ref_padded)


def test_nonzero_gate_changes_logits():
    model = tiny_llama(seed=2)
    ids = tiny_input_ids(seed=2)
    with torch.no_grad():
        ref = model(ids).logits
        apply_quantum_attention(model, gate_init=1.0)
        out = model(ids).logits
    assert (out - ref).abs().max() > 1e-3


@pytest.mark.parametrize("model_type", ["llama", "mistral"])
def test_causality_future_token_does_not_change_past_logits(model_type):
    model = apply_quantum_attention(tiny_causal_lm(model_type, seed=3), gate_init=1.0)
    ids = tiny_input_ids(batch=1, length=10, seed=3)
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 7) % 90 + 3
    with torch.no_grad():
        a = model(ids).logits
        b = model(changed).logits
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=1e-6)
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-4


def test_left_padded_rows_equal_unpadded_rows():
    model = apply_quantum_attention(tiny_llama(seed=4, num_key_value_heads=2), gate_init=1.0)
    ids = tiny_input_ids(batch=2, length=9, seed=4)
    pad = 3
    padded = ids.clone()
    padded[0, :pad] = 0
    mask = torch.ones_like(ids)
    mask[0, :pad] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        batch_logits = model(padded, attention_mask=mask, position_ids=position_ids).logits
        alone_0 = model(ids[:1, pad:]).logits
        alone_1 = model(ids[1:]).logits
    torch.testing.assert_close(batch_logits[0, pad:], alone_0[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch_logits[1], alone_1[0], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(batch_logits).all()


def test_gqa_model_layer_matches_reference_attention():
    model = apply_quantum_attention(tiny_llama(seed=5, num_key_value_heads=2), gate_init=0.9, per_head=True)
    attention = model.model.layers[0].self_attn
    assert attention.num_key_value_groups == 2
    circuit = attention.quantum_circuit
    assert circuit.ry.shape == (4, 2, 4) and circuit.rz.shape == (4, 2, 4) and circuit.gate.shape == (4,)
    q, k, v = random_qkv(batch=1, heads=4, kv_heads=2, length=3, head_dim=8, seed=5)
    out, _ = quantum_attention_forward(attention, q, k, v, None, scaling=attention.scaling)
    expected = naive_attention(q, k, v, attention.scaling, circuit)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=2e-5, rtol=1e-5)


def padded_causal_mask(batch: int, length: int, pad: int) -> torch.Tensor:
    """What the registered "quantum" mask builder gives a batch whose row 0 is left-padded by ``pad`` tokens."""
    attention_mask = torch.ones(batch, length, dtype=torch.bool)  # create_causal_mask passes it as bool
    attention_mask[0, :pad] = False
    return quantum_attention_mask(batch_size=batch, q_length=length, kv_length=length, attention_mask=attention_mask)


@pytest.mark.skipif(not flash_attention_runs_on(torch.device("cpu")), reason="the C++ kernel could not be built")
def test_fused_kernel_runs_where_its_masks_apply_and_the_dense_path_elsewhere():
    circuit = QuantumCircuitParameters(QuantumAttentionConfig(gate_init=0.7, per_head=True), num_heads=4)
    module = AttentionStub(num_key_value_groups=2, circuit=circuit).eval()
    q, k, v = random_qkv(batch=2, heads=4, kv_heads=2, length=70, head_dim=8)
    marked = padded_causal_mask(2, 70, pad=20)
    kept = kept_scores(marked)
    assert kept.causal and torch.equal(kept.key_padding[0], torch.arange(70) >= 20) and kept.key_padding[1].all()
    for mask in (None, marked):  # unpadded (causal by SDPA's rule) and padded, with GQA
        fused, weights = quantum_attention_forward(module, q, k, v, mask, scaling=0.35)
        assert weights is None
        with flash_attention(False):
            dense, dense_weights = quantum_attention_forward(module, q, k, v, mask, scaling=0.35)
        assert dense_weights is not None
        # Every row, the 20 padding queries of row 0 (which see no key: a uniform average) included.
        torch.testing.assert_close(fused, dense, rtol=1e-5, atol=1e-5)
    # A mask the builder did not mark (a user's 4-D mask), an additive float mask, attention weights asked
    # for, dropout in training, every gate 0: the dense path, which returns the probabilities.
    float_mask = torch.where(marked, 0.0, torch.finfo(torch.float32).min)
    for mask, extra in ((marked.clone(), {}), (float_mask, {}), (None, {"output_attentions": True})):
        assert quantum_attention_forward(module, q, k, v, mask, scaling=0.35, **extra)[1] is not None
    module.train()
    assert quantum_attention_forward(module, q, k, v, None, scaling=0.35, dropout=0.1)[1] is not None
    module.eval()
    with torch.no_grad():
        circuit.gate.zero_()
    assert quantum_attention_forward(module, q, k, v, None, scaling=0.35)[1] is not None


@pytest.mark.skipif(not flash_attention_runs_on(torch.device("cpu")), reason="the C++ kernel could not be built")
def test_tiny_llama_loss_and_gradients_with_the_fused_kernel_equal_the_dense_path():
    # GQA, per-head circuits, a left-padded batch, 70 tokens (two query tiles): the loss and the gradient of
    # every parameter -- the circuit angles and gates included -- as the dense reference path gives them.
    def loss_and_grads(flash: bool):
        model = tiny_llama(seed=10, num_key_value_heads=2)
        model = apply_quantum_attention(model, gate_init=0.9, per_head=True).train()
        ids = tiny_input_ids(batch=2, length=70, seed=10)
        mask = torch.ones_like(ids)
        mask[0, :9] = 0
        with flash_attention(flash):
            loss = model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    loss, grads = loss_and_grads(True)
    dense_loss, dense_grads = loss_and_grads(False)
    torch.testing.assert_close(loss, dense_loss, rtol=1e-6, atol=0)
    assert grads.keys() == dense_grads.keys()
    errors = {n: float((grads[n] - g).abs().max() / g.abs().max()) for n, g in dense_grads.items()}
    circuit = [n for n in grads if "quantum_circuit" in n]
    # The circuit gradients are sums over every score of dS * cos(j t): in float32 both paths land 1e-5 to
    # 4e-5 (relative) from the float64 values, so they agree to 1e-4; every other gradient to 1e-5.
    assert max(errors[n] for n in circuit) <= 1e-4, {n: errors[n] for n in circuit}
    assert max(e for n, e in errors.items() if n not in circuit) <= 1e-5, sorted(errors.items(), key=lambda i: -i[1])[:3]
    assert len(circuit) == 6 and all(grads[n].abs().max() > 0 for n in circuit)  # ry, rz, gate x 2 layers


def test_model_dropout_active_only_in_train_mode():
    model = apply_quantum_attention(tiny_llama(seed=6, attention_dropout=0.5), gate_init=1.0)
    ids = tiny_input_ids(seed=6)
    with torch.no_grad():
        model.eval()
        a, b = model(ids).logits, model(ids).logits
        model.train()
        c, d = model(ids).logits, model(ids).logits
    assert torch.equal(a, b)
    assert not torch.allclose(c, d)


def test_greedy_generate_with_cache_equals_full_forwards_without_cache():
    model = apply_quantum_attention(tiny_llama(seed=7, num_key_value_heads=2), gate_init=1.0)
    prompt = tiny_input_ids(batch=1, length=5, seed=7)
    new_tokens = 6
    with torch.no_grad():
        generated = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=0,
            eos_token_id=None,
        )
        sequence = prompt
        step_logits = []
        for _ in range(new_tokens):
            logits = model(sequence, use_cache=False).logits[:, -1]
            step_logits.append(logits)
            sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=-1)
    assert torch.equal(generated.sequences, sequence)
    for cached, full in zip(generated.logits, step_logits, strict=True):
        torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_gives_same_loss_and_grads():
    def loss_and_grads(checkpointing: bool):
        model = apply_quantum_attention(tiny_llama(seed=8), gate_init=1.0, per_head=True)
        model.train()
        if checkpointing:
            # activation_checkpointing_enable is transformers >= 5.23's name; the tested floor (5.4) has the older one
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable({"use_reentrant": False})
        calls = []
        model.model.layers[0].self_attn.register_forward_hook(lambda *args: calls.append(1))
        ids = tiny_input_ids(batch=2, length=8, seed=8)
        loss = model(ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, len(calls)

    loss_a, grads_a, calls_a = loss_and_grads(False)
    loss_b, grads_b, calls_b = loss_and_grads(True)
    assert (calls_a, calls_b) == (1, 2)  # checkpointing really recomputed the layer in backward
    torch.testing.assert_close(loss_b, loss_a, rtol=0, atol=0)
    assert any("quantum_circuit.gate" in n for n in grads_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-6, atol=1e-7, msg=name)
    gate_grads = [g for n, g in grads_a.items() if n.endswith("quantum_circuit.gate")]
    assert all(g.abs().sum() > 0 for g in gate_grads)


def test_bf16_model_with_padding_stays_finite_and_circuit_computes_in_fp32():
    model = apply_quantum_attention(tiny_llama(seed=9), gate_init=1.0)
    ids = tiny_input_ids(batch=2, length=8, seed=9)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    with torch.no_grad():
        reference = model(ids, attention_mask=mask).logits
        model.to(torch.bfloat16)
        low = model(ids, attention_mask=mask).logits
    assert torch.isfinite(low).all()
    # bf16 weights round everything at ~1e-2; the result still follows the float32 model.
    torch.testing.assert_close(low[1].float(), reference[1], rtol=0.1, atol=0.15)


def flex_forward_or_skip(module, q, k, v, mask, scaling):
    try:
        with torch.no_grad():
            return quantum_flex_attention_forward(module, q, k, v, mask, scaling=scaling)[0]
    except Exception as error:
        pytest.skip(f"FlexAttention forward does not run on this CPU build ({type(error).__name__}: {error})")


@pytest.mark.slow
@pytest.mark.parametrize("per_head", [False, True])
def test_flex_forward_matches_dense_on_cpu(per_head):
    cfg = QuantumAttentionConfig(gate_init=0.7, per_head=per_head)
    circuit = QuantumCircuitParameters(cfg, num_heads=4, layer_idx=0)
    module = AttentionStub(num_key_value_groups=2, circuit=circuit).eval()
    q, k, v = random_qkv(batch=2, heads=4, kv_heads=2, length=16, head_dim=8, seed=10)
    dense, _ = quantum_attention_forward(module, q, k, v, None, scaling=8**-0.5)
    flex = flex_forward_or_skip(module, q, k, v, None, 8**-0.5)
    torch.testing.assert_close(flex, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="quantum_flex training needs CUDA")
def test_flex_forward_and_backward_match_dense_on_cuda():
    cfg = QuantumAttentionConfig(gate_init=0.7, per_head=True)
    grads = {}
    outs = {}
    for name, fn in (("dense", quantum_attention_forward), ("flex", quantum_flex_attention_forward)):
        circuit = QuantumCircuitParameters(cfg, num_heads=4, layer_idx=0).cuda()
        module = AttentionStub(num_key_value_groups=2, circuit=circuit).cuda().train()
        q, k, v = (
            t.cuda().requires_grad_() for t in random_qkv(batch=2, heads=4, kv_heads=2, length=128, head_dim=16)
        )
        out = fn(module, q, k, v, None, scaling=0.25)[0]
        out.square().sum().backward()
        outs[name] = out.detach()
        grads[name] = [q.grad, k.grad, v.grad, circuit.ry.grad, circuit.rz.grad, circuit.gate.grad]
    torch.testing.assert_close(outs["flex"], outs["dense"], rtol=1e-4, atol=1e-4)
    for g_flex, g_dense in zip(grads["flex"], grads["dense"], strict=True):
        torch.testing.assert_close(g_flex, g_dense, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="quantum_flex needs CUDA")
def test_flex_model_matches_dense_model_on_cuda():
    model = apply_quantum_attention(tiny_llama(seed=11), gate_init=1.0).cuda()
    ids = tiny_input_ids(batch=2, length=16, seed=11).cuda()
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    with torch.no_grad():
        dense = model(ids, attention_mask=mask).logits
        model.set_attn_implementation("quantum_flex")
        flex = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(flex[1], dense[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(flex[0, 4:], dense[0, 4:], rtol=1e-4, atol=1e-4)
