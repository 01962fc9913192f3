"""The GSM8K recipe: formatting and masking, data loading, evaluation, and the recipes end to end.

Covers hf_superpositional/gsm8k.py's recipe helpers (load_gsm8k, build_sft_dataset, the prefix mask,
generate_answers, evaluate_generation, mean_answer_loss) and recipes/gsm8k_{finetune,evaluate,compare}.py.
The end-to-end tests are marked slow; they run offline (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_superpositional.tasks.gsm8k.data import (
    IGNORE_INDEX,
    build_sft_dataset,
    has_generation_blocks,
    load_gsm8k,
    prompt_token_ids,
    tokenize_for_sft,
)
from hf_superpositional.tasks.gsm8k.evaluation import evaluate_generation, generate_answers, mean_answer_loss
from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer
from tests.subprocess_env import repo_env

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
TINY_CONFIG = RECIPES / "configs" / "gsm8k_tiny_offline.yaml"
sys.path.insert(0, str(RECIPES))

import gsm8k_compare  # noqa: E402
import gsm8k_evaluate  # noqa: E402
import gsm8k_finetune  # noqa: E402

# A Llama-3-style template: no {% generation %} blocks, like most released instruct templates.
NO_GENERATION_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _offline_env() -> dict[str, str]:
    return repo_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


@pytest.fixture(scope="module")
def rows():
    return load_gsm8k("bundled", "train", max_samples=300)


@pytest.fixture(scope="module")
def tokenizer(rows):
    return train_offline_tokenizer([r["question"] + "\n" + r["answer"] for r in rows], vocab_size=1024)


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_superpositional.attention.config import QuantumAttentionConfig
    from hf_superpositional.attention.patch import apply_quantum_attention

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    return apply_quantum_attention(model, QuantumAttentionConfig(n_qubits=2, depth=1, gate_init=1.0)).eval()


# ---- formatting and label masking -------------------------------------------------------------------


def test_prompt_tokens_are_masked_and_answer_tokens_are_not(rows, tokenizer):
    dataset, stats = build_sft_dataset(rows[:20], tokenizer, max_length=4096)
    assert stats == {"rows": 20, "truncated": 0, "dropped": 0}
    for row, example in zip(rows[:20], dataset, strict=True):
        ids, labels = example["input_ids"], example["labels"]
        prompt = prompt_token_ids(row["question"], tokenizer)
        assert ids[: len(prompt)] == prompt
        assert all(label == IGNORE_INDEX for label in labels[: len(prompt)])  # question + generation prompt
        assert labels[len(prompt) :] == ids[len(prompt) :]  # every answer token, end-of-turn included
        answer = tokenizer.decode(ids[len(prompt) :])
        assert answer == row["answer"] + "<|end|>"
        assert "<|user|>" + row["question"] in tokenizer.decode(prompt)


def test_prefix_mask_equals_generation_mask_and_works_without_generation_blocks(rows, tokenizer):
    for row in rows[:10]:
        by_blocks = tokenize_for_sft(row, tokenizer, 4096, assistant_mask="generation")
        by_prefix = tokenize_for_sft(row, tokenizer, 4096, assistant_mask="prefix")
        assert by_blocks == by_prefix
    plain = train_offline_tokenizer([r["question"] + r["answer"] for r in rows[:50]], vocab_size=400)
    plain.chat_template = NO_GENERATION_TEMPLATE
    assert not has_generation_blocks(plain) and has_generation_blocks(tokenizer)
    with pytest.raises(ValueError, match="marks no assistant tokens"):
        tokenize_for_sft(rows[0], plain, 4096, assistant_mask="generation")
    example = tokenize_for_sft(rows[0], plain, 4096, assistant_mask="auto")
    kept = [
        t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label != IGNORE_INDEX
    ]
    assert plain.decode(kept) == rows[0]["answer"] + "<|end|>"
    with pytest.raises(ValueError, match="assistant_mask must be one of"):
        tokenize_for_sft(rows[0], plain, 4096, assistant_mask="everything")


def test_truncation_is_counted_and_rows_without_answer_dropped(rows, tokenizer):
    full = [len(tokenize_for_sft(r, tokenizer, 10**6)["input_ids"]) for r in rows[:40]]
    prompts = [len(prompt_token_ids(r["question"], tokenizer)) for r in rows[:40]]
    max_length = sorted(full)[len(full) // 2]
    dataset, stats = build_sft_dataset(rows[:40], tokenizer, max_length)
    assert stats["truncated"] == sum(n > max_length for n in full)
    # Dropped: the prompt fills the context, so not one answer token is left to learn from.
    assert stats["dropped"] == sum(p >= max_length for p in prompts)
    assert len(dataset) == 40 - stats["dropped"] and max(len(x) for x in dataset["input_ids"]) == max_length
    with pytest.raises(ValueError, match="every row lost its answer"):
        build_sft_dataset(rows[:3], tokenizer, max_length=8)


# ---- data loading -----------------------------------------------------------------------------------


def test_load_gsm8k_from_file_bundle_and_hub(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(json.dumps({"question": f"q{i}", "answer": f"#### {i}"}) + "\n" for i in range(5))
    )
    assert [r["answer"] for r in load_gsm8k(data_file=path, max_samples=2)] == ["#### 0", "#### 1"]
    assert len(load_gsm8k("bundled", "test")) == 200

    import datasets

    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        if split == "validation":
            raise ValueError("Unknown split \"validation\". Should be one of ['train', 'test'].")
        if name == "offline/gsm8k":
            raise ConnectionError("Couldn't reach the Hub")
        return [{"question": "q", "answer": "#### 1", "extra": 3}] if split == "train" else []

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_gsm8k("openai/gsm8k", "train") == [{"question": "q", "answer": "#### 1"}]
    assert calls[-1] == ("openai/gsm8k", "main", "train")
    with pytest.raises(ValueError, match=r"openai/gsm8k\[test\]: no GSM8K rows \(the split is empty\)"):
        load_gsm8k("openai/gsm8k", "test")
    with pytest.raises(ValueError, match="cannot read split 'validation'"):
        load_gsm8k("openai/gsm8k", "validation")
    with pytest.raises(RuntimeError, match="dataset_name='bundled'"):
        load_gsm8k("offline/gsm8k", "train")
    with pytest.raises(ValueError, match="max_samples"):
        load_gsm8k("bundled", "train", max_samples=0)


# ---- evaluation -------------------------------------------------------------------------------------


@pytest.mark.slow  # the first quantum-attention calls of the session are slow on CPU
def test_batched_greedy_generation_equals_one_by_one_and_a_manual_argmax_loop(rows, tokenizer, tiny_model):
    questions = [r["question"] for r in rows[:5]]  # different lengths: left padding is exercised
    batched = generate_answers(
        tiny_model, tokenizer, questions, batch_size=5, max_new_tokens=6, progress=False
    )
    single = generate_answers(
        tiny_model, tokenizer, questions, batch_size=1, max_new_tokens=6, progress=False
    )
    assert batched == single
    # Reference: greedy decoding written out, full forward each step, no cache, no padding.
    stop = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")}
    for question, answer in zip(questions[:2], batched[:2], strict=True):
        ids = prompt_token_ids(question, tokenizer)
        new = []
        with torch.no_grad():
            for _ in range(6):
                token = int(tiny_model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                new.append(token)
                if token in stop:
                    break
        assert answer == tokenizer.decode(new, skip_special_tokens=True)


def test_evaluate_generation_grades_strict_and_flexible(rows, tokenizer, tiny_model, monkeypatch):
    import hf_superpositional.tasks.gsm8k.evaluation as gsm8k

    sample = rows[:4]
    gold = sample[0]["answer"]
    number = gold.split("#### ")[-1]
    predictions = [
        gold,  # the reference itself: right in both modes
        f"so the answer is ${number}.00",  # no ####: wrong strict, right flexible
        f"#### {number}.0",  # strict compares strings: wrong; flexible: right
        "no idea",  # no answer at all
    ]
    references = [gold] * 4
    monkeypatch.setattr(gsm8k, "generate_answers", lambda *a, **k: predictions)
    result = evaluate_generation(tiny_model, tokenizer, [{"question": "q", "answer": r} for r in references])

    # Reference grader, verbatim from openai/grade-school-math (grade_school_math/dataset.py).
    ans_re = re.compile(r"#### (\-?[0-9\.\,]+)")

    def extract_answer(completion):
        match = ans_re.search(completion)
        return match.group(1).strip().replace(",", "") if match else "[invalid]"

    strict = (
        sum(extract_answer(p) == extract_answer(r) for p, r in zip(predictions, references, strict=True)) / 4
    )
    assert result["accuracy_strict"] == strict == 0.25
    assert result["accuracy_flexible"] == 0.75 and result["invalid_strict"] == 0.5
    assert [p["correct_flexible"] for p in result["predictions"]] == [True, True, True, False]
    assert result["num_samples"] == 4


def test_mean_answer_loss_matches_trainer_eval_loss_at_batch_one(rows, tokenizer, tiny_model, tmp_path):
    import functools

    from transformers import Trainer, TrainingArguments

    from hf_superpositional.tasks.gsm8k.data import pad_collate

    dataset, _ = build_sft_dataset(rows[:6], tokenizer, max_length=256)
    ours = mean_answer_loss(tiny_model, dataset, pad_token_id=tokenizer.pad_token_id, batch_size=4)
    args = TrainingArguments(str(tmp_path), per_device_eval_batch_size=1, report_to=[], use_cpu=True)
    trainer = Trainer(
        model=tiny_model,
        args=args,
        eval_dataset=dataset,
        data_collator=functools.partial(pad_collate, pad_token_id=tokenizer.pad_token_id),
    )
    reference = trainer.evaluate()["eval_loss"]
    assert ours["loss"] == pytest.approx(reference, rel=1e-5)
    # Token-weighted mean: the model's own loss over all answer tokens of one padded batch.
    batch = pad_collate(list(dataset), tokenizer.pad_token_id)
    with torch.no_grad():
        pooled = tiny_model(**batch).loss.item()
    assert ours["token_loss"] == pytest.approx(pooled, rel=1e-5)
    assert ours["num_samples"] == 6 and ours["num_tokens"] == int((batch["labels"][:, 1:] != -100).sum())


@pytest.mark.parametrize("n, world", [(5, 2), (7, 3), (2, 4), (6, 1)])
def test_process_shards_cover_every_row_once_and_reassemble_in_order(n, world):
    from hf_superpositional.tasks.gsm8k.evaluation import shard_rows, unshard_rows

    items = list(range(n))
    shards = [shard_rows(items, rank, world) for rank in range(world)]
    per_rank = shards[0][1]
    assert all(len(shard) == per_rank for shard, _ in shards)  # same number of forward calls on every rank
    gathered = [x for shard, _ in shards for x in shard]  # what gather_object returns: rank order
    assert unshard_rows(gathered, n, world, per_rank) == items


# ---- bad input: clear message, exit status 2 --------------------------------------------------------


def _bad_input_cases(tmp_path):
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
    extra, message = _bad_input_cases(tmp_path)[case]
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
    extra, message = _bad_input_cases(tmp_path)["malformed row"]
    command = [
        sys.executable,
        str(RECIPES / "gsm8k_finetune.py"),
        "--config",
        str(TINY_CONFIG),
        "--output_dir",
        str(tmp_path / "out"),
        *extra,
    ]
    done = subprocess.run(command, cwd=ROOT, env=_offline_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert re.search(message, done.stderr) and "Traceback" not in done.stderr, done.stderr[-2000:]


# ---- end to end -------------------------------------------------------------------------------------


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
    done = subprocess.run(command, cwd=ROOT, env=_offline_env(), capture_output=True, text=True, timeout=600)
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
    assert "## Superpositional Gradient Descent fine-tune" in (tiny_run / "README.md").read_text()


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


def _tiny_argv(output_dir, *extra):
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

    argv = _tiny_argv(
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
    argv = _tiny_argv(tmp_path, "--max_steps", "2", "--generation_eval_samples", "1")
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
