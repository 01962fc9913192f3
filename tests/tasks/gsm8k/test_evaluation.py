"""GSM8K evaluation (tasks/gsm8k/evaluation.py): batched greedy generation against one-by-one and a manual argmax loop, grading, the held-out loss against the Trainer's, process shards."""

from __future__ import annotations

import re

import pytest
import torch

from hf_superpositional.tasks.gsm8k.data import (
    build_sft_dataset,
    prompt_token_ids,
)
from hf_superpositional.tasks.gsm8k.evaluation import evaluate_generation, generate_answers, mean_answer_loss


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


@pytest.mark.parametrize("limit", [None, 2, 0])
def test_evaluate_and_save_grades_the_first_rows_logs_writes_generations_and_the_cards_results(
    rows, tokenizer, tiny_model, tmp_path, monkeypatch, limit
):
    import json
    from types import SimpleNamespace

    from transformers import TrainingArguments

    import hf_superpositional.tasks.gsm8k.evaluation as gsm8k
    from hf_superpositional.integrations import SuperpositionalTrainer
    from hf_superpositional.tasks.gsm8k.evaluation import GENERATION_METRICS, evaluate_and_save

    sample = rows[:3]
    asked = []

    def fake_generate(model, tok, questions, **kwargs):
        asked.extend(questions)
        return [r["answer"] for r in sample[: len(questions)]]  # every answer right

    monkeypatch.setattr(gsm8k, "generate_answers", fake_generate)
    args = TrainingArguments(str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = SuperpositionalTrainer(model=tiny_model, args=args, processing_class=tokenizer)
    generation = SimpleNamespace(generation_eval_samples=limit, generation_batch_size=2, max_new_tokens=8)
    metrics = evaluate_and_save(
        trainer, tokenizer, sample, generation, train_metrics={"train_loss": 1.5},
        eval_metrics={"eval_loss": 0.75}, eval_loss_label="held-out loss",
    )  # fmt: skip

    graded = 3 if limit is None else limit
    assert asked == [r["question"] for r in sample[:graded]]
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert saved == metrics and saved["eval_loss"] == 0.75
    assert trainer.model_card_info.results["train_loss (mean over training)"] == 1.5
    assert trainer.model_card_info.results["held-out loss"] == 0.75
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "README.md").is_file()
    if graded:
        assert set(GENERATION_METRICS) <= set(metrics) and metrics["gsm8k_accuracy_strict"] == 1.0
        assert metrics["gsm8k_generation_samples"] == graded
        lines = (tmp_path / "generations.jsonl").read_text().splitlines()
        assert [json.loads(line)["question"] for line in lines] == asked
        assert trainer.model_card_info.results["gsm8k_accuracy_strict"] == 1.0
    else:
        assert not set(GENERATION_METRICS) & set(metrics) and not (tmp_path / "generations.jsonl").exists()
