#!/usr/bin/env python
"""Evaluate a GSM8K fine-tune: greedy generation accuracy (strict and flexible) and mean held-out loss.

    python recipes/gsm8k_evaluate.py --model_path outputs/gsm8k_tiny_offline \\
        --config recipes/configs/gsm8k_tiny_offline.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/gsm8k_evaluate.py \\
        --model_path outputs/gsm8k_llama32_1b --dataset_name openai/gsm8k --eval_split test

``--model_path`` is a folder (or Hub id) written by ``gsm8k_finetune.py``: a full model, or a LoRA adapter
(loaded onto its base, patched with the saved quantum-attention configuration). ``--config`` may be the
training YAML: keys this script does not use (model, training) are ignored, the data and generation keys
apply. Generation is greedy, batched (left-padded) and shows a progress bar; under ``accelerate launch``
with several processes the rows are split between them.

Accuracy: ``strict`` grades exactly as the dataset authors' grader (openai/grade-school-math: the
``#### N`` of the answer, commas removed, compared as strings; no ``####`` is wrong); ``flexible`` takes
the last number of the answer (``$`` and commas removed) and compares numerically. Mean held-out loss:
the mean over rows of each row's mean answer-token cross-entropy (``eval_loss``), plus the
token-weighted mean (``eval_token_loss``).

Writes a JSON report (``--output_file``, default ``<model_path>/gsm8k_evaluation.json``) and the
generations next to it (``*.generations.jsonl``); exits with status 2 on bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hf_superpositional  # noqa: F401  (quantum attention and its loading hooks)
from hf_superpositional.cli import ArgumentsError, parse_args_and_config
from hf_superpositional.integrations.hub import load_trained_model
from hf_superpositional.tasks.gsm8k.arguments import (
    DataArguments,
    EvaluationArguments,
    GenerationEvalArguments,
    check_model_path,
)
from hf_superpositional.tasks.gsm8k.data import build_sft_dataset
from hf_superpositional.tasks.gsm8k.evaluation import evaluate_generation, mean_answer_loss
from hf_superpositional.tasks.gsm8k.model import check_context_length

ARGUMENT_TYPES = (EvaluationArguments, DataArguments, GenerationEvalArguments)


def _training_only_types() -> tuple[type, ...]:
    """Argument groups of the training recipes: their keys may appear in ``--config`` and are ignored here."""
    from transformers import TrainingArguments

    from hf_superpositional.attention.config import QuantumAttentionConfig
    from hf_superpositional.tasks.gsm8k.arguments import CompareArguments, ModelArguments

    return (ModelArguments, QuantumAttentionConfig, TrainingArguments, CompareArguments)


def load_model_and_tokenizer(model_path: str) -> tuple[Any, Any]:
    """The tokenizer (with a pad token) and the model (full or LoRA adapter on its base) at ``model_path``.

    Raises:
        ArgumentsError: ``model_path`` is not a local path and loading it as a Hub id failed (the message
            keeps the loader's first line: offline, no such repository, ...).
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as error:
        if Path(model_path).exists():
            raise  # a local folder that is not a model: transformers' message names the missing file
        # Shaped like a Hub id (check_model_path passed) but neither here nor loadable from the Hub.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArgumentsError(
            f"`model_path` {model_path!r} not found (neither a local folder nor a Hub id: {reason})"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return load_trained_model(model_path), tokenizer


def evaluate_model(
    evaluation: EvaluationArguments,
    data: DataArguments,
    generation: GenerationEvalArguments,
    rows=None,
    loaded: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Load the model (unless ``loaded`` is ``(model, tokenizer)``), compute the held-out loss and the
    generation accuracy; return the report."""
    import torch
    from accelerate import PartialState

    if rows is None:
        rows = data.load_rows("eval")
    model, tokenizer = loaded if loaded is not None else load_model_and_tokenizer(evaluation.model_path)
    check_context_length(getattr(model, "config", None), data.max_length)
    device = torch.device(evaluation.device) if evaluation.device else PartialState().device
    model.to(device)
    features, stats = build_sft_dataset(rows, tokenizer, data.max_length, data.assistant_mask)
    loss = mean_answer_loss(
        model, features, pad_token_id=tokenizer.pad_token_id, batch_size=evaluation.loss_batch_size
    )
    report: dict[str, Any] = {
        "model_path": evaluation.model_path,
        "dataset": data.eval_file or data.dataset_name,
        "split": None if data.eval_file else data.eval_split,
        "num_rows": len(rows),
        "rows_truncated": stats["truncated"],
        "rows_dropped": stats["dropped"],
        "max_length": data.max_length,
        "eval_loss": loss["loss"],
        "eval_token_loss": loss["token_loss"],
        "eval_loss_rows": loss["num_samples"],
    }
    n = generation.generation_eval_samples
    graded = rows if n is None else rows[:n]
    if graded:
        result = evaluate_generation(
            model,
            tokenizer,
            graded,
            batch_size=generation.generation_batch_size,
            max_new_tokens=generation.max_new_tokens,
        )
        report.update(
            accuracy_strict=result["accuracy_strict"],
            accuracy_flexible=result["accuracy_flexible"],
            invalid_strict=result["invalid_strict"],
            invalid_flexible=result["invalid_flexible"],
            generation_samples=result["num_samples"],
            max_new_tokens=generation.max_new_tokens,
            predictions=result["predictions"],
        )
    return report


def _output_path(evaluation: EvaluationArguments) -> Path:
    if evaluation.output_file:
        return Path(evaluation.output_file)
    if Path(evaluation.model_path).is_dir():
        return Path(evaluation.model_path) / "gsm8k_evaluation.json"
    return Path(evaluation.model_path.replace("/", "__") + "-gsm8k_evaluation.json")


def write_report(report: dict[str, Any], path: Path) -> None:
    """The JSON report, with the per-row generations in a JSONL beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    predictions = report.pop("predictions", None)
    if predictions is not None:
        generations = path.with_suffix(".generations.jsonl")
        with open(generations, "w", encoding="utf-8") as handle:
            for row in predictions:
                handle.write(json.dumps(row) + "\n")
        report["generations_file"] = str(generations)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input)."""
    from accelerate import PartialState

    prog = "gsm8k_evaluate.py"
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        evaluation, data, generation = parse_args_and_config(
            ARGUMENT_TYPES, argv, prog=prog, ignored_config_types=_training_only_types()
        )
        check_model_path(evaluation.model_path)
        rows = data.load_rows("eval")
    except (ValueError, FileNotFoundError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    try:
        loaded = load_model_and_tokenizer(evaluation.model_path)
    # Only the "not found" case: any other loading error keeps its traceback.
    except ArgumentsError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    report = evaluate_model(evaluation, data, generation, rows=rows, loaded=loaded)
    if PartialState().is_main_process:
        path = _output_path(evaluation)
        write_report(report, path)
        for key in (
            "eval_loss",
            "eval_token_loss",
            "accuracy_strict",
            "accuracy_flexible",
            "generation_samples",
        ):
            if key in report:
                print(
                    f"{key:>20} = {report[key]:.4f}"
                    if isinstance(report[key], float)
                    else f"{key:>20} = {report[key]}"
                )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
