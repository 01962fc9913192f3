"""recipes/text_classification.py: configuration, the model it trains, and a real (tiny) end-to-end run."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

from tests.cli_cases import assert_bad_input_exits_with_one_line
from tests.subprocess_env import REPO, repo_env

RECIPE = REPO / "recipes" / "text_classification.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("text_classification_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_yaml_holds_the_dataclass_defaults(recipe):
    from transformers import HfArgumentParser

    (from_yaml,) = HfArgumentParser(recipe.TextClassificationArguments).parse_yaml_file(
        str(recipe.DEFAULT_CONFIG)
    )
    assert dataclasses.asdict(from_yaml) == dataclasses.asdict(recipe.TextClassificationArguments())
    # the paper's Table II numbers
    assert (from_yaml.hidden_size, from_yaml.num_heads, from_yaml.ffn_size, from_yaml.num_layers) == (
        64,
        4,
        128,
        2,
    )
    assert (from_yaml.dropout, from_yaml.n_qubits, from_yaml.depth, from_yaml.gate_init) == (0.1, 4, 2, 1.0)
    assert (from_yaml.batch_size, from_yaml.learning_rate, from_yaml.num_seeds) == (32, 1e-3, 5)
    assert from_yaml.arms == ["adamw", "quantum_moment_adamw", "sgd_lambda_0.1", "sgd_lambda_0.5"]


def test_cli_overrides_yaml(recipe, tmp_path):
    args = recipe.parse_arguments(
        ["--num_seeds", "2", "--arms", "adamw", "sgd_lambda_0.5", "--attention", "eager"]
    )
    assert args.num_seeds == 2 and args.seeds == [0, 1]
    assert args.arms == ["adamw", "sgd_lambda_0.5"] and args.attention == "eager"
    assert args.num_epochs == 10  # untouched keys keep the YAML value
    custom = tmp_path / "c.yaml"
    custom.write_text(recipe.DEFAULT_CONFIG.read_text().replace("num_epochs: 10", "num_epochs: 3"))
    args = recipe.parse_arguments(["--config", str(custom), "--num_train", "64"])
    assert (args.num_epochs, args.num_train) == (3, 64)


def test_bad_arguments_are_rejected(recipe):
    with pytest.raises(ValueError, match="--arms"):
        recipe.parse_arguments(["--arms", "adamw", "sgd_lambda_9"])
    with pytest.raises(ValueError, match="baseline"):
        recipe.parse_arguments(["--arms", "sgd_lambda_0.5"])
    with pytest.raises(ValueError, match="--threshold"):
        recipe.parse_arguments(["--threshold", "1.5"])
    with pytest.raises(ValueError, match="follow_prob"):
        recipe.parse_arguments(["--follow_prob", "0"])
    with pytest.raises(ValueError, match=r"config file not found: /nonexistent\.yaml"):
        recipe.parse_arguments(["--config", "/nonexistent.yaml"])


def test_bad_command_lines_exit_2_with_one_line(recipe, tmp_path, capsys):
    typo = tmp_path / "typo.yaml"
    typo.write_text("num_epoch: 3\n")
    cases = {
        "--num_epoch 2": r"--num_epoch is not accepted as an abbreviation of --num_epochs",  # once ran a full run
        "--num_epochs 0": r"--num_epochs must be >= 1, got 0",
        f"--config {typo}": r"typo\.yaml: unknown key\(s\) 'num_epoch' \(did you mean 'num_epochs'\?\)",
    }
    for argv, message in cases.items():
        assert_bad_input_exits_with_one_line(recipe.main, argv, "text_classification.py", message, capsys)


def test_arms_use_the_registered_optimizer_names(recipe):
    from hf_superpositional.optim.args import parse_optim_args

    arms = recipe.DEMO_ARMS
    assert arms["adamw"].optim == "adamw_torch_fused" and arms["adamw"].optim_args is None
    assert arms["quantum_moment_adamw"].optim == "quantum_moment_adamw"
    assert parse_optim_args(arms["sgd_lambda_0.1"].optim_args)["quantum_weight"] == 0.1
    assert parse_optim_args(arms["sgd_lambda_0.5"].optim_args)["quantum_weight"] == 0.5
    assert arms["sgd_lambda_0.5"].paper["final_accuracy"] == 0.938  # SPEC section 6


def test_quantum_attention_patches_the_sequence_classifier(recipe):
    # apply_quantum_attention routes by model_type, so LlamaForSequenceClassification must work like the LM.
    from hf_superpositional import apply_quantum_attention
    from hf_superpositional.reproduction.classification import build_classifier

    args = recipe.parse_arguments(["--seq_len", "10"])
    reference = build_classifier(args, seed=0).eval()
    patched = build_classifier(args, seed=0).eval()
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), patched.parameters(), strict=True))
    apply_quantum_attention(patched, n_qubits=4, depth=2, gate_init=1.0)
    assert patched.config._attn_implementation == "quantum"
    circuits = [name for name, _ in patched.named_modules() if name.endswith("quantum_circuit")]
    assert circuits == [f"model.layers.{i}.self_attn.quantum_circuit" for i in range(2)]
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 2, 3, 1], [9, 8, 7, 6, 5, 4, 3, 2, 9, 1]])
    with torch.no_grad():
        base_logits = reference(input_ids=ids).logits
        quantum_logits = patched(input_ids=ids).logits
    assert base_logits.shape == quantum_logits.shape == (2, 2)
    assert not torch.allclose(base_logits, quantum_logits)  # gate 1: the circuit term changes the output
    for module in patched.modules():
        if hasattr(module, "gate") and module.__class__.__name__ == "QuantumCircuitParameters":
            module.gate.data.zero_()
    with torch.no_grad():
        torch.testing.assert_close(patched(input_ids=ids).logits, base_logits, rtol=1e-5, atol=1e-6)
    patched.train()
    patched(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    for name, param in patched.named_parameters():
        if "quantum_circuit" in name:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.slow
def test_one_seed_two_epoch_run_writes_sane_files(tmp_path):
    out = tmp_path / "tc"
    command = [
        sys.executable,
        str(RECIPE),
        "--output_dir",
        str(out),
        "--num_seeds",
        "1",
        "--num_epochs",
        "2",
        "--num_train",
        "256",
        "--num_test",
        "256",
        "--num_workers",
        "2",
    ]
    env = repo_env(PYTHONWARNINGS="ignore")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "against AdamW, 1 paired seed;" in result.stdout and "final accuracy: INCONCLUSIVE" in result.stdout
    assert "runs (arm x seed)" in result.stderr  # the progress bar ran

    payload = json.loads((out / "results.json").read_text())
    assert [arm["name"] for arm in payload["arms"]] == [
        "adamw",
        "quantum_moment_adamw",
        "sgd_lambda_0.1",
        "sgd_lambda_0.5",
    ]
    for arm in payload["arms"]:
        (run,) = arm["runs"]
        assert run["seed"] == 0 and len(run["eval_accuracy"]) == 2 and len(run["eval_loss"]) == 2
        assert all(0.0 <= acc <= 1.0 for acc in run["eval_accuracy"])
        assert all(math.isfinite(loss) and loss > 0 for loss in run["eval_loss"])
        assert len(run["epoch_cpu_seconds"]) == 2 and all(s > 0 for s in run["epoch_cpu_seconds"])
        assert len(run["final_gates"]) == 2  # one quantum gate per layer: quantum attention was on
    optimizers = {arm["name"]: arm["runs"][0]["optimizer"] for arm in payload["arms"]}
    assert optimizers["adamw"] == "AdamW" and optimizers["sgd_lambda_0.5"] == "SuperpositionalAdamW"
    summary = payload["summary"]["arms"]
    assert summary["adamw"]["time_ratio"] == 1.0
    # two 8-step epochs: a ratio, not a measurement (start-up costs can fall on either arm)
    assert 0.1 < summary["sgd_lambda_0.5"]["time_ratio"] < 10.0
    assert payload["summary"]["arms"]["adamw"]["final_accuracy_std"] is None  # one seed: no spread
    assert 0.9 < payload["bayes_accuracy"] < 1.0

    table = (out / "table.md").read_text()
    for label in (
        "AdamW",
        "quantum-moment AdamW λ=0.1",
        "Superpositional GD λ=0.1",
        "Superpositional GD λ=0.5",
        "93.8 ± 0.7",
        "Verdict",
    ):
        assert label in table
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
