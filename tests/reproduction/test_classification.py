"""hf_superpositional.reproduction.classification: settings, arms, and real (tiny) training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_superpositional.optim.args import parse_optim_args
from hf_superpositional.reproduction.classification import (
    BASELINE_ARM,
    DEMO_ARMS,
    PRIMARY_ARM,
    ArmSpec,
    ClassificationSetup,
    TextClassificationArguments,
    comparison_results,
    train_classifier,
)

TINY = ClassificationSetup(num_train=48, num_test=32, num_epochs=2, seq_len=8, batch_size=16, num_workers=1)


def test_demo_arms_are_the_papers():
    assert DEMO_ARMS[BASELINE_ARM].optim == "adamw_torch_fused" and DEMO_ARMS[BASELINE_ARM].optim_args is None
    assert parse_optim_args(DEMO_ARMS[PRIMARY_ARM].optim_args) == {"quantum_weight": 0.5, "n_qubits": 4}
    assert DEMO_ARMS[PRIMARY_ARM].paper["final_accuracy"] == 0.938  # SPEC section 6
    assert DEMO_ARMS["quantum_moment_adamw"].optim == "quantum_moment_adamw"
    with pytest.raises(ValueError, match="attention"):
        ArmSpec("x", "x", "adamw_torch", attention="sdpa")


def test_settings_validation():
    with pytest.raises(ValueError, match="--num_epochs must be >= 1, got 0"):
        ClassificationSetup(num_epochs=0)
    with pytest.raises(ValueError, match="divisible"):
        ClassificationSetup(hidden_size=62)
    with pytest.raises(ValueError, match="follow_prob"):
        ClassificationSetup(follow_prob=0.0)
    with pytest.raises(ValueError, match="baseline"):
        TextClassificationArguments(arms=["sgd_lambda_0.5"])
    with pytest.raises(ValueError, match="--num_seeds"):
        TextClassificationArguments(num_seeds=0)
    assert TextClassificationArguments(first_seed=3, num_seeds=2).seeds == [3, 4]
    assert ClassificationSetup(num_train=1000, batch_size=32).steps_per_epoch() == 32


def test_bayes_accuracy_does_not_depend_on_the_training_set():
    assert ClassificationSetup(num_train=750).bayes_accuracy() == ClassificationSetup(num_train=1500).bayes_accuracy()
    assert 0.98 < ClassificationSetup().bayes_accuracy() < 0.99  # seq 16, follow 0.4: the module's ~98.7%


def test_runs_record_curves_times_and_the_optimizers_diagnostics():
    events = []
    sgd = train_classifier(TINY, DEMO_ARMS[PRIMARY_ARM], seed=0, logging_steps=1, report=events.append)
    adamw = train_classifier(TINY, DEMO_ARMS[BASELINE_ARM], seed=0, logging_steps=1, report=events.append)
    for run in (sgd, adamw):
        assert len(run["eval_accuracy"]) == len(run["eval_loss"]) == len(run["epoch_cpu_seconds"]) == 2
        assert all(0.0 <= acc <= 1.0 for acc in run["eval_accuracy"])
        assert len(run["train_loss"]) == len(run["logged_steps"]) == 6  # 3 steps per epoch, logged every step
        assert len(run["final_gates"]) == 2  # quantum attention: one gate per layer
    assert sgd["optimizer"] == "SuperpositionalAdamW" and adamw["optimizer"] == "AdamW"
    # the diagnostics: one value per logged step for our optimizer, none for torch's AdamW
    assert len(sgd["perturbation_to_update_ratio"]) == 6 and adamw["perturbation_to_update_ratio"] == []
    ratios = np.asarray(sgd["perturbation_to_update_ratio"][1:])
    assert np.all(ratios > 0) and np.all(ratios < 1e-2)  # first_n: 4 elements per tensor, a tiny share
    assert sgd["perturbation_to_update_ratio"] == pytest.approx(
        np.divide(sgd["perturbation_norm"], sgd["update_norm"]).tolist()
    )
    assert events == [("sgd_lambda_0.5", 0, sgd["eval_accuracy"][0]), ("sgd_lambda_0.5", 0, sgd["eval_accuracy"][1]),
                      ("adamw", 0, adamw["eval_accuracy"][0]), ("adamw", 0, adamw["eval_accuracy"][1])]  # fmt: skip


def test_one_final_evaluation_and_eager_attention():
    strong = ArmSpec("strong", "λ=1000 all", "superpositional_adamw", "quantum_weight=1000,n_qubits=4,scope=all", attention="eager")
    events = []
    run = train_classifier(TINY, strong, seed=1, evaluate_each_epoch=False, report=events.append)
    assert len(run["eval_accuracy"]) == 1 and len(run["epoch_cpu_seconds"]) == 2
    assert run["attention"] == "eager" and run["final_gates"] == []  # the arm's attention overrides the setup's
    assert events == [("strong", 1, None), ("strong", 1, None)]
    # scope=all at lambda=1000: the perturbation is no longer a rounding error of the Adam step
    assert min(run["perturbation_to_update_ratio"]) > 1e-2
    assert all(math.isfinite(x) or math.isnan(x) for x in run["train_loss"])


def test_comparison_results_feed_the_report():
    arguments = TextClassificationArguments(arms=["adamw", "sgd_lambda_0.5"], num_seeds=1, num_train=48, num_test=32)
    runs = [{"arm": arm, "seed": 0, "eval_accuracy": [0.5], "epoch_seconds": [1.0]} for arm in arguments.arms]
    results = comparison_results(arguments, runs, wall_seconds=60.0, cpu_seconds=90.0)
    assert [arm["name"] for arm in results["arms"]] == ["adamw", "sgd_lambda_0.5"]
    assert results["primary"] == "sgd_lambda_0.5" and results["time_key"] == "epoch_cpu_seconds"
    assert results["arms"][1]["paper"]["time_ratio"] == 1.35
    assert "Wall time 1.0 min (1.5 CPU-min)" in results["notes"]
    assert results["bayes_accuracy"] == arguments.bayes_accuracy()
