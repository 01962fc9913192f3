"""GSM8K evaluation: greedy generation graded in ``strict`` and ``flexible`` mode, and the held-out loss.

- :func:`generate_answers`, :func:`evaluate_generation`: greedy, batched, left-padded generation, graded
  with :mod:`.answers`;
- :func:`mean_answer_loss`: the mean loss on the answer tokens of held-out rows;
- :func:`evaluate_and_save`: what the GSM8K training recipes do after training (generation metrics, logs,
  ``generations.jsonl``, the card's results, save or push), written once for the Trainer and TRL recipes.

Both split rows between processes under ``accelerate launch`` (:func:`shard_rows`, :func:`unshard_rows`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ...integrations.model_card import ModelCardInfo
from .answers import gsm8k_accuracy, is_correct
from .data import IGNORE_INDEX, pad_collate, prompt_token_ids

logger = logging.getLogger(__name__)

__all__ = [
    "GENERATION_METRICS",
    "end_of_turn_token_ids",
    "evaluate_and_save",
    "evaluate_generation",
    "generate_answers",
    "mean_answer_loss",
    "shard_rows",
    "unshard_rows",
]


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


def shard_rows(items: Sequence[Any], rank: int, world: int) -> tuple[list[Any], int]:
    """Rank ``rank``'s strided share of ``items``, padded to the same length on every rank, and that length.

    Every rank then makes the same number of forward calls (FSDP all-gathers parameters inside forward: a
    rank that stopped early would hang the others); :func:`unshard_rows` drops the padding again.

    Example:
        >>> shard_rows([0, 1, 2, 3, 4], rank=1, world=2)
        ([1, 3, 4], 3)
    """
    per_rank = -(-len(items) // world)
    shard = list(items[rank::world])
    shard += [items[-1]] * (per_rank - len(shard))
    return shard, per_rank


def unshard_rows(gathered: list[Any], n: int, world: int, per_rank: int) -> list[Any]:
    """The ``n`` results in their original order, from every rank's :func:`shard_rows` results concatenated.

    Example:
        >>> unshard_rows([0, 2, 4, 1, 3, 4], n=5, world=2, per_rank=3)
        [0, 1, 2, 3, 4]
    """
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
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: nothing to evaluate")
    rank, world = _process_info()
    shard, per_rank = shard_rows(rows, rank, world)
    answers = generate_answers(
        model,
        tokenizer,
        [r["question"] for r in shard],
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=progress and rank == 0,
        synced_gpus=world > 1,
    )
    answers = unshard_rows(_gather(answers, world), len(rows), world, per_rank)
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
    shard, per_rank = shard_rows(features, rank, world)
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
    per_row = unshard_rows(_gather(per_row, world), len(features), world, per_rank)
    if any(count == 0 for _, count in per_row):
        raise ValueError("a row has no answer tokens (labels all -100); build it with build_sft_dataset")
    total_tokens = sum(count for _, count in per_row)
    return {
        "loss": sum(s / c for s, c in per_row) / len(per_row),
        "token_loss": sum(s for s, _ in per_row) / total_tokens,
        "num_samples": len(per_row),
        "num_tokens": total_tokens,
    }


GENERATION_METRICS = {
    "gsm8k_accuracy_strict": "accuracy_strict",
    "gsm8k_accuracy_flexible": "accuracy_flexible",
    "gsm8k_invalid_strict": "invalid_strict",
    "gsm8k_invalid_flexible": "invalid_flexible",
    "gsm8k_generation_samples": "num_samples",
}
"""The evaluation metrics a GSM8K recipe reports from :func:`evaluate_generation`, by the result key they hold."""

_CARD_METRICS = ("gsm8k_accuracy_strict", "gsm8k_accuracy_flexible", "gsm8k_generation_samples")


def evaluate_and_save(
    trainer,
    tokenizer,
    rows: Sequence[dict[str, str]],
    generation,
    *,
    train_metrics: dict[str, Any],
    eval_metrics: dict[str, Any],
    eval_loss_label: str,
) -> dict[str, Any]:
    """Finish a GSM8K training run: grade generations, log, and save (or push) the model with its card.

    Generates greedy answers to ``rows`` (the first ``generation.generation_eval_samples``, all when ``None``;
    none when that is 0), adds :data:`GENERATION_METRICS` to ``eval_metrics``, logs and saves them as the
    Trainer does (``eval_results.json``), writes ``generations.jsonl`` on the main process, puts the training
    loss, the held-out loss (as ``eval_loss_label``) and the accuracies into the card's results, then pushes to
    the Hub (``args.push_to_hub``: save, card, upload) or saves the model and writes the card locally.

    Args:
        trainer: a trained ``SuperpositionalTrainer`` (or TRL's subclass of it); its ``model_card_info`` gets the
            results.
        tokenizer: the model's tokenizer.
        rows: held-out GSM8K rows.
        generation: the recipe's ``GenerationEvalArguments`` (``generation_eval_samples``,
            ``generation_batch_size``, ``max_new_tokens``).
        train_metrics: ``trainer.train(...).metrics``.
        eval_metrics: the held-out loss metrics so far (with ``eval_loss``); updated in place.
        eval_loss_label: what ``eval_loss`` measures, as the card should name it.

    Returns:
        ``eval_metrics``, with the generation metrics added.

    Example:
        >>> metrics = evaluate_and_save(trainer, tokenizer, eval_rows, args.generation, train_metrics=train,
        ...                             eval_metrics={"eval_loss": 0.9}, eval_loss_label="eval_loss")  # doctest: +SKIP
    """
    training = trainer.args
    limit = generation.generation_eval_samples
    rows = list(rows) if limit is None else list(rows)[:limit]
    generations = None
    if rows:
        generations = evaluate_generation(
            trainer.model,
            tokenizer,
            rows,
            batch_size=generation.generation_batch_size,
            max_new_tokens=generation.max_new_tokens,
            progress=not training.disable_tqdm,
        )
        eval_metrics.update({name: generations[key] for name, key in GENERATION_METRICS.items()})
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    if generations is not None and trainer.is_world_process_zero():
        with open(Path(training.output_dir) / "generations.jsonl", "w", encoding="utf-8") as handle:
            for prediction in generations["predictions"]:
                handle.write(json.dumps(prediction) + "\n")
    if trainer.model_card_info is None:
        trainer.model_card_info = ModelCardInfo()
    card = trainer.model_card_info
    card.results = {
        "train_loss (mean over training)": train_metrics["train_loss"],
        eval_loss_label: eval_metrics["eval_loss"],
    }
    card.results.update({key: eval_metrics[key] for key in _CARD_METRICS if key in eval_metrics})
    if training.push_to_hub:
        trainer.push_to_hub(commit_message="End of training")  # saves, writes the card, uploads output_dir
    else:
        trainer.save_model()
        trainer.create_model_card()  # README.md: exactly the card a push would upload
    return eval_metrics
