"""apply/remove of the quantum-attention patch, its config, and save/load (SPEC sections 4 and 8)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, HfArgumentParser

from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.interface import register_quantum_attention
from hf_superpositional.attention.patch import (
    SUPPORTED_MODEL_TYPES,
    apply_quantum_attention,
    get_quantum_attention_config,
    quantum_circuit_modules,
    remove_quantum_attention,
)
from hf_superpositional.naming import QUANTUM_CONFIG_KEY, QUANTUM_MODULE_NAME, is_quantum_parameter_name
from tests.tiny_models import tiny_causal_lm, tiny_input_ids, tiny_llama, tiny_llama_config

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _registered():
    register_quantum_attention()


def _circuit_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if is_quantum_parameter_name(n)}


# ----------------------------------------------------------------------------------------------------------
# QuantumAttentionConfig
# ----------------------------------------------------------------------------------------------------------


def test_config_round_trip_and_hf_argument_parser():
    cfg = QuantumAttentionConfig(n_qubits=3, depth=1, readout="amplitude", layers=[2, 0], per_head=True)
    assert cfg.layers == [0, 2]
    assert QuantumAttentionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    parser = HfArgumentParser(QuantumAttentionConfig)
    (parsed,) = parser.parse_args_into_dataclasses(
        [
            "--n_qubits",
            "3",
            "--depth",
            "1",
            "--readout",
            "amplitude",
            "--layers",
            "0",
            "2",
            "--per_head",
            "true",
        ]
    )
    assert parsed == cfg
    (from_dict,) = parser.parse_dict({"gate_init": 1, "score_input": "raw"})
    assert from_dict.gate_init == 1.0 and from_dict.score_input == "raw" and from_dict.layers is None


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_qubits=0), "n_qubits"),
        (dict(depth=-1), "depth"),
        (dict(readout="x"), "readout"),
        (dict(score_input="scaled"), "score_input"),
        (dict(circuit_backend="cuda"), "circuit_backend"),
        (dict(attn_implementation="sdpa"), "attn_implementation"),
        (dict(gate_init=float("nan")), "gate_init"),
        (dict(layers=[]), "layers"),
        (dict(layers=[0, 0]), "layers"),
        (dict(layers=[-1]), "layers"),
        (dict(init_seed=-3), "init_seed"),
        (dict(per_head="yes"), "per_head"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        QuantumAttentionConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="valid keys"):
        QuantumAttentionConfig.from_dict({"n_qubit": 4})


# ----------------------------------------------------------------------------------------------------------
# apply / remove
# ----------------------------------------------------------------------------------------------------------


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
    state_a, state_b, state_c = _circuit_state(a), _circuit_state(b), _circuit_state(c)
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
    before = _circuit_state(model)
    apply_quantum_attention(model, gate_init=0.5)
    after = _circuit_state(model)
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


def test_per_head_parameters_have_head_dimension():
    model = apply_quantum_attention(tiny_llama(num_key_value_heads=2), per_head=True, depth=3, n_qubits=2)
    circuit = model.model.layers[0].self_attn.quantum_circuit
    assert circuit.ry.shape == (4, 3, 2) and circuit.rz.shape == (4, 3, 2) and circuit.gate.shape == (4,)
    assert circuit.coefficients().shape == (4, 2, 7)


# ----------------------------------------------------------------------------------------------------------
# from_config / from_pretrained (in-process) and dtype handling
# ----------------------------------------------------------------------------------------------------------


def test_from_config_with_quantum_config_builds_circuits():
    config = tiny_llama_config(attn_implementation="quantum")
    setattr(config, QUANTUM_CONFIG_KEY, QuantumAttentionConfig(gate_init=0.3, init_seed=4).to_dict())
    model = AutoModelForCausalLM.from_config(config)
    circuits = quantum_circuit_modules(model)
    assert len(circuits) == 2 and model.config._attn_implementation == "quantum"
    reference = apply_quantum_attention(tiny_llama(), gate_init=0.3, init_seed=4)
    expected = _circuit_state(reference)
    assert all(torch.equal(p, expected[n]) for n, p in _circuit_state(model).items())


def test_loading_base_checkpoint_with_quantum_config_initialises_missing_circuits(tmp_path):
    tiny_llama(seed=3).save_pretrained(tmp_path)
    cfg = QuantumAttentionConfig(gate_init=0.4, per_head=True, init_seed=9)
    config = AutoConfig.from_pretrained(tmp_path)
    setattr(config, QUANTUM_CONFIG_KEY, cfg.to_dict())
    first = AutoModelForCausalLM.from_pretrained(tmp_path, config=config, attn_implementation="quantum")
    second = AutoModelForCausalLM.from_pretrained(tmp_path, config=config, attn_implementation="quantum")
    expected = _circuit_state(apply_quantum_attention(tiny_llama(seed=3), cfg))
    state_first, state_second = _circuit_state(first), _circuit_state(second)
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


def test_loading_with_a_non_quantum_attention_warns(tmp_path, caplog):
    apply_quantum_attention(tiny_llama(), gate_init=0.5).save_pretrained(tmp_path)
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    finally:
        hf_logging.disable_propagation()
    assert loaded.config._attn_implementation == "eager"
    assert quantum_circuit_modules(loaded)  # the circuits are kept, only not applied
    assert "NOT applied" in caplog.text


# ----------------------------------------------------------------------------------------------------------
# save_pretrained -> fresh process
# ----------------------------------------------------------------------------------------------------------


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
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
    result = _run_python(
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
    result = _run_python(
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
