"""The definitive study: every claim of the paper settled by a verdict, and where the method's effect begins.

:func:`run_study` runs, in one pool of worker processes:

1. **Calibration** (AdamW only, seeds of its own): the text-classification task's training-set size is
   chosen from a grid so that AdamW's final accuracy lands nearest the paper's Adam (91.5%), with the task's
   Bayes-optimal accuracy (which the training-set size does not change) reported beside it.
2. **Pilot**: AdamW and Superpositional GD lambda=0.5 on the first ``pilot_seeds`` seeds, and the GSM8K
   analogue's arms on its first seeds. The spread of each claim's per-seed effect gives the seeds the paired
   t-test needs for 80% power against the paper's effect (:func:`~.verdicts.plan_seeds`); the pilot's runs
   are the first seeds of the study (an internal pilot).
3. **The rest**, all at once: the main arms up to the powered seed count, the attention ablation's classical
   arms, the dose-response arms (lambda x scope x mode against an AdamW reference trained the same way) and
   the GSM8K analogue's remaining seeds.

:func:`analyse` turns the runs into the study's results: the claims with their verdicts
(:mod:`.verdicts`), the dose-response points, the ablation's effects and the GSM8K table, every figure
with the per-seed values it came from. :mod:`.study_report` writes them out.

Example:
    >>> study = StudyArguments(dose_lambdas=[0.5, 1000.0], dose_scopes=["all"], dose_modes=["update"])
    >>> [arm.optim_args for arm in dose_arms(study)]
    ['quantum_weight=0.5,n_qubits=4,scope=all,mode=update', 'quantum_weight=1000,n_qubits=4,scope=all,mode=update']
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .classification import ArmSpec, ClassificationSetup, train_classifier
from .gsm8k_analogue import PAPER_MEAN_LOSS, GSM8KAnalogueSetup, gsm8k_arms, train_gsm8k_arm
from .runs import Job, RunPool
from .statistics import epochs_to_threshold, mean_std, paired_difference
from .verdicts import Claim, evaluate_claim, plan_seeds

__all__ = [
    "ADAMW",
    "SGD_LAMBDA_05",
    "StudyArguments",
    "analyse",
    "build_claims",
    "dose_arms",
    "eager",
    "load_study",
    "run_study",
]

ADAMW = ArmSpec(
    "adamw", "AdamW", "adamw_torch_fused", paper={"final_accuracy": 0.915, "epochs_to_threshold": 7.4, "time_ratio": 1.0}
)
SGD_LAMBDA_05 = ArmSpec(
    "sgd_lambda_0.5",
    "Superpositional GD λ=0.5",
    "superpositional_adamw",
    "quantum_weight=0.5,n_qubits=4",
    paper={"final_accuracy": 0.938, "final_accuracy_std": 0.007, "epochs_to_threshold": 4.6, "time_ratio": 1.35},
)
SCOPES, MODES = ("first_n", "all"), ("update", "moment")

# SPEC section 6: the paper's effects of lambda=0.5 over Adam on text classification, and Table I on GSM8K.
PAPER_ACCURACY_GAIN = 0.938 - 0.915
PAPER_EPOCHS_TO_90 = (7.4, 4.6)
PAPER_TIME_PER_EPOCH = 0.35
PAPER_TIME_TO_90 = -0.16


@dataclass
class StudyArguments:
    """What the study runs besides the task and model (:class:`~.classification.ClassificationSetup`)."""

    output_dir: str = field(default="outputs/study", metadata={"help": "Where verdicts.json, study.md and the plots go."})
    first_seed: int = field(default=0, metadata={"help": "Seeds of the study are first_seed, first_seed + 1, ..."})
    pilot_seeds: int = field(default=4, metadata={"help": "Seeds of the pilot that sizes the study (>= 2)."})
    min_seeds: int = field(default=5, metadata={"help": "Seeds of the main comparison, at least."})
    max_seeds: int = field(default=30, metadata={"help": "Seeds of the main comparison, at most (the budget's cap)."})
    power: float = field(default=0.8, metadata={"help": "Target power against the paper's effect."})
    alpha: float = field(default=0.05, metadata={"help": "Two-sided significance level (intervals are 1 - alpha)."})
    calibrate: bool = field(default=True, metadata={"help": "Choose num_train from calibration_num_train first."})
    calibration_num_train: list[int] = field(
        default_factory=lambda: [750, 1000, 1250, 1500], metadata={"help": "Training-set sizes to calibrate over."}
    )
    calibration_seeds: int = field(default=6, metadata={"help": "AdamW seeds per calibration setting."})
    calibration_first_seed: int = field(
        default=1000, metadata={"help": "First calibration seed (apart from the study's, so no seed is reused)."}
    )
    target_accuracy: float = field(default=0.915, metadata={"help": "AdamW accuracy to calibrate to (paper's Adam)."})
    dose_lambdas: list[float] = field(
        default_factory=lambda: [0.1, 0.5, 1.0, 10.0, 100.0, 1000.0], metadata={"help": "Dose-response lambdas."}
    )
    dose_scopes: list[str] = field(default_factory=lambda: list(SCOPES), metadata={"help": "Dose-response scopes."})
    dose_modes: list[str] = field(default_factory=lambda: list(MODES), metadata={"help": "Dose-response modes."})
    dose_seeds: int = field(default=10, metadata={"help": "Seeds per dose-response arm (and its AdamW reference)."})
    ablation: bool = field(default=True, metadata={"help": "Run the {eager, quantum} x {AdamW, lambda=0.5} ablation."})
    gsm8k: bool = field(default=True, metadata={"help": "Run the GSM8K analogue (tiny Llama, one epoch)."})
    gsm8k_lambdas: list[float] = field(default_factory=lambda: [0.1, 0.5], metadata={"help": "GSM8K lambdas."})
    gsm8k_pilot_seeds: int = field(default=3, metadata={"help": "GSM8K pilot seeds (>= 2)."})
    gsm8k_min_seeds: int = field(default=5, metadata={"help": "GSM8K seeds, at least."})
    gsm8k_max_seeds: int = field(default=10, metadata={"help": "GSM8K seeds, at most."})
    gsm8k_num_rows: int = field(default=1000, metadata={"help": "Bundled GSM8K training rows (one epoch)."})
    gsm8k_max_length: int = field(default=160, metadata={"help": "GSM8K context length."})
    gsm8k_batch_size: int = field(default=8, metadata={"help": "GSM8K sequences per step."})
    logging_steps: int = field(default=8, metadata={"help": "Log loss and optimizer diagnostics every N steps."})
    budget_minutes: float = field(default=25.0, metadata={"help": "Wall-time budget the estimate is checked against."})
    reanalyse: str | None = field(
        default=None,
        metadata={"help": "A verdicts.json of an earlier study: re-analyse its runs and rewrite the report, no training."},
    )

    def __post_init__(self):
        if self.pilot_seeds < 2 or self.gsm8k_pilot_seeds < 2:
            raise ValueError("`pilot_seeds` and `gsm8k_pilot_seeds` must be >= 2: a spread needs two seeds.")
        if not 2 <= self.min_seeds <= self.max_seeds:
            raise ValueError(f"need 2 <= min_seeds <= max_seeds, got {self.min_seeds} and {self.max_seeds}.")
        if not 2 <= self.gsm8k_min_seeds <= self.gsm8k_max_seeds:
            raise ValueError(
                f"need 2 <= gsm8k_min_seeds <= gsm8k_max_seeds, got {self.gsm8k_min_seeds} and {self.gsm8k_max_seeds}."
            )
        for name in ("calibration_seeds", "dose_seeds", "logging_steps"):
            if getattr(self, name) < 1 or (name == "dose_seeds" and self.dose_seeds < 2):
                raise ValueError(f"`{name}` must be >= {2 if name == 'dose_seeds' else 1}, got {getattr(self, name)}.")
        if self.first_seed < 0 or self.calibration_first_seed < 0:
            raise ValueError("`first_seed` and `calibration_first_seed` must be >= 0.")
        if not 0 < self.power < 1 or not 0 < self.alpha < 1:
            raise ValueError(f"`power` and `alpha` must be in (0, 1), got {self.power} and {self.alpha}.")
        for name, allowed in (("dose_scopes", SCOPES), ("dose_modes", MODES)):
            bad = [value for value in getattr(self, name) if value not in allowed]
            if bad:
                raise ValueError(f"`{name}` must be values from {list(allowed)}, got {getattr(self, name)!r}.")
        if any(not w > 0 for w in self.dose_lambdas) or any(not w > 0 for w in self.gsm8k_lambdas):
            raise ValueError("`dose_lambdas` and `gsm8k_lambdas` must be > 0 (lambda = 0 is AdamW itself).")
        if self.calibrate and (not self.calibration_num_train or min(self.calibration_num_train) < 1):
            raise ValueError(f"`calibration_num_train` must list sizes >= 1, got {self.calibration_num_train!r}.")
        if not 0 < self.target_accuracy < 1:
            raise ValueError(f"`target_accuracy` must be in (0, 1), got {self.target_accuracy}.")
        self.gsm8k_setup()  # validates the GSM8K sizes with the setup's own messages

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha

    def gsm8k_setup(self) -> GSM8KAnalogueSetup:
        """The GSM8K analogue's setup of these arguments."""
        return GSM8KAnalogueSetup(
            num_rows=self.gsm8k_num_rows,
            max_length=self.gsm8k_max_length,
            batch_size=self.gsm8k_batch_size,
            logging_steps=self.logging_steps,
        )


def dose_arms(study: StudyArguments) -> list[ArmSpec]:
    """The dose-response arms: Superpositional AdamW for every lambda x scope x mode."""
    arms = []
    for mode in study.dose_modes:
        for scope in study.dose_scopes:
            for weight in study.dose_lambdas:
                arms.append(
                    ArmSpec(
                        f"dose_{mode}_{scope}_lambda_{weight:g}",
                        f"λ={weight:g} {scope} {mode}",
                        "superpositional_adamw",
                        f"quantum_weight={weight:g},n_qubits=4,scope={scope},mode={mode}",
                    )
                )
    return arms


def eager(arm: ArmSpec) -> ArmSpec:
    """``arm`` with classical (eager) attention: the ablation's other half."""
    return dataclasses.replace(arm, name=f"eager_{arm.name}", label=f"{arm.label}, eager attention", attention="eager")


def _classification_jobs(setup, arms, seeds, study, *, each_epoch=True, cost=1.0) -> list[Job]:
    kwargs = {"logging_steps": study.logging_steps, "evaluate_each_epoch": each_epoch}
    return [
        Job(train_classifier, (setup, arm, seed), kwargs, epochs=setup.num_epochs, cost=cost)
        for seed in seeds
        for arm in arms
    ]


def _gsm8k_jobs(study, arms, seeds) -> list[Job]:
    # A GSM8K run costs ~2.5 classification runs (CPU seconds, measured): start them first.
    return [Job(train_gsm8k_arm, (study.gsm8k_setup(), arm, seed), epochs=1, cost=2.5) for seed in seeds for arm in arms]


def calibrate(setup: ClassificationSetup, study: StudyArguments, pool: RunPool, log=print) -> dict[str, Any]:
    """AdamW at every ``calibration_num_train``; the size whose mean accuracy is nearest the target wins.

    Only AdamW is run, on seeds no other part of the study uses: the calibration sets the task's difficulty
    for the baseline and never looks at the other arms.
    """
    seeds = list(range(study.calibration_first_seed, study.calibration_first_seed + study.calibration_seeds))
    settings = [dataclasses.replace(setup, num_train=n) for n in study.calibration_num_train]
    jobs = [job for s in settings for job in _classification_jobs(s, [ADAMW], seeds, study)]
    runs = pool.run(jobs, desc="calibration (AdamW)")
    rows = []
    for index, size in enumerate(study.calibration_num_train):
        finals = [run["eval_accuracy"][-1] for run in runs[index * len(seeds) : (index + 1) * len(seeds)]]
        mean, std = mean_std(finals)
        rows.append({"num_train": size, "seeds": seeds, "final_accuracies": finals, "mean": mean, "std": std})
    chosen = min(rows, key=lambda row: abs(row["mean"] - study.target_accuracy))
    bayes = setup.bayes_accuracy()
    for row in rows:
        log(
            f"calibration: num_train {row['num_train']:5d}: AdamW {100 * row['mean']:.1f} ± {100 * row['std']:.1f}% "
            f"(Bayes-optimal {100 * bayes:.1f}%){'  <- chosen' if row is chosen else ''}"
        )
    return {"rows": rows, "chosen_num_train": chosen["num_train"], "target": study.target_accuracy, "bayes_accuracy": bayes}


def _by_seed(runs: list[dict[str, Any]], arm: str) -> dict[int, dict[str, Any]]:
    return {run["seed"]: run for run in runs if run["arm"] == arm}


def _epoch_time(run: dict[str, Any], time_key: str) -> float:
    return float(np.median(run[time_key]))


def build_claims(
    setup: ClassificationSetup,
    tc_runs: list[dict[str, Any]],
    gsm8k_runs: list[dict[str, Any]],
    tc_seeds: list[int],
    gsm8k_seeds: list[int],
    gsm8k_lambdas: list[float],
) -> list[Claim]:
    """The paper's claims, each with the per-seed values of its two arms (quantum attention, as the paper)."""
    time_key = "epoch_cpu_seconds" if setup.torch_threads == 1 else "epoch_seconds"
    base, treat = _by_seed(tc_runs, ADAMW.name), _by_seed(tc_runs, SGD_LAMBDA_05.name)
    threshold, budget = setup.threshold, setup.num_epochs + 1
    pct = f"{100 * threshold:.0f}%"

    def censored(run):
        return float(epochs_to_threshold(run["eval_accuracy"], threshold) or budget)

    def per_seed(function):
        return [function(base[s]) for s in tc_seeds], [function(treat[s]) for s in tc_seeds]

    common = {"baseline": ADAMW.label, "treatment": SGD_LAMBDA_05.label, "seeds": list(tc_seeds)}
    claims = []
    b, t = per_seed(lambda run: float(run["eval_accuracy"][-1]))
    claims.append(Claim(
        key="tc_final_accuracy", claim="Superpositional GD λ=0.5 ends 2.3 points above Adam in held-out accuracy "
        "(93.8% vs 91.5%, paper Table II)", metric=f"held-out accuracy after {setup.num_epochs} epochs",
        paper_effect=PAPER_ACCURACY_GAIN, unit="pts", scale=100.0, baseline_values=b, treatment_values=t,
        paper={"baseline": 0.915, "treatment": 0.938}, value_unit="accuracy", **common,
    ))  # fmt: skip
    b, t = per_seed(censored)
    claims.append(Claim(
        key="tc_epochs_to_90", claim=f"Superpositional GD λ=0.5 reaches {pct} in 4.6 epochs, Adam in 7.4 (paper Fig. 1)",
        metric=f"first epoch with held-out accuracy >= {pct}", paper_effect=PAPER_EPOCHS_TO_90[1] - PAPER_EPOCHS_TO_90[0],
        unit="epochs", scale=1.0, baseline_values=b, treatment_values=t,
        paper={"baseline": PAPER_EPOCHS_TO_90[0], "treatment": PAPER_EPOCHS_TO_90[1]},
        notes=f"a seed that never reaches {pct} counts as {budget} epochs (a lower bound)", value_unit="epochs", **common,
    ))  # fmt: skip
    b, t = per_seed(lambda run: _epoch_time(run, time_key))
    claims.append(Claim(
        key="tc_time_per_epoch", claim="Superpositional GD λ=0.5 costs 35% more time per epoch than Adam",
        metric="training seconds per epoch (median epoch of a run; CPU seconds of a single-threaded worker)",
        paper_effect=PAPER_TIME_PER_EPOCH, unit="%", scale=100.0, kind="relative", baseline_values=b,
        treatment_values=t, value_unit="s", **common,
    ))  # fmt: skip
    b, t = per_seed(lambda run: _epoch_time(run, time_key) * censored(run))
    claims.append(Claim(
        key="tc_time_to_90", claim=f"Superpositional GD λ=0.5 reaches {pct} in 16% less total time than Adam",
        metric=f"seconds per epoch x epochs to {pct}", paper_effect=PAPER_TIME_TO_90, unit="%", scale=100.0,
        kind="relative", baseline_values=b, treatment_values=t,
        notes=f"a seed that never reaches {pct} counts as {budget} epochs", value_unit="s", **common,
    ))  # fmt: skip
    if gsm8k_runs:
        adamw = _by_seed(gsm8k_runs, "adamw")
        for weight in gsm8k_lambdas:
            arm = _by_seed(gsm8k_runs, f"sgd_lambda_{weight:g}")
            paper = PAPER_MEAN_LOSS.get(float(weight))
            claims.append(Claim(
                key=f"gsm8k_lambda_{weight:g}", claim=(
                    f"Superpositional GD λ={weight:g} lowers GSM8K's mean training loss after one epoch by "
                    f"{100 * (1 - paper / PAPER_MEAN_LOSS['adamw']):.1f}% ({paper} vs 0.2188, paper Table I)"
                    if paper else f"Superpositional GD λ={weight:g} on GSM8K (no paper figure)"
                ),
                metric="mean training loss over one epoch (tiny Llama, bundled GSM8K sample)",
                baseline="AdamW", treatment=f"Superpositional GD λ={weight:g}", seeds=list(gsm8k_seeds),
                paper_effect=None if paper is None else paper / PAPER_MEAN_LOSS["adamw"] - 1.0, unit="%", scale=100.0,
                kind="relative", baseline_values=[adamw[s]["mean_train_loss"] for s in gsm8k_seeds],
                treatment_values=[arm[s]["mean_train_loss"] for s in gsm8k_seeds],
                paper={} if paper is None else {"baseline": PAPER_MEAN_LOSS["adamw"], "treatment": paper},
                notes="a tiny Llama (2 layers, 64-d) trained from scratch, not Llama-3.2-1B-Instruct fine-tuned",
                value_unit="loss",
            ))  # fmt: skip
    return claims


def run_study(setup: ClassificationSetup, study: StudyArguments, pool: RunPool, log=print) -> dict[str, Any]:
    """Run every phase (module docstring) and return the raw material of :func:`analyse`."""
    start = time.perf_counter()
    calibration = None
    if study.calibrate:
        calibration = calibrate(setup, study, pool, log)
        setup = dataclasses.replace(setup, num_train=calibration["chosen_num_train"])
    main_arms = [ADAMW, SGD_LAMBDA_05]
    gsm8k_arm_specs = gsm8k_arms(study.gsm8k_lambdas) if study.gsm8k else []
    pilot_seeds = list(range(study.first_seed, study.first_seed + study.pilot_seeds))
    gsm8k_pilot = list(range(study.first_seed, study.first_seed + study.gsm8k_pilot_seeds))
    pilot_start = time.perf_counter()
    pilot_tc_jobs = _classification_jobs(setup, main_arms, pilot_seeds, study)
    pilot_gsm8k_jobs = _gsm8k_jobs(study, gsm8k_arm_specs, gsm8k_pilot)
    pilot_runs = pool.run(pilot_gsm8k_jobs + pilot_tc_jobs, desc="pilot")
    pilot_seconds = time.perf_counter() - pilot_start
    gsm8k_runs, tc_runs = pilot_runs[: len(pilot_gsm8k_jobs)], pilot_runs[len(pilot_gsm8k_jobs) :]

    pilot_claims = build_claims(setup, tc_runs, gsm8k_runs, pilot_seeds, gsm8k_pilot if study.gsm8k else [], study.gsm8k_lambdas)
    tc_plan = plan_seeds(
        [c for c in pilot_claims if c.key.startswith("tc_")], study.power, study.alpha, study.min_seeds, study.max_seeds
    )
    gsm8k_plan = None
    if study.gsm8k:
        gsm8k_plan = plan_seeds(
            [c for c in pilot_claims if c.key.startswith("gsm8k_")],
            study.power, study.alpha, study.gsm8k_min_seeds, study.gsm8k_max_seeds,
        )  # fmt: skip
    for plan in (tc_plan, gsm8k_plan):
        if plan is not None:
            for row in plan["claims"]:
                log("power: " + row["text"])
            log("power: " + plan["text"])
    num_seeds = max(tc_plan["chosen"], study.pilot_seeds)
    seeds = list(range(study.first_seed, study.first_seed + num_seeds))
    gsm8k_seeds = (
        list(range(study.first_seed, study.first_seed + max(gsm8k_plan["chosen"], study.gsm8k_pilot_seeds)))
        if study.gsm8k
        else []
    )
    dose_seeds = list(range(study.first_seed, study.first_seed + study.dose_seeds))

    jobs = _classification_jobs(setup, main_arms, seeds[len(pilot_seeds) :], study)
    if study.ablation:
        jobs += _classification_jobs(setup, [eager(ADAMW), eager(SGD_LAMBDA_05)], seeds, study)
    # The dose-response arms evaluate once, after training; evaluating every epoch draws from the global RNG
    # (each DataLoader iterator takes a seed), which changes later epochs' shuffles and dropout. So they get
    # an AdamW reference trained exactly as they are, instead of the main AdamW runs.
    dose_reference = dataclasses.replace(ADAMW, name="dose_adamw", label="AdamW (dose reference)")
    doses = dose_arms(study)
    if doses:
        jobs += _classification_jobs(setup, [dose_reference, *doses], dose_seeds, study, each_epoch=False, cost=0.7)
    gsm8k_jobs = _gsm8k_jobs(study, gsm8k_arm_specs, gsm8k_seeds[len(gsm8k_pilot) :])
    pilot_cost = sum(job.cost for job in pilot_tc_jobs + pilot_gsm8k_jobs)
    remaining_cost = sum(job.cost for job in jobs + gsm8k_jobs)
    estimate = pilot_seconds * remaining_cost / max(pilot_cost, 1e-9)
    elapsed = time.perf_counter() - start
    log(
        f"plan: {num_seeds} seeds for the main arms{' and the ablation' if study.ablation else ''}, {len(dose_seeds)} "
        f"for {len(doses)} dose-response arms, {len(gsm8k_seeds)} for the GSM8K analogue: {len(jobs) + len(gsm8k_jobs)} "
        f"more runs, about {estimate / 60:.1f} min at the pilot's pace ({elapsed / 60:.1f} min so far, budget "
        f"{study.budget_minutes:g} min)"
    )
    if elapsed + estimate > 60 * study.budget_minutes:
        log(f"WARNING: the estimate exceeds the {study.budget_minutes:g}-minute budget (the machine may be busy).")
    rest = pool.run(gsm8k_jobs + jobs, desc="study runs")
    gsm8k_runs += rest[: len(gsm8k_jobs)]
    tc_runs += rest[len(gsm8k_jobs) :]
    return {
        "setup": setup,
        "study": study,
        "calibration": calibration,
        "power": {"text_classification": tc_plan, "gsm8k": gsm8k_plan},
        "seeds": seeds,
        "gsm8k_seeds": gsm8k_seeds,
        "dose_seeds": dose_seeds,
        "dose_arms": [dose_reference, *doses],
        "tc_runs": tc_runs,
        "gsm8k_runs": gsm8k_runs,
        "pilot_seconds": pilot_seconds,
    }


def _mean_ratio(run: dict[str, Any]) -> float:
    values = [v for v in run["perturbation_to_update_ratio"] if math.isfinite(v)]
    return float(np.mean(values)) if values else 0.0


def _diverged(run: dict[str, Any]) -> bool:
    losses = run["train_loss"] + run["eval_loss"]
    return any(not math.isfinite(v) for v in losses)


def dose_points(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per dose-response arm: mean perturbation-to-update ratio and the paired accuracy change."""
    study: StudyArguments = raw["study"]
    seeds = raw["dose_seeds"]
    reference = _by_seed(raw["tc_runs"], "dose_adamw")
    base = [reference[s]["eval_accuracy"][-1] for s in seeds]
    points = []
    for arm in raw["dose_arms"][1:]:
        runs = _by_seed(raw["tc_runs"], arm.name)
        finals = [runs[s]["eval_accuracy"][-1] for s in seeds]
        ratios = [_mean_ratio(runs[s]) for s in seeds]
        comparison = paired_difference(finals, base, study.confidence)
        args = dict(item.split("=") for item in arm.optim_args.split(","))
        points.append({
            "arm": arm.name, "label": arm.label, "quantum_weight": float(args["quantum_weight"]),
            "scope": args["scope"], "mode": args["mode"], "seeds": seeds, "final_accuracies": finals,
            "reference_accuracies": base, "ratio_per_seed": ratios, "ratio": float(np.mean(ratios)),
            "delta": comparison["mean"], "ci": comparison["ci"], "p": comparison["p"],
            "diverged_seeds": [s for s in seeds if _diverged(runs[s])],
        })  # fmt: skip
    return points


def ablation_claims(raw: dict[str, Any]) -> list[Claim]:
    """The 2x2 attention x optimizer factorial's effects on final accuracy (no paper figures: intervals only)."""
    seeds = raw["seeds"]
    cells = {
        name: [r["eval_accuracy"][-1] for r in (_by_seed(raw["tc_runs"], name)[s] for s in seeds)]
        for name in ("adamw", "sgd_lambda_0.5", "eager_adamw", "eager_sgd_lambda_0.5")
    }
    interaction_sgd = [q - e for q, e in zip(cells["sgd_lambda_0.5"], cells["eager_sgd_lambda_0.5"], strict=True)]
    interaction_adamw = [q - e for q, e in zip(cells["adamw"], cells["eager_adamw"], strict=True)]
    rows = (
        ("circuit_under_adamw", "quantum vs eager attention, both AdamW", "AdamW, eager", "AdamW, quantum",
         cells["eager_adamw"], cells["adamw"]),
        ("circuit_under_sgd", "quantum vs eager attention, both λ=0.5", "λ=0.5, eager", "λ=0.5, quantum",
         cells["eager_sgd_lambda_0.5"], cells["sgd_lambda_0.5"]),
        ("optimizer_under_eager", "λ=0.5 vs AdamW, both eager attention", "AdamW, eager", "λ=0.5, eager",
         cells["eager_adamw"], cells["eager_sgd_lambda_0.5"]),
        ("optimizer_under_quantum", "λ=0.5 vs AdamW, both quantum attention", "AdamW, quantum", "λ=0.5, quantum",
         cells["adamw"], cells["sgd_lambda_0.5"]),
        ("interaction", "circuit effect under λ=0.5 minus under AdamW", "circuit effect, AdamW",
         "circuit effect, λ=0.5", interaction_adamw, interaction_sgd),
    )  # fmt: skip
    return [
        Claim(key=key, claim=text, metric="held-out accuracy after the last epoch", baseline=b, treatment=t,
              paper_effect=None, unit="pts", scale=100.0, seeds=list(seeds), baseline_values=bv, treatment_values=tv,
              value_unit="points" if key == "interaction" else "accuracy")
        for key, text, b, t, bv, tv in rows
    ]  # fmt: skip


def analyse(raw: dict[str, Any]) -> dict[str, Any]:
    """The study's results: evaluated claims, dose-response points, ablation effects and GSM8K means."""
    study: StudyArguments = raw["study"]
    setup: ClassificationSetup = raw["setup"]
    claims = build_claims(
        setup, raw["tc_runs"], raw["gsm8k_runs"], raw["seeds"], raw["gsm8k_seeds"], study.gsm8k_lambdas
    )
    results = {
        "claims": [evaluate_claim(claim, study.confidence) for claim in claims],
        "dose_response": dose_points(raw) if len(raw["dose_arms"]) > 1 else [],
        "ablation": [evaluate_claim(c, study.confidence) for c in ablation_claims(raw)] if study.ablation else [],
    }
    adamw = _by_seed(raw["tc_runs"], ADAMW.name)
    results["adamw_accuracy"] = mean_std([adamw[s]["eval_accuracy"][-1] for s in raw["seeds"]])[0]
    results["bayes_accuracy"] = setup.bayes_accuracy()
    return results


def load_study(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished study's raw material back from its ``verdicts.json``, to re-analyse and re-report it.

    Returns:
        ``(raw, environment)``: what :func:`run_study` returned (settings, seeds, every run) and the
        environment record (date, machine, wall and CPU time) of the run that trained.

    Raises:
        FileNotFoundError: no such file. ValueError: not a study's ``verdicts.json``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`reanalyse`: {path} not found")
    payload = json.loads(path.read_text())
    if not {"settings", "runs", "environment"} <= set(payload):
        raise ValueError(f"`reanalyse`: {path} is not the verdicts.json of a study (no settings / runs / environment)")
    settings = payload["settings"]

    def restored(run: dict[str, Any]) -> dict[str, Any]:
        # verdicts.json writes non-finite numbers as null (strict JSON): back to nan in the runs' number lists
        return {k: [math.nan if v is None else v for v in value] if isinstance(value, list) else value for k, value in run.items()}

    raw = {
        "setup": ClassificationSetup(**settings["setup"]),
        "study": StudyArguments(**{**settings["study"], "reanalyse": None}),
        "calibration": payload["calibration"],
        "power": payload["power"],
        "seeds": settings["seeds"],
        "gsm8k_seeds": settings["gsm8k_seeds"],
        "dose_seeds": settings["dose_seeds"],
        "dose_arms": [ArmSpec(**arm) for arm in settings["dose_arms"]],
        "tc_runs": [restored(run) for run in payload["runs"]["text_classification"]],
        "gsm8k_runs": [restored(run) for run in payload["runs"]["gsm8k"]],
        "pilot_seconds": None,
    }
    return raw, payload["environment"]
