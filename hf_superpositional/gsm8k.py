"""GSM8K loading, chat formatting and evaluation, shared by the recipes, the tests and users.

The bundled sample (``hf_superpositional/data``) makes every recipe runnable offline; the same code
reads the Hub dataset (``openai/gsm8k``, config ``main``) or any local JSONL with the same fields
(:func:`load_gsm8k`).

- Formatting: the question is the user turn, the worked answer (ending in ``#### N``) the assistant turn
  of the tokenizer's chat template; the loss covers the answer tokens only (:func:`tokenize_for_sft`,
  :func:`build_sft_dataset`, which also counts truncated rows).
- Evaluation: greedy, batched, left-padded generation graded in ``strict`` and ``flexible`` mode
  (:func:`generate_answers`, :func:`evaluate_generation`) and the mean held-out answer loss
  (:func:`mean_answer_loss`); both split rows between processes under ``accelerate launch``.
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
import torch.nn.functional as F

logger = logging.getLogger(__name__)

ASSISTANT_MASK_MODES = ("generation", "prefix", "auto")
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
        >>> from hf_superpositional.tokenizer import train_offline_tokenizer
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
        >>> from hf_superpositional.tokenizer import train_offline_tokenizer
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


def _check_rows(rows: Sequence[Any], where: str) -> list[dict[str, str]]:
    checked = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "answer")):
            raise ValueError(f"{where}: row {index} needs string fields 'question' and 'answer'")
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
        >>> from hf_superpositional.tokenizer import train_offline_tokenizer
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


# --------------------------------------------------------------------------------------------------------
# Evaluation: greedy generation (strict and flexible accuracy) and mean held-out loss
# --------------------------------------------------------------------------------------------------------

# End-of-turn markers of common chat templates: generation stops at whichever the vocabulary has.
_END_OF_TURN_TOKENS = ("<|end|>", "<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


def end_of_turn_token_ids(tokenizer, model=None) -> list[int]:
    """Token ids that end an assistant turn: EOS, the model's generation EOS ids and known end-of-turn tokens."""
    ids: list[int] = []

    def add(value):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, int) and item >= 0 and item not in ids:
                ids.append(item)

    add(tokenizer.eos_token_id)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        add(generation_config.eos_token_id)
    vocab = tokenizer.get_vocab()
    for token in _END_OF_TURN_TOKENS:
        if token in vocab:
            add(vocab[token])
    return ids


def _process_info() -> tuple[int, int]:
    try:
        from accelerate import PartialState

        state = PartialState()
        return state.process_index, state.num_processes
    except Exception:  # accelerate not initialisable here (e.g. no distributed env): a single process
        return 0, 1


def _shard(items: Sequence[Any], rank: int, world: int) -> tuple[list[Any], int]:
    # Strided shards padded to the same length, so every rank makes the same number of forward calls (FSDP
    # all-gathers parameters inside forward: a rank that stops early would hang the others).
    per_rank = -(-len(items) // world)
    shard = list(items[rank::world])
    shard += [items[-1]] * (per_rank - len(shard))
    return shard, per_rank


def _unshard(gathered: list[Any], n: int, world: int, per_rank: int) -> list[Any]:
    return [gathered[(i % world) * per_rank + i // world] for i in range(n)]


def _gather(values: list[Any], world: int) -> list[Any]:
    if world == 1:
        return values
    from accelerate.utils import gather_object

    return gather_object(values)


def _device_of(model) -> torch.device:
    param = next(model.parameters(), None)
    device = getattr(param, "device", torch.device("cpu"))
    return torch.device("cpu") if device.type == "meta" else device


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    questions: Sequence[str],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    progress: bool = True,
    synced_gpus: bool = False,
) -> list[str]:
    """Greedy answers to ``questions``, generated in left-padded batches with a progress bar.

    Each question is formatted as the user turn with the template's generation prompt; generation stops at
    the end-of-turn token (see :func:`end_of_turn_token_ids`) or after ``max_new_tokens``.

    Args:
        model: a causal LM (a ``PeftModel`` works too).
        tokenizer: its tokenizer (with a chat template and a pad token).
        questions: the questions.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: the generation budget per answer.
        progress: show a tqdm progress bar.
        synced_gpus: keep generating until every process is done (needed for FSDP-sharded models).

    Returns:
        The decoded answers (special tokens removed), in order.

    Example:
        >>> answers = generate_answers(model, tokenizer, ["What is 2+2?"], max_new_tokens=16)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_ids = end_of_turn_token_ids(tokenizer, model)
    # A fresh config: released instruct models ship sampling defaults (temperature, top_p) in theirs.
    generation_config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad_id, eos_token_id=stop_ids
    )
    device = _device_of(model)
    was_training = model.training
    model.eval()
    answers: list[str] = []
    batches = range(0, len(questions), batch_size)
    for start in tqdm(batches, desc="GSM8K generation", disable=not progress, unit="batch"):
        prompts = [prompt_token_ids(q, tokenizer) for q in questions[start : start + batch_size]]
        width = max(len(p) for p in prompts)
        # Left padding: every prompt ends at the same position, so new tokens line up across the batch.
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation_config,
            synced_gpus=synced_gpus,
        )
        answers.extend(tokenizer.batch_decode(output[:, width:], skip_special_tokens=True))
    model.train(was_training)
    return answers


def evaluate_generation(
    model,
    tokenizer,
    rows: Sequence[dict[str, str]],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate greedy answers to ``rows`` and grade them in ``strict`` and ``flexible`` mode.

    Under ``accelerate launch`` with several processes the rows are split between processes (every process
    must call this) and the answers gathered; each process returns the full result.

    Args:
        model: a causal LM.
        tokenizer: its tokenizer.
        rows: GSM8K rows (the ``answer`` is the reference, ending in ``#### N``).
        batch_size: prompts per ``generate`` call.
        max_new_tokens: the generation budget per answer.
        progress: show a progress bar (on the main process).

    Returns:
        ``{"accuracy_strict", "accuracy_flexible", "invalid_strict", "invalid_flexible", "num_samples",
        "predictions"}`` (``predictions``: one ``{"question", "reference", "prediction", "correct_strict",
        "correct_flexible"}`` per row).

    Example:
        >>> result = evaluate_generation(model, tokenizer, rows[:8], max_new_tokens=64)  # doctest: +SKIP
        >>> result["accuracy_strict"], result["accuracy_flexible"]  # doctest: +SKIP
    """
    from .answers import gsm8k_accuracy, is_correct

    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: nothing to evaluate")
    rank, world = _process_info()
    shard, per_rank = _shard(rows, rank, world)
    answers = generate_answers(
        model,
        tokenizer,
        [r["question"] for r in shard],
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=progress and rank == 0,
        synced_gpus=world > 1,
    )
    answers = _unshard(_gather(answers, world), len(rows), world, per_rank)
    references = [r["answer"] for r in rows]
    strict = gsm8k_accuracy(answers, references, mode="strict")
    flexible = gsm8k_accuracy(answers, references, mode="flexible")
    predictions = [
        {
            "question": r["question"],
            "reference": r["answer"],
            "prediction": a,
            "correct_strict": is_correct(a, r["answer"], "strict"),
            "correct_flexible": is_correct(a, r["answer"], "flexible"),
        }
        for r, a in zip(rows, answers, strict=True)
    ]
    return {
        "accuracy_strict": strict["accuracy"],
        "accuracy_flexible": flexible["accuracy"],
        "invalid_strict": strict["invalid"],
        "invalid_flexible": flexible["invalid"],
        "num_samples": len(rows),
        "predictions": predictions,
    }


@torch.no_grad()
def mean_answer_loss(model, features: Sequence[dict], *, pad_token_id: int, batch_size: int = 8) -> dict[str, float]:
    """Mean cross-entropy of the answer tokens of tokenized rows (held-out loss).

    ``loss`` is the mean over rows of each row's mean answer-token loss (what ``Trainer.evaluate`` reports
    as ``eval_loss`` with ``per_device_eval_batch_size=1``, and independent of ``batch_size`` here);
    ``token_loss`` weights every answer token equally. Under several processes the rows are split and the
    per-row losses gathered (every process must call this).

    Args:
        model: a causal LM.
        features: rows from :func:`build_sft_dataset` / :func:`tokenize_for_sft` (``input_ids``, ``labels``).
        pad_token_id: the padding id.
        batch_size: rows per forward pass.

    Returns:
        ``{"loss": float, "token_loss": float, "num_samples": int, "num_tokens": int}``.

    Example:
        >>> mean_answer_loss(model, dataset, pad_token_id=tok.pad_token_id)["loss"]  # doctest: +SKIP
    """
    features = [dict(f) for f in features]
    if not features:
        raise ValueError("features is empty: no held-out rows to compute a loss on")
    rank, world = _process_info()
    shard, per_rank = _shard(features, rank, world)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    per_row: list[tuple[float, int]] = []
    for start in range(0, len(shard), batch_size):
        batch = pad_collate(shard[start : start + batch_size], pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        # Causal LM: position t predicts token t + 1.
        targets = batch["labels"][:, 1:]
        nll = F.cross_entropy(
            logits[:, :-1].transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )
        counts = (targets != IGNORE_INDEX).sum(dim=1)
        sums = nll.sum(dim=1)
        per_row.extend((s.item(), int(c.item())) for s, c in zip(sums, counts, strict=True))
    model.train(was_training)
    per_row = _unshard(_gather(per_row, world), len(features), world, per_rank)
    if any(count == 0 for _, count in per_row):
        raise ValueError("a row has no answer tokens (labels all -100); build it with build_sft_dataset")
    total_tokens = sum(count for _, count in per_row)
    return {
        "loss": sum(s / c for s, c in per_row) / len(per_row),
        "token_loss": sum(s for s, _ in per_row) / total_tokens,
        "num_samples": len(per_row),
        "num_tokens": total_tokens,
    }
