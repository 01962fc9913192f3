"""GSM8K loading and chat formatting, shared by the recipes, the tests and users.

The bundled sample (``hf_superpositional/data``) makes every recipe runnable offline; the same code
reads the Hub dataset (``openai/gsm8k``, config ``main``) or any local JSONL with the same fields.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

BUNDLED_SPLITS = {"train": "gsm8k_train_sample.jsonl", "test": "gsm8k_test_sample.jsonl"}
IGNORE_INDEX = -100  # label value the Hugging Face losses skip


def bundled_gsm8k_path(split: str = "train") -> Path:
    """Path of the GSM8K sample shipped inside the package (MIT licence beside it).

    Example:
        >>> bundled_gsm8k_path("test").name
        'gsm8k_test_sample.jsonl'
    """
    if split not in BUNDLED_SPLITS:
        raise ValueError(f"split must be one of {sorted(BUNDLED_SPLITS)}, got {split!r}")
    return Path(str(resources.files("hf_superpositional") / "data" / BUNDLED_SPLITS[split]))


def read_gsm8k_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Read GSM8K rows from a JSONL file, validating each line.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not JSON or lacks a string ``question``/``answer`` (the message gives the
            line number), or the file holds no rows.

    Example:
        >>> rows = read_gsm8k_jsonl(bundled_gsm8k_path("test"))
        >>> sorted(rows[0])
        ['answer', 'question']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GSM8K data file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "answer")):
                raise ValueError(f"{path}:{line_number}: each row needs string fields 'question' and 'answer'")
            rows.append({"question": row["question"], "answer": row["answer"]})
    if not rows:
        raise ValueError(f"{path}: no GSM8K rows (the split is empty)")
    return rows


def chat_messages(row: dict[str, str]) -> list[dict[str, str]]:
    """The question as the user turn, the worked answer (ending in ``#### N``) as the assistant turn."""
    return [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]


def tokenize_for_sft(row: dict[str, str], tokenizer, max_length: int) -> dict[str, list[int] | bool]:
    """Tokenize one row through the chat template with loss on the assistant tokens only.

    Prompt tokens get label ``-100``. Rows longer than ``max_length`` are truncated and flagged with
    ``truncated=True`` so callers can count them.

    Example:
        >>> from hf_superpositional.tokenizer import train_offline_tokenizer
        >>> tok = train_offline_tokenizer(["What is 2+2?", "2+2=4 #### 4"], vocab_size=300)
        >>> ex = tokenize_for_sft({"question": "What is 2+2?", "answer": "#### 4"}, tok, 64)
        >>> ex["labels"][0]
        -100
    """
    encoded = tokenizer.apply_chat_template(
        chat_messages(row), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    input_ids = list(encoded["input_ids"])
    assistant_mask = list(encoded["assistant_masks"])
    if not any(assistant_mask):
        raise ValueError(
            "the tokenizer's chat template marks no assistant tokens; it needs {% generation %} blocks "
            "so the loss can be restricted to the answer"
        )
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(input_ids, assistant_mask)]
    truncated = len(input_ids) > max_length
    return {
        "input_ids": input_ids[:max_length],
        "attention_mask": [1] * min(len(input_ids), max_length),
        "labels": labels[:max_length],
        "truncated": truncated,
    }


def pad_collate(features: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch of tokenized rows (labels padded with -100)."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        pad = width - len(f["input_ids"])
        batch["input_ids"].append(list(f["input_ids"]) + [pad_token_id] * pad)
        batch["attention_mask"].append(list(f["attention_mask"]) + [0] * pad)
        batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * pad)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
