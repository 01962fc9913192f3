"""GSM8K sample, offline tokenizer and SFT formatting (hf_superpositional/gsm8k.py, tokenizer.py)."""

import json

import pytest

from hf_superpositional.tasks.gsm8k.data import (
    IGNORE_INDEX,
    bundled_gsm8k_path,
    pad_collate,
    read_gsm8k_jsonl,
    tokenize_for_sft,
)
from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer


@pytest.fixture(scope="module")
def rows():
    return read_gsm8k_jsonl(bundled_gsm8k_path("train"))


@pytest.fixture(scope="module")
def tokenizer(rows):
    return train_offline_tokenizer([r["question"] + "\n" + r["answer"] for r in rows[:300]], vocab_size=1024)


def test_bundled_sample_is_gsm8k_with_licence():
    train, test = read_gsm8k_jsonl(bundled_gsm8k_path("train")), read_gsm8k_jsonl(bundled_gsm8k_path("test"))
    assert len(train) == 1000 and len(test) == 200
    assert all("####" in r["answer"] for r in train + test)
    licence = bundled_gsm8k_path("train").with_name("GSM8K_LICENSE").read_text()
    assert "MIT License" in licence


def test_labels_cover_exactly_the_answer(rows, tokenizer):
    for row in rows[:20]:
        example = tokenize_for_sft(row, tokenizer, max_length=4096)
        ids, labels = example["input_ids"], example["labels"]
        assert len(ids) == len(labels) == len(example["attention_mask"])
        answer_positions = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        # prompt first, then one contiguous answer span that runs to the end
        assert answer_positions == list(range(answer_positions[0], len(ids)))
        assert all(labels[i] == ids[i] for i in answer_positions)
        prompt = tokenizer.decode(ids[: answer_positions[0]])
        answer = tokenizer.decode(ids[answer_positions[0] :])
        assert row["question"] in prompt and "#### " not in prompt
        assert answer.startswith(row["answer"]) and answer.endswith("<|end|>")


def test_truncation_is_flagged(rows, tokenizer):
    example = tokenize_for_sft(rows[0], tokenizer, max_length=16)
    assert example["truncated"] and len(example["input_ids"]) == 16
    assert not tokenize_for_sft(rows[0], tokenizer, max_length=4096)["truncated"]


def test_tokenizer_is_deterministic_and_round_trips(rows):
    texts = [r["answer"] for r in rows[:100]]
    a, b = train_offline_tokenizer(texts, vocab_size=400), train_offline_tokenizer(texts, vocab_size=400)
    assert a.get_vocab() == b.get_vocab()
    assert a.decode(a(texts[3])["input_ids"]) == texts[3]
    with pytest.raises(ValueError, match="vocab_size"):
        train_offline_tokenizer(texts, vocab_size=10)


def test_pad_collate_pads_labels_with_ignore_index(rows, tokenizer):
    features = [tokenize_for_sft(r, tokenizer, 4096) for r in rows[:3]]
    batch = pad_collate(features, tokenizer.pad_token_id)
    width = max(len(f["input_ids"]) for f in features)
    assert batch["input_ids"].shape == (3, width)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        assert batch["attention_mask"][i, n:].sum() == 0 and (batch["labels"][i, n:] == IGNORE_INDEX).all()


def test_bad_data_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_gsm8k_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_gsm8k_jsonl(bad)
    missing_field = tmp_path / "field.jsonl"
    missing_field.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"field.jsonl:1: .*'answer'"):
        read_gsm8k_jsonl(missing_field)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_gsm8k_jsonl(empty)
    with pytest.raises(ValueError, match="split must be one of"):
        bundled_gsm8k_path("validation")
