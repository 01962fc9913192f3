"""The paper's training set-ups as ready ``TrainingArguments`` (SPEC section 5, paper Tables II and III).

Two kinds of numbers live here: those ``TrainingArguments`` holds (built by
:func:`gsm8k_training_arguments` and :func:`text_classification_training_arguments`) and those it does not
(model, context length, circuit size), kept in the frozen :data:`GSM8K` and :data:`TEXT_CLASSIFICATION`
records for the recipes and the attention config.

Mixed precision: the paper trains GSM8K in fp16. fp16 autocast with a grad scaler is a CUDA feature in the
Trainer, so the preset turns ``fp16`` on only when CUDA is available; elsewhere it warns and trains in fp32
(not bf16: fp32 is the numerically faithful fallback, and bf16 on CPU changes the loss curve while giving
little speed). Pass ``fp16=...`` or ``bf16=...`` explicitly to decide yourself; then nothing is warned.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainingArguments

from .._utils import did_you_mean
from ..integrations.transformers import (
    SUPERPOSITIONAL_ADAMW,
    is_superpositional_optim,
    register_superpositional_optimizers,
)
from ..optim.args import format_optim_args

__all__ = [
    "GSM8K",
    "TEXT_CLASSIFICATION",
    "GSM8KPreset",
    "TextClassificationPreset",
    "gsm8k_training_arguments",
    "text_classification_training_arguments",
]


@dataclass(frozen=True)
class GSM8KPreset:
    """GSM8K fine-tuning (paper Table III): what ``TrainingArguments`` does not hold.

    Args:
        base_model: Hub id of the model the paper fine-tunes.
        max_length: context length in tokens.
        n_qubits: qubits of the attention circuit and the optimizer's ``n_qubits``.
        depth: layers of the attention circuit.
        quantum_weight: the optimizer's default lambda here; the paper reports 0.1 and 0.5.
        quantum_weights_reported: the lambdas the paper compares against AdamW.
    """

    base_model: str = "meta-llama/Llama-3.2-1B-Instruct"
    max_length: int = 2048
    n_qubits: int = 4
    depth: int = 2
    quantum_weight: float = 0.1
    quantum_weights_reported: tuple[float, ...] = (0.1, 0.5)


@dataclass(frozen=True)
class TextClassificationPreset:
    """Text classification from scratch (paper Table II): the model's dimensions and the circuit.

    Args:
        embed_dim: embedding / hidden size.
        n_heads: attention heads.
        ffn_dim: feed-forward width.
        n_layers: transformer layers.
        dropout: dropout probability.
        n_qubits: qubits of the attention circuit and the optimizer's ``n_qubits``.
        depth: layers of the attention circuit.
        quantum_weight: lambda of SuperpositionalAdamW.
    """

    embed_dim: int = 64
    n_heads: int = 4
    ffn_dim: int = 128
    n_layers: int = 2
    dropout: float = 0.1
    n_qubits: int = 4
    depth: int = 2
    quantum_weight: float = 0.5


GSM8K = GSM8KPreset()
"""The paper's GSM8K set-up (Llama-3.2-1B-Instruct, context 2048, 4 qubits, depth 2)."""

TEXT_CLASSIFICATION = TextClassificationPreset()
"""The paper's text-classification model (64-d, 4 heads, FFN 128, 2 layers, dropout 0.1, lambda 0.5)."""


def _training_argument_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


def _check_overrides(overrides: dict[str, Any], function: str) -> None:
    valid = _training_argument_names()
    for key in overrides:
        if key not in valid:
            hint = did_you_mean(key, valid)
            raise ValueError(
                f"{function}: unknown override {key!r}{f' ({hint})' if hint else ''}: overrides must be "
                "TrainingArguments fields (e.g. num_train_epochs, logging_steps, seed)."
            )


def _build(defaults: dict[str, Any], overrides: dict[str, Any], function: str) -> TrainingArguments:
    _check_overrides(overrides, function)
    if (
        "optim" in overrides
        and not is_superpositional_optim(overrides["optim"])
        and "optim_args" not in overrides
    ):
        # A baseline run (e.g. optim="adamw_torch"): our optim_args keys would mean nothing to it.
        defaults = {**defaults, "optim_args": None}
    # The preset names our optimizer, so make sure the name is registered even if the caller imported only
    # this module; raises the clear RuntimeError (with the fallback) on an unsupported transformers.
    register_superpositional_optimizers()
    return TrainingArguments(**{**defaults, **overrides})


def _mixed_precision(overrides: dict[str, Any], function: str) -> dict[str, Any]:
    if "fp16" in overrides or "bf16" in overrides:
        return {}
    if torch.cuda.is_available():
        return {"fp16": True}
    warnings.warn(
        f"{function}: the paper trains in fp16, which needs CUDA; none is available, so this preset trains in "
        "fp32. Pass fp16=... or bf16=... to choose explicitly.",
        UserWarning,
        stacklevel=3,
    )
    return {"fp16": False}


def gsm8k_training_arguments(
    output_dir: str, *, quantum_weight: float = GSM8K.quantum_weight, **overrides: Any
) -> TrainingArguments:
    """``TrainingArguments`` of the paper's GSM8K fine-tuning (Table III).

    fp16 (on CUDA; see the module docstring), batch 1 per device, lr 2e-5, weight decay 0.01, 500 warm-up
    steps, linear decay to 0, gradient clipping 1.0, 1 epoch, ``optim="superpositional_adamw"`` with
    ``optim_args="quantum_weight=<quantum_weight>,n_qubits=4"``. Model, context length and circuit size are
    in :data:`GSM8K`.

    Args:
        output_dir: where checkpoints and logs go.
        quantum_weight: lambda of SuperpositionalAdamW (the paper reports 0.1 and 0.5).
        **overrides: any ``TrainingArguments`` field, applied last (e.g. ``optim="adamw_torch"`` for the
            AdamW baseline, ``max_steps=100``).

    Returns:
        The ``TrainingArguments``.

    Raises:
        ValueError: an override is not a ``TrainingArguments`` field.

    Example:
        >>> args = gsm8k_training_arguments("out/gsm8k", quantum_weight=0.5, report_to="none")  # doctest: +SKIP
        >>> args.learning_rate, args.warmup_steps, args.optim_args  # doctest: +SKIP
        (2e-05, 500, 'quantum_weight=0.5,n_qubits=4')
    """
    function = "gsm8k_training_arguments"
    defaults = {
        "output_dir": output_dir,
        "per_device_train_batch_size": 1,
        "learning_rate": 2e-5,
        "weight_decay": 0.01,
        "warmup_steps": 500,
        "lr_scheduler_type": "linear",
        "max_grad_norm": 1.0,
        "num_train_epochs": 1,
        "optim": SUPERPOSITIONAL_ADAMW,
        "optim_args": format_optim_args({"quantum_weight": quantum_weight, "n_qubits": GSM8K.n_qubits}),
        **_mixed_precision(overrides, function),
    }
    return _build(defaults, overrides, function)


def text_classification_training_arguments(
    output_dir: str, *, quantum_weight: float = TEXT_CLASSIFICATION.quantum_weight, **overrides: Any
) -> TrainingArguments:
    """``TrainingArguments`` of the paper's text-classification experiments (Table II).

    Batch 32 per device (train and eval), lr 1e-3, weight decay 0, ``optim="superpositional_adamw"`` with
    ``optim_args="quantum_weight=0.5,n_qubits=4"``. The paper gives no schedule or epoch count for this
    table, so those stay at the ``TrainingArguments`` defaults; the model dimensions are in
    :data:`TEXT_CLASSIFICATION`.

    Args:
        output_dir: where checkpoints and logs go.
        quantum_weight: lambda of SuperpositionalAdamW (0.5 in the paper; 0 gives AdamW).
        **overrides: any ``TrainingArguments`` field, applied last.

    Returns:
        The ``TrainingArguments``.

    Raises:
        ValueError: an override is not a ``TrainingArguments`` field.

    Example:
        >>> args = text_classification_training_arguments("out/tc", num_train_epochs=10)  # doctest: +SKIP
        >>> args.per_device_train_batch_size, args.learning_rate  # doctest: +SKIP
        (32, 0.001)
    """
    function = "text_classification_training_arguments"
    defaults = {
        "output_dir": output_dir,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 32,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "optim": SUPERPOSITIONAL_ADAMW,
        "optim_args": format_optim_args(
            {"quantum_weight": quantum_weight, "n_qubits": TEXT_CLASSIFICATION.n_qubits}
        ),
    }
    return _build(defaults, overrides, function)
