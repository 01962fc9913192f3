#!/usr/bin/env python
"""Main offline job: SuperpositionalAdamW against AdamW on a tiny Llama, through the stock Trainer.

Fine-tunes (from scratch) a tiny Llama built from a ``LlamaConfig`` on the bundled GSM8K sample, once
per optimizer arm with the same seed, data order and schedule, and prints the loss curves side by side.
Everything runs offline on a CPU in a minute or two: the tokenizer is trained on the bundled sample.

    python recipes/compare_optimizers_tiny.py
    python recipes/compare_optimizers_tiny.py --max_steps 300 --arms adamw_torch_fused,superpositional_adamw:quantum_weight=0.5

Writes ``results.json`` (every logged loss per arm), ``table.md`` and ``loss_curves.png`` to
``--output_dir`` (default ``outputs/compare_optimizers_tiny``, this job's own folder: ``make demo`` writes
``outputs/demo``). A folder that already holds results is not overwritten without ``--overwrite_output_dir``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments, set_seed

import hf_superpositional  # noqa: F401  (registers optim="superpositional_adamw")
from hf_superpositional.cli import ArgumentsError, parse_args_and_config
from hf_superpositional.integrations.transformers import check_optimizer_arguments
from hf_superpositional.reproduction.reporting import plot_loss_curves
from hf_superpositional.tasks.gsm8k.arguments import arm_name, parse_arm
from hf_superpositional.tasks.gsm8k.data import (
    bundled_gsm8k_path,
    pad_collate,
    read_gsm8k_jsonl,
    tokenize_for_sft,
)
from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer


@dataclass
class DemoArguments:
    output_dir: str = field(
        default="outputs/compare_optimizers_tiny",
        metadata={"help": "Where results.json, table.md and loss_curves.png go (this job's own folder)."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the results an earlier run left in --output_dir."}
    )
    arms: str = field(
        default="adamw_torch_fused,superpositional_adamw:quantum_weight=0.1,superpositional_adamw:quantum_weight=0.5",
        metadata={
            "help": "Comma-separated optimizer arms, each `optim` or `optim:optim_args` (optim_args joined by ';')."
        },
    )
    max_steps: int = field(default=150, metadata={"help": "Optimizer steps per arm."})
    # "%%": argparse %-formats help texts, and a lone "%" made --help crash.
    learning_rate: float = field(
        default=3e-3, metadata={"help": "Peak learning rate (linear decay, 10%% warm-up)."}
    )
    batch_size: int = field(default=8, metadata={"help": "Sequences per step."})
    max_length: int = field(
        default=192, metadata={"help": "Tokens per sequence (longer rows are truncated)."}
    )
    hidden_size: int = field(default=64, metadata={"help": "Tiny Llama hidden size."})
    num_layers: int = field(default=2, metadata={"help": "Tiny Llama layers."})
    seed: int = field(
        default=0, metadata={"help": "Seed for model init and data order (same for every arm)."}
    )
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every this many steps."})

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "max_length", "hidden_size", "num_layers", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate must be > 0, got {self.learning_rate}")
        out = Path(self.output_dir)
        if not self.overwrite_output_dir and out.is_dir() and any(out.iterdir()):
            found = ", ".join(sorted(p.name for p in out.iterdir())[:4])
            raise ValueError(
                f"--output_dir {self.output_dir} already holds results ({found}, ...); pass "
                "--overwrite_output_dir to replace them, or choose another folder."
            )


def demo_arms(demo: DemoArguments) -> list[tuple[str, str | None]]:
    """``(optim, optim_args)`` of every ``--arms`` entry (``;`` inside an entry separates ``optim_args`` keys)."""
    return [parse_arm(spec.replace(";", ",")) for spec in demo.arms.split(",")]


def training_arguments(demo: DemoArguments, optim: str, optim_args: str | None) -> TrainingArguments:
    """The TrainingArguments of one arm (only ``optim`` / ``optim_args`` differ between arms)."""
    name = arm_name(optim, optim_args)
    return TrainingArguments(
        output_dir=str(Path(demo.output_dir) / "runs" / name),
        optim=optim,
        optim_args=optim_args,
        learning_rate=demo.learning_rate,
        weight_decay=0.01,
        warmup_steps=max(1, demo.max_steps // 10),
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        per_device_train_batch_size=demo.batch_size,
        per_device_eval_batch_size=demo.batch_size,
        max_steps=demo.max_steps,
        logging_steps=demo.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=demo.seed,
        data_seed=demo.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def parse_arguments(argv: list[str] | None = None, prog: str = "compare_optimizers_tiny.py") -> DemoArguments:
    """``DemoArguments`` from the command line (or ``--config file.yaml``), every arm checked up front.

    Raises:
        ArgumentsError: an invalid value, or an arm whose optimizer name or ``optim_args`` is bad (found
            now, not after the arms before it have trained). Unknown or abbreviated flags exit with status 2.
    """
    (demo,) = parse_args_and_config((DemoArguments,), argv, prog=prog)
    for spec, arm in zip(demo.arms.split(","), demo_arms(demo), strict=True):
        try:
            check_optimizer_arguments(training_arguments(demo, *arm))
        except ValueError as error:
            raise ArgumentsError(f"--arms entry {spec!r}: {error}") from None
    return demo


def run_arm(demo: DemoArguments, optim: str, optim_args: str | None, train, evaluation, tokenizer) -> dict:
    set_seed(demo.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=demo.hidden_size,
        intermediate_size=2 * demo.hidden_size,
        num_hidden_layers=demo.num_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=demo.max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    name = arm_name(optim, optim_args)
    args = training_arguments(demo, optim, optim_args)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=lambda features: pad_collate(features, tokenizer.pad_token_id),
    )
    print(f"\n=== arm {name}: {type(trainer.create_optimizer()).__name__} ===", flush=True)
    output = trainer.train()
    metrics = trainer.evaluate()
    losses = [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    return {
        "arm": name,
        "optimizer": type(trainer.optimizer).__name__,
        "train_losses": losses,
        "final_train_loss": losses[-1][1],
        "mean_train_loss": output.training_loss,
        "eval_loss": metrics["eval_loss"],
        "train_seconds": output.metrics["train_runtime"],
    }


def write_outputs(demo: DemoArguments, results: list[dict]) -> str:
    out = Path(demo.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"arguments": vars(demo), "arms": results}, indent=2))

    steps = [step for step, _ in results[0]["train_losses"]]
    header = "| step | " + " | ".join(r["arm"] for r in results) + " |"
    lines = [header, "|" + "---|" * (len(results) + 1)]
    for i, step in enumerate(steps):
        lines.append(f"| {step} | " + " | ".join(f"{r['train_losses'][i][1]:.4f}" for r in results) + " |")
    lines.append("| **held-out loss** | " + " | ".join(f"**{r['eval_loss']:.4f}**" for r in results) + " |")
    lines.append("| mean train loss | " + " | ".join(f"{r['mean_train_loss']:.4f}" for r in results) + " |")
    lines.append("| train seconds | " + " | ".join(f"{r['train_seconds']:.1f}" for r in results) + " |")
    table = "\n".join(lines)
    (out / "table.md").write_text(
        f"# Loss curves: tiny Llama on the bundled GSM8K sample ({demo.max_steps} steps, seed {demo.seed})\n\n"
        f"{table}\n\nOne seed on a tiny model: a smoke-scale comparison, not evidence either way.\n"
    )

    plot_loss_curves(
        {f"{r['arm']} (held-out {r['eval_loss']:.3f})": r["train_losses"] for r in results},
        out / "loss_curves.png",
        "Tiny Llama on GSM8K sample: AdamW vs Superpositional AdamW",
        ylabel="training loss (assistant tokens)",
    )
    return table


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input, 1 if a run diverged)."""
    prog = "compare_optimizers_tiny.py"
    try:
        demo = parse_arguments(argv, prog=prog)
    except ValueError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    rows = read_gsm8k_jsonl(bundled_gsm8k_path("train"))
    test_rows = read_gsm8k_jsonl(bundled_gsm8k_path("test"))
    tokenizer = train_offline_tokenizer([r["question"] + "\n" + r["answer"] for r in rows])
    train = Dataset.from_list([tokenize_for_sft(r, tokenizer, demo.max_length) for r in rows])
    evaluation = Dataset.from_list([tokenize_for_sft(r, tokenizer, demo.max_length) for r in test_rows])
    print(
        f"{len(train)} training rows ({sum(train['truncated'])} truncated to {demo.max_length} tokens), "
        f"{len(evaluation)} held-out rows, vocabulary {len(tokenizer)}"
    )
    train, evaluation = train.remove_columns("truncated"), evaluation.remove_columns("truncated")

    results = [run_arm(demo, *arm, train, evaluation, tokenizer) for arm in demo_arms(demo)]
    table = write_outputs(demo, results)
    print("\n" + table)
    base = results[0]
    for r in results[1:]:
        delta = r["eval_loss"] - base["eval_loss"]
        print(
            f"{r['arm']}: held-out loss {r['eval_loss']:.4f} vs {base['arm']} {base['eval_loss']:.4f} "
            f"({'lower' if delta < 0 else 'higher'} by {abs(delta):.4f}; one seed)"
        )
    if any(not math.isfinite(r["eval_loss"]) for r in results):
        print("a run diverged (non-finite loss)", file=sys.stderr)
        return 1
    print(f"\nwrote {demo.output_dir}/results.json, table.md, loss_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
