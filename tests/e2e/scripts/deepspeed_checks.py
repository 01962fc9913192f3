"""Two-process CPU checks of SuperpositionalAdamW under DeepSpeed ZeRO 1, 2 and 3 through SuperpositionalTrainer.

Launched once by ``tests/e2e/test_deepspeed.py``, 2 ranks with gloo::

    OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc_per_node 2 --master_port PORT \\
        tests/e2e/scripts/deepspeed_checks.py --out OUT

Each check builds its Trainer with ``TrainingArguments(deepspeed={...stage...})`` (transformers' own DeepSpeed
path), so one launch covers every stage: accelerate's state is reset between Trainers (accelerate allows one
DeepSpeed plugin per Accelerator), the gloo process group set up once by ``cpu_deepspeed_overrides`` is kept.
For every stage:

1. ``scope="first_n"`` and ``scope="all"``: 4 steps, 2 rows per rank; rank 0 saves DeepSpeed's full fp32
   parameters (``deepspeed.utils.safe_get_full_fp32_param``, what the optimizer stepped) and the logged losses.
   The test compares them with :func:`train` run in ONE process with 4 rows per step (same global batch).
2. The rows each rank was given (``OUT/batches_stage{s}_rank{r}.json``): they must differ between ranks.
3. Resume: the ``first_n`` run saved a ZeRO checkpoint at step 2; a fresh Trainer resumes from it for steps 3-4
   and must end on the uninterrupted run's parameters.

Then, under ZeRO-2: the stock ``transformers.Trainer`` (no partition map) with ``first_n`` must raise at its first
step, and an optimizer object given as ``optimizers=(optimizer, None)`` must be the one that trains.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # `tests.tiny_models` when launched as a script
    sys.path.insert(0, str(REPO))

import hf_superpositional  # noqa: E402,F401  (registers optim names and quantum attention)
from hf_superpositional.attention.config import QuantumAttentionConfig  # noqa: E402
from hf_superpositional.attention.patch import apply_quantum_attention  # noqa: E402
from tests.tiny_models import tiny_input_ids, tiny_llama  # noqa: E402

QUANTUM_CONFIG = QuantumAttentionConfig(n_qubits=2, depth=1, per_head=True, gate_init=1.0)
# eps 1e-6 rather than 1e-8: Adam divides a gradient by sqrt(v) + eps, so a gradient at float32 rounding level
# (1e-11, where one and two processes sum in different orders) would become an update of lr * 1e-11 / eps;
# with 1e-6 that is 1e-7, three orders below what perturbing other elements changes (see the sensitivity run).
OPTIM = dict(lr=1e-2, weight_decay=0.01, quantum_weight=5.0, n_qubits=3, eps=1e-4)
GLOBAL_BATCH = 4
SEQ_LEN = 12
STEPS = 4
STAGES = (1, 2, 3)
SCOPES = ("first_n", "all")


def deepspeed_config(stage: int) -> dict:
    """ZeRO ``stage`` in float32, everything else from the Trainer's arguments (``auto``). Stage 3 gathers the
    weights into each checkpoint's model.safetensors, as ``recipes/accelerate/deepspeed_zero3.yaml`` does."""
    zero = {"stage": stage}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "zero_optimization": zero,
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }


def build_model() -> torch.nn.Module:
    """The tiny quantum-attention Llama every check trains (seeded, identical in every process)."""
    return apply_quantum_attention(tiny_llama(seed=0), QUANTUM_CONFIG).train()


class RecordingRows(torch.utils.data.Dataset):
    """Unpadded rows (every rank's mean loss then averages to the global mean); remembers the rows it served."""

    def __init__(self) -> None:
        self.ids = tiny_input_ids(batch=STEPS * GLOBAL_BATCH, length=SEQ_LEN, seed=1)
        self.served: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self.served.append(int(i))
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def training_arguments(output_dir: str, per_device_batch: int, scope: str, stage: int | None, **extra):
    from transformers import TrainingArguments

    from hf_superpositional.integrations.deepspeed import cpu_deepspeed_overrides

    kwargs = dict(
        output_dir=output_dir,
        per_device_train_batch_size=per_device_batch,
        max_steps=STEPS,
        learning_rate=OPTIM["lr"],
        weight_decay=OPTIM["weight_decay"],
        adam_epsilon=OPTIM["eps"],
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        optim="superpositional_adamw",
        optim_args=f"quantum_weight={OPTIM['quantum_weight']},n_qubits={OPTIM['n_qubits']},scope={scope}",
        train_sampling_strategy="sequential",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    kwargs.update(extra)
    if stage is None:
        kwargs["use_cpu"] = True
    else:
        kwargs["deepspeed"] = deepspeed_config(stage)
        kwargs.update(cpu_deepspeed_overrides(kwargs))
    return TrainingArguments(**kwargs)


def full_parameters(trainer) -> dict[str, torch.Tensor]:
    """Every parameter in full, float32: DeepSpeed's master copy under ZeRO (sharded under stage 3)."""
    if not trainer.is_deepspeed_enabled:
        return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    from deepspeed.utils import safe_get_full_fp32_param

    return {name: safe_get_full_fp32_param(p).detach().clone() for name, p in trainer.model.named_parameters()}


class LocalPrefixMask:
    """The bug this module guards against, for the sensitivity run: after the real map, declare instead the first
    ``n_qubits`` elements of each flat partition (what an optimizer unaware of ZeRO would perturb)."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def __getattr__(self, event):  # every other TrainerCallback event: nothing to do
        if event.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(event)

    def on_train_begin(self, args, state, control, **kwargs):
        from hf_superpositional.integrations.deepspeed import zero_first_n_indices

        zero = self.trainer.model_wrapped.optimizer  # the DeepSpeed engine's ZeRO optimizer
        for flat, group, _ in zero_first_n_indices(zero):
            zero.optimizer.set_element_mask(flat, list(range(min(group["n_qubits"], flat.numel()))))


def train(output_dir: str, per_device_batch: int, scope: str = "first_n", stage: int | None = None,
          trainer_cls=None, resume: str | None = None, optimizers=None, model=None, local_prefix_bug=False,
          **extra):  # fmt: skip
    """Train the tiny model; return ``(full parameters, logged losses, rows served, trainer)``."""
    from accelerate.state import AcceleratorState
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from hf_superpositional.integrations.trainer import SuperpositionalTrainer

    AcceleratorState._reset_state()  # one DeepSpeed plugin per Accelerator: start each Trainer afresh
    # Every run starts from the same full model: built before this run's arguments and after forgetting the
    # previous run's, since ZeRO-3 arguments make later constructions partition at birth (deepspeed.zero.Init).
    # (A model partitioned at birth also trips the resume check of SuperpositionalTrainer, which compares the
    # checkpoint's shapes with `model.state_dict()`'s empty ZeRO-3 placeholders.)
    unset_hf_deepspeed_config()
    model = build_model() if model is None else model
    args = training_arguments(output_dir, per_device_batch, scope, stage, **extra)
    rows = RecordingRows()
    kwargs = {} if optimizers is None else {"optimizers": optimizers}
    trainer = (trainer_cls or SuperpositionalTrainer)(model=model, args=args, train_dataset=rows, **kwargs)
    if local_prefix_bug:
        trainer.add_callback(LocalPrefixMask(trainer))  # runs after the real map, and replaces it
    trainer.train(resume_from_checkpoint=resume)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return full_parameters(trainer), losses, rows.served, trainer


def main() -> None:
    from transformers import Trainer

    from hf_superpositional.integrations.deepspeed import ZeroFirstNCallback
    from hf_superpositional.optim import SuperpositionalAdamW

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = Path(parser.parse_args().out)
    results: dict = {"runs": {}}
    rank = 0
    for stage in STAGES:
        for scope in SCOPES:
            save = dict(save_strategy="steps", save_steps=2, save_only_model=False) if scope == "first_n" else {}
            params, losses, served, trainer = train(str(out / f"zero{stage}_{scope}"), 2, scope, stage, **save)
            rank = trainer.args.process_index
            callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, ZeroFirstNCallback))
            run = {"losses": losses, "world_size": trainer.args.world_size, "map": callback.report,
                   "deepspeed": trainer.is_deepspeed_enabled}  # fmt: skip
            (out / f"batches_zero{stage}_{scope}_rank{rank}.json").write_text(json.dumps(served))
            (out / f"map_zero{stage}_{scope}_rank{rank}.json").write_text(json.dumps(callback.report))
            if scope == "first_n":
                resumed, _, _, _ = train(str(out / f"zero{stage}_{scope}"), 2, scope, stage,
                                         resume=str(out / f"zero{stage}_{scope}" / "checkpoint-2"))  # fmt: skip
                run["resume_max_abs_diff"] = max((resumed[n] - params[n]).abs().max().item() for n in params)
            if rank == 0:
                torch.save(params, out / f"zero{stage}_{scope}.pt")
            results["runs"][f"zero{stage}_{scope}"] = run

    # Sensitivity: the first n_qubits of each flat partition instead of each parameter (the bug) must NOT match.
    params, _, _, _ = train(str(out / "local_prefix_bug"), 2, "first_n", 2, local_prefix_bug=True)
    if rank == 0:
        torch.save(params, out / "local_prefix_bug.pt")

    # The stock Trainer has no partition map: first_n must refuse the flat partitions, not perturb them wrongly.
    try:
        train(str(out / "stock"), 2, "first_n", 2, trainer_cls=Trainer)
        results["stock_trainer_first_n"] = "trained"
    except RuntimeError as error:
        results["stock_trainer_first_n"] = str(error)

    # An optimizer object passed to the Trainer is the one DeepSpeed steps.
    model = build_model()
    given = SuperpositionalAdamW(model.parameters(), lr=OPTIM["lr"], quantum_weight=0.5, scope="all")
    _, _, _, trainer = train(str(out / "given"), 2, "all", 2, optimizers=(given, None), model=model)
    inner = trainer.optimizer
    while getattr(inner, "optimizer", None) is not None:
        inner = inner.optimizer
    results["given_optimizer"] = {
        "is_the_given_object": inner is given,
        "steps": sorted({int(s["step"]) for s in given.state.values()}),
    }
    if rank == 0:
        (out / "deepspeed.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
