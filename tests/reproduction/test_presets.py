"""The paper presets (SPEC section 5, paper Tables II and III) hold the paper's numbers."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import Trainer
from transformers.trainer_utils import SchedulerType

from hf_superpositional.optim import SuperpositionalAdamW
from hf_superpositional.optim.args import parse_optim_args
from hf_superpositional.reproduction import presets
from hf_superpositional.reproduction.presets import (
    GSM8K,
    TEXT_CLASSIFICATION,
    gsm8k_training_arguments,
    text_classification_training_arguments,
)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_gsm8k_training_arguments_table_iii(tmp_path, no_cuda):
    with pytest.warns(UserWarning, match="fp16.*CUDA"):
        args = gsm8k_training_arguments(str(tmp_path), report_to="none")
    assert args.per_device_train_batch_size == 1
    assert args.learning_rate == 2e-5
    assert args.weight_decay == 0.01
    assert args.warmup_steps == 500
    assert args.lr_scheduler_type == SchedulerType.LINEAR
    assert args.max_grad_norm == 1.0
    assert args.num_train_epochs == 1
    assert args.optim == "superpositional_adamw"
    assert parse_optim_args(args.optim_args) == {"quantum_weight": 0.1, "n_qubits": 4}
    assert args.fp16 is False and args.bf16 is False  # no CUDA here: fp32, as the warning says


def test_gsm8k_recipe_constants():
    assert GSM8K.base_model == "meta-llama/Llama-3.2-1B-Instruct"
    assert (GSM8K.max_length, GSM8K.n_qubits, GSM8K.depth) == (2048, 4, 2)
    assert GSM8K.quantum_weights_reported == (0.1, 0.5)
    with pytest.raises(AttributeError):
        GSM8K.max_length = 4096  # frozen: the paper's numbers are not a scratchpad


def test_gsm8k_fp16_is_chosen_exactly_when_cuda_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert presets._mixed_precision({}, "f") == {"fp16": True}
        # An explicit choice is respected and silences the warning, with or without CUDA.
        assert presets._mixed_precision({"bf16": True}, "f") == {}
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert presets._mixed_precision({"fp16": False}, "f") == {}
    with pytest.warns(UserWarning):
        assert presets._mixed_precision({}, "f") == {"fp16": False}


def test_text_classification_training_arguments_table_ii(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fp16 in this table, so nothing to warn about
        args = text_classification_training_arguments(str(tmp_path), report_to="none")
    assert args.per_device_train_batch_size == 32
    assert args.per_device_eval_batch_size == 32
    assert args.learning_rate == 1e-3
    assert args.weight_decay == 0.0
    assert args.optim == "superpositional_adamw"
    assert parse_optim_args(args.optim_args) == {"quantum_weight": 0.5, "n_qubits": 4}


def test_text_classification_recipe_constants():
    record = TEXT_CLASSIFICATION
    assert (record.embed_dim, record.n_heads, record.ffn_dim, record.n_layers) == (64, 4, 128, 2)
    assert record.dropout == 0.1
    assert record.quantum_weight == 0.5
    assert (record.n_qubits, record.depth) == (4, 2)


def test_overrides_apply_and_unknown_ones_are_rejected(tmp_path, no_cuda):
    args = text_classification_training_arguments(
        str(tmp_path), quantum_weight=0.0, num_train_epochs=10, seed=7, report_to="none"
    )
    assert (args.num_train_epochs, args.seed) == (10, 7)
    assert parse_optim_args(args.optim_args)["quantum_weight"] == 0.0
    with pytest.raises(ValueError, match="unknown override 'learning_rat'.*learning_rate"):
        text_classification_training_arguments(str(tmp_path), learning_rat=1e-3)
    with pytest.raises(ValueError, match="unknown override 'context_length'"):
        gsm8k_training_arguments(str(tmp_path), context_length=2048, fp16=False)


def test_baseline_override_drops_our_optim_args(tmp_path, no_cuda):
    args = gsm8k_training_arguments(str(tmp_path), optim="adamw_torch", fp16=False, report_to="none")
    assert args.optim == "adamw_torch" and args.optim_args is None
    assert args.learning_rate == 2e-5  # the rest of the table stays


def test_preset_builds_superpositional_adamw_through_the_stock_trainer(tmp_path, no_cuda):
    args = gsm8k_training_arguments(str(tmp_path), quantum_weight=0.5, fp16=False, report_to="none")
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    assert cls is SuperpositionalAdamW
    assert (kwargs["lr"], kwargs["weight_decay"], kwargs["quantum_weight"], kwargs["n_qubits"]) == (
        2e-5,
        0.01,
        0.5,
        4,
    )
