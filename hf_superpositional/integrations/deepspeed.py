"""SuperpositionalAdamW under DeepSpeed ZeRO (stages 1, 2 and 3), through accelerate and the Trainer.

Three things DeepSpeed changes, and what this module does about each:

1. **Flat partitions** (SPEC 1.12). ZeRO hands the optimizer one flat fp32 slice per param group (stage 3: per
   sub-group) per rank instead of the model's tensors, so "the first ``n_qubits`` elements of each parameter"
   (``scope="first_n"``) would become the first ``n_qubits`` of each slice. :func:`zero_first_n_indices` reads
   DeepSpeed's own maps from flat partitions to parameters -- stages 1/2: each parameter's ``_hp_mapping``
   (the fragment of the parameter a partition holds, and where; what DeepSpeed's universal checkpoints use);
   stage 3: ``grad_position`` (where each parameter's shard sits in the sub-group's flat tensor) and the
   shard's rank -- and :func:`map_first_n_to_zero_partitions` declares the positions with
   ``SuperpositionalAdamW.set_element_mask``. ``SuperpositionalTrainer`` does this when training starts
   (:class:`ZeroFirstNCallback`); a ZeRO optimizer it cannot map raises there, naming the stage and
   ``scope="all"`` (elementwise: it means the same on a flat slice). ``scope="all"`` needs no map.
2. **CPU launches** (SPEC 8). ``accelerate launch`` with a DeepSpeed config on a machine without CUDA starts the
   ranks, but accelerate sets itself up for ONE process: with ``train_batch_size: auto`` DeepSpeed's batch
   check fails, without it every rank trains on the same batches. :func:`cpu_deepspeed_overrides` applies the
   workaround -- ``PartialState(backend="gloo")`` set up first, then ``TrainingArguments(...,
   accelerator_config={"use_configured_state": True}, use_cpu=False)`` -- and
   ``hf_superpositional.cli.parse_args_and_config`` calls it, so the recipes run unchanged with
   ``accelerate launch --config_file recipes/accelerate/deepspeed_zero{1,2,3}.yaml``. :func:`check_deepspeed_launch`
   (run by ``SuperpositionalTrainer``) refuses a DeepSpeed launch the Trainer did not set up for.
3. **An optimizer object** given as ``Trainer(optimizers=(optimizer, scheduler))`` is dropped by transformers'
   DeepSpeed set-up, which builds torch's AdamW instead; ``SuperpositionalTrainer`` hands it back, so the
   object passed is the one that trains (with ``optim="superpositional_adamw"`` nothing needs handing back).

Example:
    >>> cpu_deepspeed_overrides({})  # not a DeepSpeed launch: nothing to change
    {}
"""

from __future__ import annotations

import atexit
import os
import sys
from datetime import timedelta
from typing import Any

import torch
from transformers import TrainerCallback

from .._utils import unwrap_optimizer

__all__ = [
    "ZeroFirstNCallback",
    "check_deepspeed_launch",
    "cpu_deepspeed_overrides",
    "is_deepspeed_launch",
    "map_first_n_to_zero_partitions",
    "zero_first_n_indices",
    "zero_stage",
]


def is_deepspeed_launch() -> bool:
    """Whether this process is a rank started by ``accelerate launch`` with a DeepSpeed configuration."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and "LOCAL_RANK" in os.environ


def _launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def cpu_deepspeed_overrides(training_kwargs: dict[str, Any]) -> dict[str, Any]:
    """On a CPU-only DeepSpeed launch, set accelerate up for every rank and return the ``TrainingArguments``
    overrides that make the Trainer use that set-up; anywhere else, return ``{}`` and change nothing.

    Call it BEFORE building ``TrainingArguments`` (building them sets accelerate up). It initialises
    ``PartialState(backend="gloo")`` -- gloo is the CPU collective backend, and naming it is what makes accelerate
    count every rank under DeepSpeed -- and returns ``{"accelerator_config": {..., "use_configured_state": True},
    "use_cpu": False}`` (``use_cpu=True`` would make accelerate skip DeepSpeed altogether). The process group is
    destroyed at exit, so ranks end cleanly.

    Args:
        training_kwargs: the keyword arguments about to build ``TrainingArguments`` (``deepspeed`` set there also
            counts as a DeepSpeed launch; an ``accelerator_config`` there is kept and extended).

    Returns:
        The keyword arguments to override.

    Example:
        >>> from transformers import TrainingArguments
        >>> kwargs = {"output_dir": "out"}
        >>> args = TrainingArguments(**{**kwargs, **cpu_deepspeed_overrides(kwargs)})  # doctest: +SKIP
    """
    deepspeed_requested = is_deepspeed_launch() or (
        bool(training_kwargs.get("deepspeed")) and "LOCAL_RANK" in os.environ
    )
    if not deepspeed_requested or torch.cuda.is_available() or _launched_world_size() < 2:
        return {}
    from accelerate import PartialState

    previous = os.environ.get("ACCELERATE_USE_DEEPSPEED")
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"  # as transformers does for `deepspeed=`: DeepSpeed inits comms
    try:
        state = PartialState(backend="gloo")
    finally:
        if previous is None:
            del os.environ["ACCELERATE_USE_DEEPSPEED"]
    if state.num_processes != _launched_world_size():
        raise RuntimeError(
            f"DeepSpeed on CPU: accelerate set up {state.num_processes} process(es) for a launch of "
            f"{_launched_world_size()}; it was already initialised before the gloo set-up could run"
        )
    atexit.register(_destroy_process_group)
    accelerator_config = training_kwargs.get("accelerator_config") or {}
    if not isinstance(accelerator_config, dict):
        accelerator_config = dict(vars(accelerator_config))
    return {"accelerator_config": {**accelerator_config, "use_configured_state": True}, "use_cpu": False}


def _destroy_process_group() -> None:
    # Without it a gloo + DeepSpeed rank aborts at interpreter exit ("terminate called without an active
    # exception"), and the launcher reports the run as failed. After an uncaught error the rank just exits: the
    # launcher then stops the others, where waiting for them at a barrier could hang.
    if getattr(sys, "last_value", None) is not None:
        return
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        try:  # no rank tears the group down while another still uses it
            torch.distributed.monitored_barrier(timeout=timedelta(seconds=120))
        except RuntimeError:
            return
        torch.distributed.destroy_process_group()


def check_deepspeed_launch(args: Any) -> None:
    """Raise when ranks were launched with DeepSpeed but ``args`` set accelerate up without it.

    That happens on a CPU-only machine unless :func:`cpu_deepspeed_overrides` ran before the
    ``TrainingArguments`` were built: accelerate then believes in one process (every rank trains on the same
    batches, or DeepSpeed's batch-size check fails), or, with ``use_cpu=True``, runs plain DDP instead of ZeRO.
    """
    if not is_deepspeed_launch():
        return
    from accelerate.utils import DistributedType

    state = args.distributed_state
    if state is not None and state.distributed_type == DistributedType.DEEPSPEED:
        if state.num_processes == _launched_world_size():
            return
    kind = getattr(state, "distributed_type", None)
    raise RuntimeError(
        f"This rank was launched with DeepSpeed ({_launched_world_size()} processes), but the TrainingArguments "
        f"set accelerate up as {kind} with {getattr(state, 'num_processes', 1)} process(es): every rank would "
        "train the same batches, or not use ZeRO at all. On a CPU-only machine, build them as "
        "TrainingArguments(..., **hf_superpositional.integrations.deepspeed.cpu_deepspeed_overrides(kwargs)) "
        "(hf_superpositional.cli.parse_args_and_config, which the recipes use, does so)."
    )


def zero_stage(zero_optimizer: Any) -> int | None:
    """The ZeRO stage (1, 2 or 3) of a DeepSpeed ZeRO optimizer, ``None`` for anything else."""
    if hasattr(zero_optimizer, "fp32_partitioned_groups_flat") and hasattr(zero_optimizer, "grad_position"):
        return 3
    if hasattr(zero_optimizer, "single_partition_of_fp32_groups") and hasattr(zero_optimizer, "bit16_groups"):
        return 2 if getattr(zero_optimizer, "partition_gradients", False) else 1
    return None


def _zero_optimizer(optimizer: Any) -> Any:
    """The DeepSpeed ZeRO optimizer inside accelerate's and the engine's wrappers (or ``None``)."""
    seen = 0
    current = optimizer
    while current is not None and seen < 5:
        if zero_stage(current) is not None:
            return current
        current = getattr(current, "optimizer", None)
        seen += 1
    return None


def zero_first_n_indices(zero_optimizer: Any) -> list[tuple[torch.Tensor, dict[str, Any], list[int]]]:
    """For each flat fp32 partition of this rank, the positions of the first ``n_qubits`` elements of every
    original parameter (of those it holds), read from DeepSpeed's partition maps.

    ``n_qubits`` is that partition's param group's (the basic optimizer's group). A parameter split between
    ranks contributes its global elements ``< n_qubits`` to whichever rank holds them, exactly once.

    Returns:
        ``(flat partition, its param group, sorted local flat indices)`` per partition.

    Raises:
        RuntimeError: ``zero_optimizer`` is not a ZeRO stage 1/2/3 optimizer whose maps this module knows.
    """
    stage = zero_stage(zero_optimizer)
    basic = zero_optimizer.optimizer
    out: list[tuple[torch.Tensor, dict[str, Any], list[int]]] = []
    if stage in (1, 2):
        for i, flat in enumerate(zero_optimizer.single_partition_of_fp32_groups):
            group = basic.param_groups[i]
            n = int(group.get("n_qubits", 0))
            indices: list[int] = []
            for param in zero_optimizer.bit16_groups[i]:
                mapping = getattr(param, "_hp_mapping", None)
                if mapping is None:  # no element of this parameter in this rank's partition
                    continue
                lp_start = int(mapping.lp_fragment_address.start)  # first element of the param held here
                hp = mapping.get_hp_fragment_address()  # where those elements sit in the flat partition
                for k in range(lp_start, min(lp_start + int(hp.numel), n)):
                    indices.append(int(hp.start) + k - lp_start)
            out.append((flat, group, sorted(indices)))
        return out
    if stage == 3:
        import torch.distributed as dist

        for i, flat in enumerate(zero_optimizer.fp32_partitioned_groups_flat):
            group = basic.param_groups[zero_optimizer.sub_group_to_group_id[i]]
            n = int(group.get("n_qubits", 0))
            indices = []
            for param in zero_optimizer.fp16_groups[i]:
                _, offset, count = zero_optimizer.grad_position[zero_optimizer.get_param_id(param)]
                # Each rank holds elements [rank * count, (rank + 1) * count) of the flattened parameter, the
                # last shard padded past ds_numel.
                rank = dist.get_rank(group=param.ds_process_group)
                first = rank * int(count)
                for k in range(first, min(first + int(count), n, int(param.ds_numel))):
                    indices.append(int(offset) + k - first)
            out.append((flat, group, sorted(indices)))
        return out
    raise RuntimeError(
        f"cannot read DeepSpeed's partition maps from {type(zero_optimizer).__name__}: "
        "scope='first_n' cannot be mapped onto its flat partitions; use scope='all' (elementwise)"
    )


def map_first_n_to_zero_partitions(optimizer: Any) -> dict[str, int] | None:
    """Declare, on the SuperpositionalAdamW inside a DeepSpeed ZeRO optimizer, where ``scope="first_n"`` falls.

    Args:
        optimizer: the Trainer's optimizer (accelerate's wrapper), the DeepSpeed engine's optimizer, or the ZeRO
            optimizer itself.

    Returns:
        ``{"stage": s, "partitions": p, "elements": e}`` (``e`` perturbed elements on this rank), or ``None`` when
        there is nothing to map: no ZeRO optimizer, or its basic optimizer is not SuperpositionalAdamW.

    Raises:
        RuntimeError: a ZeRO optimizer whose maps cannot be read while a ``first_n`` group perturbs (the message
            names the stage and ``scope="all"``).

    Example:
        >>> map_first_n_to_zero_partitions(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)) is None
        True
    """
    zero = _zero_optimizer(optimizer)
    if zero is None:
        return None
    basic = unwrap_optimizer(zero)
    if not callable(getattr(basic, "set_element_mask", None)):
        return None
    stage = zero_stage(zero)
    needs_map = any(g.get("scope") == "first_n" and g.get("quantum_weight", 0) != 0 for g in basic.param_groups)
    try:
        partitions = zero_first_n_indices(zero)
    except (AttributeError, KeyError, TypeError) as error:
        if not needs_map:
            return {"stage": stage, "partitions": 0, "elements": 0}
        raise RuntimeError(
            f"DeepSpeed ZeRO stage {stage}: SuperpositionalAdamW(scope='first_n') perturbs the first n_qubits "
            "elements of each parameter, but this DeepSpeed version's maps from flat partitions to parameters "
            f"could not be read ({type(error).__name__}: {error}). Use scope='all' (elementwise, the same on a "
            "flat partition), or a DeepSpeed version this package was tested with (0.19)."
        ) from error
    elements = 0
    for flat, group, indices in partitions:
        if group.get("scope") == "first_n":
            basic.set_element_mask(flat, indices)
            elements += len(indices)
    return {"stage": stage, "partitions": len(partitions), "elements": elements}


class ZeroFirstNCallback(TrainerCallback):
    """Map ``scope="first_n"`` onto ZeRO's flat partitions when training starts (after DeepSpeed has built them
    and a resumed checkpoint has been loaded). ``SuperpositionalTrainer`` adds it under DeepSpeed.

    ``report`` keeps :func:`map_first_n_to_zero_partitions`'s result for this rank.
    """

    def __init__(self) -> None:
        self.report: dict[str, int] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        self.report = map_first_n_to_zero_partitions(optimizer)
