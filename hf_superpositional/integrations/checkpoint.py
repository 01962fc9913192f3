"""Check a Trainer checkpoint before resuming from it: fail loudly instead of silently re-initialising.

``transformers.Trainer`` resumes from ``checkpoint-N/`` leniently, and several of its fallbacks silently change
the run:

- a missing ``optimizer.pt`` (or ``scheduler.pt``) is skipped without a word: Adam's moments and step counts
  restart from zero and the learning-rate schedule from its first step;
- weights are loaded with ``strict=False``: circuit parameters missing from the checkpoint keep their fresh
  initialisation, with at most a log line;
- ``Optimizer.load_state_dict`` overwrites the new run's hyper-parameters with the saved ones, so resuming
  with a different ``quantum_weight`` in ``optim_args`` quietly keeps the old one;
- checkpoints are not written atomically (``trainer_state.json`` comes last): a run killed while saving
  leaves a partial ``checkpoint-N`` that ``resume_from_checkpoint=True`` picks, and a file cut short fails
  deep inside ``torch.load`` / ``safetensors`` without naming the checkpoint.

:func:`validate_checkpoint` reads only file headers and the (small) optimizer state and raises
:class:`CheckpointError` -- a ``ValueError`` whose message names the file and the mismatch -- for each of these.
:func:`last_complete_checkpoint` picks the newest checkpoint that was completely written.
:class:`~hf_superpositional.integrations.trainer.SuperpositionalTrainer` runs both in ``train(resume_from_checkpoint=...)``
(via :func:`validate_resume_checkpoint`); with the stock ``Trainer`` call them yourself before ``train``.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attention import QuantumAttentionConfig, get_quantum_attention_config
from ..attention.loading import QUANTUM_ADAPTER_CONFIG_NAME
from ..naming import QUANTUM_CONFIG_KEY, QUANTUM_MODULE_NAME, is_quantum_parameter_name
from ..optim import SuperpositionalAdamW
from .checkpoint_files import (
    CHECKSUMS_FILE,
    CheckpointError,
    check_zip,
    non_finite_tensors,
    read_json,
    safetensors_shapes,
    verify_checksums,
)
from .transformers import superpositional_kwargs_of

__all__ = [
    "QUANTUM_STRUCTURE_FIELDS",
    "CheckpointError",
    "CheckpointReport",
    "last_complete_checkpoint",
    "resume_checkpoint_report",
    "validate_checkpoint",
    "validate_resume_checkpoint",
]

logger = logging.getLogger(__name__)

# File names the Trainer writes (transformers.trainer constants, repeated so this module imports no Trainer).
TRAINER_STATE = "trainer_state.json"
CONFIG = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
ADAPTER_SAFE_WEIGHTS = "adapter_model.safetensors"
ADAPTER_TORCH_WEIGHTS = "adapter_model.bin"
OPTIMIZER = "optimizer.pt"
OPTIMIZER_BIN = "optimizer.bin"  # accelerate's FSDP full-state-dict optimizer file
SCHEDULER = "scheduler.pt"
SCALER = "scaler.pt"
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
_LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")

QUANTUM_STRUCTURE_FIELDS = ("n_qubits", "depth", "readout", "score_input", "per_head", "layers")
"""``QuantumAttentionConfig`` fields that must agree between a checkpoint and the model resuming from it.

They fix the circuit parameters' shapes or the function those parameters compute. ``gate_init`` and
``init_seed`` only matter before the weights are loaded; ``circuit_backend`` and ``attn_implementation``
choose how the same function is evaluated (e.g. ``quantum_flex`` on a GPU), so they may change on resume.
"""


@dataclass
class CheckpointReport:
    """What :func:`validate_checkpoint` checked.

    Attributes:
        path: the checkpoint folder.
        global_step: the step recorded in ``trainer_state.json`` (``None`` when it was not required).
        quantum_attention: the checkpoint's ``quantum_attention`` config entry, or ``None``.
        checked: the files that were read.
        warnings: problems that do not change the trained values (also emitted as ``UserWarning``).
        param_group_sizes: how many parameters each saved optimizer param group holds (``None`` when no
            ``optimizer.pt`` was read).
    """

    path: Path
    global_step: int | None = None
    quantum_attention: dict[str, Any] | None = None
    checked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    param_group_sizes: list[int] | None = None


# --------------------------------------------------------------------------------------------------
# picking the checkpoint
# --------------------------------------------------------------------------------------------------
def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder of ``output_dir`` whose ``trainer_state.json`` was written.

    The Trainer writes ``trainer_state.json`` last, so a folder without it was interrupted while saving
    (e.g. the job was killed). Such folders are skipped with a warning naming them; transformers'
    ``get_last_checkpoint`` would pick them and fail or, worse, resume half a checkpoint.

    Args:
        output_dir: the Trainer's ``output_dir``.

    Returns:
        The folder path as a string, or ``None`` when there is no complete checkpoint.

    Example:
        >>> last_complete_checkpoint("/nonexistent/folder") is None
        True
    """
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), child)
        for child in root.iterdir()
        if child.is_dir() and (m := _CHECKPOINT_DIR.match(child.name))
    )
    skipped = []
    for _, folder in reversed(found):
        if (folder / TRAINER_STATE).is_file():
            if skipped:
                message = (
                    f"Skipping incomplete checkpoint(s) {', '.join(skipped)} (no {TRAINER_STATE}: the run was "
                    f"interrupted while saving); resuming from {folder}."
                )
                logger.warning(message)
                warnings.warn(message, stacklevel=2)
            return str(folder)
        skipped.append(str(folder))
    return None


# --------------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------------
def _weight_shapes(
    folder: Path, report: CheckpointReport
) -> tuple[dict[str, tuple[int, ...]], dict[str, Path], bool]:
    """Shapes of every saved tensor, the file each lives in, and whether these are PEFT adapter weights."""
    shapes: dict[str, tuple[int, ...]] = {}
    where: dict[str, Path] = {}

    def add(path: Path, found: Mapping[str, tuple[int, ...]]) -> None:
        report.checked.append(path.name)
        shapes.update(found)
        where.update(dict.fromkeys(found, path))

    if (folder / SAFE_WEIGHTS).is_file():
        add(folder / SAFE_WEIGHTS, safetensors_shapes(folder / SAFE_WEIGHTS))
    elif (folder / SAFE_WEIGHTS_INDEX).is_file():
        index = read_json(folder / SAFE_WEIGHTS_INDEX)
        report.checked.append(SAFE_WEIGHTS_INDEX)
        for shard in sorted(set(index.get("weight_map", {}).values())):
            if not (folder / shard).is_file():
                raise CheckpointError(f"{folder / shard}: missing (listed in {SAFE_WEIGHTS_INDEX}).")
            add(folder / shard, safetensors_shapes(folder / shard))
    elif (folder / TORCH_WEIGHTS).is_file():
        check_zip(folder / TORCH_WEIGHTS)
        try:
            state = torch.load(folder / TORCH_WEIGHTS, map_location="meta", weights_only=True)
        except Exception as error:  # anything torch.load raises means the same thing to the user
            raise CheckpointError(
                f"{folder / TORCH_WEIGHTS}: cannot be read ({type(error).__name__}: {error}); the file is corrupt."
            ) from None
        add(folder / TORCH_WEIGHTS, {k: tuple(v.shape) for k, v in state.items()})
    elif (folder / ADAPTER_SAFE_WEIGHTS).is_file():
        add(folder / ADAPTER_SAFE_WEIGHTS, safetensors_shapes(folder / ADAPTER_SAFE_WEIGHTS))
        return shapes, where, True
    elif (folder / ADAPTER_TORCH_WEIGHTS).is_file():
        check_zip(folder / ADAPTER_TORCH_WEIGHTS)
        report.checked.append(ADAPTER_TORCH_WEIGHTS)
        return shapes, where, True
    elif any(child.name.startswith("pytorch_model_fsdp") for child in folder.iterdir()):
        report.checked.append("pytorch_model_fsdp* (FSDP format; accelerate checks it on load)")
    else:
        raise CheckpointError(
            f"{folder}: no model weights ({SAFE_WEIGHTS}, {SAFE_WEIGHTS_INDEX}, {TORCH_WEIGHTS} or an adapter)."
        )
    return shapes, where, False


# --------------------------------------------------------------------------------------------------
# quantum attention: config against weights, checkpoint against model
# --------------------------------------------------------------------------------------------------
def _describe(cfg: Any) -> str:
    return ", ".join(f"{name}={getattr(cfg, name)!r}" for name in QUANTUM_STRUCTURE_FIELDS)


def _check_quantum_weights(
    folder: Path, config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], where: Mapping[str, Path]
) -> dict[str, Any] | None:
    """The checkpoint's own consistency: ``config.json``'s quantum_attention entry against the circuit tensors."""

    config_path = folder / CONFIG
    raw = config.get(QUANTUM_CONFIG_KEY)
    circuit_keys = sorted(k for k in shapes if is_quantum_parameter_name(k))
    if raw is None:
        # Circuit-named parameters without a quantum_attention entry can be a user's own modules (the name
        # prefix is public API); whether they fit is decided against the model being resumed, if any.
        return None
    try:
        cfg = QuantumAttentionConfig.from_dict(raw)
    except ValueError as error:
        raise CheckpointError(f"{config_path}: invalid {QUANTUM_CONFIG_KEY!r} entry: {error}") from None
    text_config = config.get("text_config") if isinstance(config.get("text_config"), Mapping) else {}
    num_heads = int(config.get("num_attention_heads") or text_config.get("num_attention_heads") or 0)
    num_layers = config.get("num_hidden_layers")
    for key in circuit_keys:
        suffix = key.rsplit(".", 1)[-1]
        if suffix not in ("ry", "rz", "gate"):
            continue
        expected = cfg.parameter_shapes(num_heads)[suffix]
        found = shapes[key]
        if cfg.per_head and not num_heads:  # head count unknown here: compare what the config does fix
            expected, found = expected[1:], found[1:]
        if found != expected:
            raise CheckpointError(
                f"{config_path} describes quantum attention with {_describe(cfg)} ({suffix} of shape {expected}), "
                f"but {where[key]} holds {key} with shape {shapes[key]}: the quantum config does not match the "
                "weights."
            )
    if shapes and not circuit_keys:
        raise CheckpointError(
            f"{config_path} describes quantum attention ({_describe(cfg)}) but {next(iter(where.values()))} holds "
            f"no {QUANTUM_MODULE_NAME} parameters: the quantum config does not match the weights."
        )
    if num_layers is not None and circuit_keys:
        expected_layers = set(cfg.layers if cfg.layers is not None else range(int(num_layers)))
        found_layers = {int(m.group(1)) for k in circuit_keys if (m := _LAYER_INDEX.search(k))}
        if found_layers and found_layers != expected_layers:
            raise CheckpointError(
                f"{config_path} puts circuits on layers {sorted(expected_layers)} but {where[circuit_keys[0]]} "
                f"holds circuits for layers {sorted(found_layers)}: the quantum config does not match the weights."
            )
    return cfg.to_dict()


def _check_against_model(
    folder: Path,
    model: nn.Module,
    checkpoint_quantum: dict[str, Any] | None,
    shapes: Mapping[str, tuple[int, ...]],
    where: Mapping[str, Path],
    is_adapter: bool,
) -> None:

    model_cfg = get_quantum_attention_config(model)
    ckpt_cfg = None if checkpoint_quantum is None else QuantumAttentionConfig.from_dict(checkpoint_quantum)
    config_path = folder / CONFIG
    if (model_cfg is None) != (ckpt_cfg is None) and (folder / CONFIG).is_file():
        has, lacks = (
            ("the checkpoint", "the model being trained")
            if model_cfg is None
            else ("the model being trained", "the checkpoint")
        )
        raise CheckpointError(
            f"{config_path}: {has} uses quantum attention but {lacks} does not "
            f"(checkpoint: {None if ckpt_cfg is None else _describe(ckpt_cfg)}; "
            f"model: {None if model_cfg is None else _describe(model_cfg)})."
        )
    if model_cfg is not None and ckpt_cfg is not None:
        diffs = [
            f"{name}: checkpoint {getattr(ckpt_cfg, name)!r}, model {getattr(model_cfg, name)!r}"
            for name in QUANTUM_STRUCTURE_FIELDS
            if getattr(ckpt_cfg, name) != getattr(model_cfg, name)
        ]
        if diffs:
            raise CheckpointError(
                f"{config_path}: the checkpoint's quantum attention config does not match the model being trained "
                f"({'; '.join(diffs)})."
            )
    if is_adapter:
        _check_adapter_quantum_config(folder, model)
        return  # adapter keys are PEFT-prefixed; PEFT's loader checks them
    if not shapes:
        return
    state = model.state_dict()
    for key, shape in shapes.items():
        if key in state and tuple(state[key].shape) != shape:
            raise CheckpointError(
                f"{where[key]}: {key} has shape {shape} in the checkpoint but {tuple(state[key].shape)} in the "
                "model being trained."
            )
    unexpected = sorted(set(shapes) - set(state))
    if unexpected:
        raise CheckpointError(
            f"{where[unexpected[0]]}: holds {len(unexpected)} tensor(s) the model being trained does not have "
            f"({', '.join(unexpected[:5])}): it was saved from a different model."
        )
    # Tied weights are saved once: a missing key that shares storage with a saved one is not missing.
    saved_storages = {state[k].untyped_storage().data_ptr() for k in shapes if k in state}
    missing = sorted(
        k for k in set(state) - set(shapes) if state[k].untyped_storage().data_ptr() not in saved_storages
    )
    if missing:
        first_file = next(iter(where.values()))
        raise CheckpointError(
            f"{first_file}: lacks {len(missing)} tensor(s) of the model being trained ({', '.join(missing[:5])}); "
            "resuming would silently keep their fresh initialisation."
        )


def _check_adapter_quantum_config(folder: Path, model: nn.Module) -> None:
    # A LoRA checkpoint's circuits (modules_to_save) fit only a base patched as in training: the quantum
    # configuration saved beside the adapter must be the resuming model's.
    get_base = getattr(model, "get_base_model", None)
    model_cfg = get_quantum_attention_config(get_base() if callable(get_base) else model)
    quantum_file = folder / QUANTUM_ADAPTER_CONFIG_NAME
    saved = QuantumAttentionConfig.from_dict(read_json(quantum_file)) if quantum_file.is_file() else None
    if saved is None and model_cfg is None:
        return
    if saved is None:
        raise CheckpointError(
            f"{quantum_file}: missing, but the model being trained has quantum attention ({_describe(model_cfg)}): "
            "the adapter was saved from a model without it, or the file was lost."
        )
    if model_cfg is None:
        raise CheckpointError(
            f"{quantum_file}: the adapter was trained on a quantum-attention base ({_describe(saved)}) but the model "
            "being trained has none; patch the base with apply_quantum_attention before get_peft_model."
        )
    diffs = [f"{n}: checkpoint {getattr(saved, n)!r}, model {getattr(model_cfg, n)!r}" for n in QUANTUM_STRUCTURE_FIELDS
             if getattr(saved, n) != getattr(model_cfg, n)]  # fmt: skip
    if diffs:
        raise CheckpointError(
            f"{quantum_file}: the checkpoint's quantum attention config does not match the model being trained "
            f"({'; '.join(diffs)})."
        )


# --------------------------------------------------------------------------------------------------
# optimizer state
# --------------------------------------------------------------------------------------------------
def _check_optimizer(
    folder: Path,
    report: CheckpointReport,
    model: nn.Module | None,
    optimizer_kwargs: Mapping[str, Any] | None,
) -> None:
    optimizer_file = next((folder / n for n in (OPTIMIZER, OPTIMIZER_BIN) if (folder / n).is_file()), None)
    sharded_dirs = [c for c in folder.iterdir() if c.is_dir() and c.name.startswith("optimizer")]
    if optimizer_file is None and not sharded_dirs:
        raise CheckpointError(
            f"{folder / OPTIMIZER}: missing. transformers would resume without it and silently restart the "
            "optimizer (Adam moments and step counts) from zero; restore the file or resume from another checkpoint."
        )
    if not (folder / SCHEDULER).is_file():
        raise CheckpointError(
            f"{folder / SCHEDULER}: missing. transformers skips the optimizer AND the learning-rate schedule when "
            "either file is absent, silently restarting both; restore it or resume from another checkpoint."
        )
    check_zip(folder / SCHEDULER)
    report.checked.append(SCHEDULER)
    if optimizer_file is None:
        report.checked.append(f"{sharded_dirs[0].name}/ (sharded; not inspected)")
        return
    check_zip(optimizer_file)
    if optimizer_file.name == OPTIMIZER_BIN:
        # accelerate's FSDP format (keyed by parameter name, may hold non-tensor objects): accelerate checks it
        # on load; the zip check above already catches a file cut short.
        report.checked.append(optimizer_file.name)
        return
    try:
        saved = torch.load(optimizer_file, map_location="cpu", weights_only=True)
    except Exception as error:  # anything torch.load raises means the same thing to the user
        raise CheckpointError(
            f"{optimizer_file}: cannot be read ({type(error).__name__}: {error}); the file is truncated or corrupt."
        ) from None
    report.checked.append(optimizer_file.name)
    if (
        not isinstance(saved, Mapping)
        or not isinstance(saved.get("state"), Mapping)
        or not isinstance(saved.get("param_groups"), list)
    ):
        raise CheckpointError(
            f"{optimizer_file}: not an optimizer state dict (expected a dict with 'state' and 'param_groups')."
        )
    groups = saved["param_groups"]
    ids = [i for g in groups for i in g.get("params", [])]
    state = saved["state"]
    report.param_group_sizes = [len(g.get("params", [])) for g in groups]
    non_finite = non_finite_tensors(state=state)
    if non_finite:
        raise CheckpointError(
            f"{optimizer_file}: holds NaN/inf optimizer state ({', '.join(non_finite[:4])}): the run had diverged "
            "when this checkpoint was written. Resume from an earlier checkpoint."
        )
    for param_id, entry in state.items():
        if param_id not in ids:
            raise CheckpointError(
                f"{optimizer_file}: state for parameter {param_id} which no param group lists."
            )
        lacking = [k for k in ("step", "exp_avg", "exp_avg_sq") if k not in entry]
        if lacking and ("exp_avg" in entry or "exp_avg_sq" in entry):  # an Adam-family state cut short
            raise CheckpointError(
                f"{optimizer_file}: the state of parameter {param_id} lacks {lacking}: truncated optimizer state."
            )
    steps = report.global_step or 0
    if steps > 0 and not state and not (folder / SCALER).is_file():
        # With fp16 the grad scaler may legitimately have skipped every step so far (scaler.pt is then saved).
        raise CheckpointError(
            f"{optimizer_file}: holds no per-parameter state although {TRAINER_STATE} records {steps} steps: "
            "truncated optimizer state."
        )
    if model is not None:
        trainable = [p for p in model.parameters() if p.requires_grad]
        if len(ids) != len(trainable):
            raise CheckpointError(
                f"{optimizer_file}: holds {len(ids)} parameters in {len(groups)} groups but the model being trained "
                f"has {len(trainable)} trainable parameters."
            )
        available = Counter(tuple(p.shape) for p in trainable)
        saved_shapes = Counter(
            tuple(entry["exp_avg"].shape)
            for entry in state.values()
            if isinstance(entry.get("exp_avg"), torch.Tensor)
        )
        extra = saved_shapes - available
        if extra:
            raise CheckpointError(
                f"{optimizer_file}: holds optimizer moments of shape(s) {sorted(extra)} that no trainable parameter "
                "of the model being trained has: it belongs to a different model or quantum config."
            )
    if optimizer_kwargs:
        wanted = {
            name: parameter.default
            for name, parameter in inspect.signature(SuperpositionalAdamW).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        wanted.update(optimizer_kwargs)
        for group_index, group in enumerate(groups):
            for key in ("quantum_weight", "n_qubits", "mode", "scope"):
                if key in group and group[key] != wanted.get(key):
                    raise CheckpointError(
                        f"{optimizer_file}: param group {group_index} was saved with {key}={group[key]!r} but this "
                        f"run asks for {key}={wanted.get(key)!r}; torch's load_state_dict would silently keep the "
                        "saved value. Resume with the original optim_args, or start a new run."
                    )


def _is_deepspeed_checkpoint(folder: Path) -> bool:
    return (folder / "latest").is_file() or any(
        child.is_dir() and child.name.startswith("global_step") for child in folder.iterdir()
    )


# --------------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------------
def validate_checkpoint(
    checkpoint_dir: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    world_size: int = 1,
    process_index: int = 0,
    require_training_state: bool = True,
) -> CheckpointReport:
    """Check that a Trainer checkpoint can be resumed without losing or silently changing anything.

    Reads headers and the optimizer state only (no weights are loaded). Checks, in order:

    1. ``trainer_state.json`` exists (the Trainer writes it last) and parses;
    2. the weights file(s) are complete (safetensors data length against the header; zip directory of
       ``.bin`` files);
    3. ``config.json``'s ``quantum_attention`` entry matches the circuit tensors (shapes, layers), and, with
       ``model``, the model's own quantum config (:data:`QUANTUM_STRUCTURE_FIELDS`) and every tensor's name
       and shape;
    4. ``optimizer.pt`` and ``scheduler.pt`` exist and are readable; the optimizer state is complete, covers
       as many parameters as ``model`` trains, holds moments of shapes the model has, and (with
       ``optimizer_kwargs``) was saved with the same ``quantum_weight``, ``n_qubits``, ``mode`` and ``scope``;
    5. the RNG state file is readable (a missing one only warns: values stay correct, data order and dropout
       may differ);
    6. weights and optimizer state hold no NaN/inf, and the files match the SHA-256 recorded in
       ``checksums.sha256`` when ``SuperpositionalTrainer`` wrote the checkpoint.

    Args:
        checkpoint_dir: a ``checkpoint-N`` folder written by ``Trainer``.
        model: the model about to resume from it (unwrapped), or ``None`` to check the folder on its own.
        optimizer_kwargs: the SuperpositionalAdamW keyword arguments of the resuming run (e.g. from
            :func:`~hf_superpositional.integrations.transformers.superpositional_optimizer_cls_and_kwargs`), or ``None``.
        world_size, process_index: which ``rng_state[_i].pth`` this process will read.
        require_training_state: ``False`` to check a folder holding only a model (no optimizer, no state).

    Returns:
        A :class:`CheckpointReport`.

    Raises:
        CheckpointError: the first problem found; the message names the file and the mismatch.

    Example:
        >>> validate_checkpoint("/nonexistent/checkpoint-4")
        Traceback (most recent call last):
        ...
        hf_superpositional.integrations.checkpoint_files.CheckpointError: /nonexistent/checkpoint-4: checkpoint folder does not exist.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist.")
    report = CheckpointReport(path=folder)
    if require_training_state:
        state_path = folder / TRAINER_STATE
        if not state_path.is_file() and not any(
            (folder / name).is_file() for name in (OPTIMIZER, OPTIMIZER_BIN, SCHEDULER, "rng_state.pth")
        ):
            raise CheckpointError(
                f"{folder}: not a Trainer checkpoint (no {TRAINER_STATE}, {OPTIMIZER} or {SCHEDULER}): it holds a "
                "saved model, which has no training state to resume. To train on from it, load it with "
                "hf_superpositional.load_trained_model(folder) and start a new run with that model."
            )
        if not state_path.is_file():
            raise CheckpointError(
                f"{state_path}: missing. The Trainer writes it last, so this checkpoint is incomplete (the run was "
                "probably interrupted while saving it); resume from an earlier checkpoint."
            )
        trainer_state = read_json(state_path)
        report.global_step = int(trainer_state.get("global_step", 0) or 0)
        report.checked.append(TRAINER_STATE)

    shapes, where, is_adapter = _weight_shapes(folder, report)
    config: dict[str, Any] = {}
    if (folder / CONFIG).is_file():
        config = read_json(folder / CONFIG)
        report.checked.append(CONFIG)
    if not is_adapter:
        report.quantum_attention = _check_quantum_weights(folder, config, shapes, where)
    elif config:
        report.quantum_attention = config.get(QUANTUM_CONFIG_KEY)
    if model is not None:
        _check_against_model(folder, model, report.quantum_attention, shapes, where, is_adapter)

    if require_training_state and _is_deepspeed_checkpoint(folder):
        # DeepSpeed keeps optimizer and scheduler in its own global_step*/ folder and loads them itself.
        report.checked.append("global_step*/ (DeepSpeed; not inspected)")
    elif require_training_state:
        _check_optimizer(folder, report, model, optimizer_kwargs)
        if (folder / SCALER).is_file():
            check_zip(folder / SCALER)
            report.checked.append(SCALER)
        rng_name = f"rng_state_{process_index}.pth" if world_size > 1 else "rng_state.pth"
        if (folder / rng_name).is_file():
            check_zip(folder / rng_name)
            report.checked.append(rng_name)
        else:
            message = (
                f"{folder / rng_name}: missing; the resumed run keeps the right weights and optimizer state, but its "
                "data order and dropout will not repeat the interrupted run's."
            )
            report.warnings.append(message)
            warnings.warn(message, stacklevel=2)
    _check_values(folder, report, where)
    return report


def _check_values(folder: Path, report: CheckpointReport, where: Mapping[str, Path]) -> None:
    """Last, once the structure is known good: finite weights, and files unchanged since they were written."""
    weight_files = sorted(set(where.values()))
    non_finite = non_finite_tensors(weight_files)
    if non_finite:
        raise CheckpointError(
            f"{folder}: holds NaN/inf weights ({', '.join(non_finite[:4])}): the run had diverged when this "
            "checkpoint was written. Resume from an earlier checkpoint."
        )
    checked = verify_checksums(folder)
    if checked is not None:
        report.checked.append(f"{CHECKSUMS_FILE} ({len(checked)} files)")


def validate_resume_checkpoint(trainer: Any, resume_from_checkpoint: str | bool | None) -> str | None:
    """The checkpoint folder :func:`resume_checkpoint_report` checked (``None`` for a fresh run).

    Example:
        >>> trainer.train(resume_from_checkpoint=validate_resume_checkpoint(trainer, True))  # doctest: +SKIP
    """
    report = resume_checkpoint_report(trainer, resume_from_checkpoint)
    return None if report is None else str(report.path)


def resume_checkpoint_report(trainer: Any, resume_from_checkpoint: str | bool | None) -> CheckpointReport | None:
    """Resolve and check what ``trainer.train(resume_from_checkpoint=...)`` is about to load.

    ``True`` means the newest COMPLETE checkpoint of ``trainer.args.output_dir``
    (:func:`last_complete_checkpoint`); a path is checked as given. The folder is then checked against
    ``trainer.model`` and the optimizer arguments of ``trainer.args`` with :func:`validate_checkpoint`.

    Args:
        trainer: a ``transformers.Trainer`` (before ``train``).
        resume_from_checkpoint: ``None``/``False`` (fresh run), ``True`` or a folder.

    Returns:
        The :class:`CheckpointReport` of the folder to pass on to ``Trainer.train`` (its ``path``), or ``None``
        for a fresh run.

    Raises:
        CheckpointError: no complete checkpoint under ``output_dir``, or any problem :func:`validate_checkpoint`
            finds.

    Example:
        >>> report = resume_checkpoint_report(trainer, True)  # doctest: +SKIP
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        output_dir = trainer.args.output_dir
        path = last_complete_checkpoint(output_dir)
        if path is None:
            raise CheckpointError(f"{output_dir}: no complete checkpoint-N folder to resume from.")
    else:
        path = os.fspath(resume_from_checkpoint)
    args = trainer.args
    report = validate_checkpoint(
        path,
        trainer.model,
        optimizer_kwargs=superpositional_kwargs_of(trainer),
        world_size=getattr(args, "world_size", 1),
        process_index=getattr(args, "process_index", 0),
    )
    logger.info("checkpoint %s passed validation (%s)", path, ", ".join(report.checked))
    return report
