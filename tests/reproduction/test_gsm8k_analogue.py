"""hf_superpositional.reproduction.gsm8k_analogue: the setup, the arms and a real (tiny) one-epoch run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_superpositional.optim.args import parse_optim_args
from hf_superpositional.reproduction.gsm8k_analogue import (
    PAPER_MEAN_LOSS,
    PAPER_WARMUP_SHARE,
    GSM8KAnalogueSetup,
    gsm8k_arms,
    train_gsm8k_arm,
)


def test_setup_and_arms():
    assert PAPER_MEAN_LOSS == {"adamw": 0.2188, 0.1: 0.2098, 0.5: 0.2097}  # paper Table I
    setup = GSM8KAnalogueSetup()
    assert setup.steps() == 125 and setup.warmup_steps() == round(125 * 500 / 7473) == 8
    assert PAPER_WARMUP_SHARE == pytest.approx(0.0669, abs=1e-4)
    arms = gsm8k_arms([0.1, 0.5, 0.3])
    assert [arm.optim for arm in arms] == ["adamw_torch"] + ["superpositional_adamw"] * 3
    assert [parse_optim_args(arm.optim_args)["quantum_weight"] for arm in arms[1:]] == [0.1, 0.5, 0.3]
    assert [arm.paper for arm in arms] == [{"mean_loss": 0.2188}, {"mean_loss": 0.2098}, {"mean_loss": 0.2097}, None]
    with pytest.raises(ValueError, match="num_rows"):
        GSM8KAnalogueSetup(num_rows=1001)
    with pytest.raises(ValueError, match="max_length"):
        GSM8KAnalogueSetup(max_length=4)


def test_one_epoch_mean_loss_is_the_mean_of_every_steps_loss():
    setup = GSM8KAnalogueSetup(num_rows=24, max_length=96, batch_size=8, logging_steps=1)
    events = []
    adamw, sgd = (train_gsm8k_arm(setup, arm, seed=3, report=events.append) for arm in gsm8k_arms([0.5])[:2])
    for run in (adamw, sgd):
        steps = run["steps"]
        assert steps == math.ceil(run["rows"]["trained"] / 8) and run["rows"]["rows"] == 24
        # logged every step: the epoch's mean training loss (the paper's figure) is their mean
        assert [step for step, _ in run["train_losses"]] == list(range(1, steps + 1))
        assert run["mean_train_loss"] == pytest.approx(np.mean([loss for _, loss in run["train_losses"]]), rel=1e-5)
        assert 5.0 < run["mean_train_loss"] < 9.0  # a random-init model over 2048 tokens starts near ln(2048) = 7.6
    assert adamw["optimizer"] == "AdamW" and sgd["optimizer"] == "SuperpositionalAdamW"
    assert len(sgd["perturbation_to_update_ratio"]) == sgd["steps"] and adamw["perturbation_to_update_ratio"] == []
    assert events == [("gsm8k adamw", 3, None), ("gsm8k sgd_lambda_0.5", 3, None)]
