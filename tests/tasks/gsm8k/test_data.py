"""GSM8K data and chat formatting (tasks/gsm8k/data.py): the bundled sample, answer-only labels, the prefix mask, truncation, loading from a file, the bundle and the Hub."""

from __future__ import annotations

import json

import pytest

from hf_superpositional.tasks.gsm8k.data import (
    IGNORE_INDEX,
    build_sft_dataset,
    bundled_gsm8k_path,
    has_generation_blocks,
    load_gsm8k,
    pad_collate,
    prompt_token_ids,
    read_gsm8k_jsonl,
    tokenize_for_sft,
)
from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer

# A Llama-3-style template: no {% generation %} blocks, like most released instruct templates.
NO_GENERATION_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


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
    bad.write_text(json.dumps({"question": "q", "answer": "a\n#### 3"}) + "\n{not json\n")
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


def test_rows_without_a_final_answer_are_refused_at_load_with_file_and_line(tmp_path):
    rows = [{"question": "q", "answer": "2 + 2 = 4\n#### 4"}, {"question": "q", "answer": "2 + 2 = 4, so four."}]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"data.jsonl:2: the answer must end in '#### <number>'"):
        read_gsm8k_jsonl(data)
    # "#### $5" is no answer to the grader either (its number must follow the marker)
    data.write_text(json.dumps({"question": "q", "answer": "#### $5"}) + "\n")
    with pytest.raises(ValueError, match=r"data.jsonl:1: the answer must end in"):
        read_gsm8k_jsonl(data)
