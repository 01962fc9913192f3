"""A stand-in for RunPool that answers the study's jobs with synthesised runs (no training), for fast tests
of the study's orchestration, analysis and report. The numbers are made up and chosen to be easy to check:

- text classification: final accuracy ``0.915 + 1e-4 * (num_train - 1000)`` plus the seed's luck
  ``0.02 * sin(seed)``, plus ``0.003 + 0.02 * cos(2.5 * seed)`` for lambda=0.5 (first_n, update), ``-0.01`` for eager attention and
  ``-0.3`` for scope=all at lambda >= 100; the curve climbs linearly to it; an epoch takes 0.5 s (x1.02 for
  Superpositional AdamW); the perturbation-to-update ratio is ``lambda * 1e-4`` (x1000 for scope=all);
- GSM8K: mean loss ``5.5 + 0.05 * sin(seed)``, times ``1 - 0.002`` for lambda=0.1 and ``1 - 0.004 * (1 + 0.1
  * cos(seed))`` for lambda=0.5.
"""

from __future__ import annotations

import math

from hf_superpositional.optim.args import parse_optim_args
from hf_superpositional.reproduction.classification import train_classifier
from hf_superpositional.reproduction.gsm8k_analogue import train_gsm8k_arm


def classification_run(setup, arm, seed, logging_steps=None, evaluate_each_epoch=True) -> dict:
    args = parse_optim_args(arm.optim_args) if arm.optim_args else {}
    weight, scope, mode = args.get("quantum_weight", 0.0), args.get("scope", "first_n"), args.get("mode", "update")
    final = 0.915 + 1e-4 * (setup.num_train - 1000) + 0.02 * math.sin(seed)
    if weight == 0.5 and scope == "first_n" and mode == "update":
        final += 0.003 + 0.02 * math.cos(2.5 * seed)
    if arm.attention == "eager":
        final -= 0.01
    if weight >= 100 and scope == "all":
        final -= 0.3
    epochs = setup.num_epochs
    curve = [final * (0.6 + 0.4 * (e + 1) / epochs) for e in range(epochs)]
    seconds = 0.5 * (1.02 if arm.optim == "superpositional_adamw" else 1.0)
    ratio = weight * 1e-4 * (1000 if scope == "all" else 1)
    logged = max(1, epochs * setup.steps_per_epoch() // (logging_steps or setup.steps_per_epoch()))
    return {
        "arm": arm.name, "seed": seed, "attention": arm.attention or setup.attention,
        "optimizer": "SuperpositionalAdamW" if weight else "AdamW",
        "eval_accuracy": curve if evaluate_each_epoch else curve[-1:],
        "eval_loss": [1.0 - a for a in (curve if evaluate_each_epoch else curve[-1:])],
        "train_loss": [0.5] * logged, "epoch_seconds": [seconds] * epochs, "epoch_cpu_seconds": [seconds] * epochs,
        "train_runtime": seconds * epochs, "final_gates": [1.0, 1.0],
        "perturbation_to_update_ratio": [ratio] * logged if weight else [],
        "perturbation_norm": [], "update_norm": [], "grad_norm": [], "logged_steps": list(range(logged)),
    }  # fmt: skip


def gsm8k_run(setup, arm, seed) -> dict:
    loss = 5.5 + 0.05 * math.sin(seed)
    if arm.name == "sgd_lambda_0.1":
        loss *= 1 - 0.002
    elif arm.name == "sgd_lambda_0.5":
        loss *= 1 - 0.004 * (1 + 0.1 * math.cos(seed))
    return {
        "arm": arm.name, "seed": seed, "optimizer": "AdamW", "mean_train_loss": loss,
        "train_losses": [[8, loss + 1.0], [16, loss - 1.0]], "steps": 16, "rows": {"rows": 128, "trained": 128},
        "train_seconds": 1.0, "cpu_seconds": 1.0, "perturbation_to_update_ratio": [],
    }  # fmt: skip


class FakePool:
    """Answers :class:`~hf_superpositional.reproduction.runs.Job` s like ``RunPool.run``, from the formulas above."""

    def __init__(self):
        self.batches: list[tuple[str, list]] = []

    def run(self, jobs, desc="runs", show_progress=True):
        self.batches.append((desc, list(jobs)))
        out = []
        for job in jobs:
            if job.function is train_classifier:
                out.append(classification_run(*job.args, **job.kwargs))
            elif job.function is train_gsm8k_arm:
                out.append(gsm8k_run(*job.args, **job.kwargs))
            else:
                raise AssertionError(f"unexpected job {job.function}")
        return out
