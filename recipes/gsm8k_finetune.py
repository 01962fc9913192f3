#!/usr/bin/env python
"""Fine-tune a causal LM on GSM8K with Superpositional Gradient Descent and quantum attention.

The paper's headline run (Table I / Fig. 2, settings in Table III): Llama-3.2-1B-Instruct, one epoch of
GSM8K, ``superpositional_adamw`` against AdamW, quantum attention with 4 qubits and depth 2.

    # offline, CPU, a few minutes: tiny Llama built from a config, tokenizer trained on the bundled sample
    accelerate launch --config_file recipes/accelerate/cpu.yaml recipes/gsm8k_finetune.py \\
        --config recipes/configs/gsm8k_tiny_offline.yaml
    # the paper's run on one GPU (Hub access to the gated model needed)
    accelerate launch --config_file recipes/accelerate/single_gpu.yaml recipes/gsm8k_finetune.py \\
        --config recipes/configs/gsm8k_llama32_1b.yaml
    # any flag overrides the file, e.g. the AdamW baseline:
    ... --config recipes/configs/gsm8k_llama32_1b.yaml --optim adamw_torch --optim_args "" --output_dir out/adamw

Arguments: ``ModelArguments``, ``DataArguments``, ``GenerationEvalArguments`` (hf_superpositional.tasks.gsm8k.arguments),
``QuantumAttentionConfig`` and ``TrainingArguments``, from ``--config file.yaml`` and/or flags (``--help``).
Without ``--config`` the paper's preset applies (``recipes/configs/gsm8k_llama32_1b.yaml``: Llama-3.2-1B-Instruct,
fp16, lr 2e-5, 500 warm-up steps, SuperpositionalAdamW with quantum_weight 0.1), never transformers' own
defaults. ``optim_args`` that the chosen ``optim`` does not take (the preset's ``quantum_weight`` with
``--optim adamw_torch``) are an error: clear them with ``--optim_args ""``.

Leaves in ``output_dir``: the model (or LoRA adapter) and tokenizer, ``checkpoint-*`` (per ``save_strategy``),
``README.md`` (the model card that ``--push_to_hub`` uploads), ``recipe.log``, ``trainer_state.json`` (log
history), ``train_results.json``, ``eval_results.json`` (``eval_loss``: the mean over held-out rows of each row's mean
answer-token loss, the same number ``gsm8k_evaluate.py`` reports; strict and flexible GSM8K accuracy), ``all_results.json`` and ``generations.jsonl``. Bad input (missing or malformed data, empty
split, unknown config key, unknown or abbreviated flag, bad ``optim_args``) prints one clear error line and
exits with status 2; argument errors are caught before any data is loaded.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers
from transformers import TrainerCallback, TrainingArguments, set_seed

import hf_superpositional  # noqa: F401  (registers optim names, quantum attention and the loading hooks)
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.patch import apply_quantum_attention
from hf_superpositional.cli import parse_args_and_config
from hf_superpositional.integrations import ModelCardInfo, SuperpositionalTrainer
from hf_superpositional.tasks.gsm8k.arguments import DataArguments, GenerationEvalArguments, ModelArguments
from hf_superpositional.tasks.gsm8k.data import build_sft_dataset, pad_collate
from hf_superpositional.tasks.gsm8k.evaluation import evaluate_and_save, mean_answer_loss
from hf_superpositional.tasks.gsm8k.model import (
    check_context_length,
    load_model,
    lora_config,
    save_built_base,
)
from hf_superpositional.tasks.gsm8k.tokenizer import load_tokenizer

logger = logging.getLogger("gsm8k_finetune")

ARGUMENT_TYPES = (
    ModelArguments,
    DataArguments,
    GenerationEvalArguments,
    QuantumAttentionConfig,
    TrainingArguments,
)
PAPER_CONFIG = Path(__file__).resolve().parent / "configs" / "gsm8k_llama32_1b.yaml"
"""What runs without ``--config``: the paper's GSM8K preset (Table III), not transformers' defaults."""


@dataclass
class RecipeArgs:
    """The five parsed argument groups."""

    model: ModelArguments
    data: DataArguments
    generation: GenerationEvalArguments
    quantum: QuantumAttentionConfig
    training: TrainingArguments


@dataclass
class PreparedData:
    """Rows, tokenizer and tokenized datasets: everything that depends only on the input."""

    train_rows: list[dict[str, str]]
    eval_rows: list[dict[str, str]]
    tokenizer: Any
    train_dataset: Any
    eval_dataset: Any
    train_stats: dict[str, int]
    eval_stats: dict[str, int]


def parse_args(argv: list[str] | None = None, prog: str = "gsm8k_finetune.py") -> RecipeArgs:
    """Parse the recipe's arguments from ``--config`` (default: the paper's preset, :data:`PAPER_CONFIG`) and flags."""
    return RecipeArgs(*parse_args_and_config(ARGUMENT_TYPES, argv, prog=prog, default_config=PAPER_CONFIG))


def prepare_data(args: RecipeArgs) -> PreparedData:
    """Load the GSM8K splits, the tokenizer, and tokenize (input errors surface here, before any training)."""
    data = args.data
    train_rows = data.load_rows("train")
    eval_rows = data.load_rows("eval")
    tokenizer = load_tokenizer(args.model, (r["question"] + "\n" + r["answer"] for r in train_rows))
    train_dataset, train_stats = build_sft_dataset(
        train_rows, tokenizer, data.max_length, data.assistant_mask
    )
    eval_dataset, eval_stats = build_sft_dataset(eval_rows, tokenizer, data.max_length, data.assistant_mask)
    return PreparedData(
        train_rows, eval_rows, tokenizer, train_dataset, eval_dataset, train_stats, eval_stats
    )


class _LogToFile(TrainerCallback):
    """Mirror every Trainer log entry (losses, learning rate, quantum/... values) into ``recipe.log``."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logger.info("step %d: %s", state.global_step, json.dumps(logs, default=str))


def _attach_log_file(output_dir: str, is_main: bool) -> list[tuple[logging.Logger, logging.Handler]]:
    """Copy the recipe, package and transformers logs into ``output_dir/recipe.log`` (main process only)."""
    level = logging.INFO if is_main else logging.WARNING
    logger.setLevel(level)
    logging.getLogger("hf_superpositional").setLevel(level)
    if not is_main:
        return []
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(Path(output_dir) / "recipe.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    attached = []
    # transformers' library logger does not propagate to the root, so it gets the handler directly.
    for target in (logger, logging.getLogger("hf_superpositional"), transformers.utils.logging.get_logger()):
        target.addHandler(handler)
        attached.append((target, handler))
    return attached


def build_model(args: RecipeArgs, tokenizer) -> Any:
    """The model to train: loaded or built, patched with quantum attention, wrapped with LoRA if asked."""
    set_seed(args.training.seed)  # built models take their weights from the seeded global RNG
    model = load_model(args.model, tokenizer)
    check_context_length(model.config, args.data.max_length)
    if args.model.quantum_attention:
        model = apply_quantum_attention(model, args.quantum)
    if not args.model.use_lora:
        return model
    from peft import get_peft_model

    base_dir = save_built_base(model, tokenizer, args.model, args.training.output_dir, args.training.process_index == 0)
    peft_model = get_peft_model(model, lora_config(args.model))
    if base_dir is not None:  # SuperpositionalTrainer records it relative to each saved adapter folder
        peft_model.peft_config["default"].base_model_name_or_path = str(base_dir)
    return peft_model


def run(args: RecipeArgs, data: PreparedData) -> tuple[dict[str, Any], SuperpositionalTrainer]:
    """Train, evaluate (held-out loss, generation accuracy), save or push; return the results and the Trainer."""
    training = args.training
    attached = _attach_log_file(training.output_dir, training.process_index == 0)
    try:
        for split, stats in (("training", data.train_stats), ("evaluation", data.eval_stats)):
            logger.info(
                "%s rows: %d, %d truncated to %d tokens, %d dropped (no answer token left)",
                split,
                stats["rows"],
                stats["truncated"],
                args.data.max_length,
                stats["dropped"],
            )
        model = build_model(args, data.tokenizer)
        card = ModelCardInfo(
            base_model=args.model.base_model_name,
            dataset=args.data.card_dataset,
            dataset_note=args.data.card_dataset_note,
            dataset_config=args.data.dataset_config_name if args.data.train_file is None else None,
            train_split=args.data.train_split,
            max_length=args.data.max_length,
            tags=["gsm8k", "math"],
            notes=(
                "Data formatting: the question is the user turn and the worked answer (ending in `#### N`) the "
                "assistant turn of the tokenizer's chat template; the loss covers the answer tokens only."
            ),
        )
        trainer = SuperpositionalTrainer(
            model=model,
            args=training,
            train_dataset=data.train_dataset,
            eval_dataset=data.eval_dataset,
            data_collator=functools.partial(pad_collate, pad_token_id=data.tokenizer.pad_token_id),
            processing_class=data.tokenizer,
            callbacks=[_LogToFile()],
            model_card_info=card,
        )
        logger.info(
            "model: %s, %d trainable of %d parameters, optimizer %s",
            type(model).__name__,
            sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()),
            getattr(training.optim, "value", training.optim),
        )
        train_output = trainer.train(resume_from_checkpoint=training.resume_from_checkpoint)
        train_metrics = dict(train_output.metrics)
        train_metrics.update(
            train_samples=len(data.train_dataset),
            train_rows_truncated=data.train_stats["truncated"],
            train_rows_dropped=data.train_stats["dropped"],
        )
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()

        # eval_loss means what gsm8k_evaluate.py reports: the mean over held-out rows of each row's mean
        # answer-token loss (Trainer.evaluate would average per batch, which depends on the eval batch size).
        loss = mean_answer_loss(
            trainer.model,
            data.eval_dataset,
            pad_token_id=data.tokenizer.pad_token_id,
            batch_size=training.per_device_eval_batch_size,
        )
        eval_metrics = {
            "eval_loss": loss["loss"],
            "eval_token_loss": loss["token_loss"],
            "eval_samples": len(data.eval_dataset),
            "eval_rows_truncated": data.eval_stats["truncated"],
        }
        evaluate_and_save(
            trainer,
            data.tokenizer,
            data.eval_rows,
            args.generation,
            train_metrics=train_metrics,
            eval_metrics=eval_metrics,
            eval_loss_label="eval_loss (mean held-out loss)",
        )
        logger.info("wrote %s", training.output_dir)
        results = {
            "train": train_metrics,
            "eval": eval_metrics,
            "log_history": trainer.state.log_history,
            "output_dir": training.output_dir,
        }
        return results, trainer
    finally:
        for target, handler in attached:
            target.removeHandler(handler)
        if attached:
            attached[0][1].close()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input)."""
    prog = Path(sys.argv[0]).name if argv is None else "gsm8k_finetune.py"
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        args = parse_args(argv, prog=prog)
        logger.setLevel(logging.INFO if args.training.process_index == 0 else logging.WARNING)
        logging.getLogger("hf_superpositional").setLevel(logger.level)
        data = prepare_data(args)
    except (ValueError, FileNotFoundError) as error:
        # Input problems (arguments, config file, data): one clear line, not a traceback.
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    run(args, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
