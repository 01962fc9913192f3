#!/usr/bin/env python
"""Paper Table I and Fig. 2 analogue: AdamW vs Superpositional AdamW (lambda = 0.1, 0.5) on GSM8K.

Runs ``gsm8k_finetune.py``'s pipeline once per optimizer arm with the same seed, data, tokenizer, model
initialisation and schedule (only ``optim`` / ``optim_args`` differ; every arm keeps the quantum attention
of the config), then writes to ``--output_dir``:

- ``table.md``: mean training loss over the run (the paper's "mean loss"), mean held-out loss, GSM8K
  strict / flexible accuracy and train time per arm, beside the paper's numbers;
- ``results.json``: the same plus every logged training loss and each arm's arguments;
- ``loss_curves.png``: training loss against step, one curve per arm (Fig. 2);
- ``<arm>/``: each arm's full ``gsm8k_finetune.py`` output (model, card, logs, evaluation).

    python recipes/gsm8k_compare.py --config recipes/configs/gsm8k_tiny_offline.yaml \\
        --output_dir outputs/gsm8k_compare_tiny
    accelerate launch --config_file recipes/accelerate/single_gpu.yaml recipes/gsm8k_compare.py \\
        --config recipes/configs/gsm8k_llama32_1b.yaml --output_dir outputs/gsm8k_compare_1b

``--arms`` changes the arms (each ``optim`` or ``optim:optim_args``). One seed is one sample: run several
``--seed`` values before reading anything into a difference.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling recipe, however this file is run
import gsm8k_finetune as finetune  # noqa: E402

from hf_superpositional.cli import ArgumentsError, parse_args_and_config  # noqa: E402
from hf_superpositional.integrations import unwrap_optimizer  # noqa: E402
from hf_superpositional.integrations.transformers import check_optimizer_arguments  # noqa: E402
from hf_superpositional.optim.args import parse_optim_args  # noqa: E402
from hf_superpositional.reproduction.reporting import plot_loss_curves  # noqa: E402
from hf_superpositional.tasks.gsm8k.arguments import CompareArguments, arm_name  # noqa: E402

ARGUMENT_TYPES = (*finetune.ARGUMENT_TYPES, CompareArguments)

# SPEC section 6 / paper Table I: mean loss after one epoch of GSM8K, Llama-3.2-1B-Instruct.
PAPER_MEAN_LOSS = {
    ("adamw", None): 0.2188,
    ("superpositional", 0.1): 0.2098,
    ("superpositional", 0.5): 0.2097,
}


def _paper_value(optim: str, optim_args: str | None) -> float | None:
    if optim in ("adamw_torch", "adamw_torch_fused", "adamw_hf"):
        return PAPER_MEAN_LOSS[("adamw", None)]
    if optim == "superpositional_adamw":
        weight = parse_optim_args(optim_args).get("quantum_weight", 0.1)
        return PAPER_MEAN_LOSS.get(("superpositional", round(float(weight), 6)))
    return None


def run_arms(args: finetune.RecipeArgs, compare: CompareArguments, data: finetune.PreparedData) -> list[dict]:
    """Train and evaluate every arm on the same prepared data; return one summary per arm."""
    root = Path(args.training.output_dir)
    summaries = []
    for optim, optim_args in compare.parsed_arms():
        name = arm_name(optim, optim_args)
        training = dataclasses.replace(
            args.training, output_dir=str(root / name), optim=optim, optim_args=optim_args
        )
        arm_args = dataclasses.replace(args, training=training)
        results, trainer = finetune.run(arm_args, data)
        losses = [(e["step"], e["loss"]) for e in results["log_history"] if "loss" in e]
        eval_metrics = results["eval"]
        summaries.append(
            {
                "arm": name,
                "optim": optim,
                "optim_args": optim_args,
                "optimizer_class": type(unwrap_optimizer(trainer.optimizer)).__name__,
                "mean_train_loss": results["train"]["train_loss"],
                "final_logged_loss": losses[-1][1] if losses else None,
                "eval_loss": eval_metrics["eval_loss"],
                "accuracy_strict": eval_metrics.get("gsm8k_accuracy_strict"),
                "accuracy_flexible": eval_metrics.get("gsm8k_accuracy_flexible"),
                "generation_samples": eval_metrics.get("gsm8k_generation_samples"),
                "train_seconds": results["train"]["train_runtime"],
                "steps": trainer.state.global_step,
                "paper_mean_loss": _paper_value(optim, optim_args),
                "train_losses": losses,
            }
        )
        del trainer, results  # free this arm's model before the next one is built
    return summaries


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(summaries: list[dict], args: finetune.RecipeArgs) -> str:
    """The Table I analogue in markdown."""
    header = (
        "| arm | optimizer | mean training loss | held-out loss | GSM8K strict | GSM8K flexible | steps | "
        "train s | paper mean loss |"
    )
    lines = [header, "|" + "---|" * 9]
    for s in summaries:
        lines.append(
            f"| {s['arm']} | {s['optimizer_class']} | {_fmt(s['mean_train_loss'], 6)} | {_fmt(s['eval_loss'], 6)} | "
            f"{_fmt(s['accuracy_strict'], 3)} | {_fmt(s['accuracy_flexible'], 3)} | {s['steps']} | "
            f"{_fmt(s['train_seconds'], 1)} | {_fmt(s['paper_mean_loss'])} |"
        )
    model = args.model.base_model_name
    lines += [
        "",
        f"Model: {model}; data: {args.data.card_dataset} ({args.data.card_dataset_note or 'full split'}); "
        f"context {args.data.max_length}; seed {args.training.seed}; quantum attention "
        f"{'on (' + str(args.quantum.n_qubits) + ' qubits, depth ' + str(args.quantum.depth) + ')' if args.model.quantum_attention else 'off'}.",
        "Mean training loss: the mean of the training loss over the run (the paper's 'mean loss after one "
        "epoch'); held-out loss: mean answer-token loss on the evaluation split. The paper column is "
        "Llama-3.2-1B-Instruct on full GSM8K (Table I), for reference, not a target.",
        "The perturbation touches n_qubits elements per tensor (scope first_n), so over few steps the arms "
        "can agree to many digits. One seed per arm: a difference smaller than the seed-to-seed spread means "
        "nothing.",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(summaries: list[dict], args: finetune.RecipeArgs, compare: CompareArguments) -> Path:
    """``table.md``, ``results.json`` and ``loss_curves.png`` in ``args.training.output_dir``."""
    root = Path(args.training.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "table.md").write_text(
        "# GSM8K: AdamW vs Superpositional AdamW (paper Table I analogue)\n\n"
        + render_table(summaries, args),
        encoding="utf-8",
    )
    results = {
        "arms": summaries,
        "paper_mean_loss": {"adamw": 0.2188, "lambda_0.1": 0.2098, "lambda_0.5": 0.2097},
        "settings": {
            "model": dataclasses.asdict(args.model),
            "data": dataclasses.asdict(args.data),
            "quantum_attention": args.quantum.to_dict() if args.model.quantum_attention else None,
            "seed": args.training.seed,
            "learning_rate": args.training.learning_rate,
            "per_device_train_batch_size": args.training.per_device_train_batch_size,
            "num_train_epochs": args.training.num_train_epochs,
            "max_steps": args.training.max_steps,
            "arms": compare.arms,
        },
    }
    (root / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    plot_loss_curves(
        {f"{s['arm']} (mean {s['mean_train_loss']:.4f})": s["train_losses"] for s in summaries},
        root / "loss_curves.png",
        f"GSM8K training loss, {args.model.base_model_name}",
        ylabel="training loss (answer tokens)",
    )
    return root


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input, 1 if an arm diverged)."""
    prog = "gsm8k_compare.py"
    try:
        parsed = parse_args_and_config(ARGUMENT_TYPES, argv, prog=prog, default_config=finetune.PAPER_CONFIG)
        args, compare = finetune.RecipeArgs(*parsed[:-1]), parsed[-1]
        for optim, optim_args in compare.parsed_arms():
            # Each arm's TrainingArguments as run_arms builds them: a bad optim name or optim_args fails
            # now, not after the arms before it have trained.
            try:
                arm_training = dataclasses.replace(args.training, optim=optim, optim_args=optim_args)
                check_optimizer_arguments(arm_training)
            except ValueError as error:
                arm = optim if optim_args is None else f"{optim}:{optim_args}"
                raise ArgumentsError(f"`arms` entry {arm!r}: {error}") from None
        data = finetune.prepare_data(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    summaries = run_arms(args, compare, data)
    if args.training.process_index == 0:
        root = write_outputs(summaries, args, compare)
        print(render_table(summaries, args))
        print(f"wrote {root}/table.md, results.json, loss_curves.png")
    if any(not math.isfinite(s["mean_train_loss"]) for s in summaries):
        print(f"{prog}: an arm diverged (non-finite loss)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
