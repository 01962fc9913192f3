"""Summary, table, verdict and files of hf_superpositional.reproduction.reporting against scipy and hand computation
(its statistics are tested in test_statistics.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from hf_superpositional.reproduction.reporting import (
    finite_or_none,
    format_table,
    summarize,
    verdict,
    write_report,
)
from hf_superpositional.reproduction.statistics import welch_test

# A fixed results dict: three seeds, four epochs. Final accuracies: AdamW .90 .92 .91, lambda=0.5 .95 .96 .94.
FIXED = {
    "threshold": 0.9,
    "num_epochs": 4,
    "baseline": "adamw",
    "primary": "sgd",
    "arms": [
        {
            "name": "adamw",
            "label": "AdamW",
            "paper": {"final_accuracy": 0.915, "epochs_to_threshold": 7.4, "time_ratio": 1.0},
            "runs": [
                {"seed": 0, "eval_accuracy": [0.60, 0.80, 0.85, 0.90], "epoch_seconds": [2.0, 2.0, 2.0, 2.0]},
                {"seed": 1, "eval_accuracy": [0.70, 0.88, 0.91, 0.92], "epoch_seconds": [2.2, 2.2, 2.2, 2.2]},
                {"seed": 2, "eval_accuracy": [0.65, 0.84, 0.89, 0.91], "epoch_seconds": [1.8, 1.8, 1.8, 1.8]},
            ],
        },
        {
            "name": "sgd",
            "label": "SGD λ=0.5",
            "paper": {"final_accuracy": 0.938, "final_accuracy_std": 0.007, "epochs_to_threshold": 4.6, "time_ratio": 1.35},
            "runs": [
                {"seed": 0, "eval_accuracy": [0.70, 0.91, 0.93, 0.95], "epoch_seconds": [2.5, 2.5, 2.5, 2.5]},
                {"seed": 1, "eval_accuracy": [0.75, 0.92, 0.95, 0.96], "epoch_seconds": [2.5, 2.5, 2.5, 2.5]},
                {"seed": 2, "eval_accuracy": [0.72, 0.89, 0.92, 0.94], "epoch_seconds": [2.5, 2.5, 2.5, 2.5]},
            ],
        },
        {
            "name": "slow",
            "label": "never converges",
            "runs": [
                {"seed": s, "eval_accuracy": [0.5, 0.55, 0.6, 0.6 + s / 100], "epoch_seconds": [1.0] * 4}
                for s in range(3)
            ],
        },
    ],
}
ADAMW_FINAL = [0.90, 0.92, 0.91]
SGD_FINAL = [0.95, 0.96, 0.94]


def test_summary_values():
    summary = summarize(FIXED)
    sgd, adamw, slow = (summary["arms"][name] for name in ("sgd", "adamw", "slow"))
    assert adamw["final_accuracy_mean"] == pytest.approx(np.mean(ADAMW_FINAL))
    assert adamw["final_accuracy_std"] == pytest.approx(np.std(ADAMW_FINAL, ddof=1))
    assert sgd["delta_vs_baseline"] == pytest.approx(0.04)
    assert sgd["welch_p"] == pytest.approx(stats.ttest_ind(SGD_FINAL, ADAMW_FINAL, equal_var=False).pvalue)
    # epochs to 90%: AdamW seeds reach at 4, 3, 4 -> 11/3; SGD at 2, 2, 3 -> 7/3; "slow" never
    assert adamw["epochs_to_threshold"] == [4, 3, 4]
    assert adamw["epochs_to_threshold_mean"] == pytest.approx(11 / 3)
    assert sgd["epochs_to_threshold_mean"] == pytest.approx(7 / 3)
    assert (slow["epochs_to_threshold_mean"], slow["seeds_reaching_threshold"]) == (None, 0)
    # seeds that never reach count as num_epochs + 1 = 5 in the epochs test
    assert slow["epochs_welch_p"] == pytest.approx(welch_test([5, 5, 5], [4, 3, 4])[1])
    assert sgd["epochs_welch_p"] == pytest.approx(stats.ttest_ind([2, 2, 3], [4, 3, 4], equal_var=False).pvalue)
    # time: AdamW mean 2.0 s/epoch, SGD 2.5 -> x1.25; to 90%: 1.25 * (7/3) / (11/3)
    assert sgd["time_ratio"] == pytest.approx(1.25)
    assert sgd["time_to_threshold_ratio"] == pytest.approx(1.25 * 7 / 11)
    assert slow["time_to_threshold_ratio"] is None
    # a slow first epoch (process start-up) does not move the per-epoch time: each run's median is used
    warm = json.loads(json.dumps(FIXED))
    warm["arms"][0]["runs"][0]["epoch_seconds"][0] = 20.0
    assert summarize(warm)["arms"]["sgd"]["time_ratio"] == pytest.approx(1.25)
    assert sgd["mean_curve"] == pytest.approx([0.7233333, 0.9066667, 0.9333333, 0.95], abs=1e-6)


def test_table_shows_ours_and_the_papers():
    table = format_table(summarize(FIXED))
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    sgd_row = next(line for line in lines if line.startswith("| SGD"))
    cells = [cell.strip() for cell in sgd_row.strip("|").split("|")]
    assert cells[1] == "95.0 ± 1.0"
    low, high = stats.t.interval(0.95, df=2, loc=0.95, scale=0.01 / math.sqrt(3))
    assert cells[2] == f"[{100 * low:.1f}, {100 * high:.1f}]"
    assert cells[3] == "+4.0"
    assert cells[5] == "2.3 (3/3)"
    assert cells[6] == "×1.25"
    assert cells[8:] == ["93.8 ± 0.7", "4.6", "×1.35"]
    slow_row = next(line for line in lines if line.startswith("| never"))
    assert "— (0/3)" in slow_row and slow_row.rstrip().endswith("| — | — | — |")


def test_verdict_applies_the_studys_rule_to_paired_seeds():
    summary = summarize(FIXED)
    line = verdict(summary)
    assert line.startswith("Verdict (SGD λ=0.5 against AdamW, 3 paired seeds;")
    # final accuracy: paired differences .05 .04 .03 -> scipy's paired interval contains +2.3 pts, excludes 0
    acc = stats.ttest_rel(SGD_FINAL, ADAMW_FINAL).confidence_interval(0.95)
    assert acc.low > 0 and acc.low < 0.023 < acc.high
    assert f"final accuracy: REPRODUCED: mean +4.0 pts over 3 paired seeds, 95% interval [{100 * acc.low:+.1f}, " in line
    # epochs to 90%: AdamW 4 3 4, SGD 2 2 3 -> the interval stops short of the paper's -2.8 epochs
    ep = stats.ttest_rel([2, 2, 3], [4, 3, 4]).confidence_interval(0.95)
    assert ep.low > -2.8 and ep.high > 0
    assert f"epochs to 90%: REFUTED: mean -1.3 epochs over 3 paired seeds, 95% interval [{ep.low:+.1f}, " in line
    assert "the effect is smaller than claimed, and zero is inside the interval" in line
    assert line.endswith("time/epoch ×1.25 (paper ×1.35).")
    # an arm the paper gives no figures for: the interval is described, nothing judged
    flipped = json.loads(json.dumps(FIXED))
    flipped["primary"] = "slow"
    line = verdict(summarize(flipped))
    assert "final accuracy: mean -30.0 pts" in line and "the interval excludes zero: a negative effect" in line
    assert "REFUTED" not in line and "REPRODUCED" not in line
    # seeds that do not match are not paired; one common seed gives no interval
    one_seed = json.loads(json.dumps(FIXED))
    for arm in one_seed["arms"]:
        arm["runs"] = arm["runs"][:1]
    line = verdict(summarize(one_seed))
    assert "1 paired seed;" in line and "INCONCLUSIVE" in line and "fewer than two seeds, no interval" in line
    disjoint = json.loads(json.dumps(FIXED))
    for run in disjoint["arms"][1]["runs"]:
        run["seed"] += 10
    assert "final accuracy: UNTESTED (no seed ran both arms)" in verdict(summarize(disjoint))


def test_malformed_results_raise():
    with pytest.raises(ValueError, match="baseline"):
        summarize({"threshold": 0.9, "arms": []})
    bad = json.loads(json.dumps(FIXED))
    bad["baseline"] = "nope"
    with pytest.raises(ValueError, match="'nope'"):
        summarize(bad)
    bad = json.loads(json.dumps(FIXED))
    bad["arms"][0]["runs"][0]["eval_accuracy"] = [0.5]
    with pytest.raises(ValueError, match="same"):
        summarize(bad)


def test_finite_or_none():
    assert finite_or_none({"a": [1.0, math.nan, (math.inf, 2)], "b": "x"}) == {"a": [1.0, None, [None, 2]], "b": "x"}


def test_write_report_files(tmp_path):
    one_seed = json.loads(json.dumps(FIXED))
    for arm in one_seed["arms"]:
        arm["runs"] = arm["runs"][:1]  # undefined std / p-values must still give strict JSON
    report = write_report({**one_seed, "title": "T", "config": {"k": 1}}, tmp_path)
    text = (tmp_path / "results.json").read_text()
    payload = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert payload["config"] == {"k": 1} and payload["verdict"] == report["verdict"]
    assert payload["summary"]["arms"]["sgd"]["final_accuracy_std"] is None
    assert (tmp_path / "table.md").read_text().startswith("# T\n")
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
