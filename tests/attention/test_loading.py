"""The loading hooks (attention/loading.py): from_config / from_pretrained rebuild and initialise circuits, in this process and a fresh one; without the plugin loading fails loudly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.interface import register_quantum_attention
from hf_superpositional.attention.patch import (
    apply_quantum_attention,
    quantum_circuit_modules,
)
from hf_superpositional.naming import QUANTUM_CONFIG_KEY, is_quantum_parameter_name
from tests.attention.attention_cases import circuit_state
from tests.subprocess_env import REPO
from tests.tiny_models import tiny_input_ids, tiny_llama, tiny_llama_config


def test_from_config_with_quantum_config_builds_circuits():
    config = tiny_llama_config(attn_implementation="quantum")
    setattr(config, QUANTUM_CONFIG_KEY, QuantumAttentionConfig(gate_init=0.3, init_seed=4).to_dict())
    model = AutoModelForCausalLM.from_config(config)
    circuits = quantum_circuit_modules(model)
    assert len(circuits) == 2 and model.config._attn_implementation == "quantum"
    reference = apply_quantum_attention(tiny_llama(), gate_init=0.3, init_seed=4)
    expected = circuit_state(reference)
    assert all(torch.equal(p, expected[n]) for n, p in circuit_state(model).items())


def test_loading_base_checkpoint_with_quantum_config_initialises_missing_circuits(tmp_path):
    tiny_llama(seed=3).save_pretrained(tmp_path)
    cfg = QuantumAttentionConfig(gate_init=0.4, per_head=True, init_seed=9)
    config = AutoConfig.from_pretrained(tmp_path)
    setattr(config, QUANTUM_CONFIG_KEY, cfg.to_dict())
    first = AutoModelForCausalLM.from_pretrained(tmp_path, config=config, attn_implementation="quantum")
    second = AutoModelForCausalLM.from_pretrained(tmp_path, config=config, attn_implementation="quantum")
    expected = circuit_state(apply_quantum_attention(tiny_llama(seed=3), cfg))
    state_first, state_second = circuit_state(first), circuit_state(second)
    assert state_first.keys() == expected.keys() and len(expected) == 6
    for name, value in expected.items():
        assert torch.isfinite(state_first[name]).all()
        assert torch.equal(state_first[name], value), name
        assert torch.equal(state_second[name], value), name
    assert first.config._attn_implementation == "quantum"


def test_bf16_loading_keeps_circuits_float32(tmp_path):
    model = apply_quantum_attention(tiny_llama(), gate_init=0.5)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    circuit_dtypes = {p.dtype for n, p in loaded.named_parameters() if is_quantum_parameter_name(n)}
    assert circuit_dtypes == {torch.float32}
    ids = tiny_input_ids(seed=5)
    with torch.no_grad():
        assert torch.isfinite(loaded(ids).logits).all()


def test_loading_with_a_non_quantum_attention_raises(tmp_path):
    apply_quantum_attention(tiny_llama(), gate_init=0.5).save_pretrained(tmp_path)
    for other in ("eager", "sdpa"):
        with pytest.raises(ValueError, match=f"attn_implementation='{other}' was requested: its trained circuits"):
            AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=other)
    # quantum_flex computes the same function: switching between the two quantum names stays allowed
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="quantum_flex")
    assert quantum_circuit_modules(loaded) and loaded.config._attn_implementation == "quantum_flex"


def test_quantum_attention_alone_builds_default_circuits():
    # from_config with only attn_implementation="quantum": the default config's circuits, gate 0 (= the base)
    model = AutoModelForCausalLM.from_config(tiny_llama_config(), attn_implementation="quantum")
    assert getattr(model.config, QUANTUM_CONFIG_KEY) == QuantumAttentionConfig().to_dict()
    expected = circuit_state(apply_quantum_attention(tiny_llama(), QuantumAttentionConfig()))
    assert circuit_state(model).keys() == expected.keys()
    assert all(torch.equal(p, expected[n]) for n, p in circuit_state(model).items())


def test_quantum_attention_on_an_unsupported_model_type_raises():
    from transformers import GPT2Config

    with pytest.raises(ValueError, match=r"support model_type in \['llama', 'mistral', 'qwen2'\]; got 'gpt2'"):
        AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=16, n_head=2), attn_implementation="quantum")


def test_switching_an_unpatched_model_to_quantum_raises_at_the_forward():
    model = tiny_llama()
    model.set_attn_implementation("quantum")
    with pytest.raises(ValueError, match="without quantum-attention circuits: patch it first"):
        model(tiny_input_ids())


def test_circuit_weights_without_a_quantum_config_raise_naming_the_file(tmp_path):
    apply_quantum_attention(tiny_llama(), gate_init=0.5).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config[QUANTUM_CONFIG_KEY], config["attn_implementation"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model.safetensors holds quantum-attention circuit tensors"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_quantum_config_without_circuit_weights_raises_naming_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    apply_quantum_attention(tiny_llama(), gate_init=0.5).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    kept = {k: v for k, v in weights.items() if not is_quantum_parameter_name(k) or ".layers.1." in k}
    save_file(kept, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"config.json declares quantum attention but .*model.safetensors lacks 3"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_output_loading_info_is_still_returned_when_asked(tmp_path):
    apply_quantum_attention(tiny_llama(), gate_init=0.5).save_pretrained(tmp_path)
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert quantum_circuit_modules(model) and info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert not isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), tuple)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def saved_quantum_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantum_ckpt")
    register_quantum_attention()
    model = apply_quantum_attention(tiny_llama(seed=7, num_key_value_heads=2), gate_init=0.9, per_head=True)
    with torch.no_grad():
        model.model.layers[1].self_attn.quantum_circuit.gate.copy_(torch.tensor([0.1, -0.7, 1.2, 0.4]))
    ids = tiny_input_ids(batch=2, length=9, seed=7)
    with torch.no_grad():
        logits = model(ids).logits
    model.save_pretrained(folder)
    torch.save({"ids": ids, "logits": logits}, folder / "expected.pt")
    return folder


def test_saved_config_json_holds_quantum_config(saved_quantum_model):
    config = json.loads((saved_quantum_model / "config.json").read_text())
    assert config[QUANTUM_CONFIG_KEY] == QuantumAttentionConfig(gate_init=0.9, per_head=True).to_dict()
    assert config["attn_implementation"] == "quantum"
    assert config["model_type"] == "llama"


@pytest.mark.slow
def test_fresh_process_import_and_from_pretrained_restores_identical_logits(saved_quantum_model):
    result = run_python(
        f"""
        import torch
        import hf_superpositional  # registers quantum attention and the loading hooks
        from transformers import AutoModelForCausalLM

        folder = {str(saved_quantum_model)!r}
        expected = torch.load(folder + "/expected.pt")
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config._attn_implementation == "quantum", model.config._attn_implementation
        with torch.no_grad():
            logits = model(expected["ids"]).logits
        assert torch.equal(logits, expected["logits"]), (logits - expected["logits"]).abs().max()
        gate = model.model.layers[1].self_attn.quantum_circuit.gate
        assert torch.equal(gate, torch.tensor([0.1, -0.7, 1.2, 0.4])), gate
        print("RESTORED")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RESTORED" in result.stdout


@pytest.mark.slow
def test_fresh_process_without_plugin_fails_loudly(saved_quantum_model):
    result = run_python(
        f"""
        from transformers import AutoModelForCausalLM

        folder = {str(saved_quantum_model)!r}
        try:
            AutoModelForCausalLM.from_pretrained(folder)
        except ValueError as error:
            print("REFUSED:", error)
        else:
            raise SystemExit("loaded a quantum checkpoint without the plugin")
        # Forcing another attention loads the base model; the load report flags the circuit keys.
        AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'attn_implementation="quantum"' in result.stdout
    assert "quantum_circuit" in result.stderr and "UNEXPECTED" in result.stderr
