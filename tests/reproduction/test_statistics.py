"""hf_superpositional.reproduction.statistics against scipy, textbook formulas and independent re-derivations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from hf_superpositional.reproduction.statistics import (
    epochs_to_threshold,
    mean_std,
    paired_difference,
    paired_t_power,
    relative_differences,
    seeds_for_power,
    seeds_to_decide,
    t_interval,
    welch_interval,
    welch_test,
)

ADAMW_FINAL = [0.90, 0.92, 0.91]
SGD_FINAL = [0.95, 0.96, 0.94]
# Paired data where the seed's own luck dominates: the pairing removes most of the spread.
BASELINE = [0.881, 0.912, 0.936, 0.902, 0.925, 0.894, 0.918]
TREATMENT = [0.889, 0.915, 0.945, 0.905, 0.937, 0.898, 0.921]


def hand_welch(a, b):
    """Welch's t and two-sided p from the textbook formulas (Welch-Satterthwaite degrees of freedom)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return t, 2.0 * stats.t.sf(abs(t), df)


def test_mean_std_and_interval_match_scipy():
    mean, std = mean_std(SGD_FINAL)
    assert mean == pytest.approx(0.95)
    assert std == pytest.approx(0.01)  # values .95 +- .01: sample std exactly 0.01
    low, high = t_interval(SGD_FINAL, 0.95)
    ref_low, ref_high = stats.t.interval(0.95, df=2, loc=np.mean(SGD_FINAL), scale=stats.sem(SGD_FINAL))
    assert (low, high) == pytest.approx((ref_low, ref_high), abs=1e-12)
    # hand: t_{0.975,2} = 4.302653 -> half width 4.302653 * 0.01 / sqrt(3)
    assert high - mean == pytest.approx(4.302652729 * 0.01 / math.sqrt(3), rel=1e-8)


def test_single_value_has_no_spread():
    assert math.isnan(mean_std([0.9])[1])
    assert all(math.isnan(v) for v in t_interval([0.9]))
    assert all(math.isnan(v) for v in welch_test([0.9], [0.8, 0.85]))
    assert all(math.isnan(v) for v in welch_interval([0.9], [0.8, 0.85]))
    single = paired_difference([0.9], [0.8])
    assert single["mean"] == pytest.approx(0.1) and math.isnan(single["p"]) and all(math.isnan(v) for v in single["ci"])


def test_welch_matches_scipy_and_hand_formula():
    t, p = welch_test(SGD_FINAL, ADAMW_FINAL)
    ref = stats.ttest_ind(SGD_FINAL, ADAMW_FINAL, equal_var=False)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert (t, p) == pytest.approx(hand_welch(SGD_FINAL, ADAMW_FINAL), rel=1e-9)
    # unequal sizes and variances: where Welch differs from Student's pooled test
    a, b = [0.1, 0.4, 0.35, 0.2, 0.9], [0.5, 0.52, 0.51]
    assert welch_test(a, b) == pytest.approx(hand_welch(a, b), rel=1e-9)
    assert welch_test(a, b)[1] != pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, rel=1e-3)


def test_welch_without_spread():
    assert welch_test([3.0, 3.0], [3.0, 3.0]) == (0.0, 1.0)
    t, p = welch_test([2.0, 2.0, 2.0], [3.0, 3.0])
    assert t == -math.inf and p == 0.0
    assert welch_interval([2.0, 2.0], [3.0, 3.0])[:2] == (-1.0, -1.0)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_welch_interval_matches_scipy(confidence):
    for a, b in ((SGD_FINAL, ADAMW_FINAL), ([0.1, 0.4, 0.35, 0.2, 0.9], [0.5, 0.52, 0.51])):
        low, high, df = welch_interval(a, b, confidence)
        ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
        assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-10)
        assert df == pytest.approx(stats.ttest_ind(a, b, equal_var=False).df, rel=1e-12)


@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_paired_difference_matches_scipy_ttest_rel(confidence):
    result = paired_difference(TREATMENT, BASELINE, confidence)
    ref = stats.ttest_rel(TREATMENT, BASELINE)
    ci = ref.confidence_interval(confidence)
    assert result["ci"] == pytest.approx([ci.low, ci.high], rel=1e-10)
    assert (result["t"], result["p"]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-10)
    differences = np.subtract(TREATMENT, BASELINE)
    assert result["differences"] == pytest.approx(differences.tolist())
    assert (result["mean"], result["std"]) == pytest.approx((differences.mean(), differences.std(ddof=1)))
    welch = stats.ttest_ind(TREATMENT, BASELINE, equal_var=False)
    assert result["welch_ci"] == pytest.approx(list(welch.confidence_interval(confidence)), rel=1e-10)
    assert result["welch_p"] == pytest.approx(welch.pvalue, rel=1e-10)
    # the pairing is what makes this difference detectable: the unpaired test cannot see it
    assert result["p"] < 0.01 < 0.5 < result["welch_p"]


def test_paired_difference_edge_cases():
    same = paired_difference([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same["ci"] == [0.0, 0.0] and (same["t"], same["p"]) == (0.0, 1.0)
    shifted = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # every difference 0.5: no noise at all
    assert shifted["ci"] == [0.5, 0.5] and shifted["p"] == 0.0 and shifted["t"] == math.inf
    with pytest.raises(ValueError, match="pair up"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference([1.0, 2.0], [1.0, 1.0], confidence=1.0)


def test_relative_differences():
    assert relative_differences([0.2098, 0.2097], [0.2188, 0.2188]) == pytest.approx(
        [0.2098 / 0.2188 - 1, 0.2097 / 0.2188 - 1]
    )
    with pytest.raises(ValueError, match="zero"):
        relative_differences([1.0], [0.0])
    with pytest.raises(ValueError, match="pair up"):
        relative_differences([1.0, 2.0], [1.0])


def integrated_power(effect, sigma, n, alpha):
    """The paired t-test's power by direct integration, without scipy's noncentral t.

    T = (Z + d) / sqrt(V / k) with Z standard normal, d = effect * sqrt(n) / sigma and V chi-square with
    k = n - 1 degrees of freedom; P(|T| > c) = E_V[ Phi(-c s + d)... ] integrated over V's density.
    """
    k = n - 1
    c = stats.t.ppf(1 - alpha / 2, k)
    d = abs(effect) * math.sqrt(n) / sigma

    def integrand(v):
        s = math.sqrt(v / k)
        return (stats.norm.sf(c * s - d) + stats.norm.cdf(-c * s - d)) * stats.chi2.pdf(v, k)

    value, _ = integrate.quad(integrand, 0, np.inf, limit=200)
    return value


@pytest.mark.parametrize(("effect", "sigma", "n"), [(1.0, 1.0, 10), (0.023, 0.035, 12), (-2.8, 1.5, 4), (0.5, 2.0, 60)])
def test_power_matches_an_independent_integration(effect, sigma, n):
    assert paired_t_power(effect, sigma, n) == pytest.approx(integrated_power(effect, sigma, n, 0.05), abs=1e-6)


def test_power_matches_a_simulation_of_ttest_rel():
    # 20,000 simulated studies of 8 seeds, tested with scipy's own paired t-test: +-0.9% (3 sigma) agreement.
    rng = np.random.default_rng(0)
    effect, sigma, n = 0.02, 0.025, 8
    differences = rng.normal(effect, sigma, size=(20_000, n))
    rejected = stats.ttest_1samp(differences, 0.0, axis=1).pvalue < 0.05
    assert paired_t_power(effect, sigma, n) == pytest.approx(rejected.mean(), abs=0.009)


def test_power_in_scipys_far_tail_and_bad_input():
    # scipy's noncentral t gives nan for noncentralities in the tens: the power there is one, not nan.
    assert paired_t_power(1.0, 1.0, 100) == pytest.approx(1.0)
    assert paired_t_power(1.0, 0.0, 5) == 1.0
    with pytest.raises(ValueError, match="n"):
        paired_t_power(1.0, 1.0, 1)
    with pytest.raises(ValueError, match="sigma"):
        paired_t_power(1.0, -1.0, 5)


@pytest.mark.parametrize(("effect", "sigma"), [(0.023, 0.012), (0.023, 0.035), (-2.8, 1.7), (0.35, 0.04), (-0.041, 0.05)])
def test_seeds_for_power_is_the_smallest_count_that_reaches_the_target(effect, sigma):
    plan = seeds_for_power(effect, sigma, power=0.8, alpha=0.05)
    n = plan["seeds"]
    assert integrated_power(effect, sigma, n, 0.05) >= 0.8 - 1e-9
    if n > 2:
        assert integrated_power(effect, sigma, n - 1, 0.05) < 0.8
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert plan["normal_approximation"] == pytest.approx((z * sigma / effect) ** 2)
    # the t-test needs a little more than the normal approximation, never less
    assert n >= math.floor(plan["normal_approximation"])


def test_seeds_for_power_limits():
    assert seeds_for_power(1.0, 0.01)["seeds"] == 2
    assert seeds_for_power(1e-6, 1.0)["seeds"] is None
    with pytest.raises(ValueError, match="non-zero"):
        seeds_for_power(0.0, 1.0)


@pytest.mark.parametrize(("mean", "sigma", "paper"), [(0.01, 0.03, 0.023), (-0.003, 0.02, 0.023), (0.03, 0.05, 0.023), (-0.02, 0.1, -0.041)])
def test_seeds_to_decide(mean, sigma, paper):
    n = seeds_to_decide(mean, sigma, paper)
    margin = max(abs(mean), abs(mean - paper))

    def half_width(k):
        return stats.t.ppf(0.975, k - 1) * sigma / math.sqrt(k)

    assert half_width(n) < margin
    if n > 2:
        assert half_width(n - 1) >= margin
    # at n seeds, an interval with this mean and spread excludes zero or the paper's effect
    low, high = mean - half_width(n), mean + half_width(n)
    assert not (low <= 0 <= high and low <= paper <= high)


def test_seeds_to_decide_limits():
    assert seeds_to_decide(0.01, 0.0, 0.023) == 2
    assert seeds_to_decide(0.0, 1.0, 1e-9, max_seeds=1000) is None


def test_epochs_to_threshold():
    assert epochs_to_threshold([0.5, 0.9, 0.8], 0.9) == 2  # ">=": reaching exactly counts
    assert epochs_to_threshold([0.95], 0.9) == 1
    assert epochs_to_threshold([0.5, 0.89], 0.9) is None
