"""GSM8K loading and chat formatting, shared by the recipes, the tests and users.

The bundled sample (``hf_superpositional/tasks/gsm8k/data/``) makes every recipe runnable offline; the same code
reads the Hub dataset (``openai/gsm8k``, config ``main``) or any local JSONL with the same fields
(:func:`load_gsm8k`).

- Formatting: the question is the user turn, the worked answer (ending in ``#### N``) the assistant turn
  of the tokenizer's chat template; the loss covers the answer tokens only (:func:`tokenize_for_sft`,
  :func:`build_sft_dataset`, which also counts truncated rows).
- Evaluation is :mod:`.evaluation`'s.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .answers import extract_strict_answer

logger = logging.getLogger(__name__)

ASSISTANT_MASK_MODES = ("auto", "generation", "prefix")
BUNDLED_SOURCE = "bundled"  # `source` of load_gsm8k selecting the sample shipped in the package
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
    return Path(str(resources.files(__package__) / "data" / BUNDLED_SPLITS[split]))


def read_gsm8k_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Read GSM8K rows from a JSONL file, validating each line.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not JSON, lacks a string ``question``/``answer``, or its answer does not end in
            the ``#### <number>`` that grading reads (the message gives the ``file:line``), or the file holds no
            rows.

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
            _check_answer(row["answer"], f"{path}:{line_number}")
            rows.append({"question": row["question"], "answer": row["answer"]})
    if not rows:
        raise ValueError(f"{path}: no GSM8K rows (the split is empty)")
    return rows


def chat_messages(row: dict[str, str]) -> list[dict[str, str]]:
    """The question as the user turn, the worked answer (ending in ``#### N``) as the assistant turn."""
    return [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]


def tokenize_for_sft(
    row: dict[str, str], tokenizer, max_length: int, assistant_mask: str = "generation"
) -> dict[str, list[int] | bool]:
    """Tokenize one row through the chat template with loss on the assistant tokens only.

    Prompt tokens get label ``-100``. Rows longer than ``max_length`` are truncated and flagged with
    ``truncated=True`` so callers can count them.

    ``assistant_mask`` says how the answer tokens are found:

    - ``"generation"`` (default): the template's ``{% generation %}`` blocks
      (``return_assistant_tokens_mask=True``); exact, but many released templates (Llama 3's among them)
      have no such blocks.
    - ``"prefix"``: every token after the prompt rendered with ``add_generation_prompt=True``; works with any
      template whose rendering of the full conversation starts with that prompt (checked; a mismatch raises).
    - ``"auto"``: ``"generation"`` when the template has ``{% generation %}`` blocks, else ``"prefix"``.

    Example:
        >>> from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer
        >>> tok = train_offline_tokenizer(["What is 2+2?", "2+2=4 #### 4"], vocab_size=300)
        >>> ex = tokenize_for_sft({"question": "What is 2+2?", "answer": "#### 4"}, tok, 64)
        >>> ex["labels"][0]
        -100
    """
    if assistant_mask not in ASSISTANT_MASK_MODES:
        raise ValueError(f"assistant_mask must be one of {list(ASSISTANT_MASK_MODES)}, got {assistant_mask!r}")
    if assistant_mask == "auto":
        assistant_mask = "generation" if has_generation_blocks(tokenizer) else "prefix"
    if assistant_mask == "generation":
        encoded = tokenizer.apply_chat_template(
            chat_messages(row), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        input_ids = list(encoded["input_ids"])
        keep_mask = list(encoded["assistant_masks"])
        if not any(keep_mask):
            raise ValueError(
                "the tokenizer's chat template marks no assistant tokens; it needs {% generation %} blocks "
                "so the loss can be restricted to the answer (or use assistant_mask='prefix')"
            )
    else:
        prompt_ids = prompt_token_ids(row["question"], tokenizer)
        input_ids = list(tokenizer.apply_chat_template(chat_messages(row), tokenize=True, return_dict=True)["input_ids"])
        if input_ids[: len(prompt_ids)] != prompt_ids or len(input_ids) == len(prompt_ids):
            raise ValueError(
                "assistant_mask='prefix': the chat template's rendering of the conversation does not start with "
                "its generation prompt, so the answer tokens cannot be located; use a template with "
                "{% generation %} blocks and assistant_mask='generation'"
            )
        keep_mask = [0] * len(prompt_ids) + [1] * (len(input_ids) - len(prompt_ids))
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(input_ids, keep_mask, strict=True)]
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


_GENERATION_BLOCK_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_blocks(tokenizer) -> bool:
    """Whether the tokenizer's chat template marks assistant content with ``{% generation %}`` blocks.

    Example:
        >>> from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer
        >>> has_generation_blocks(train_offline_tokenizer(["a b c"], vocab_size=300))
        True
    """
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: the default one is what apply_chat_template uses
        template = template.get("default")
    return isinstance(template, str) and _GENERATION_BLOCK_RE.search(template) is not None


def prompt_token_ids(question: str, tokenizer) -> list[int]:
    """Token ids of the user turn plus the generation prompt: what the model sees before answering."""
    messages = [{"role": "user", "content": question}]
    return list(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    )


def _check_answer(answer: str, where: str) -> None:
    # Grading (strict, the authors' grader) reads the reference's `#### <number>`: a row without one would
    # only fail after training, in evaluation, so it is refused when the data is read.
    if extract_strict_answer(answer) is None:
        raise ValueError(
            f"{where}: the answer must end in '#### <number>' (the GSM8K final answer grading reads), got "
            f"...{answer[-60:]!r}"
        )


def _check_rows(rows: Sequence[Any], where: str) -> list[dict[str, str]]:
    checked = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "answer")):
            raise ValueError(f"{where}: row {index} needs string fields 'question' and 'answer'")
        _check_answer(row["answer"], f"{where}: row {index}")
        checked.append({"question": row["question"], "answer": row["answer"]})
    if not checked:
        raise ValueError(f"{where}: no GSM8K rows (the split is empty)")
    return checked


def load_gsm8k(
    source: str = "openai/gsm8k",
    split: str = "train",
    *,
    config_name: str = "main",
    data_file: str | Path | None = None,
    max_samples: int | None = None,
) -> list[dict[str, str]]:
    """GSM8K rows (``{"question", "answer"}``) from a local JSONL, the bundled sample or the Hub.

    Args:
        source: a Hub dataset id (``"openai/gsm8k"``), or ``"bundled"`` for the sample shipped in the package
            (splits ``train`` and ``test``). Ignored when ``data_file`` is given.
        split: the split to read.
        config_name: the Hub dataset's config (GSM8K: ``"main"``).
        data_file: a local JSONL file; read with :func:`read_gsm8k_jsonl` (line-numbered errors).
        max_samples: keep only the first ``max_samples`` rows.

    Returns:
        The rows, in file order.

    Raises:
        FileNotFoundError: ``data_file`` does not exist.
        ValueError: a malformed row (line or row number given), an empty split, an unknown bundled split.
        RuntimeError: the Hub dataset cannot be loaded (e.g. offline without a cached copy).

    Example:
        >>> rows = load_gsm8k("bundled", "test", max_samples=3)
        >>> len(rows), rows[0]["answer"].split("#### ")[-1]
        (3, '18')
    """
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be None or an integer >= 1, got {max_samples!r}")
    if data_file is not None:
        rows = read_gsm8k_jsonl(data_file)
    elif source == BUNDLED_SOURCE:
        rows = read_gsm8k_jsonl(bundled_gsm8k_path(split))
    else:
        # Imported here: only Hub ids need `datasets`' download machinery.
        import datasets

        try:
            dataset = datasets.load_dataset(source, config_name, split=split)
        except (ValueError, KeyError) as error:  # unknown split / config: the user's input, say so plainly
            raise ValueError(f"cannot read split {split!r} of {source!r} (config {config_name!r}): {error}") from error
        except Exception as error:  # network, offline mode, authentication: datasets raises many types
            raise RuntimeError(
                f"could not load {source!r} (config {config_name!r}, split {split!r}) from the Hugging Face Hub: "
                f"{error}. Offline, use dataset_name='bundled' or train_file/eval_file with local JSONL."
            ) from error
        rows = _check_rows(list(dataset), f"{source}[{split}]")
    if max_samples is not None:
        rows = rows[:max_samples]
    return rows


def build_sft_dataset(rows: Sequence[dict[str, str]], tokenizer, max_length: int, assistant_mask: str = "auto"):
    """Tokenize rows for supervised fine-tuning; report truncation.

    Rows longer than ``max_length`` are truncated; rows whose answer is cut away entirely (no label token
    left, which would make a loss of 0/0) are dropped. Both counts are logged.

    Args:
        rows: GSM8K rows.
        tokenizer: a tokenizer with a chat template.
        max_length: context length.
        assistant_mask: see :func:`tokenize_for_sft`.

    Returns:
        ``(dataset, stats)``: a ``datasets.Dataset`` with ``input_ids``, ``attention_mask``, ``labels``, and
        ``{"rows": n, "truncated": t, "dropped": d}``.

    Example:
        >>> from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer
        >>> rows = load_gsm8k("bundled", "test", max_samples=4)
        >>> tok = train_offline_tokenizer([r["question"] + r["answer"] for r in rows], vocab_size=300)
        >>> dataset, stats = build_sft_dataset(rows, tok, max_length=200)
        >>> stats, len(dataset)
        ({'rows': 4, 'truncated': 2, 'dropped': 1}, 3)
    """
    import datasets

    features, truncated, dropped = [], 0, 0
    for row in rows:
        example = tokenize_for_sft(row, tokenizer, max_length, assistant_mask=assistant_mask)
        truncated += bool(example.pop("truncated"))
        if all(label == IGNORE_INDEX for label in example["labels"][1:]):
            dropped += 1  # the shifted loss sees labels[1:]; none left means nothing to learn from this row
            continue
        features.append(example)
    stats = {"rows": len(rows), "truncated": truncated, "dropped": dropped}
    logger.info(
        "GSM8K: %d rows, %d truncated to %d tokens, %d dropped (answer entirely truncated)",
        len(rows), truncated, max_length, dropped,
    )
    if not features:
        raise ValueError(f"every row lost its answer to truncation at max_length={max_length}; raise max_length")
    return datasets.Dataset.from_list(features), stats
