"""The verdict rule of the study: each of the paper's claims refuted, reproduced or inconclusive.

A claim is an effect the paper reports against Adam(W) -- "+2.3 points of accuracy", "-4.1% mean loss" --
and our measurement of the same effect is the per-seed difference between two arms trained with the same
seed (same initial weights, same data order). :data:`VERDICT_RULE` states the rule, :func:`judge` applies it
to an interval, :func:`evaluate_claim` computes the interval and everything else a reader needs from a
:class:`Claim`'s raw per-seed values, and :func:`plan_seeds` turns a pilot's spread into the seed count that
gives the paired t-test 80% power against the paper's effect.

Example:
    >>> claim = Claim(key="acc", claim="lambda=0.5 beats Adam by 2.3 points", metric="final accuracy",
    ...               baseline="AdamW", treatment="SGD", paper_effect=0.023, unit="pts", scale=100.0,
    ...               seeds=[0, 1, 2, 3], baseline_values=[0.90, 0.92, 0.91, 0.93],
    ...               treatment_values=[0.90, 0.925, 0.905, 0.93])
    >>> result = evaluate_claim(claim)
    >>> result["verdict"], [round(100 * x, 2) for x in result["ci"]]
    ('refuted', [-0.65, 0.65])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .statistics import (
    mean_std,
    paired_difference,
    relative_differences,
    seeds_for_power,
    seeds_to_decide,
    welch_interval,
)

__all__ = [
    "INCONCLUSIVE",
    "OUTCOMES",
    "REFUTED",
    "REPRODUCED",
    "VERDICT_RULE",
    "Claim",
    "evaluate_claim",
    "format_effect",
    "format_interval",
    "judge",
    "plan_seeds",
]

REFUTED, REPRODUCED, INCONCLUSIVE = "refuted", "reproduced", "inconclusive"
OUTCOMES = (REFUTED, REPRODUCED, INCONCLUSIVE)

VERDICT_RULE = (
    "For each claim we take the 95% interval of the paired difference to AdamW: runs with the same seed share "
    "initial weights and data order, so the interval is Student's t on the per-seed differences (the Welch "
    "interval, which ignores the pairing, is shown beside it). The claim is *refuted* when the interval "
    "excludes the paper's effect; *reproduced* when it excludes zero on the paper's side and contains the "
    "paper's effect; otherwise *inconclusive*, together with the number of seeds at which an interval with "
    "the same mean and spread would decide it."
)


def judge(interval: tuple[float, float] | list[float], paper_effect: float) -> str:
    """Apply :data:`VERDICT_RULE` to a confidence interval of our effect.

    Args:
        interval: ``(low, high)`` of the paired difference (``nan`` when there is no spread to estimate).
        paper_effect: the paper's effect in the same units, non-zero (its sign is the claimed direction).

    Returns:
        :data:`REFUTED`, :data:`REPRODUCED` or :data:`INCONCLUSIVE` (always for an undefined interval).

    Example:
        >>> judge((-1.0, 1.9), 2.3), judge((0.5, 3.0), 2.3), judge((-1.0, 3.0), 2.3), judge((-5.0, -1.0), -4.1)
        ('refuted', 'reproduced', 'inconclusive', 'reproduced')
    """
    if paper_effect == 0 or not math.isfinite(paper_effect):
        raise ValueError(f"`paper_effect` must be a finite non-zero number, got {paper_effect!r}.")
    low, high = float(interval[0]), float(interval[1])
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if low > high:
        raise ValueError(f"`interval` must be (low, high) with low <= high, got {interval!r}.")
    if not low <= paper_effect <= high:
        return REFUTED
    excludes_zero_on_papers_side = low > 0 if paper_effect > 0 else high < 0
    return REPRODUCED if excludes_zero_on_papers_side else INCONCLUSIVE


@dataclass
class Claim:
    """One effect the paper reports, with the raw per-seed values we measured for it.

    Args:
        key: a short identifier (``"tc_final_accuracy"``).
        claim: the paper's claim in words.
        metric: what is measured per seed (``"final held-out accuracy"``).
        baseline: label of the baseline arm (AdamW).
        treatment: label of the arm the claim is about.
        paper_effect: the paper's effect of the treatment over the baseline, in the units compared (a
            difference of fractions for ``kind="difference"``, a relative change for ``"relative"``); ``None``
            for an effect the paper does not quantify (then no verdict, only the interval).
        unit: how the effect is printed: ``"pts"`` (a fraction shown x100 as points), ``"%"`` (a relative
            change shown x100), or any other unit shown as it is (``"epochs"``).
        scale: display multiplier of the effect (100 for ``"pts"`` and ``"%"``).
        seeds: the seeds, in the order of the values.
        baseline_values: per-seed values of the baseline arm.
        treatment_values: per-seed values of the treatment arm (same seeds, same order).
        kind: ``"difference"`` (``treatment - baseline``) or ``"relative"`` (``treatment / baseline - 1``).
        paper: the paper's own per-arm figures, for the report (``{"baseline": 0.915, "treatment": 0.938}``).
        notes: anything a reader needs to interpret the values (censoring, what is timed).
        value_unit: what one per-arm value is, for printing: ``"accuracy"`` (a fraction, shown as %),
            ``"epochs"``, ``"s"`` (seconds) or ``"loss"``.
    """

    key: str
    claim: str
    metric: str
    baseline: str
    treatment: str
    paper_effect: float | None
    unit: str
    scale: float
    seeds: list[int]
    baseline_values: list[float]
    treatment_values: list[float]
    kind: str = "difference"
    paper: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    value_unit: str = ""

    def __post_init__(self):
        if self.kind not in ("difference", "relative"):
            raise ValueError(f"`kind` must be 'difference' or 'relative', got {self.kind!r}.")
        if not len(self.seeds) == len(self.baseline_values) == len(self.treatment_values):
            raise ValueError(
                f"claim {self.key!r}: `seeds`, `baseline_values` and `treatment_values` must have one entry per "
                f"seed, got {len(self.seeds)}, {len(self.baseline_values)} and {len(self.treatment_values)}."
            )
        if not self.seeds:
            raise ValueError(f"claim {self.key!r} has no seeds.")

    def effects(self) -> list[float]:
        """Per-seed effects: differences or relative changes, in the order of :attr:`seeds`."""
        if self.kind == "relative":
            return relative_differences(self.treatment_values, self.baseline_values)
        return [t - b for t, b in zip(self.treatment_values, self.baseline_values, strict=True)]


def format_effect(value: float | None, unit: str, scale: float, digits: int = 1, sign: bool = True) -> str:
    """An effect as printed in the report (``+2.3 pts``, ``-4.1%``, ``-0.4 epochs``; ``—`` when undefined).

    A non-zero effect that would print as zero at ``digits`` decimals is printed in scientific notation, so a
    tiny effect is not mistaken for none.

    Example:
        >>> format_effect(0.023, "pts", 100.0), format_effect(-0.0411, "%", 100.0), format_effect(-2.8, "epochs", 1.0)
        ('+2.3 pts', '-4.1%', '-2.8 epochs')
        >>> format_effect(1.6e-8, "%", 100.0), format_effect(-4.5e-4, "pts", 100.0)
        ('+1.6e-06%', '-0.045 pts')
    """
    if value is None or not math.isfinite(value):
        return "—"
    number = _number(value * scale, digits, sign)
    return f"{number}%" if unit == "%" else f"{number} {unit}"


def _number(value: float, digits: int, sign: bool = True) -> str:
    plus = "+" if sign else ""
    if value != 0 and abs(value) < 0.5 * 10**-digits:  # would print as zero: two significant digits instead
        return f"{value:{plus}.2g}"
    return f"{value:{plus}.{digits}f}"


def format_interval(interval: list[float], unit: str, scale: float, digits: int = 1) -> str:
    """An interval as printed in the report (``[-1.2, +0.8] pts``, ``[-5.0, -3.1]%``; ``—`` when undefined).

    Example:
        >>> format_interval([-0.012, 0.008], "pts", 100.0), format_interval([float("nan"), 1.0], "%", 100.0)
        ('[-1.2, +0.8] pts', '—')
        >>> format_interval([-1e-8, 3e-8], "%", 100.0)
        '[-1e-06, +3e-06]%'
    """
    low, high = interval
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    suffix = "%" if unit == "%" else f" {unit}"
    if max(abs(low), abs(high)) * scale < 0.5 * 10**-digits:  # both ends would print as 0.0: show them
        return f"[{_number(low * scale, digits)}, {_number(high * scale, digits)}]{suffix}"
    return f"[{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]{suffix}"


def evaluate_claim(claim: Claim, confidence: float = 0.95) -> dict[str, Any]:
    """Everything the report says about one claim, computed from its raw per-seed values.

    Returns:
        A JSON-ready dict: the claim's fields (raw values included), ``effects`` (per seed), ``mean``,
        ``std``, ``ci`` (paired), ``p`` (paired t-test), ``welch_ci`` and ``welch_p`` (unpaired),
        ``baseline_mean``, ``treatment_mean``, ``num_seeds``, ``verdict`` (``None`` without a paper effect),
        ``seeds_to_decide`` (for inconclusive verdicts) and ``sentence`` (the verdict in words).

    Example:
        >>> claim = Claim(key="loss", claim="-4.1% loss", metric="mean loss", baseline="AdamW", treatment="SGD",
        ...               paper_effect=-0.0411, unit="%", scale=100.0, seeds=[0, 1, 2], kind="relative",
        ...               baseline_values=[5.0, 5.2, 5.1], treatment_values=[4.99, 5.21, 5.09])
        >>> result = evaluate_claim(claim)
        >>> result["verdict"], round(100 * result["mean"], 3)
        ('refuted', -0.068)
    """
    effects = claim.effects()
    comparison = paired_difference(effects, [0.0] * len(effects), confidence)
    if claim.kind == "relative":
        # Unpaired figure for a relative change: Welch's interval of the difference of means over the
        # baseline mean (the baseline mean's own uncertainty is left out: a reader's cross-check, not the rule).
        base_mean = mean_std(claim.baseline_values)[0]
        low, high, _ = welch_interval(claim.treatment_values, claim.baseline_values, confidence)
        welch_ci = [low / base_mean, high / base_mean]
    else:
        welch_ci = paired_difference(claim.treatment_values, claim.baseline_values, confidence)["welch_ci"]
    welch_p = paired_difference(claim.treatment_values, claim.baseline_values, confidence)["welch_p"]
    verdict = None if claim.paper_effect is None else judge(comparison["ci"], claim.paper_effect)
    to_decide = None
    if verdict == INCONCLUSIVE and math.isfinite(comparison["std"]):
        to_decide = seeds_to_decide(comparison["mean"], comparison["std"], claim.paper_effect, confidence)
    result = {
        **dataclasses.asdict(claim),
        "effects": effects,
        "num_seeds": len(effects),
        "baseline_mean": mean_std(claim.baseline_values)[0],
        "treatment_mean": mean_std(claim.treatment_values)[0],
        "mean": comparison["mean"],
        "std": comparison["std"],
        "ci": comparison["ci"],
        "p": comparison["p"],
        "welch_ci": welch_ci,
        "welch_p": welch_p,
        "confidence": confidence,
        "verdict": verdict,
        "seeds_to_decide": to_decide,
    }
    result["sentence"] = _sentence(result)
    return result


def _sentence(result: dict[str, Any]) -> str:
    unit, scale = result["unit"], result["scale"]
    ci = format_interval(result["ci"], unit, scale)
    level = f"{round(100 * result['confidence'])}%"
    measured = (
        f"mean {format_effect(result['mean'], unit, scale)} over {result['num_seeds']} paired seeds, "
        f"{level} interval {ci} (Welch, unpaired: {format_interval(result['welch_ci'], unit, scale)})"
    )
    paper_effect = result["paper_effect"]
    if paper_effect is None:
        low, high = result["ci"]
        if not (math.isfinite(low) and math.isfinite(high)):
            where = "no interval (fewer than two seeds)"
        elif low > 0 or high < 0:
            where = f"the interval excludes zero: a {'positive' if low > 0 else 'negative'} effect"
        else:
            where = "the interval contains zero: no effect detected"
        return f"{measured}; {where}."
    paper = format_effect(paper_effect, unit, scale)
    verdict = result["verdict"]
    if verdict == REPRODUCED:
        return f"REPRODUCED: {measured} excludes zero and contains the paper's {paper}."
    if verdict == REFUTED:
        # The interval in the paper's direction (a claimed decrease is flipped into an increase).
        direction = 1.0 if paper_effect > 0 else -1.0
        low, high = sorted(direction * x for x in result["ci"])
        if high < 0:
            why = "the effect has the opposite sign"
        elif high < abs(paper_effect):
            why = "the effect is smaller than claimed" + (", and zero is inside the interval" if low <= 0 else "")
        else:
            why = "the effect is larger than claimed"
        return f"REFUTED: {measured} excludes the paper's {paper} ({why})."
    if not all(math.isfinite(x) for x in result["ci"]):
        return f"INCONCLUSIVE: {measured}; fewer than two seeds, no interval."
    needed = result["seeds_to_decide"]
    decide = (
        f"about {needed} seeds would decide it at this mean and spread"
        if needed is not None
        else "no practical number of seeds would decide it at this mean and spread"
    )
    return f"INCONCLUSIVE: {measured} contains both zero and the paper's {paper}; {decide}."


def plan_seeds(
    pilot_claims: list[Claim],
    power: float = 0.8,
    alpha: float = 0.05,
    min_seeds: int = 2,
    max_seeds: int = 100,
) -> dict[str, Any]:
    """Seeds for the paired t-test to detect each claim's paper effect, from a pilot's per-seed spread.

    For each claim with a paper effect: ``sigma`` = standard deviation of the pilot's per-seed effects, the
    normal approximation ``((z_{1-alpha/2} + z_power) * sigma / effect)^2`` and the exact noncentral-t count
    (:func:`~hf_superpositional.reproduction.statistics.seeds_for_power`). The study runs the largest of
    them, at least ``min_seeds`` and at most ``max_seeds`` (``capped`` says when the cap bound it).

    Returns:
        ``{"claims": [{"key", "sigma", "paper_effect", "seeds", "power_at_seeds", "normal_approximation",
        "pilot_seeds", "text"}], "required", "chosen", "capped", "power", "alpha", "text"}``.

    Example:
        >>> pilot = Claim(key="acc", claim="", metric="", baseline="A", treatment="B", paper_effect=0.023,
        ...               unit="pts", scale=100.0, seeds=[0, 1, 2, 3], baseline_values=[0.90, 0.92, 0.91, 0.93],
        ...               treatment_values=[0.91, 0.90, 0.93, 0.92])
        >>> plan = plan_seeds([pilot], min_seeds=5, max_seeds=40)
        >>> plan["required"], plan["chosen"], plan["capped"]
        (8, 8, False)
    """
    from scipy import stats

    if not 2 <= min_seeds <= max_seeds:
        raise ValueError(f"need 2 <= min_seeds <= max_seeds, got {min_seeds} and {max_seeds}.")
    z_alpha, z_power = float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))
    rows = []
    for claim in pilot_claims:
        if claim.paper_effect is None:
            continue
        effects = claim.effects()
        sigma = mean_std(effects)[1] if len(effects) > 1 else math.nan
        unit, scale = claim.unit, claim.scale
        if not math.isfinite(sigma):
            raise ValueError(f"claim {claim.key!r}: a pilot needs at least two seeds to estimate a spread.")
        plan = seeds_for_power(claim.paper_effect, sigma, power, alpha)
        seeds = plan["seeds"]
        text = (
            f"{claim.key}: pilot {len(effects)} seeds, sigma_d = {format_effect(sigma, unit, scale, 2, sign=False)}; "
            f"paper effect {format_effect(claim.paper_effect, unit, scale, 2)}; normal approximation "
            f"n = (({z_alpha:.3f} + {z_power:.3f}) x {_number(sigma * scale, 3, sign=False)} / {abs(claim.paper_effect) * scale:.3f})^2 "
            f"= {_number(plan['normal_approximation'], 1, sign=False)}; paired t-test (noncentral t, two-sided alpha {alpha:g}): "
            + (
                f"n = {seeds} (power {plan['power_at_seeds']:.3f})"
                if seeds is not None
                else "more than 100000 seeds"
            )
        )
        rows.append(
            {
                "key": claim.key,
                "sigma": sigma,
                "paper_effect": claim.paper_effect,
                "pilot_seeds": len(effects),
                "pilot_effects": effects,
                "text": text,
                **plan,
            }
        )
    needed = [row["seeds"] if row["seeds"] is not None else math.inf for row in rows]
    required = max(needed, default=min_seeds)
    chosen = int(min(max(required, min_seeds), max_seeds))
    capped = required > max_seeds
    summary = (
        f"Seeds for {power:.0%} power at alpha {alpha:g} (paired t-test against the paper's effect): "
        + (f"required {required if math.isfinite(required) else '> 100000'}, " if rows else "")
        + f"running {chosen} (at least {min_seeds}, at most {max_seeds})"
        + (": the cap binds, so the study is under-powered for some claim" if capped else "")
        + "."
    )
    return {
        "claims": rows,
        "required": required if math.isfinite(required) else None,
        "chosen": chosen,
        "capped": capped,
        "power": power,
        "alpha": alpha,
        "text": summary,
    }
