"""Two-process CPU checks of SuperpositionalAdamW under DDP (accelerate + Trainer) and FSDP2 (``fully_shard``).

Launched by ``tests/test_distributed.py`` once, through accelerate's torchrun launcher on CPU with gloo::

    OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 --main_process_port PORT \\
        tests/e2e/scripts/distributed_checks.py --out OUT

(``--multi_gpu`` only selects accelerate's torchrun launcher; ``use_cpu=True`` in the script makes accelerate's
state ``MULTI_CPU`` with the gloo backend. ``accelerate launch --cpu`` would start ONE process unless MPI is
installed.) One launch does everything, because each launch costs seconds of imports:

1. **DDP** (:func:`train_ddp`): ``SuperpositionalTrainer`` with ``optim="superpositional_adamw"`` trains a tiny
   quantum-attention Llama, 2 rows per rank per step. Each rank saves its parameters to
   ``OUT/ddp_rank{r}.pt``; rank 0 also saves the logged losses. The test compares the ranks bit for bit and
   compares them with :func:`train_ddp` run in ONE process with 4 rows per step (the same global batch).
2. **FSDP2** (:func:`fsdp2_checks`): the same tiny model sharded with ``fully_shard`` (every decoder layer, then
   the root) trains 3 steps on 2 rows per rank; an unsharded copy trains on all 4 rows in each process
   (no collectives) as the reference. Variants: optimizer built BEFORE sharding and its parameters remapped
   by name afterwards (what the Trainer + accelerate do), in ``update`` and ``moment`` mode; optimizer built
   after sharding; and, as a sensitivity check, a deliberately wrong run whose mask uses LOCAL flat indices
   (shard offsets forced to 0), which must NOT match. Rank 0 writes ``OUT/fsdp2.json``.

Everything runs in float64: the sharded and reference runs then differ only by the order of floating-point
reductions (all-reduce / reduce-scatter against one batched sum), ~1e-16 relative per step, so the test's
tolerance (1e-10) is far below what any difference in which elements are perturbed would produce (>= 1e-5,
see the sensitivity runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # `tests.tiny_models` when launched as a script
    sys.path.insert(0, str(REPO))

import hf_superpositional  # noqa: E402,F401  (registers optim names and quantum attention)
from hf_superpositional.attention.config import QuantumAttentionConfig  # noqa: E402
from hf_superpositional.attention.patch import apply_quantum_attention  # noqa: E402
from hf_superpositional.naming import is_quantum_parameter_name  # noqa: E402
from hf_superpositional.optim import SuperpositionalAdamW  # noqa: E402
from tests.tiny_models import tiny_input_ids, tiny_llama  # noqa: E402

# per_head=True gives gates of shape [4]: with 2 ranks the global first 3 elements (n_qubits=3) span both
# shards, the case a local-index mask gets wrong.
QUANTUM_CONFIG = QuantumAttentionConfig(n_qubits=2, depth=1, per_head=True, gate_init=1.0)
OPTIM_KW = dict(lr=1e-2, weight_decay=0.01, quantum_weight=0.5, n_qubits=3)
# A group override whose first-n elements cross the shard boundary of a [32, 32] matrix (512 per shard).
WIDE_N_QUBITS = 520
GLOBAL_BATCH = 4
SEQ_LEN = 12
DDP_STEPS = 4
FSDP_STEPS = 3


def build_model(dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """The tiny quantum-attention Llama every check trains (seeded, identical in every process)."""
    model = apply_quantum_attention(tiny_llama(seed=0), QUANTUM_CONFIG)
    return model.to(dtype).train()


def batches(n_steps: int) -> torch.Tensor:
    """``[n_steps * GLOBAL_BATCH, SEQ_LEN]`` token ids; unpadded, so every row has the same token count."""
    return tiny_input_ids(batch=n_steps * GLOBAL_BATCH, length=SEQ_LEN, seed=1)


# --------------------------------------------------------------------------------------------------
# DDP through the Trainer
# --------------------------------------------------------------------------------------------------
class _Rows(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def train_ddp(output_dir: str, per_device_batch: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train with ``SuperpositionalTrainer`` and ``optim="superpositional_adamw"``; return params and losses.

    Run under a 2-process launcher with ``per_device_batch=2``, or in one process with 4: the same global
    batch. The sampler is sequential so the two see the same rows per step (accelerate gives rank r the
    r-th batch of each group of ``world_size`` batches); the rows are unpadded so each rank's mean loss
    averages to the global mean.
    """
    from transformers import TrainingArguments

    from hf_superpositional.integrations.trainer import SuperpositionalTrainer

    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=per_device_batch,
        max_steps=DDP_STEPS,
        learning_rate=OPTIM_KW["lr"],
        weight_decay=OPTIM_KW["weight_decay"],
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        optim="superpositional_adamw",
        optim_args=f"quantum_weight={OPTIM_KW['quantum_weight']},n_qubits={OPTIM_KW['n_qubits']}",
        train_sampling_strategy="sequential",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = SuperpositionalTrainer(model=build_model(), args=args, train_dataset=_Rows(batches(DDP_STEPS)))
    trainer.train()
    params = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return params, losses


# --------------------------------------------------------------------------------------------------
# FSDP2 with fully_shard
# --------------------------------------------------------------------------------------------------
def param_groups(model: torch.nn.Module) -> list[dict]:
    """Groups like SuperpositionalTrainer's: decayed matrices, no-decay norms, circuits, plus one override."""
    wide, decay, no_decay, circuit = [], [], [], []
    for name, p in model.named_parameters():
        if is_quantum_parameter_name(name):
            circuit.append(p)
        elif name.endswith("self_attn.o_proj.weight"):
            wide.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    return [
        {"params": decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": circuit, "weight_decay": 0.0},
        {"params": wide, "n_qubits": WIDE_N_QUBITS},
    ]


def shard_rows(model: torch.nn.Module, mesh) -> None:
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _train_steps(model, optimizer, ids: torch.Tensor, rows: slice) -> list[float]:
    losses = []
    for step in range(FSDP_STEPS):
        batch = ids[step * GLOBAL_BATCH : (step + 1) * GLOBAL_BATCH][rows]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return losses


def _reference(mode: str, quantum_weight: float) -> tuple[torch.nn.Module, SuperpositionalAdamW, list[float]]:
    model = build_model()
    optimizer = SuperpositionalAdamW(
        param_groups(model), **{**OPTIM_KW, "quantum_weight": quantum_weight}, mode=mode
    )
    losses = _train_steps(model, optimizer, batches(FSDP_STEPS), slice(None))
    return model, optimizer, [float(x) for x in losses]


def _sharded(
    mode: str, build_optimizer_first: bool, mesh
) -> tuple[torch.nn.Module, SuperpositionalAdamW, list[float]]:
    import torch.distributed as dist

    model = build_model()
    if build_optimizer_first:
        # The Trainer's order: the optimizer is created on the unsharded model, then accelerate's
        # _prepare_fsdp2 shards the model (fully_shard puts NEW DTensor parameters on the modules) and
        # remaps every optimizer param reference by parameter name. Same here.
        optimizer = SuperpositionalAdamW(param_groups(model), **OPTIM_KW, mode=mode)
        name_of = {id(p): name for name, p in model.named_parameters()}
        shard_rows(model, mesh)
        sharded = dict(model.named_parameters())
        for group in optimizer.param_groups:
            group["params"] = [sharded[name_of[id(p)]] for p in group["params"]]
    else:
        shard_rows(model, mesh)
        optimizer = SuperpositionalAdamW(param_groups(model), **OPTIM_KW, mode=mode)
    rank, world = dist.get_rank(), dist.get_world_size()
    per_rank = GLOBAL_BATCH // world
    local_losses = _train_steps(
        model, optimizer, batches(FSDP_STEPS), slice(rank * per_rank, (rank + 1) * per_rank)
    )
    # FSDP2 averages gradients over ranks, so the step's loss is the mean of the ranks' losses.
    losses = []
    for loss in local_losses:
        loss = loss.clone()
        dist.all_reduce(loss)
        losses.append(float(loss) / world)
    return model, optimizer, losses


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _compare(run, reference) -> dict[str, float]:
    model, optimizer, losses = run
    ref_model, ref_optimizer, ref_losses = reference
    ref_params = dict(ref_model.named_parameters())
    param_diff = state_diff = 0.0
    n_params = 0
    for name, p in model.named_parameters():
        ref = ref_params[name]
        param_diff = max(param_diff, (_full(p.detach()) - ref.detach()).abs().max().item())
        for key in ("exp_avg", "exp_avg_sq"):
            got = _full(optimizer.state[p][key])
            state_diff = max(state_diff, (got - ref_optimizer.state[ref][key]).abs().max().item())
        n_params += 1
    steps = {float(optimizer.state[p]["step"]) for p in optimizer.state}
    return {
        "max_param_diff": param_diff,
        "max_state_diff": state_diff,
        "max_loss_diff": max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True)),
        "n_params": n_params,
        "optimizer_steps": sorted(steps),
        "dtensor_params": sum(type(p).__name__ == "DTensor" for p in model.parameters()),
    }


def fsdp2_checks() -> dict[str, dict]:
    """Sharded runs against the unsharded reference (see the module docstring); returns the differences."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    import hf_superpositional.optim.adamw as optim_module

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    out: dict[str, dict] = {}
    reference = {mode: _reference(mode, OPTIM_KW["quantum_weight"]) for mode in ("update", "moment")}
    out["built_before_sharding_update"] = _compare(_sharded("update", True, mesh), reference["update"])
    out["built_before_sharding_moment"] = _compare(_sharded("moment", True, mesh), reference["moment"])
    out["built_after_sharding_update"] = _compare(_sharded("update", False, mesh), reference["update"])

    # Sensitivity: how far the reference moves without the perturbation, and how far a mask that uses LOCAL
    # flat indices (every shard treated as if it started at global element 0) lands from it.
    out["reference_without_quantum_term"] = _compare(_reference("update", 0.0), reference["update"])
    real_offsets = optim_module.compute_local_shape_and_global_offset

    def local_index_offsets(shape, mesh_, placements):
        local_shape, offset = real_offsets(shape, mesh_, placements)
        return local_shape, tuple(0 for _ in offset)

    optim_module.compute_local_shape_and_global_offset = local_index_offsets
    try:
        out["local_index_mask_bug"] = _compare(_sharded("update", True, mesh), reference["update"])
    finally:
        optim_module.compute_local_shape_and_global_offset = real_offsets
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", required=True, help="folder for ddp_rank*.pt, ddp_losses.json and fsdp2.json"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    params, losses = train_ddp(str(out / "ddp_trainer"), per_device_batch=2)
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    torch.save(params, out / f"ddp_rank{rank}.pt")
    if rank == 0:
        (out / "ddp_losses.json").write_text(json.dumps({"world_size": world, "losses": losses}))

    results = fsdp2_checks()
    if rank == 0:
        results["world_size"] = world
        results["backend"] = dist.get_backend()
        (out / "fsdp2.json").write_text(json.dumps(results, indent=1))
    dist.barrier()
    dist.destroy_process_group()  # explicitly, before interpreter shutdown tears the gloo threads down
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
