"""Statistics of seeded optimizer comparisons: means, intervals, tests and seed counts.

Every function takes per-seed values as plain sequences of numbers, so a finished study can be recomputed
from its ``verdicts.json`` with nothing but these functions (or scipy).

- :func:`mean_std`, :func:`t_interval`: mean, sample standard deviation (``ddof=1``) and the Student-t
  interval of one arm's values over seeds.
- :func:`welch_test`, :func:`welch_interval`: Welch's unequal-variance t-test of two arms and the interval of
  their difference of means (Welch-Satterthwaite degrees of freedom), ignoring any pairing.
- :func:`paired_difference`: runs that share a seed share initial weights and data order, so their
  difference removes the seed's own luck. The interval is Student's on the per-seed differences
  ``d_i = treatment_i - baseline_i``: ``mean(d) +- t_{(1+c)/2, n-1} * std(d) / sqrt(n)``, with the paired
  t-test (``scipy.stats.ttest_rel``) and the Welch figures beside it.
- :func:`paired_t_power`, :func:`seeds_for_power`: the power of the two-sided paired t-test to detect an
  effect ``delta`` when the differences have standard deviation ``sigma``: with ``n`` seeds the statistic is
  noncentral-t with ``n - 1`` degrees of freedom and noncentrality ``delta * sqrt(n) / sigma``, so
  ``power = P(T > t_crit) + P(T < -t_crit)``; the seed count is the smallest ``n`` reaching the target.
- :func:`seeds_to_decide`: how many seeds the interval would need, at the current mean and spread, to
  exclude zero or the paper's effect (whichever lies farther from the mean).
- :func:`epochs_to_threshold`: the first epoch whose accuracy reaches a threshold.

Example:
    >>> result = paired_difference([0.93, 0.95, 0.94], [0.91, 0.92, 0.92])
    >>> round(result["mean"], 4), [round(x, 3) for x in result["ci"]]
    (0.0233, [0.009, 0.038])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "epochs_to_threshold",
    "mean_std",
    "paired_difference",
    "paired_t_power",
    "relative_differences",
    "seeds_for_power",
    "seeds_to_decide",
    "t_interval",
    "welch_interval",
    "welch_test",
]

MAX_SEEDS = 100_000
"""Upper end of the seed-count searches: beyond it an effect is, for this purpose, undetectable."""


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D sequence of numbers, got {values!r}.")
    return array


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}.")
    return float(confidence)


def _t_critical(confidence: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf((1.0 + confidence) / 2.0, df=df))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; ``nan`` for a single value).

    Example:
        >>> mean_std([1.0, 2.0, 3.0])
        (2.0, 1.0)
    """
    array = _as_array(values, "values")
    std = float(array.std(ddof=1)) if array.size > 1 else math.nan
    return float(array.mean()), std


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean: ``mean +- t_{(1+c)/2, n-1} * std / sqrt(n)``.

    Args:
        values: per-seed measurements.
        confidence: in ``(0, 1)``.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for fewer than two values (no spread to estimate).

    Example:
        >>> low, high = t_interval([1.0, 2.0, 3.0])
        >>> round(low, 4), round(high, 4)
        (-0.4841, 4.4841)
    """
    confidence = _check_confidence(confidence)
    array = _as_array(values, "values")
    if array.size < 2:
        return math.nan, math.nan
    mean, std = mean_std(array)
    half = _t_critical(confidence, array.size - 1) * std / math.sqrt(array.size)
    return mean - half, mean + half


def welch_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's unequal-variance t-test of ``mean(a) - mean(b)``: ``(t, two-sided p)``.

    ``scipy.stats.ttest_ind(a, b, equal_var=False)``, plus the cases it leaves undefined: fewer than two
    values on a side gives ``(nan, nan)``; no spread on either side gives ``p = 1`` for equal means and
    ``p = 0`` (``t = +-inf``) for different ones, since the values then differ without any noise.

    Example:
        >>> t, p = welch_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        >>> t, p
        (0.0, 1.0)
    """
    from scipy import stats

    a_arr, b_arr = _as_array(a, "a"), _as_array(b, "b")
    if a_arr.size < 2 or b_arr.size < 2:
        return math.nan, math.nan
    if a_arr.std() == 0.0 and b_arr.std() == 0.0:
        diff = float(a_arr.mean() - b_arr.mean())
        return (0.0, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), 0.0)
    with warnings.catch_warnings():
        # One side without spread (e.g. every seed reaching 90% at epoch 4) makes scipy warn about
        # "catastrophic cancellation" in its variance; the statistic is still exact for such integer data.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a_arr, b_arr, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def welch_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Interval of ``mean(a) - mean(b)`` without pairing (Welch-Satterthwaite degrees of freedom).

    ``diff +- t_{(1+c)/2, df} * se`` with ``se = sqrt(var_a / n_a + var_b / n_b)`` and
    ``df = se^4 / ((var_a / n_a)^2 / (n_a - 1) + (var_b / n_b)^2 / (n_b - 1))``.

    Returns:
        ``(low, high, df)``; ``nan`` s with fewer than two values on a side; ``(diff, diff, nan)`` when
        neither side has any spread.

    Example:
        >>> low, high, df = welch_interval([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
        >>> round(low, 3), round(high, 3), df
        (-1.267, 3.267, 4.0)
    """
    confidence = _check_confidence(confidence)
    a_arr, b_arr = _as_array(a, "a"), _as_array(b, "b")
    if a_arr.size < 2 or b_arr.size < 2:
        return math.nan, math.nan, math.nan
    diff = float(a_arr.mean() - b_arr.mean())
    va, vb = a_arr.var(ddof=1) / a_arr.size, b_arr.var(ddof=1) / b_arr.size
    if va + vb == 0.0:
        return diff, diff, math.nan
    df = float((va + vb) ** 2 / (va**2 / (a_arr.size - 1) + vb**2 / (b_arr.size - 1)))
    half = _t_critical(confidence, df) * math.sqrt(va + vb)
    return diff - half, diff + half, df


def relative_differences(treatment: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per-seed relative change ``treatment_i / baseline_i - 1`` (e.g. -0.041 for a 4.1% lower loss).

    Raises:
        ValueError: sequences of different lengths, or a baseline value of zero.

    Example:
        >>> [round(x, 4) for x in relative_differences([0.2098, 1.5], [0.2188, 1.0])]
        [-0.0411, 0.5]
    """
    t_arr, b_arr = _as_array(treatment, "treatment"), _as_array(baseline, "baseline")
    if t_arr.size != b_arr.size:
        raise ValueError(f"`treatment` and `baseline` must pair up: {t_arr.size} and {b_arr.size} values.")
    if np.any(b_arr == 0.0):
        raise ValueError("`baseline` holds a zero: a relative difference to it is undefined.")
    return (t_arr / b_arr - 1.0).tolist()


def paired_difference(
    treatment: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> dict[str, object]:
    """Paired comparison of two arms whose ``i``-th values share a seed (see the module docstring).

    Args:
        treatment: per-seed values of the arm under test.
        baseline: per-seed values of the baseline, in the same seed order.
        confidence: of both intervals.

    Returns:
        ``{"n", "differences", "mean", "std", "ci", "t", "p", "welch_ci", "welch_df", "welch_t", "welch_p"}``:
        ``mean``/``std`` of the differences (``std`` with ``ddof=1``), ``ci`` their Student-t interval,
        ``t``/``p`` the paired t-test (two-sided), and the unpaired Welch interval and test beside them.
        With one seed the spreads, intervals and p-values are ``nan``; with differences that are all equal
        the interval is that value and ``p`` is 1 (all zero) or 0 (not).

    Raises:
        ValueError: sequences of different lengths or empty ones.

    Example:
        >>> result = paired_difference([2.0, 3.0, 5.0], [1.0, 2.0, 3.0])
        >>> result["differences"], result["mean"], round(result["p"], 4)
        ([1.0, 1.0, 2.0], 1.3333333333333333, 0.0572)
    """
    from scipy import stats

    confidence = _check_confidence(confidence)
    t_arr, b_arr = _as_array(treatment, "treatment"), _as_array(baseline, "baseline")
    if t_arr.size != b_arr.size:
        raise ValueError(f"`treatment` and `baseline` must pair up: {t_arr.size} and {b_arr.size} values.")
    differences = t_arr - b_arr
    n = differences.size
    mean, std = mean_std(differences)
    if n < 2:
        ci, t_stat, p = (math.nan, math.nan), math.nan, math.nan
    elif std == 0.0:
        ci = (mean, mean)
        t_stat, p = (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    else:
        ci = t_interval(differences, confidence)
        with warnings.catch_warnings():
            # Differences equal up to rounding (e.g. a time ratio that is the same for every seed) make scipy
            # warn about "catastrophic cancellation"; the statistic is as exact as the data.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_rel(t_arr, b_arr)
        t_stat, p = float(result.statistic), float(result.pvalue)
    welch_low, welch_high, welch_df = welch_interval(t_arr, b_arr, confidence)
    welch_t, welch_p = welch_test(t_arr, b_arr)
    return {
        "n": int(n),
        "differences": differences.tolist(),
        "mean": mean,
        "std": std,
        "ci": [float(ci[0]), float(ci[1])],
        "t": t_stat,
        "p": p,
        "welch_ci": [welch_low, welch_high],
        "welch_df": welch_df,
        "welch_t": welch_t,
        "welch_p": welch_p,
    }


def paired_t_power(effect: float, sigma: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs (module docstring).

    Args:
        effect: the true mean difference to detect (its sign does not matter).
        sigma: standard deviation of the per-seed differences (> 0; 0 means any effect is certain).
        n: number of pairs (>= 2).
        alpha: two-sided significance level.

    Example:
        >>> round(paired_t_power(1.0, 1.0, 10), 4)
        0.8031
    """
    from scipy import stats

    if n < 2:
        raise ValueError(f"`n` must be >= 2 (a t-test needs a spread), got {n!r}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha!r}.")
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"`sigma` must be a finite number >= 0, got {sigma!r}.")
    if sigma == 0.0:
        return 1.0 if effect != 0.0 else alpha
    df = n - 1
    noncentrality = abs(effect) * math.sqrt(n) / sigma
    critical = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    power = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
    if not math.isfinite(power):
        # scipy's noncentral t returns nan far in its tail (noncentrality in the tens); there the t statistic
        # is as good as normal and the power a hair below 1.
        power = float(stats.norm.sf(critical - noncentrality) + stats.norm.cdf(-critical - noncentrality))
    return power


def seeds_for_power(
    effect: float, sigma: float, power: float = 0.8, alpha: float = 0.05, max_seeds: int = MAX_SEEDS
) -> dict[str, object]:
    """Seeds the paired t-test needs to detect ``effect`` with the given power (module docstring).

    Args:
        effect: the effect to detect (the paper's), in the units of ``sigma``.
        sigma: standard deviation of the per-seed differences, e.g. from a pilot.
        power: target power, in ``(0, 1)``.
        alpha: two-sided significance level.
        max_seeds: give up above this many.

    Returns:
        ``{"seeds", "power_at_seeds", "normal_approximation"}``: the smallest ``n >= 2`` whose power reaches
        the target (``None`` above ``max_seeds``), its power, and the textbook approximation
        ``((z_{1-alpha/2} + z_{power}) * sigma / effect)^2`` (which ignores that sigma is estimated).

    Example:
        >>> plan = seeds_for_power(1.0, 1.0)
        >>> plan["seeds"], round(plan["power_at_seeds"], 4), round(plan["normal_approximation"], 2)
        (10, 0.8031, 7.85)
    """
    from scipy import stats

    if not 0.0 < power < 1.0:
        raise ValueError(f"`power` must be in (0, 1), got {power!r}.")
    if effect == 0.0:
        raise ValueError("`effect` must be non-zero: a zero effect cannot be detected.")
    z = float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))
    approx = (z * sigma / effect) ** 2
    # Power grows with n: bisect between 2 and max_seeds.
    if paired_t_power(effect, sigma, 2, alpha) >= power:
        return {"seeds": 2, "power_at_seeds": paired_t_power(effect, sigma, 2, alpha), "normal_approximation": approx}
    if paired_t_power(effect, sigma, max_seeds, alpha) < power:
        return {"seeds": None, "power_at_seeds": None, "normal_approximation": approx}
    low, high = 2, max_seeds
    while high - low > 1:
        middle = (low + high) // 2
        if paired_t_power(effect, sigma, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return {"seeds": high, "power_at_seeds": paired_t_power(effect, sigma, high, alpha), "normal_approximation": approx}


def seeds_to_decide(
    mean: float, sigma: float, paper_effect: float, confidence: float = 0.95, max_seeds: int = MAX_SEEDS
) -> int | None:
    """Seeds at which the interval, at this mean and spread, would exclude zero or the paper's effect.

    The interval ``mean +- t_{(1+c)/2, n-1} * sigma / sqrt(n)`` decides once its half-width is below the
    larger of ``|mean|`` and ``|mean - paper_effect|``: it then excludes whichever of the two lies farther.
    An estimate: a new sample moves the mean and the spread.

    Returns:
        The smallest such ``n >= 2``, or ``None`` above ``max_seeds`` (or if the mean sits on both values).

    Example:
        >>> seeds_to_decide(mean=0.01, sigma=0.03, paper_effect=0.023)
        23
    """
    confidence = _check_confidence(confidence)
    margin = max(abs(mean), abs(mean - paper_effect))
    if sigma == 0.0:
        return 2 if margin > 0 else None
    if margin == 0.0:
        return None

    def decides(n: int) -> bool:
        return _t_critical(confidence, n - 1) * sigma / math.sqrt(n) < margin

    if decides(2):
        return 2
    if not decides(max_seeds):
        return None
    low, high = 2, max_seeds
    while high - low > 1:
        middle = (low + high) // 2
        if decides(middle):
            high = middle
        else:
            low = middle
    return high


def epochs_to_threshold(curve: Sequence[float], threshold: float) -> int | None:
    """First epoch (1-based) whose accuracy is ``>= threshold``; ``None`` if none is.

    Example:
        >>> epochs_to_threshold([0.7, 0.88, 0.91, 0.89], 0.9), epochs_to_threshold([0.7], 0.9)
        (3, None)
    """
    for epoch, value in enumerate(curve, start=1):
        if value >= threshold:
            return epoch
    return None
