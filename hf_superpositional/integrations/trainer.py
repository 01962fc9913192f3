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
  its circuits;
- stops with :class:`NonFiniteTrainingError` naming the step when the loss or the gradient norm is NaN/inf,
  before the optimizer step spreads it into the weights and Adam moments (``on_nonfinite="skip"`` skips such
  steps instead, with a warning and ``nonfinite_steps_skipped`` in the logs; the AMP grad scaler keeps its own
  handling of overflowing fp16 gradients);
- records the SHA-256 of every weight and state file in each checkpoint (verified on resume), and removes a
  checkpoint folder whose writing failed (a full disk) instead of leaving it half-written;
- resumes checkpoints written by the stock ``Trainer`` or TRL's ``SFTTrainer`` too (their optimizer has no
  separate circuit param group: the resumed run keeps their layout);
- warns once when ``fp16=True`` runs on a CPU, where it trains in float32 (:attr:`effective_mixed_precision`).

Everything else (optimizer choice through ``optim``, schedulers, checkpoints, resume, distributed) is the
stock Trainer's. With ``optim`` not ours it is the stock Trainer plus the circuit param group.
"""

from __future__ import annotations

import errno
import inspect
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, IntervalStrategy

from .._utils import unwrap_optimizer
from ..attention import apply_quantum_attention
from ..naming import QUANTUM_CONFIG_KEY, is_quantum_parameter_name
from .checkpoint import resume_checkpoint_report
from .checkpoint_files import CheckpointError, write_checksums
from .deepspeed import ZeroFirstNCallback, check_deepspeed_launch
from .model_card import ModelCardInfo, is_hub_id, training_details, update_model_card
from .peft import save_adapter_quantum_config
from .transformers import uses_superpositional_optimizer

__all__ = ["MODEL_CARD_TAGS", "NONFINITE_POLICIES", "NonFiniteTrainingError", "SuperpositionalTrainer"]

logger = logging.getLogger(__name__)

NONFINITE_POLICIES = ("raise", "skip")
"""What ``SuperpositionalTrainer(on_nonfinite=...)`` does on a NaN/inf loss or gradient norm."""


class NonFiniteTrainingError(RuntimeError):
    """The loss or gradient norm of a training step was NaN or inf (the message names the step)."""

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
        trainer._guard_nonfinite_step()
        optimizer = unwrap_optimizer(trainer.optimizer)
        if optimizer is None or not hasattr(optimizer, "track_diagnostics"):
            return
        if trainer._user_tracks_diagnostics is None:
            trainer._user_tracks_diagnostics = bool(optimizer.track_diagnostics)
        if trainer._user_tracks_diagnostics:
            return
        optimizer.track_diagnostics = self._will_log(args, state, state.global_step + 1)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer._step_loss_finite = True
        self.trainer._last_grad_norm = None
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
        on_nonfinite: ``"raise"`` (default): a NaN/inf loss or gradient norm stops training with
            :class:`NonFiniteTrainingError` naming the step, before the optimizer step (the weights and
            optimizer state stay those of the step before, as does the last checkpoint). ``"skip"``: such a
            step leaves the weights and optimizer state untouched (the gradients are dropped; the step and the
            learning-rate schedule still advance), logs a warning naming it, and counts it in
            ``nonfinite_steps_skipped`` in the training logs. Overflows the fp16 grad scaler handles (it skips
            those steps itself) are left to it.
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
        on_nonfinite: str = "raise",
        **trainer_kwargs: Any,
    ) -> None:
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite must be one of {list(NONFINITE_POLICIES)}, got {on_nonfinite!r}.")
        # Set before Trainer.__init__, which may already call `call_model_init`.
        self.quantum_attention_config = quantum_attention_config
        self.model_card_info = model_card_info
        self.on_nonfinite = on_nonfinite
        self.nonfinite_steps_skipped = 0
        self._step_loss_finite = True
        self._last_grad_norm: Any = None
        self._stock_param_groups = False
        self._user_tracks_diagnostics: bool | None = None
        self._diagnostics_step: int | None = None
        self._given_optimizers: tuple[Any, Any] = (None, None)
        if model is not None and quantum_attention_config is not None:
            model = self._apply_quantum_attention(model)
        if args is not None:
            check_deepspeed_launch(args)  # a DeepSpeed launch that accelerate was not set up for raises
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        self.add_callback(_QuantumDiagnosticsCallback(self))
        # DeepSpeed (integrations/deepspeed.py): first_n mapped onto ZeRO's flat partitions when training starts,
        # and an optimizer / scheduler given as `optimizers=` kept (transformers' DeepSpeed set-up drops them).
        self._given_optimizers = (self.optimizer, self.lr_scheduler)
        if self.is_deepspeed_enabled:
            self.add_callback(ZeroFirstNCallback())
        if self.args.fp16 and self.effective_mixed_precision == "no":
            message = (
                "fp16=True has no effect on this CPU run: transformers/accelerate have no fp16 autocast on CPU, so "
                "the model trains in float32. Use bf16=True for mixed precision on a CPU, or run on a CUDA GPU."
            )
            logger.warning(message)
            warnings.warn(message, stacklevel=2)
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
        report = resume_checkpoint_report(self, resume_from_checkpoint)
        if report is not None:
            self._match_saved_param_groups(report)
        return super().train(None if report is None else str(report.path), *args, **kwargs)

    def _param_group_sizes(self, stock: bool) -> list[int]:
        model = self.model
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        decay = set(Trainer.get_decay_parameter_names(self, model) if stock else self.get_decay_parameter_names(model))
        sizes = [sum(n in decay for n, _ in trainable), sum(n not in decay for n, _ in trainable)]
        if not stock:
            quantum = sum(self.is_quantum_parameter(n, p) for n, p in trainable)
            sizes = [sizes[0], sizes[1] - quantum] + ([quantum] if quantum else [])
        return sizes

    def _match_saved_param_groups(self, report: Any) -> None:
        # The stock Trainer (and TRL's) keep circuit parameters in the decay group; the saved optimizer state
        # is positional, so the resumed optimizer must have the groups it was saved with.
        saved = report.param_group_sizes
        if saved is None or self.optimizer is not None or saved == self._param_group_sizes(stock=False):
            return
        if saved == self._param_group_sizes(stock=True):
            logger.warning(
                "%s was written by a Trainer without SuperpositionalTrainer's circuit param group; the resumed "
                "optimizer keeps its layout (circuit parameters stay in the weight-decay group, as they were "
                "trained).",
                report.path,
            )
            self._stock_param_groups = True
            return
        raise CheckpointError(
            f"{report.path}/optimizer.pt: its param groups hold {saved} parameters, but this run builds "
            f"{self._param_group_sizes(stock=False)}: the checkpoint comes from another model or optimizer set-up."
        )

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
        if self._stock_param_groups:
            return super().get_decay_parameter_names(model)
        quantum = set(self.quantum_parameter_names(model))
        return [name for name in super().get_decay_parameter_names(model) if name not in quantum]

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        """``Trainer.create_scheduler``, keeping under DeepSpeed a scheduler given as ``optimizers=(..., scheduler)``."""
        if self.lr_scheduler is None and self.is_deepspeed_enabled and self._given_optimizers[1] is not None:
            self.lr_scheduler = self._given_optimizers[1]
        return super().create_scheduler(num_training_steps, optimizer)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """Build the optimizer as the stock Trainer does, then move circuit parameters to their own group.

        The stock decay / no-decay groups (and whatever the chosen ``optim`` adds) are kept; the circuit
        parameters, already left out of weight decay by :meth:`get_decay_parameter_names`, are taken out of
        the no-decay group into a final group ``{"params": circuit, "weight_decay": 0.0}``. This happens before
        the first step, while the optimizer holds no state, so it is the same as constructing with that group.
        """
        if self.optimizer is None and self.is_deepspeed_enabled and self._given_optimizers[0] is not None:
            self.optimizer = self._given_optimizers[0]  # the object the user passed is the one that trains
        already_built = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        if not already_built and not self._stock_param_groups:
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
        """``Trainer.log`` with :meth:`quantum_log_values` added to training-step logs (those with ``loss``), and
        ``nonfinite_steps_skipped`` once a step was skipped (``on_nonfinite="skip"``)."""
        if "loss" in logs:
            logs.update(self.quantum_log_values())
            if self.nonfinite_steps_skipped:
                logs["nonfinite_steps_skipped"] = self.nonfinite_steps_skipped
        super().log(logs, start_time)

    # ---- non-finite losses and gradients ----

    @property
    def effective_mixed_precision(self) -> str:
        """The precision training actually runs in: ``"fp16"``, ``"bf16"`` or ``"no"`` (float32).

        ``fp16=True`` on a CPU gives ``"no"``: accelerate has no fp16 autocast there (the model card and logs
        should say what ran, not what was asked).
        """
        accelerator = getattr(self, "accelerator", None)
        precision = str(getattr(accelerator, "mixed_precision", "no"))
        if precision in ("fp16", "bf16") and not getattr(accelerator, "native_amp", False):
            return "no"
        return precision

    def training_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """``Trainer.training_step``; remembers whether the loss was finite (checked before the optimizer step)."""
        loss = super().training_step(model, inputs, *args, **kwargs)
        if not bool(torch.isfinite(loss.detach()).all()):
            self._step_loss_finite = False
        return loss

    def _get_grad_norm(self, model: nn.Module, grad_norm: Any = None) -> Any:
        # The Trainer computes the (global) gradient norm right before the optimizer step; keep it for the guard.
        self._last_grad_norm = super()._get_grad_norm(model, grad_norm)
        return self._last_grad_norm

    def _guard_nonfinite_step(self) -> None:
        """Before the optimizer step: raise, or skip the step, on a NaN/inf loss or gradient norm."""
        if getattr(self.accelerator, "scaler", None) is not None:
            # fp16 AMP: the grad scaler skips steps whose gradients overflow (a NaN/inf loss gives such
            # gradients) and lowers its scale; that handling is its own.
            self._step_loss_finite, self._last_grad_norm = True, None
            return
        loss_finite = self._step_loss_finite
        if self.args.world_size > 1:  # every rank must take the same decision
            flag = torch.tensor([0.0 if loss_finite else 1.0], device=self.args.device)
            loss_finite = bool(self.accelerator.reduce(flag, reduction="sum").item() == 0)
        grad_norm = self._last_grad_norm
        if grad_norm is None:  # a transformers without _get_grad_norm: measure it
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else None
        grad_finite = grad_norm is None or bool(torch.isfinite(torch.as_tensor(grad_norm)).all())
        self._step_loss_finite, self._last_grad_norm = True, None
        if loss_finite and grad_finite:
            return
        step = self.state.global_step + 1
        what = " and ".join(
            name for name, ok in (("loss", loss_finite), (f"gradient norm ({float(grad_norm)})", grad_finite)) if not ok
        )
        if self.on_nonfinite == "raise":
            raise NonFiniteTrainingError(
                f"training step {step}: non-finite {what}. The optimizer step was not taken: the weights and "
                f"optimizer state are those after step {step - 1}. Lower the learning rate or check the data; "
                "SuperpositionalTrainer(on_nonfinite='skip') skips such steps instead."
            )
        self.nonfinite_steps_skipped += 1
        for param in self.model.parameters():
            param.grad = None  # the optimizer skips parameters without gradients: no update, no moment change
        logger.warning(
            "training step %d: non-finite %s; step skipped (%d so far), weights and optimizer state unchanged.",
            step,
            what,
            self.nonfinite_steps_skipped,
        )

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
        :func:`~hf_superpositional.integrations.model_card.render_model_card_section`. Combined with a TRL
        trainer (:class:`~hf_superpositional.integrations.trl.SuperpositionalSFTTrainer`), TRL's own card is
        the base (its ``create_model_card(model_name, dataset_name, tags)``).
        """
        info = self.model_card_info or ModelCardInfo()
        merged = [tags] if isinstance(tags, str) else list(tags or [])
        merged += [tag for tag in self._model_tags() if tag not in merged]
        if "language" not in inspect.signature(super().create_model_card).parameters:  # TRL's trainers
            dataset_name = info.dataset if is_hub_id(info.dataset) else None
            model_name = kwargs.get("model_name") or Path(self.args.output_dir).name
            super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=merged)
            self._add_model_card_section(info)
            return
        # Only Hub ids go into the Trainer's metadata: the Hub rejects a `base_model` that is no repo.
        if is_hub_id(info.base_model):
            kwargs.setdefault("finetuned_from", info.base_model)
        if is_hub_id(info.dataset) and "dataset" not in kwargs:
            kwargs.setdefault("dataset_tags", info.dataset)
            kwargs["dataset"] = info.dataset
            if info.dataset_config:
                kwargs.setdefault("dataset_args", info.dataset_config)
        super().create_model_card(language=language, license=license, tags=merged, **kwargs)
        self._add_model_card_section(info)

    def _add_model_card_section(self, info: ModelCardInfo) -> None:
        if not self.is_world_process_zero():
            return
        repo_id = getattr(self, "hub_model_id", None) or self.args.hub_model_id
        update_model_card(
            Path(self.args.output_dir) / "README.md", info, training_details(self), repo_id, self._model_tags()
        )

    # ---- saving ----

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        # A checkpoint that fails to write (a full disk gives torch's "unexpected pos") is removed rather than
        # left half-written; one that is written gets the checksums resume verifies.
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        try:
            super()._save_checkpoint(model, trial)
        except (OSError, RuntimeError) as error:
            if self.args.should_save and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
            full = getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
                text in str(error) for text in ("unexpected pos", "No space left", "file write failed")
            )
            reason = "the disk is full" if full else "writing failed"
            raise CheckpointError(
                f"{folder}: could not be written ({reason}: {type(error).__name__}: {error}). The incomplete folder "
                "was removed, so resume_from_checkpoint=True picks the last complete checkpoint. Free space under "
                f"{folder.parent} (or set save_total_limit) and resume."
            ) from error
        # Every process writes files of its own (rng_state_<rank>.pth, DeepSpeed's shards) with no barrier after
        # them: the checksums are taken once all have finished, or a file another rank is still writing would be
        # recorded half-written (and the next resume refused as corrupt).
        self.accelerator.wait_for_everyone()
        if self.args.should_save and folder.is_dir():
            write_checksums(folder)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model``, then, for a PEFT model, the quantum configuration next to the adapter.

        ``Trainer`` saves checkpoints through this method too, so every saved adapter reloads with its
        circuits (:func:`hf_superpositional.load_trained_model`).
        """
        super().save_model(output_dir, _internal_call=_internal_call)
        if self.args.should_save:
            model = self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model
            save_adapter_quantum_config(model, output_dir if output_dir is not None else self.args.output_dir)
