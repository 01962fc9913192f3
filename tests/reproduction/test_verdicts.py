"""The verdict rule (hf_superpositional.reproduction.verdicts) on constructed cases: each outcome, both signs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hf_superpositional.reproduction.verdicts import (
    INCONCLUSIVE,
    REFUTED,
    REPRODUCED,
    Claim,
    evaluate_claim,
    format_effect,
    format_interval,
    judge,
    plan_seeds,
)

PAPER_GAIN = 0.023  # +2.3 points of accuracy
PAPER_LOSS = 0.2098 / 0.2188 - 1  # -4.1% mean loss


@pytest.mark.parametrize(
    ("interval", "paper", "expected"),
    [
        ((-0.013, 0.019), PAPER_GAIN, REFUTED),  # the demo's interval: excludes +2.3 from below
        ((-0.05, -0.01), PAPER_GAIN, REFUTED),  # opposite sign
        ((0.03, 0.05), PAPER_GAIN, REFUTED),  # larger than claimed: the paper's value is still excluded
        ((0.005, 0.04), PAPER_GAIN, REPRODUCED),
        ((0.023, 0.04), PAPER_GAIN, REPRODUCED),  # the paper's value on the interval's edge is contained
        ((-0.01, 0.04), PAPER_GAIN, INCONCLUSIVE),  # contains both 0 and +2.3
        ((0.0, 0.04), PAPER_GAIN, INCONCLUSIVE),  # touching zero does not exclude it
        ((-0.06, -0.01), PAPER_LOSS, REPRODUCED),  # a claimed decrease
        ((-0.06, 0.01), PAPER_LOSS, INCONCLUSIVE),
        ((-0.01, 0.01), PAPER_LOSS, REFUTED),
        ((0.01, 0.02), PAPER_LOSS, REFUTED),
        ((math.nan, math.nan), PAPER_GAIN, INCONCLUSIVE),  # one seed: no interval, no verdict either way
    ],
)
def test_judge(interval, paper, expected):
    assert judge(interval, paper) == expected


def test_judge_rejects_bad_input():
    with pytest.raises(ValueError, match="paper_effect"):
        judge((0.0, 1.0), 0.0)
    with pytest.raises(ValueError, match="low <= high"):
        judge((1.0, 0.0), 0.5)


def claim_with(effects, paper_effect=PAPER_GAIN, kind="difference", baseline=None, key="c"):
    """A claim whose per-seed effects are ``effects`` (baselines vary by seed, as real runs do)."""
    effects = np.asarray(effects, float)
    base = np.asarray(baseline if baseline is not None else 0.88 + 0.01 * np.arange(effects.size), float)
    treatment = base * (1 + effects) if kind == "relative" else base + effects
    return Claim(
        key=key, claim="constructed", metric="m", baseline="AdamW", treatment="SGD", paper_effect=paper_effect,
        unit="%" if kind == "relative" else "pts", scale=100.0, seeds=list(range(effects.size)), kind=kind,
        baseline_values=base.tolist(), treatment_values=treatment.tolist(),
    )  # fmt: skip


def test_each_outcome_from_raw_per_seed_values():
    # reproduced: effects around +2.5 points with little spread
    reproduced = evaluate_claim(claim_with([0.02, 0.03, 0.025, 0.022, 0.028]))
    # refuted: effects around zero, tight enough to exclude +2.3
    refuted = evaluate_claim(claim_with([0.002, -0.004, 0.001, 0.003, -0.001, 0.0]))
    # inconclusive: effects around +1 point, too noisy to exclude either 0 or +2.3
    inconclusive = evaluate_claim(claim_with([0.05, -0.03, 0.02, -0.01, 0.03, -0.005]))
    assert (reproduced["verdict"], refuted["verdict"], inconclusive["verdict"]) == (REPRODUCED, REFUTED, INCONCLUSIVE)
    for result in (reproduced, refuted, inconclusive):
        # the interval is scipy's paired one on the raw values, the Welch one scipy's unpaired one
        ref = stats.ttest_rel(result["treatment_values"], result["baseline_values"]).confidence_interval(0.95)
        assert result["ci"] == pytest.approx([ref.low, ref.high], rel=1e-9)
        welch = stats.ttest_ind(result["treatment_values"], result["baseline_values"], equal_var=False)
        assert result["welch_ci"] == pytest.approx(list(welch.confidence_interval(0.95)), rel=1e-9)
        assert result["num_seeds"] == len(result["seeds"]) == len(result["effects"])
    assert reproduced["sentence"].startswith("REPRODUCED") and "+2.3 pts" in reproduced["sentence"]
    assert refuted["sentence"].startswith("REFUTED") and "smaller than claimed" in refuted["sentence"]
    assert refuted["seeds_to_decide"] is None and reproduced["seeds_to_decide"] is None
    n = inconclusive["seeds_to_decide"]
    assert inconclusive["sentence"].startswith("INCONCLUSIVE") and f"about {n} seeds" in inconclusive["sentence"]
    # n seeds with the same mean and spread decide it: the interval then excludes 0 or +2.3
    half = stats.t.ppf(0.975, n - 1) * inconclusive["std"] / math.sqrt(n)
    low, high = inconclusive["mean"] - half, inconclusive["mean"] + half
    assert judge((low, high), PAPER_GAIN) != INCONCLUSIVE
    assert 6 < n < 1000


def test_relative_claim_and_opposite_sign():
    # GSM8K-like: the loss goes up 1% with every seed, the paper says down 4.1%
    result = evaluate_claim(claim_with([0.011, 0.009, 0.010, 0.012], PAPER_LOSS, kind="relative", baseline=[5.5, 5.6, 5.4, 5.7]))
    effects = np.divide(result["treatment_values"], result["baseline_values"]) - 1
    assert result["effects"] == pytest.approx(effects.tolist())
    ref = stats.ttest_1samp(effects, 0.0).confidence_interval(0.95)
    assert result["ci"] == pytest.approx([ref.low, ref.high], rel=1e-9)
    assert result["verdict"] == REFUTED and "opposite sign" in result["sentence"]
    # the unpaired cross-check: Welch's interval of the difference of means over the baseline mean
    welch = stats.ttest_ind(result["treatment_values"], result["baseline_values"], equal_var=False)
    base = np.mean(result["baseline_values"])
    assert result["welch_ci"] == pytest.approx([x / base for x in welch.confidence_interval(0.95)], rel=1e-9)


@pytest.mark.parametrize(
    ("effects", "paper", "why"),
    [
        ([0.03, 0.05, 0.04, 0.045], PAPER_GAIN, "larger than claimed"),
        ([0.005, 0.008, 0.006, 0.007], PAPER_GAIN, "smaller than claimed)"),
        ([0.005, -0.004, 0.002, 0.003], PAPER_GAIN, "smaller than claimed, and zero is inside the interval"),
        ([0.02, 0.07, -0.03, 0.1, 0.05], -0.16, "smaller than claimed, and zero is inside the interval"),  # the study's time-to-90%
        ([-0.3, -0.25, -0.28, -0.27], -0.16, "larger than claimed"),
    ],
)
def test_a_refutation_says_which_side_the_paper_fell_on(effects, paper, why):
    result = evaluate_claim(claim_with(effects, paper, kind="relative" if paper == -0.16 else "difference"))
    assert result["verdict"] == REFUTED and why in result["sentence"], result["sentence"]


def test_tiny_effects_print_as_numbers_not_zeros():
    result = evaluate_claim(claim_with([1e-8, 3e-8, 2e-8], PAPER_LOSS, kind="relative"))
    assert result["verdict"] == REFUTED and "+2e-06%" in result["sentence"] and "0.0%" not in result["sentence"]


def test_claim_without_a_paper_effect_reports_the_interval_only():
    result = evaluate_claim(claim_with([0.02, 0.03, 0.025], paper_effect=None))
    assert result["verdict"] is None and "excludes zero: a positive effect" in result["sentence"]
    result = evaluate_claim(claim_with([0.02, -0.03, 0.005], paper_effect=None))
    assert "contains zero" in result["sentence"]


def test_claim_validation():
    with pytest.raises(ValueError, match="one entry per seed"):
        Claim(key="c", claim="", metric="", baseline="a", treatment="b", paper_effect=0.1, unit="pts", scale=100.0,
              seeds=[0, 1], baseline_values=[0.9], treatment_values=[0.9, 0.8])  # fmt: skip
    with pytest.raises(ValueError, match="kind"):
        claim_with([0.1, 0.2], kind="ratio")


def test_plan_seeds_from_a_pilot():
    pilot = claim_with([0.01, -0.02, 0.03, 0.0], key="accuracy")  # sigma of the differences ~ 0.021
    sigma = float(np.std(pilot.effects(), ddof=1))
    time_claim = claim_with([0.01, 0.02, 0.015, 0.012], paper_effect=0.35, kind="relative", key="time")
    no_paper = claim_with([0.01, 0.02], paper_effect=None, key="none")
    plan = plan_seeds([pilot, time_claim, no_paper], power=0.8, alpha=0.05, min_seeds=5, max_seeds=30)
    rows = {row["key"]: row for row in plan["claims"]}
    assert sorted(rows) == ["accuracy", "time"]  # a claim without a paper effect has nothing to be powered for
    assert rows["accuracy"]["sigma"] == pytest.approx(sigma)
    # the accuracy claim needs the most seeds: ((1.96 + 0.84) * 0.0208 / 0.023)^2 ~ 6.4 -> 9 with the t-test
    assert rows["accuracy"]["normal_approximation"] == pytest.approx(((1.959964 + 0.841621) * sigma / 0.023) ** 2, rel=1e-5)
    assert plan["required"] == rows["accuracy"]["seeds"] == 9 and rows["time"]["seeds"] == 2
    assert plan["chosen"] == 9 and not plan["capped"]
    assert f"((1.960 + 0.842) x {100 * sigma:.3f} / 2.300)^2" in rows["accuracy"]["text"]
    capped = plan_seeds([pilot], min_seeds=2, max_seeds=4)
    assert capped["chosen"] == 4 and capped["capped"] and "under-powered" in capped["text"]
    floor = plan_seeds([time_claim], min_seeds=5, max_seeds=30)
    assert floor["required"] == 2 and floor["chosen"] == 5
    with pytest.raises(ValueError, match="two seeds"):
        plan_seeds([claim_with([0.01])])


def test_formatting():
    assert format_effect(0.023, "pts", 100.0) == "+2.3 pts"
    assert format_effect(PAPER_LOSS, "%", 100.0, digits=2) == "-4.11%"
    assert format_effect(math.nan, "pts", 100.0) == "—"
    assert format_interval([-0.013, 0.019], "pts", 100.0) == "[-1.3, +1.9] pts"
    assert format_interval([-2.0, 0.5], "epochs", 1.0) == "[-2.0, +0.5] epochs"
