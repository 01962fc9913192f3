"""Training with attn_implementation='quantum_flex' (attention/interface.py): FlexAttention's gradients plus the circuit-gradient pass equal the dense quantum attention's, for one layer and a tiny Llama; the mask builder marks plain causal masks for the fused kernel."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.interface import quantum_attention_forward, quantum_flex_attention_forward
from hf_superpositional.attention.patch import apply_quantum_attention
from hf_superpositional.quantum.kernels.flex_gradient import (
    FlexScoreMask,
)
from tests.quantum.kernels.flex_cases import flex_inputs
from tests.tiny_models import tiny_input_ids, tiny_llama


# ----------------------------------------------------------------------------------------------------------
# "quantum_flex" end to end, through FlexAttention's unfused implementation on CPU
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def flex_reference_on_cpu(monkeypatch):
    """Run FlexAttention uncompiled (its reference implementation) and let it differentiate on CPU."""
    import torch.nn.attention.flex_attention as flex_module
    import transformers.integrations.flex_attention as hf_flex

    monkeypatch.setattr(flex_module, "_validate_device", lambda *args, **kwargs: None)

    def uncompiled(query, key, value, training=False, **kwargs):
        return flex_module.flex_attention(query, key, value, **kwargs)

    monkeypatch.setattr(hf_flex, "compile_friendly_flex_attention", uncompiled)


class AttentionStub(torch.nn.Module):
    def __init__(self, circuit, groups):
        super().__init__()
        self.quantum_circuit, self.num_key_value_groups, self.is_causal = circuit, groups, True


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("per_head", [False, True])
def test_flex_attention_gradients_equal_dense_quantum_attention(flex_reference_on_cpu, per_head):
    grads, outs = {}, {}
    for name, attention in (("dense", quantum_attention_forward), ("flex", quantum_flex_attention_forward)):
        circuit = QuantumCircuitParameters(
            QuantumAttentionConfig(gate_init=0.7, per_head=per_head), num_heads=4
        )
        module = AttentionStub(circuit, groups=2).train()
        q, k, v, *_ = flex_inputs(
            batch=2, heads=4, kv_heads=2, q_len=24, kv_len=24, head_dim=8, dtype=torch.float32
        )
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        out = attention(module, q, k, v, None, scaling=8**-0.5)[0]
        (out.square().sum()).backward()
        outs[name] = out.detach()
        grads[name] = [q.grad, k.grad, v.grad, circuit.ry.grad, circuit.rz.grad, circuit.gate.grad]
    torch.testing.assert_close(outs["flex"], outs["dense"], rtol=1e-5, atol=1e-5)
    for g_flex, g_dense in zip(grads["flex"], grads["dense"], strict=True):
        torch.testing.assert_close(g_flex, g_dense, rtol=1e-4, atol=1e-4)
    assert grads["dense"][3].abs().max() > 1e-3


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("padded", [False, True])
def test_flex_model_training_gradients_equal_dense_model(flex_reference_on_cpu, padded):
    """A tiny Llama: every parameter's gradient (circuits included) with quantum_flex = with quantum.

    Unpadded, the mask builder marks the BlockMask causal-only (causal gradient path); padded, the gradient
    pass evaluates the BlockMask's mask_mod.
    """
    ids = tiny_input_ids(batch=2, length=12, seed=4)
    mask = torch.ones_like(ids)
    if padded:
        # Right padding: with left padding the last pad position predicts the first real token, and what a
        # fully masked query row outputs differs between attention implementations (eager vs SDPA alike).
        mask[0, -3:] = 0
    grads = {}
    for name in ("quantum", "quantum_flex"):
        model = apply_quantum_attention(tiny_llama(seed=4), gate_init=1.0, attn_implementation=name).train()
        labels = ids.masked_fill(mask == 0, -100)
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads["quantum"].keys() == grads["quantum_flex"].keys()
    circuit_names = [n for n in grads["quantum"] if "quantum_circuit" in n]
    assert circuit_names
    for n, g in grads["quantum"].items():
        torch.testing.assert_close(grads["quantum_flex"][n], g, rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_mask_builder_marks_only_plain_causal_masks(flex_reference_on_cpu):
    from hf_superpositional.attention.interface import kept_scores, quantum_flex_attention_mask

    plain = quantum_flex_attention_mask(2, 8, 8, attention_mask=torch.ones(2, 8, dtype=torch.bool))
    padded_mask = torch.ones(2, 8, dtype=torch.bool)
    padded_mask[1, :2] = False
    padded = quantum_flex_attention_mask(2, 8, 8, attention_mask=padded_mask)
    offset = quantum_flex_attention_mask(2, 1, 8, q_offset=7)
    assert kept_scores(plain) == FlexScoreMask(causal=True)
    kept = kept_scores(padded)
    assert kept.causal and kept.mask_mod is None and torch.equal(kept.key_padding, padded_mask)
    assert kept_scores(offset) is None  # decoding offsets: the mask_mod is evaluated


def test_training_quantum_flex_on_cpu_says_what_to_use_instead():
    circuit = QuantumCircuitParameters(QuantumAttentionConfig(gate_init=0.5), num_heads=2)
    module = AttentionStub(circuit, groups=1).train()
    q, k, v, *_ = flex_inputs(batch=1, heads=2, kv_heads=2, q_len=8, kv_len=8, head_dim=16, dtype=torch.float32)
    with pytest.raises(
        NotImplementedError, match=r"quantum_flex' cannot train on cpu.*attn_implementation='quantum'"
    ):
        quantum_flex_attention_forward(module, q.requires_grad_(), k, v, None, scaling=0.25)
