"""The GSM8K recipes end to end (recipes/gsm8k_finetune.py, gsm8k_evaluate.py, gsm8k_compare.py): bad input exits 2 with one line, the tiny offline config under accelerate, reloading and evaluating, LoRA, the comparison runner."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.subprocess_env import REPO, repo_env

RECIPES = REPO / "recipes"
TINY_CONFIG = RECIPES / "configs" / "gsm8k_tiny_offline.yaml"
sys.path.insert(0, str(RECIPES))

import gsm8k_compare  # noqa: E402
import gsm8k_evaluate  # noqa: E402
import gsm8k_finetune  # noqa: E402


def offline_env() -> dict[str, str]:
    return repo_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def bad_input_cases(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"question": "What is 1+1?", "answer": "1+1=2\n#### 2"}) + "\n")
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text(good.read_text() * 2 + '{"question": "q", "answer": 3}\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(TINY_CONFIG.read_text() + "\nlearning_rat: 0.1\n")
    return {
        "missing data file": (
            ["--train_file", str(tmp_path / "nope.jsonl")],
            r"GSM8K data file not found: .*nope\.jsonl",
        ),
        "malformed row": (
            ["--train_file", str(malformed)],
            r"malformed\.jsonl:3: each row needs string fields",
        ),
        "empty split": (["--eval_file", str(empty)], r"empty\.jsonl: no GSM8K rows \(the split is empty\)"),
        "unknown key": (
            ["--config", str(unknown)],
            r"unknown key\(s\) 'learning_rat' \(did you mean 'learning_rate'",
        ),
    }


@pytest.mark.parametrize("case", ["missing data file", "malformed row", "empty split", "unknown key"])
def test_finetune_bad_input_exits_2_with_a_clear_message(case, tmp_path, capsys):
    extra, message = bad_input_cases(tmp_path)[case]
    argv = ["--config", str(TINY_CONFIG), "--output_dir", str(tmp_path / "out")]
    if extra[0] == "--config":
        argv = argv[2:]
    assert gsm8k_finetune.main(argv + extra) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.startswith("gsm8k_finetune.py: error:") and "Traceback" not in err


def test_evaluate_and_compare_bad_input_exit_2(tmp_path, capsys):
    assert gsm8k_evaluate.main(["--model_path", str(tmp_path), "--eval_file", str(tmp_path / "x.jsonl")]) == 2
    assert "GSM8K data file not found" in capsys.readouterr().err
    argv = [
        "--config",
        str(TINY_CONFIG),
        "--output_dir",
        str(tmp_path),
        "--arms",
        "superpositional_adamw:lambda=1",
    ]
    assert gsm8k_compare.main(argv) == 2
    assert "lambda" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_input_exits_non_zero_from_the_command_line(tmp_path):
    extra, message = bad_input_cases(tmp_path)["malformed row"]
    command = [
        sys.executable,
        str(RECIPES / "gsm8k_finetune.py"),
        "--config",
        str(TINY_CONFIG),
        "--output_dir",
        str(tmp_path / "out"),
        *extra,
    ]
    done = subprocess.run(command, cwd=REPO, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert re.search(message, done.stderr) and "Traceback" not in done.stderr, done.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`accelerate launch --config_file recipes/accelerate/cpu.yaml recipes/gsm8k_finetune.py --config <tiny>`."""
    output_dir = tmp_path_factory.mktemp("gsm8k_tiny")
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(RECIPES / "accelerate/cpu.yaml"),
        str(RECIPES / "gsm8k_finetune.py"),
        "--config",
        str(TINY_CONFIG),
        "--output_dir",
        str(output_dir),
    ]
    done = subprocess.run(command, cwd=REPO, env=offline_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return output_dir


@pytest.mark.slow
def test_tiny_offline_config_runs_end_to_end_under_accelerate(tiny_run):
    import yaml

    config = yaml.safe_load(TINY_CONFIG.read_text())
    # A checkpoint, resumable: weights, optimizer and scheduler state.
    (checkpoint,) = tiny_run.glob("checkpoint-*")
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", "tokenizer.json"):
        assert (checkpoint / name).is_file(), name
    # Logs: the truncation count and the training losses.
    log = (tiny_run / "recipe.log").read_text()
    assert re.search(r"training rows: 64, \d+ truncated to 160 tokens, \d+ dropped", log)
    history = json.loads((tiny_run / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 4 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]  # one epoch from random init: the loss falls
    assert any("quantum/gate_mean" in entry for entry in history)
    # An evaluation: held-out loss and both accuracies, with the generations behind them.
    results = json.loads((tiny_run / "eval_results.json").read_text())
    assert results["eval_loss"] > 0 and 0.0 <= results["gsm8k_accuracy_strict"] <= 1.0
    assert results["gsm8k_generation_samples"] == config["generation_eval_samples"]
    assert 0.0 <= results["gsm8k_accuracy_flexible"] <= 1.0
    generations = (tiny_run / "generations.jsonl").read_text().splitlines()
    assert len(generations) == config["generation_eval_samples"]
    assert {"question", "reference", "prediction", "correct_strict"} <= set(json.loads(generations[0]))
    assert "## Trained from scratch with hf_superpositional" in (tiny_run / "README.md").read_text()  # model card


@pytest.mark.slow
def test_tiny_run_reloads_with_quantum_attention_and_evaluates(tiny_run, tmp_path):
    from transformers import AutoTokenizer

    from hf_superpositional.attention.patch import get_quantum_attention_config, quantum_circuit_modules
    from hf_superpositional.integrations.hub import load_trained_model

    model = load_trained_model(tiny_run)
    config = get_quantum_attention_config(model)
    assert config is not None and (config.n_qubits, config.depth) == (4, 2)
    assert model.config._attn_implementation == "quantum" and len(quantum_circuit_modules(model)) == 2
    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    assert tokenizer.chat_template is not None and tokenizer.pad_token == "<|pad|>"

    report_path = tmp_path / "report.json"
    argv = [
        "--model_path",
        str(tiny_run),
        "--config",
        str(TINY_CONFIG),
        "--output_file",
        str(report_path),
        "--max_eval_samples",
        "6",
        "--generation_eval_samples",
        "3",
        "--max_new_tokens",
        "8",
    ]
    assert gsm8k_evaluate.main(argv) == 0
    report = json.loads(report_path.read_text())
    assert report["num_rows"] == 6 and report["generation_samples"] == 3
    assert {"eval_loss", "eval_token_loss", "accuracy_strict", "accuracy_flexible"} <= set(report)
    assert len(Path(report["generations_file"]).read_text().splitlines()) == 3


@pytest.mark.slow
def test_eval_loss_means_the_same_in_finetune_and_evaluate(tiny_run, tmp_path):
    # Both report the mean over held-out rows of each row's answer-token loss: the same rows, the same number.
    config = yaml.safe_load(TINY_CONFIG.read_text())
    finetune_loss = json.loads((tiny_run / "eval_results.json").read_text())["eval_loss"]
    argv = ["--model_path", str(tiny_run), "--config", str(TINY_CONFIG), "--output_file", str(tmp_path / "r.json"),
            "--max_eval_samples", str(config["max_eval_samples"]), "--generation_eval_samples", "1",
            "--max_new_tokens", "2"]  # fmt: skip
    assert gsm8k_evaluate.main(argv) == 0
    assert abs(json.loads((tmp_path / "r.json").read_text())["eval_loss"] - finetune_loss) <= 1e-5


def tiny_argv(output_dir, *extra):
    return [
        "--config",
        str(TINY_CONFIG),
        "--output_dir",
        str(output_dir),
        "--max_train_samples",
        "16",
        "--max_eval_samples",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--max_length",
        "128",
        "--generation_eval_samples",
        "2",
        "--max_new_tokens",
        "4",
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        *extra,
    ]


@pytest.mark.slow
def test_lora_variant_saves_circuits_in_the_adapter_and_reloads_identically(tmp_path):
    from safetensors.torch import load_file

    from hf_superpositional.integrations.hub import load_trained_model
    from hf_superpositional.integrations.peft import QUANTUM_ADAPTER_CONFIG_NAME

    argv = tiny_argv(
        tmp_path,
        "--use_lora",
        "true",
        "--lora_r",
        "4",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
        "--max_steps",
        "3",
        "--learning_rate",
        "0.05",
    )
    args = gsm8k_finetune.parse_args(argv)
    data = gsm8k_finetune.prepare_data(args)
    _, trainer = gsm8k_finetune.run(args, data)

    saved = load_file(tmp_path / "adapter_model.safetensors")
    circuit_keys = sorted(k for k in saved if "quantum_circuit" in k)
    assert len(circuit_keys) == 2 * 3 and any("lora_A" in k for k in saved)  # 2 layers x (ry, rz, gate)
    assert not any(k.endswith("q_proj.weight") for k in saved)  # an adapter, not the full model
    assert (
        json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == "base_model"
    )
    assert json.loads((tmp_path / QUANTUM_ADAPTER_CONFIG_NAME).read_text())["n_qubits"] == 4

    # The trained circuits moved away from the base model's (fresh) ones, and the adapter holds them.
    trained = trainer.model.eval()
    base_gate = trained.base_model.model.model.layers[0].self_attn.quantum_circuit.original_module.gate
    adapter_gate = saved["base_model.model.model.layers.0.self_attn.quantum_circuit.gate"]
    assert not torch.equal(adapter_gate, base_gate.detach())

    reloaded = load_trained_model(tmp_path)
    ids = torch.tensor([data.train_dataset[0]["input_ids"][:48]])
    with torch.no_grad():
        expected = trained(input_ids=ids).logits
        restored = reloaded(input_ids=ids).logits
    torch.testing.assert_close(restored, expected, rtol=0, atol=0)
    with torch.no_grad(), reloaded.disable_adapter():
        assert (reloaded(input_ids=ids).logits - expected).abs().max() > 1e-4


@pytest.mark.slow
def test_compare_runner_writes_table_results_and_plot(tmp_path):
    argv = tiny_argv(tmp_path, "--max_steps", "2", "--generation_eval_samples", "1")
    assert gsm8k_compare.main(argv) == 0
    table = (tmp_path / "table.md").read_text()
    for arm, paper in (
        ("adamw_torch", "0.2188"),
        ("superpositional_adamw-quantum_weight0.1-n_qubits4", "0.2098"),
        ("superpositional_adamw-quantum_weight0.5-n_qubits4", "0.2097"),
    ):
        row = next(line for line in table.splitlines() if line.startswith(f"| {arm} |"))
        assert row.rstrip().endswith(f"| {paper} |")
        assert (tmp_path / arm / "eval_results.json").is_file()
    results = json.loads((tmp_path / "results.json").read_text())
    arms = results["arms"]
    assert [a["optimizer_class"] for a in arms] == ["AdamW", "SuperpositionalAdamW", "SuperpositionalAdamW"]
    assert all(len(a["train_losses"]) == 2 and a["steps"] == 2 for a in arms)
    # Same seed and data: the first logged loss (before any update has had an effect) is the same in every arm.
    assert len({a["train_losses"][0][1] for a in arms}) == 1
    png = (tmp_path / "loss_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_without_config_the_recipe_runs_the_papers_preset(tmp_path):
    args = gsm8k_finetune.parse_args(["--output_dir", str(tmp_path)])
    training = args.training
    assert (training.learning_rate, training.warmup_steps, training.weight_decay) == (2e-5, 500, 0.01)
    assert (str(training.optim.value), training.optim_args) == ("superpositional_adamw", "quantum_weight=0.1,n_qubits=4")
    assert training.per_device_train_batch_size == 1 and training.lr_scheduler_type == "linear" and training.fp16
    assert args.model.model_name_or_path == "meta-llama/Llama-3.2-1B-Instruct" and args.data.max_length == 2048
    assert (args.quantum.n_qubits, args.quantum.depth) == (4, 2)


def test_optim_args_the_chosen_optimizer_ignores_are_an_error(tmp_path):
    from hf_superpositional.cli import ArgumentsError

    with pytest.raises(ArgumentsError, match=r"optim_args='quantum_weight=0.1,n_qubits=4' would be silently ignored: "
                       r"optim='adamw_torch' does not take quantum_weight, n_qubits"):
        gsm8k_finetune.parse_args(["--output_dir", str(tmp_path), "--optim", "adamw_torch"])
    cleared = gsm8k_finetune.parse_args(["--output_dir", str(tmp_path), "--optim", "adamw_torch", "--optim_args", ""])
    assert not cleared.training.optim_args
