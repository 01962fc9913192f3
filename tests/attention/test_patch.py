"""apply_quantum_attention / remove_quantum_attention (attention/patch.py) on Llama, Qwen2 and Mistral instances."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.patch import (
    SUPPORTED_MODEL_TYPES,
    apply_quantum_attention,
    get_quantum_attention_config,
    quantum_circuit_modules,
    remove_quantum_attention,
)
from hf_superpositional.naming import QUANTUM_CONFIG_KEY, QUANTUM_MODULE_NAME, is_quantum_parameter_name
from tests.attention.attention_cases import circuit_state
from tests.tiny_models import tiny_causal_lm, tiny_input_ids, tiny_llama


def test_apply_attaches_float32_circuits_and_writes_config():
    model = tiny_llama(seed=0)
    out = apply_quantum_attention(model, QuantumAttentionConfig(depth=1), n_qubits=2, layers=[1])
    assert out is model
    circuits = quantum_circuit_modules(model)
    assert list(circuits) == [f"model.layers.1.self_attn.{QUANTUM_MODULE_NAME}"]
    circuit = circuits[f"model.layers.1.self_attn.{QUANTUM_MODULE_NAME}"]
    assert isinstance(circuit, QuantumCircuitParameters)
    assert circuit.ry.shape == (1, 2) and circuit.gate.shape == (1,)
    assert all(p.dtype == torch.float32 for p in circuit.parameters())
    assert model.config.quantum_attention == QuantumAttentionConfig(depth=1, n_qubits=2, layers=[1]).to_dict()
    assert get_quantum_attention_config(model) == QuantumAttentionConfig(depth=1, n_qubits=2, layers=[1])
    assert model.config._attn_implementation == "quantum"
    assert sorted(n for n, _ in model.named_parameters() if is_quantum_parameter_name(n)) == [
        "model.layers.1.self_attn.quantum_circuit.gate",
        "model.layers.1.self_attn.quantum_circuit.ry",
        "model.layers.1.self_attn.quantum_circuit.rz",
    ]


def test_init_is_deterministic_and_per_layer():
    a = apply_quantum_attention(tiny_llama(seed=0), init_seed=5)
    b = apply_quantum_attention(tiny_llama(seed=1), init_seed=5)
    c = apply_quantum_attention(tiny_llama(seed=0), init_seed=6)
    state_a, state_b, state_c = circuit_state(a), circuit_state(b), circuit_state(c)
    assert all(torch.equal(state_a[n], state_b[n]) for n in state_a)
    ry0, ry1 = (
        state_a["model.layers.0.self_attn.quantum_circuit.ry"],
        state_a["model.layers.1.self_attn.quantum_circuit.ry"],
    )
    assert not torch.equal(ry0, ry1)
    assert not torch.equal(ry0, state_c["model.layers.0.self_attn.quantum_circuit.ry"])
    assert ry0.abs().max() <= torch.pi


def test_apply_is_idempotent_and_rejects_a_different_config():
    model = apply_quantum_attention(tiny_llama(), gate_init=0.5)
    with torch.no_grad():
        model.model.layers[0].self_attn.quantum_circuit.gate.fill_(0.25)  # "trained" value must survive
    before = circuit_state(model)
    apply_quantum_attention(model, gate_init=0.5)
    after = circuit_state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    with pytest.raises(ValueError, match="remove_quantum_attention"):
        apply_quantum_attention(model, gate_init=0.5, per_head=True)


def test_unsupported_model_type_is_rejected_by_name():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32, n_positions=16))
    with pytest.raises(ValueError, match="gpt2") as error:
        apply_quantum_attention(gpt2)
    for model_type in SUPPORTED_MODEL_TYPES:
        assert model_type in str(error.value)


def test_bad_overrides_and_layers_are_rejected():
    with pytest.raises(ValueError, match="valid keys"):
        apply_quantum_attention(tiny_llama(), n_qubit=3)
    with pytest.raises(ValueError, match="layers"):
        apply_quantum_attention(tiny_llama(), layers=[2])
    with pytest.raises(ValueError, match="readout"):
        apply_quantum_attention(tiny_llama(), readout="probability")


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "mistral"])
def test_remove_restores_original_model_exactly(model_type):
    model = tiny_causal_lm(model_type, seed=2)
    ids = tiny_input_ids(seed=2)
    original_names = [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        reference = model(ids).logits
        apply_quantum_attention(model, gate_init=1.0)
        assert (model(ids).logits - reference).abs().max() > 1e-3
        remove_quantum_attention(model)
        restored = model(ids).logits
    assert torch.equal(restored, reference)
    assert [n for n, _ in model.named_parameters()] == original_names
    assert model.config._attn_implementation == "eager"
    config_dict = model.config.to_dict()
    assert QUANTUM_CONFIG_KEY not in config_dict and "attn_implementation" not in config_dict
    assert remove_quantum_attention(model) is model  # idempotent on an unpatched model


def test_remove_returns_to_the_previous_implementation():
    model = tiny_llama(attn_implementation="sdpa")
    apply_quantum_attention(model)
    remove_quantum_attention(model)
    assert model.config._attn_implementation == "sdpa"
