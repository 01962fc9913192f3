"""hf_superpositional.reproduction.study: arguments, arms, and the phases' orchestration and analysis, on
synthesised runs (tests/reproduction/study_cases.py) so that every check is exact and takes no training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from hf_superpositional.optim.args import parse_optim_args
from hf_superpositional.reproduction.classification import ClassificationSetup, train_classifier
from hf_superpositional.reproduction.gsm8k_analogue import train_gsm8k_arm
from hf_superpositional.reproduction.study import (
    ADAMW,
    SGD_LAMBDA_05,
    StudyArguments,
    analyse,
    dose_arms,
    eager,
    run_study,
)
from tests.reproduction.study_cases import FakePool

SETUP = ClassificationSetup(num_train=500, num_epochs=4, num_workers=1)
STUDY = StudyArguments(
    calibration_num_train=[500, 1000, 1500], calibration_seeds=2, pilot_seeds=3, min_seeds=4, max_seeds=12,
    dose_lambdas=[0.5, 1000.0], dose_seeds=3, gsm8k_pilot_seeds=2, gsm8k_min_seeds=3, gsm8k_max_seeds=6,
)  # fmt: skip


@pytest.fixture(scope="module")
def studied():
    pool, lines = FakePool(), []
    raw = run_study(SETUP, STUDY, pool, log=lines.append)
    return pool, lines, raw, analyse(raw)


def test_arguments_validation():
    with pytest.raises(ValueError, match="pilot_seeds"):
        StudyArguments(pilot_seeds=1)
    with pytest.raises(ValueError, match="min_seeds <= max_seeds"):
        StudyArguments(min_seeds=10, max_seeds=5)
    with pytest.raises(ValueError, match="dose_scopes"):
        StudyArguments(dose_scopes=["first_n", "some"])
    with pytest.raises(ValueError, match="lambda = 0 is AdamW"):
        StudyArguments(dose_lambdas=[0.0, 1.0])
    with pytest.raises(ValueError, match="num_rows"):
        StudyArguments(gsm8k_num_rows=5000)
    assert StudyArguments(alpha=0.1).confidence == pytest.approx(0.9)


def test_dose_arms_cover_the_grid_with_valid_optim_args():
    arms = dose_arms(StudyArguments())
    assert len(arms) == 6 * 2 * 2 and len({arm.name for arm in arms}) == 24
    grid = {(a["quantum_weight"], a["scope"], a["mode"]) for a in (parse_optim_args(arm.optim_args) for arm in arms)}
    assert grid == {(w, s, m) for w in (0.1, 0.5, 1.0, 10.0, 100.0, 1000.0) for s in ("first_n", "all") for m in ("update", "moment")}
    assert all(arm.optim == "superpositional_adamw" and arm.attention is None for arm in arms)
    classical = eager(SGD_LAMBDA_05)
    assert classical.attention == "eager" and classical.optim_args == SGD_LAMBDA_05.optim_args
    assert classical.name == "eager_sgd_lambda_0.5"


def test_calibration_picks_the_size_nearest_the_target_from_adamw_alone(studied):
    pool, lines, raw, _ = studied
    desc, jobs = pool.batches[0]
    assert desc.startswith("calibration")
    assert {job.args[1].name for job in jobs} == {"adamw"}  # only the baseline is calibrated
    assert sorted({job.args[2] for job in jobs}) == [1000, 1001]  # seeds of its own
    assert sorted({job.args[0].num_train for job in jobs}) == [500, 1000, 1500]
    calibration = raw["calibration"]
    means = {row["num_train"]: row["mean"] for row in calibration["rows"]}
    luck = 0.02 * (np.sin(1000) + np.sin(1001)) / 2
    assert means == pytest.approx({500: 0.865 + luck, 1000: 0.915 + luck, 1500: 0.965 + luck})
    assert calibration["chosen_num_train"] == 1000 and raw["setup"].num_train == 1000
    assert calibration["bayes_accuracy"] == SETUP.bayes_accuracy()
    assert any("<- chosen" in line and "1000" in line for line in lines)


def test_the_pilot_sizes_the_study(studied):
    pool, lines, raw, _ = studied
    desc, jobs = pool.batches[1]
    assert desc == "pilot"
    tc = [(job.args[1].name, job.args[2]) for job in jobs if job.function is train_classifier]
    gsm8k = [(job.args[1].name, job.args[2]) for job in jobs if job.function is train_gsm8k_arm]
    assert sorted(tc) == sorted((arm, s) for arm in ("adamw", "sgd_lambda_0.5") for s in (0, 1, 2))
    assert sorted(gsm8k) == sorted((arm, s) for arm in ("adamw", "sgd_lambda_0.1", "sgd_lambda_0.5") for s in (0, 1))
    plan = raw["power"]["text_classification"]
    accuracy = next(row for row in plan["claims"] if row["key"] == "tc_final_accuracy")
    pilot_effects = [0.003 + 0.02 * np.cos(2.5 * s) for s in range(3)]
    assert accuracy["sigma"] == pytest.approx(np.std(pilot_effects, ddof=1))
    assert plan["chosen"] == max(STUDY.min_seeds, min(plan["required"], STUDY.max_seeds)) > STUDY.min_seeds
    assert raw["seeds"] == list(range(plan["chosen"]))
    assert any(line.startswith("power: tc_final_accuracy: pilot 3 seeds") for line in lines)
    assert any(line.startswith("plan: ") for line in lines)


def test_the_last_batch_completes_every_arm(studied):
    pool, _, raw, _ = studied
    desc, jobs = pool.batches[2]
    assert desc == "study runs" and len(pool.batches) == 3
    tc = [job for job in jobs if job.function is train_classifier]
    seeds, dose_seeds = raw["seeds"], raw["dose_seeds"]
    by_arm: dict[str, list[int]] = {}
    for job in tc:
        by_arm.setdefault(job.args[1].name, []).append(job.args[2])
    # main arms: the seeds after the pilot's; the ablation's eager arms: every seed
    assert by_arm["adamw"] == by_arm["sgd_lambda_0.5"] == seeds[3:]
    assert by_arm["eager_adamw"] == by_arm["eager_sgd_lambda_0.5"] == seeds
    # dose-response: its own AdamW reference and 8 arms, evaluated once, on the dose seeds
    dose = [job for job in tc if job.args[1].name.startswith("dose_")]
    assert {job.args[1].name for job in dose} == {"dose_adamw", *(arm.name for arm in dose_arms(STUDY))}
    assert all(job.kwargs["evaluate_each_epoch"] is False for job in dose) and dose_seeds == [0, 1, 2]
    assert all(job.kwargs["evaluate_each_epoch"] is True for job in tc if job not in dose)
    assert all(job.kwargs["logging_steps"] == STUDY.logging_steps for job in tc)
    gsm8k_seeds = sorted({job.args[2] for job in jobs if job.function is train_gsm8k_arm})
    assert raw["gsm8k_seeds"] == [0, 1] + gsm8k_seeds and len(raw["gsm8k_seeds"]) >= STUDY.gsm8k_min_seeds


def test_claims_hold_the_raw_per_seed_values(studied):
    _, _, raw, results = studied
    claims = {claim["key"]: claim for claim in results["claims"]}
    assert list(claims) == ["tc_final_accuracy", "tc_epochs_to_90", "tc_time_per_epoch", "tc_time_to_90",
                            "gsm8k_lambda_0.1", "gsm8k_lambda_0.5"]  # fmt: skip
    seeds = raw["seeds"]
    accuracy = claims["tc_final_accuracy"]
    luck = [0.915 + 0.02 * np.sin(s) for s in seeds]
    assert accuracy["baseline_values"] == pytest.approx(luck)
    assert accuracy["treatment_values"] == pytest.approx([v + 0.003 + 0.02 * np.cos(2.5 * s) for v, s in zip(luck, seeds, strict=True)])
    ref = stats.ttest_rel(accuracy["treatment_values"], accuracy["baseline_values"]).confidence_interval(0.95)
    assert accuracy["ci"] == pytest.approx([ref.low, ref.high])
    # 4 epochs: the curve reaches 90% at the last epoch iff the final accuracy is >= 90%, else never (-> 5)
    assert claims["tc_epochs_to_90"]["baseline_values"] == [4.0 if v >= 0.9 else 5.0 for v in luck]
    assert claims["tc_time_per_epoch"]["effects"] == pytest.approx([0.02] * len(seeds))
    assert claims["tc_time_per_epoch"]["verdict"] == "refuted"  # +2% +- 0 excludes +35%
    gsm8k = claims["gsm8k_lambda_0.5"]
    assert gsm8k["kind"] == "relative" and gsm8k["effects"] == pytest.approx(
        [-0.004 * (1 + 0.1 * np.cos(s)) for s in raw["gsm8k_seeds"]]
    )
    assert gsm8k["paper_effect"] == pytest.approx(0.2097 / 0.2188 - 1) and gsm8k["verdict"] == "refuted"
    assert results["adamw_accuracy"] == pytest.approx(np.mean(luck))


def test_dose_points_and_ablation(studied):
    _, _, raw, results = studied
    points = {(p["quantum_weight"], p["scope"], p["mode"]): p for p in results["dose_response"]}
    assert len(points) == 8
    strong = points[(1000.0, "all", "update")]
    assert strong["ratio"] == pytest.approx(100.0) and strong["delta"] == pytest.approx(-0.3)
    assert strong["reference_accuracies"] == pytest.approx([0.915 + 0.02 * np.sin(s) for s in raw["dose_seeds"]])
    assert points[(1000.0, "first_n", "moment")]["delta"] == pytest.approx(0.0)
    assert points[(0.5, "first_n", "update")]["ratio"] == pytest.approx(0.5e-4)
    effects = {e["key"]: e for e in results["ablation"]}
    assert effects["circuit_under_adamw"]["mean"] == pytest.approx(0.01)  # quantum - eager, both AdamW
    assert effects["interaction"]["mean"] == pytest.approx(0.0)
    assert all(e["verdict"] is None for e in effects.values())


def test_without_the_optional_phases():
    study = dataclasses.replace(STUDY, calibrate=False, ablation=False, gsm8k=False, dose_lambdas=[])
    pool = FakePool()
    raw = run_study(SETUP, study, pool, log=lambda line: None)
    results = analyse(raw)
    assert raw["calibration"] is None and raw["setup"].num_train == 500
    assert [key["key"] for key in results["claims"]] == ["tc_final_accuracy", "tc_epochs_to_90", "tc_time_per_epoch", "tc_time_to_90"]
    assert results["dose_response"] == [] and results["ablation"] == [] and raw["power"]["gsm8k"] is None
    assert {job.args[1].name for _, jobs in pool.batches for job in jobs} == {ADAMW.name, SGD_LAMBDA_05.name}
