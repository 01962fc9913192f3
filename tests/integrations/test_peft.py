"""LoRA with trainable circuit parameters: trained, saved in the adapter, reloaded, merged (SPEC section 8)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.interface import register_quantum_attention
from hf_superpositional.attention.patch import apply_quantum_attention, quantum_circuit_modules
from hf_superpositional.integrations.peft import quantum_lora_config
from hf_superpositional.naming import QUANTUM_MODULE_NAME, is_quantum_parameter_name
from tests.tiny_models import tiny_input_ids, tiny_llama

CFG = QuantumAttentionConfig(gate_init=0.5, per_head=True, n_qubits=2, depth=2)


@pytest.fixture(autouse=True, scope="module")
def _registered():
    register_quantum_attention()


def _patched_base():
    return apply_quantum_attention(tiny_llama(seed=11, num_key_value_heads=2), CFG)


def test_quantum_lora_config_adds_circuit_to_modules_to_save():
    config = quantum_lora_config(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"])
    assert isinstance(config, LoraConfig)
    assert set(config.modules_to_save) == {"lm_head", QUANTUM_MODULE_NAME}
    assert quantum_lora_config().modules_to_save == [QUANTUM_MODULE_NAME]


def test_lora_trains_saves_and_reloads_circuit_parameters(tmp_path):
    torch.manual_seed(0)
    model = get_peft_model(
        _patched_base(), quantum_lora_config(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(is_quantum_parameter_name(n) and n.endswith("gate") for n in trainable)
    assert any("lora_A" in n for n in trainable)
    assert not any(n.endswith("q_proj.base_layer.weight") for n in trainable)

    initial = {n: p.detach().clone() for n, p in model.named_parameters() if is_quantum_parameter_name(n)}
    ids = tiny_input_ids(batch=2, length=8, seed=11)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if is_quantum_parameter_name(n)}
    changed = [n for n in trained if n in initial and not torch.equal(trained[n], initial[n])]
    assert any(n.endswith("gate") for n in changed) and any(n.endswith("ry") for n in changed)

    with torch.no_grad():
        expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    saved_keys = list(load_file(tmp_path / "adapter_model.safetensors"))
    circuit_keys = [k for k in saved_keys if QUANTUM_MODULE_NAME in k]
    assert len(circuit_keys) == 2 * 3  # 2 layers x (ry, rz, gate)
    assert any("lora_A" in k for k in saved_keys)

    # Fresh objects: a newly patched base (deterministic circuit init) plus the saved adapter.
    reloaded = PeftModel.from_pretrained(_patched_base(), tmp_path).eval()
    with torch.no_grad():
        restored = reloaded(input_ids=ids).logits
    torch.testing.assert_close(restored, expected, rtol=0, atol=1e-6)
    # Without the adapter the circuit is the fresh init again: the adapter really carried the trained values.
    with torch.no_grad(), reloaded.disable_adapter():
        base_logits = reloaded(input_ids=ids).logits
    assert (base_logits - expected).abs().max() > 1e-4

    merged = reloaded.merge_and_unload()
    circuits = quantum_circuit_modules(merged)
    assert len(circuits) == 2 and all(isinstance(c, QuantumCircuitParameters) for c in circuits.values())
    gate_trained = [
        v
        for n, v in trained.items()
        if n.endswith("layers.0.self_attn.quantum_circuit.modules_to_save.default.gate")
    ]
    assert gate_trained and torch.equal(
        merged.model.layers[0].self_attn.quantum_circuit.gate.detach(), gate_trained[0]
    )
    with torch.no_grad():
        merged_logits = merged(input_ids=ids).logits
    torch.testing.assert_close(merged_logits, expected, rtol=1e-5, atol=1e-5)


def test_peft_save_writes_the_quantum_config_and_peft_loads_restore_the_circuits(tmp_path):
    # The silent loss: a plain saved base, patched for training only, a LoRA saved by PEFT's own
    # save_pretrained, reloaded by PEFT's own loaders on an UNPATCHED base.
    import json

    from peft import AutoPeftModelForCausalLM

    from hf_superpositional.attention.loading import QUANTUM_ADAPTER_CONFIG_NAME
    from hf_superpositional.integrations.peft import install_peft_hooks

    install_peft_hooks()
    tiny_llama(seed=11, num_key_value_heads=2).save_pretrained(tmp_path / "base")
    from transformers import AutoModelForCausalLM

    base = apply_quantum_attention(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), CFG)
    model = get_peft_model(base, quantum_lora_config(r=4, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "modules_to_save" in name and name.endswith("gate"):
                param.copy_(torch.linspace(-1.0, 1.0, param.numel()))  # trained circuits, away from the init
    ids = tiny_input_ids(batch=2, length=8, seed=4)
    with torch.no_grad():
        expected = model.eval()(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / QUANTUM_ADAPTER_CONFIG_NAME).read_text()) == CFG.to_dict()

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    for reloaded in (PeftModel.from_pretrained(plain, tmp_path / "adapter"),
                     AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")):  # fmt: skip
        with torch.no_grad():
            torch.testing.assert_close(reloaded.eval()(input_ids=ids).logits, expected, rtol=0, atol=1e-6)
