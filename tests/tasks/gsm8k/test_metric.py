"""The offline GSM8K metric (tasks/gsm8k/metric.py): the evaluate.Metric against the reference grader, evaluate.load from the local folder offline, the Trainer's compute_metrics."""

from __future__ import annotations

import sys

import evaluate
import numpy as np
import pytest

from hf_superpositional.tasks.gsm8k.answers import (
    gsm8k_accuracy,
    is_correct,
)
from hf_superpositional.tasks.gsm8k.data import tokenize_for_sft
from hf_superpositional.tasks.gsm8k.metric import (
    GSM8K_ACCURACY_DIR,
    GSM8KAccuracy,
    gsm8k_compute_metrics,
    logits_to_token_ids,
)
from tests.tasks.gsm8k.gsm8k_cases import (
    TRICKY,
    reference_is_correct,
)


def test_metric_class_matches_the_reference_grader(sample, tmp_path):
    answers = [row["answer"] for row in sample[:50]]
    predictions = answers[:25] + answers[26:] + answers[:1]
    metric = GSM8KAccuracy(cache_dir=str(tmp_path))
    result = metric.compute(predictions=predictions, references=answers)
    expected = np.mean(
        [reference_is_correct(p, {"answer": r}) for p, r in zip(predictions, answers, strict=True)]
    )
    assert result["accuracy"] == pytest.approx(expected)
    assert result["accuracy"] < 1.0
    # add_batch then compute, as in an evaluation loop.
    for p, r in zip(["#### 5.0", "#### 7"], ["#### 5", "#### 7"], strict=True):
        metric.add_batch(predictions=[p], references=[r])
    assert metric.compute(mode="flexible") == {"accuracy": 1.0, "invalid": 0.0}
    assert metric.name == "gsm8k_accuracy"
    assert "Cobbe" in metric.citation and "2110.14168" in metric.citation
    assert set(metric.features) == {"predictions", "references"}


@pytest.fixture
def offline_evaluate(tmp_path, monkeypatch):
    """Offline, with evaluate's module cache in a fresh folder, so nothing cached can help."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "modules")
    # evaluate appends its modules folder to sys.path and imports "evaluate_modules" from it; restore
    # both afterwards so another test's folder is not shadowed.
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n == "evaluate_modules" or n.startswith("evaluate_modules.")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def test_evaluate_load_from_the_local_folder_offline(offline_evaluate, sample):
    loaded = evaluate.load(str(GSM8K_ACCURACY_DIR), cache_dir=str(offline_evaluate / "cache"))
    assert isinstance(loaded, GSM8KAccuracy)
    assert (offline_evaluate / "modules" / "evaluate_modules" / "metrics" / "gsm8k_accuracy").is_dir()
    predictions = [sample[0]["answer"]] + TRICKY
    answers = [row["answer"] for row in sample[: len(predictions)]]
    for mode in ("strict", "flexible"):
        direct = GSM8KAccuracy(cache_dir=str(offline_evaluate / "direct")).compute(
            predictions=predictions, references=answers, mode=mode
        )
        assert loaded.compute(predictions=predictions, references=answers, mode=mode) == direct
        assert direct == gsm8k_accuracy(predictions, answers, mode=mode)
    assert direct["accuracy"] > 0  # the first prediction is right


def test_bad_inputs(tmp_path):
    metric = GSM8KAccuracy(cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"mode must be one of \['strict', 'flexible'\], got 'loose'"):
        metric.compute(predictions=["#### 1"], references=["#### 1"], mode="loose")
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        metric.compute(predictions=["#### 1", "#### 2"], references=["#### 1"])
    with pytest.raises(ValueError, match="reference has no '#### <number>'"):
        metric.compute(predictions=["#### 1"], references=["the answer is 1"])
    with pytest.raises(ValueError, match="mode must be one of"):
        gsm8k_accuracy(["#### 1"], ["#### 1"], mode="Strict")
    with pytest.raises(ValueError, match="same length"):
        gsm8k_accuracy(["#### 1"], [])
    with pytest.raises(ValueError, match="empty"):
        gsm8k_accuracy([], [])
    with pytest.raises(ValueError, match="prediction must be a string"):
        is_correct(5, "#### 5")
    with pytest.raises(ValueError, match="mode must be one of"):
        gsm8k_compute_metrics(tokenizer=None, mode="exact")


@pytest.fixture(scope="module")
def tokenized(sample):
    from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer

    rows = sample[:4]
    tokenizer = train_offline_tokenizer(
        [r["question"] + "\n" + r["answer"] for r in sample[:40]], vocab_size=400
    )
    examples = [tokenize_for_sft(row, tokenizer, max_length=4096) for row in rows]
    width = max(len(e["input_ids"]) for e in examples)
    ids = np.full((len(rows), width), tokenizer.pad_token_id)
    labels = np.full((len(rows), width), -100)
    for i, e in enumerate(examples):
        ids[i, : len(e["input_ids"])] = e["input_ids"]
        labels[i, : len(e["labels"])] = e["labels"]
    return tokenizer, rows, ids, labels


def test_compute_metrics_on_generated_ids(tokenized):
    tokenizer, rows, ids, labels = tokenized
    compute = gsm8k_compute_metrics(tokenizer)
    generated = ids.copy()
    generated[:, -1] = -100  # the Trainer pads gathered predictions with -100
    assert compute((generated, labels)) == {"gsm8k_accuracy": 1.0, "gsm8k_invalid": 0.0}
    # Row 0 answers row 1's question: graded as the reference grader grades that pair.
    wrong = generated.copy()
    wrong[0] = generated[1]
    expected = np.mean(
        [reference_is_correct(rows[1]["answer"], {"answer": rows[0]["answer"]})] + [True] * (len(rows) - 1)
    )
    assert expected < 1.0
    assert compute((wrong, labels))["gsm8k_accuracy"] == pytest.approx(expected)


def test_compute_metrics_teacher_forced_logits(tokenized):
    tokenizer, rows, ids, labels = tokenized
    from transformers import EvalPrediction

    # A perfect causal LM: the logits at position t put all mass on token t + 1.
    vocab = len(tokenizer)
    next_ids = np.concatenate([ids[:, 1:], ids[:, -1:]], axis=1)
    logits = np.eye(vocab, dtype=np.float32)[next_ids]
    compute = gsm8k_compute_metrics(tokenizer, teacher_forced=True)
    assert compute(EvalPrediction(predictions=logits, label_ids=labels))["gsm8k_accuracy"] == 1.0
    # The shift is load-bearing: a prompt ending in a number right before the answer. Read with the
    # shift, a perfect next-token model gives "#### 18"; read without it, the text would start "7".
    prompt, answer = tokenizer("Q: 7")["input_ids"], tokenizer("#### 18")["input_ids"]
    seq = np.array([prompt + answer])
    lab = np.array([[-100] * len(prompt) + answer])
    perfect = np.concatenate([seq[:, 1:], seq[:, :1]], axis=1)
    assert compute((perfect, lab)) == {"gsm8k_accuracy": 1.0, "gsm8k_invalid": 0.0}
    assert compute((seq, lab))["gsm8k_accuracy"] == 0.0  # predicting the current token is no model
    # preprocess_logits_for_metrics path: argmax ids instead of logits give the same result.
    import torch

    argmax_ids = logits_to_token_ids((torch.from_numpy(logits),), None).numpy()
    assert (argmax_ids == next_ids).all()
    assert compute((argmax_ids, labels)) == compute((logits, labels))
    with pytest.raises(ValueError, match="same length as labels"):
        compute((argmax_ids[:, :-1], labels))
