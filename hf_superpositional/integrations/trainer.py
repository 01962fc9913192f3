"""``SuperpositionalTrainer``: the stock ``transformers.Trainer`` plus what quantum training needs.

On top of ``Trainer`` it:

- optionally patches the model with quantum attention from a ``QuantumAttentionConfig`` (also models made by
  ``model_init``);
- puts the trainable circuit parameters (names containing ``quantum_circuit.``) in their own param group
  with ``weight_decay=0``: they are rotation angles and gates, and decaying an angle towards 0 is not
  regularisation but a bias towards one particular circuit;
- adds cheap ``quantum/...`` values to the training logs: the optimizer's last-step diagnostics (when the
  optimizer is SuperpositionalAdamW with ``track_diagnostics``) and statistics of the attention gates;
- writes a complete model card (:mod:`.model_card`: tags, base model and dataset, every optimizer
  hyper-parameter, the quantum-attention configuration, LoRA settings, results, a loading snippet);
- saves the quantum configuration next to every PEFT adapter it saves, checkpoints included
  (:func:`~hf_superpositional.integrations.peft.save_adapter_quantum_config`), so the adapter reloads with
  its circuits.

Everything else (optimizer choice through ``optim``, schedulers, checkpoints, resume, distributed) is the
stock Trainer's. With ``optim`` not ours it is the stock Trainer plus the circuit param group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import IntervalStrategy

from .._utils import unwrap_optimizer
from ..attention import apply_quantum_attention
from ..naming import QUANTUM_CONFIG_KEY, is_quantum_parameter_name
from .checkpoint import validate_resume_checkpoint
from .model_card import ModelCardInfo, is_hub_id, training_details, update_model_card
from .peft import save_adapter_quantum_config
from .transformers import uses_superpositional_optimizer

__all__ = ["MODEL_CARD_TAGS", "SuperpositionalTrainer"]

MODEL_CARD_TAGS = {
    "library": "hf_superpositional",
    "optimizer": "superpositional-gradient-descent",
    "attention": "quantum-attention",
}
"""Model-card tags: always ``library``; ``optimizer`` when SuperpositionalAdamW trains; ``attention`` when the
model has quantum attention."""


def _full(param: torch.Tensor) -> torch.Tensor:
    # Under FSDP2 a gate is a DTensor; `full_tensor()` is a collective, which is safe here because the
    # Trainer calls `log()` on every rank (it gathers the loss right before).
    full_tensor = getattr(param, "full_tensor", None)
    return full_tensor() if callable(full_tensor) else param


class _QuantumDiagnosticsCallback(TrainerCallback):
    """Switch SuperpositionalAdamW's ``track_diagnostics`` on only for steps whose logs will be written.

    The diagnostics cost an extra pass over the Adam moments, so paying it every step to log one step in
    ``logging_steps`` would be waste. If the user asked for ``track_diagnostics=true`` it stays on throughout.
    """

    def __init__(self, trainer: SuperpositionalTrainer) -> None:
        self.trainer = trainer

    @staticmethod
    def _will_log(args: Any, state: Any, step: int) -> bool:
        # Mirrors DefaultFlowCallback.on_step_end. With logging per epoch the last step of an epoch is not
        # known here, so every step is tracked.
        if step == 1 and args.logging_first_step:
            return True
        if args.logging_strategy == IntervalStrategy.STEPS:
            return bool(state.logging_steps) and step % state.logging_steps == 0
        return args.logging_strategy == IntervalStrategy.EPOCH

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        trainer = self.trainer
        optimizer = unwrap_optimizer(trainer.optimizer)
        if optimizer is None or not hasattr(optimizer, "track_diagnostics"):
            return
        if trainer._user_tracks_diagnostics is None:
            trainer._user_tracks_diagnostics = bool(optimizer.track_diagnostics)
        if trainer._user_tracks_diagnostics:
            return
        optimizer.track_diagnostics = self._will_log(args, state, state.global_step + 1)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = unwrap_optimizer(self.trainer.optimizer)
        if getattr(optimizer, "track_diagnostics", False):
            # global_step is incremented after this event: the diagnostics belong to step global_step + 1.
            self.trainer._diagnostics_step = state.global_step + 1


class SuperpositionalTrainer(Trainer):
    """``transformers.Trainer`` with a circuit-parameter group, ``quantum/...`` logs and model-card tags.

    Takes every ``Trainer`` argument unchanged, plus ``quantum_attention_config``. Use it with
    ``optim="superpositional_adamw"`` (or any stock optimizer) in ``TrainingArguments``.

    Which parameters count as "quantum" is decided by :meth:`is_quantum_parameter` (by default: the name
    contains ``quantum_circuit.``); override it in a subclass to group other parameters the same way.

    Args:
        model: the model to train (as for ``Trainer``).
        args: ``TrainingArguments`` (as for ``Trainer``).
        *trainer_args: further positional ``Trainer`` arguments.
        quantum_attention_config: a :class:`~hf_superpositional.attention.config.QuantumAttentionConfig`; when given, the
            model (or each model ``model_init`` returns) is patched with
            :func:`hf_superpositional.attention.patch.apply_quantum_attention` before the Trainer sees it.
        model_card_info: a :class:`~hf_superpositional.integrations.model_card.ModelCardInfo` (base model,
            dataset, results...) for the model card; its ``results`` can be filled in after evaluation,
            before ``push_to_hub`` / ``create_model_card``.
        **trainer_kwargs: further keyword ``Trainer`` arguments.

    Example:
        >>> from transformers import TrainingArguments
        >>> import hf_superpositional
        >>> args = TrainingArguments("out", optim="superpositional_adamw", optim_args="quantum_weight=0.5")
        >>> trainer = SuperpositionalTrainer(model=model, args=args, train_dataset=ds,  # doctest: +SKIP
        ...     quantum_attention_config=hf_superpositional.QuantumAttentionConfig(n_qubits=4, depth=2))
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: Any = None,
        *trainer_args: Any,
        quantum_attention_config: Any = None,
        model_card_info: ModelCardInfo | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        # Set before Trainer.__init__, which may already call `call_model_init`.
        self.quantum_attention_config = quantum_attention_config
        self.model_card_info = model_card_info
        self._user_tracks_diagnostics: bool | None = None
        self._diagnostics_step: int | None = None
        if model is not None and quantum_attention_config is not None:
            model = self._apply_quantum_attention(model)
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        self.add_callback(_QuantumDiagnosticsCallback(self))
        # Like TRL's trainers: tag the model so `model.push_to_hub` outside the Trainer carries them too.
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._model_tags(include_optimizer=False))

    # ---- quantum attention ----

    def _apply_quantum_attention(self, model: nn.Module) -> nn.Module:
        return apply_quantum_attention(model, self.quantum_attention_config)

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """``Trainer.call_model_init``, then the quantum-attention patch when a config was given."""
        model = super().call_model_init(trial)
        if self.quantum_attention_config is not None:
            model = self._apply_quantum_attention(model)
        return model

    # ---- resuming (checkpoint validation: integrations/checkpoint.py) ----

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train``, after checking the checkpoint it resumes from.

        ``resume_from_checkpoint=True`` picks the newest checkpoint that was completely written (skipping, with a
        warning, one left half-written by a killed run). The folder is checked with
        :func:`hf_superpositional.integrations.checkpoint.validate_checkpoint` against this model and optimizer arguments: a
        missing or truncated ``optimizer.pt``/``scheduler.pt``, a weights file cut short, or a quantum config
        that does not match the weights or the model raises ``CheckpointError`` naming the file and the
        mismatch, where the stock Trainer would resume with silently re-initialised state.
        """
        resume_from_checkpoint = validate_resume_checkpoint(self, resume_from_checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # ---- which parameters are "quantum" ----

    def is_quantum_parameter(self, name: str, param: nn.Parameter) -> bool:
        """Whether ``param`` (called ``name`` in ``model.named_parameters()``) is a circuit parameter.

        Override to change the grouping; the default matches ``...quantum_circuit.<anything>``.
        """
        return is_quantum_parameter_name(name)

    def is_gate_parameter(self, name: str, param: nn.Parameter) -> bool:
        """Whether a circuit parameter is an attention gate (logged as ``quantum/gate_*``)."""
        return self.is_quantum_parameter(name, param) and name.rsplit(".", 1)[-1] == "gate"

    def quantum_parameter_names(self, model: nn.Module | None = None) -> list[str]:
        """Names of the circuit parameters of ``model`` (default: the Trainer's model)."""
        model = self.model if model is None else model
        return [name for name, param in model.named_parameters() if self.is_quantum_parameter(name, param)]

    # ---- optimizer ----

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """The stock decay names (no biases, no norms) minus the circuit parameters."""
        quantum = set(self.quantum_parameter_names(model))
        return [name for name in super().get_decay_parameter_names(model) if name not in quantum]

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """Build the optimizer as the stock Trainer does, then move circuit parameters to their own group.

        The stock decay / no-decay groups (and whatever the chosen ``optim`` adds) are kept; the circuit
        parameters, already left out of weight decay by :meth:`get_decay_parameter_names`, are taken out of
        the no-decay group into a final group ``{"params": circuit, "weight_decay": 0.0}``. This happens before
        the first step, while the optimizer holds no state, so it is the same as constructing with that group.
        """
        already_built = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        if not already_built:
            self._split_quantum_group(self.model if model is None else model)
        if self._user_tracks_diagnostics is None:
            # Recorded once, before the diagnostics callback first touches the flag.
            self._user_tracks_diagnostics = bool(
                getattr(unwrap_optimizer(self.optimizer), "track_diagnostics", False)
            )
        return optimizer

    def _split_quantum_group(self, model: nn.Module) -> None:
        optimizer = unwrap_optimizer(self.optimizer)
        if optimizer is None or len(optimizer.state) > 0:
            return
        quantum = {
            id(param)
            for name, param in model.named_parameters()
            if param.requires_grad and self.is_quantum_parameter(name, param)
        }
        if not quantum:
            return
        moved: list[nn.Parameter] = []
        for group in optimizer.param_groups:
            kept = [p for p in group["params"] if id(p) not in quantum]
            if len(kept) != len(group["params"]):
                moved.extend(p for p in group["params"] if id(p) in quantum)
                group["params"] = kept
        if moved:
            optimizer.add_param_group({"params": moved, "weight_decay": 0.0})

    # ---- logging ----

    def quantum_log_values(self) -> dict[str, float]:
        """The ``quantum/...`` values added to training logs (cheap: no forward pass, a few reductions).

        ``quantum/perturbation_norm``, ``quantum/update_norm`` and ``quantum/perturbation_to_update_ratio`` come
        from SuperpositionalAdamW's ``last_step_diagnostics()`` for the step being logged (the trainer turns
        the optimizer's ``track_diagnostics`` on just for the steps it logs; ``track_diagnostics=true`` in
        ``optim_args`` keeps it on every step); ``quantum/gate_mean`` and ``quantum/gate_abs_max`` summarise
        the attention gates.
        """
        values: dict[str, float] = {}
        optimizer = unwrap_optimizer(self.optimizer)
        diagnostics = getattr(optimizer, "last_step_diagnostics", None)
        # Only report norms measured at the step being logged, never stale ones from an earlier step.
        if callable(diagnostics) and self._diagnostics_step == self.state.global_step:
            for key, value in (diagnostics() or {}).items():
                if value is not None:
                    values[key] = float(value)
        if self.model is not None:
            gates = [
                _full(param).detach().float().reshape(-1)
                for name, param in self.model.named_parameters()
                if self.is_gate_parameter(name, param)
            ]
            if gates:
                flat = torch.cat(gates)
                values["quantum/gate_mean"] = flat.mean().item()
                values["quantum/gate_abs_max"] = flat.abs().max().item()
        return values

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """``Trainer.log`` with :meth:`quantum_log_values` added to training-step logs (those with ``loss``)."""
        if "loss" in logs:
            logs.update(self.quantum_log_values())
        super().log(logs, start_time)

    # ---- model card ----

    def _has_quantum_attention(self) -> bool:
        if self.model is None:
            return False
        config = getattr(self.model, "config", None)
        if config is not None and getattr(config, QUANTUM_CONFIG_KEY, None) is not None:
            return True
        return bool(self.quantum_parameter_names())

    def _model_tags(self, include_optimizer: bool = True) -> list[str]:
        tags = [MODEL_CARD_TAGS["library"]]
        if include_optimizer and uses_superpositional_optimizer(self):
            tags.append(MODEL_CARD_TAGS["optimizer"])
        if self._has_quantum_attention():
            tags.append(MODEL_CARD_TAGS["attention"])
        return tags

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """``Trainer.create_model_card`` with this package's tags, metadata and section added.

        Tags: ``hf_superpositional`` always, ``superpositional-gradient-descent`` when SuperpositionalAdamW
        trains, ``quantum-attention`` when the model has circuit parameters. From ``model_card_info``: the base
        model and dataset (as card metadata when they are Hub ids). Then the section of
        :func:`~hf_superpositional.integrations.model_card.render_model_card_section`.
        """
        info = self.model_card_info or ModelCardInfo()
        # Only Hub ids go into the Trainer's metadata: the Hub rejects a `base_model` that is no repo.
        if is_hub_id(info.base_model):
            kwargs.setdefault("finetuned_from", info.base_model)
        if is_hub_id(info.dataset) and "dataset" not in kwargs:
            kwargs.setdefault("dataset_tags", info.dataset)
            kwargs["dataset"] = info.dataset
            if info.dataset_config:
                kwargs.setdefault("dataset_args", info.dataset_config)
        merged = [tags] if isinstance(tags, str) else list(tags or [])
        merged += [tag for tag in self._model_tags() if tag not in merged]
        super().create_model_card(language=language, license=license, tags=merged, **kwargs)
        if not self.is_world_process_zero():
            return
        repo_id = getattr(self, "hub_model_id", None) or self.args.hub_model_id
        update_model_card(
            Path(self.args.output_dir) / "README.md", info, training_details(self), repo_id, self._model_tags()
        )

    # ---- saving ----

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model``, then, for a PEFT model, the quantum configuration next to the adapter.

        ``Trainer`` saves checkpoints through this method too, so every saved adapter reloads with its
        circuits (:func:`hf_superpositional.load_trained_model`).
        """
        super().save_model(output_dir, _internal_call=_internal_call)
        if self.args.should_save:
            model = self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model
            save_adapter_quantum_config(model, output_dir if output_dir is not None else self.args.output_dir)
