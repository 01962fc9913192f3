"""hf_superpositional.reproduction.study_report: the files a study writes, recomputed from their own raw values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from hf_superpositional.reproduction.classification import ClassificationSetup
from hf_superpositional.reproduction.study import StudyArguments, analyse, load_study, run_study
from hf_superpositional.reproduction.study_report import (
    FULL_SCALE_COMMAND,
    describe_dose_response,
    dose_table,
    format_value,
    plot_dose_response,
    verdict_table,
    write_study,
)
from tests.reproduction.study_cases import FakePool

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    setup = ClassificationSetup(num_train=1000, num_epochs=4, num_workers=1)
    study = StudyArguments(
        calibration_num_train=[500, 1000], calibration_seeds=2, pilot_seeds=3, min_seeds=5, max_seeds=6,
        dose_lambdas=[0.5, 1000.0], dose_seeds=3, gsm8k_pilot_seeds=2, gsm8k_min_seeds=3, gsm8k_max_seeds=3,
    )  # fmt: skip
    raw = run_study(setup, study, FakePool(), log=lambda line: None)
    results = analyse(raw)
    out = tmp_path_factory.mktemp("study")
    paths = write_study(raw, results, out, wall_seconds=600.0, cpu_seconds=1100.0)
    return raw, results, out, paths


def point(weight, scope, ratio, delta, half, diverged=(), mode="update"):
    return {"label": f"λ={weight:g} {scope} {mode}", "quantum_weight": weight, "scope": scope, "mode": mode,
            "ratio": ratio, "delta": delta, "ci": [delta - half, delta + half], "p": 0.5,
            "diverged_seeds": list(diverged)}  # fmt: skip


def test_where_the_effect_begins_in_words():
    nulls = [point(0.1, "first_n", 1e-5, 0.001, 0.01), point(10.0, "first_n", 1e-3, -0.004, 0.01)]
    harmful = [point(100.0, "all", 0.5, -0.05, 0.02), point(1000.0, "all", 5.0, -0.4, 0.03, diverged=[2])]
    text = describe_dose_response(nulls + harmful, seeds=6)
    assert text.startswith("The effect begins at a perturbation-to-update ratio of 0.5 (λ=100 all update)")
    assert "lower accuracy than AdamW" in text and "Every arm below it (2 arms, ratios 1e-05 to 0.001)" in text
    assert "Above it, 1 of 1 arms are significantly worse than AdamW and 0 better" in text
    assert "non-finite loss: λ=1000 all update" in text
    none = describe_dose_response(nulls, seeds=6)
    assert none.startswith("No arm's interval excludes zero") and "half-widths around 1.0 pts" in none
    helpful = describe_dose_response([point(0.5, "all", 0.01, 0.03, 0.01)], seeds=6)
    assert "higher accuracy" in helpful and "already at the smallest ratio" in helpful
    # the two modes reach their onsets at different ratios: said per mode
    moment = [point(100.0, "all", 0.08, -0.2, 0.05, mode="moment"), point(1.0, "all", 1e-3, 0.0, 0.01, mode="moment")]
    both = describe_dose_response(nulls + harmful + moment, seeds=6)
    assert both.startswith("The effect begins at a perturbation-to-update ratio of 0.08 (λ=100 all moment)")
    assert "(no detectable effect: " not in both  # both arms above the onset are harmful
    assert "By mode -- mode=moment: from ratio 0.08 (λ=100 all moment, Δ -20.0 pts); mode=update: from ratio 0.5" in both
    mixed = describe_dose_response(nulls + harmful + [point(1000.0, "first_n", 2.0, 0.004, 0.01)], seeds=6)
    assert "(no detectable effect: λ=1000 first_n update)" in mixed
    table = dose_table(harmful + nulls).splitlines()
    assert [row.split("|")[4].strip() for row in table[2:]] == ["1.00e-05", "1.00e-03", "5.00e-01", "5.00e+00"]


def test_dose_response_plot(tmp_path):
    points = [point(0.1, "first_n", 1e-5, 0.001, 0.01), point(1000.0, "all", 5.0, -0.4, 0.03)]
    png = plot_dose_response(points, tmp_path / "dose.png", paper_effect=0.023).read_bytes()
    assert png[:8] == PNG and len(png) > 10_000


def test_verdicts_json_recomputes_from_its_own_raw_values(written):
    raw, results, out, paths = written
    text = (out / "verdicts.json").read_text()
    payload = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert [claim["key"] for claim in payload["claims"]] == [claim["key"] for claim in results["claims"]]
    for claim in payload["claims"]:
        base, treat = np.asarray(claim["baseline_values"]), np.asarray(claim["treatment_values"])
        assert len(base) == len(treat) == len(claim["seeds"]) == claim["num_seeds"]
        effects = treat / base - 1 if claim["kind"] == "relative" else treat - base
        if np.std(effects) > 0:
            ci = stats.ttest_1samp(effects, 0.0).confidence_interval(0.95)
            assert claim["ci"] == pytest.approx([ci.low, ci.high], rel=1e-9)
        # the verdict rule, re-applied by hand
        low, high, paper = *claim["ci"], claim["paper_effect"]
        if not low <= paper <= high:
            expected = "refuted"
        elif (low > 0 if paper > 0 else high < 0):
            expected = "reproduced"
        else:
            expected = "inconclusive"
        assert claim["verdict"] == expected
        for key in ("claim", "paper_effect", "baseline_mean", "treatment_mean", "sentence"):
            assert claim[key] is not None
    assert payload["verdict_rule"].startswith("For each claim we take the 95% interval of the paired difference")
    assert payload["calibration"]["chosen_num_train"] == 1000 and payload["gsm8k_full_scale_command"] == FULL_SCALE_COMMAND
    assert len(payload["runs"]["text_classification"]) == len(raw["tc_runs"])
    point_json = payload["dose_response"][0]
    assert point_json["ratio"] == pytest.approx(np.mean(point_json["ratio_per_seed"]))
    assert payload["environment"]["wall_seconds"] == 600.0 and "cores visible" in payload["environment"]["machine_description"]


def test_study_markdown_and_plots(written):
    raw, results, out, paths = written
    md = (out / "study.md").read_text()
    for heading in ("## Verdicts", "## Seeds: the power calculation", "## The task's difficulty",
                    "## Dose-response: where the effect begins", "## Attention ablation", "## GSM8K analogue"):  # fmt: skip
        assert heading in md, heading
    assert verdict_table(results["claims"]) in md
    assert "This is a tiny model, not Llama-3.2-1B-Instruct" in md and FULL_SCALE_COMMAND in md
    assert "| 1000 (chosen) |" in md and "Bayes-optimal" in md
    assert "Mechanism: the paper's update (λ=0.5, first_n, update mode)" in md
    for name in ("dose_response.png", "learning_curves.png", "gsm8k_loss_curves.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, name
    assert sorted(paths) == sorted(["verdicts.json", "study.md", "dose_response.png", "learning_curves.png", "gsm8k_loss_curves.png"])


def test_verdict_table_rows(written):
    _, results, _, _ = written
    lines = verdict_table(results["claims"]).splitlines()
    assert len(lines) == 2 + len(results["claims"])
    accuracy = next(line for line in lines if line.startswith("| tc_final_accuracy"))
    cells = [cell.strip() for cell in accuracy.strip("|").split("|")]
    assert cells[1] == "+2.3 pts (91.5% → 93.8%)"
    claim = results["claims"][0]
    assert cells[2] == f"{100 * claim['baseline_mean']:.1f}%" and cells[6] == str(claim["num_seeds"])
    assert cells[7].startswith(f"**{claim['verdict']}**")
    assert format_value(math.nan, "s") == "—" and format_value(5.56421, "loss") == "5.5642"


def test_a_study_re_reports_from_its_verdicts_json(written, tmp_path):
    raw, results, out, _ = written
    loaded, environment = load_study(out / "verdicts.json")
    assert loaded["setup"] == raw["setup"] and loaded["study"] == raw["study"] and loaded["seeds"] == raw["seeds"]
    again = analyse(loaded)
    assert again["claims"] == results["claims"] and again["dose_response"] == results["dose_response"]
    write_study(loaded, again, tmp_path, 0.0, 0.0, environment)
    first, second = (json.loads((folder / "verdicts.json").read_text()) for folder in (out, tmp_path))
    assert first == second  # the same files, the original run's date and times included
    with pytest.raises(FileNotFoundError, match="reanalyse"):
        load_study(tmp_path / "nope.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not the verdicts.json of a study"):
        load_study(tmp_path / "other.json")
