"""A short, checkpointed SuperpositionalTrainer run that a test can kill and resume.

Launched by ``tests/test_fault_tolerance.py``::

    python tests/e2e/scripts/fault_tolerant_train.py --output_dir OUT                      # uninterrupted
    python tests/e2e/scripts/fault_tolerant_train.py --output_dir OUT --pause_after_step 5 # then SIGKILL
    python tests/e2e/scripts/fault_tolerant_train.py --output_dir OUT --resume             # resume=True

One epoch of 8 steps (32 rows, 4 per step, RANDOM sampler) trains a tiny quantum-attention Llama in float32
with ``optim="superpositional_adamw"``, a linear schedule with warm-up, gradient clipping and attention
dropout 0.1: every piece of state a resume must restore (weights, circuits, Adam moments and step counts,
scheduler, data order mid-epoch, dropout RNG) changes the result if lost. Checkpoints every 2 steps; a loss
is logged every step.

``--pause_after_step K`` writes ``OUT/paused_at_step_K`` once step K is done (checkpoint-(K-1) is then on
disk when K-1 is a multiple of 2) and sleeps, so the test can SIGKILL the process at a known point mid-epoch.
At the end the script writes ``OUT/final_params.safetensors`` and ``OUT/final_log.json`` (every logged
``loss``, ``grad_norm`` and ``learning_rate`` with its step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import hf_superpositional  # noqa: E402,F401
from hf_superpositional.attention.config import QuantumAttentionConfig  # noqa: E402
from hf_superpositional.attention.patch import apply_quantum_attention  # noqa: E402
from tests.tiny_models import tiny_input_ids, tiny_llama  # noqa: E402

QUANTUM_CONFIG = QuantumAttentionConfig(n_qubits=2, depth=1, gate_init=1.0)
ROWS, BATCH, SEQ_LEN, SAVE_STEPS = 32, 4, 10, 2
OPTIM_ARGS = "quantum_weight=0.5,n_qubits=4"


class _Rows(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def build_model() -> torch.nn.Module:
    """The tiny quantum-attention Llama (attention dropout on, so the RNG state matters)."""
    return apply_quantum_attention(tiny_llama(seed=0, attention_dropout=0.1), QUANTUM_CONFIG).train()


def training_arguments(output_dir: str, **overrides):
    from transformers import TrainingArguments

    kwargs = dict(
        output_dir=output_dir,
        per_device_train_batch_size=BATCH,
        num_train_epochs=1,
        learning_rate=5e-3,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        warmup_steps=2,
        max_grad_norm=1.0,
        optim="superpositional_adamw",
        optim_args=OPTIM_ARGS,
        logging_steps=1,
        save_strategy="steps",
        save_steps=SAVE_STEPS,
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def build_trainer(output_dir: str, model: torch.nn.Module | None = None, callbacks=None, **overrides):
    """The trainer the script runs (also used in-process by the tests for the bad-checkpoint cases)."""
    from hf_superpositional.integrations.trainer import SuperpositionalTrainer

    return SuperpositionalTrainer(
        model=build_model() if model is None else model,
        args=training_arguments(output_dir, **overrides),
        train_dataset=_Rows(tiny_input_ids(batch=ROWS, length=SEQ_LEN, seed=3)),
        callbacks=callbacks,
    )


def _pause_callback(step: int, marker: Path):
    from transformers import TrainerCallback

    class PauseAfterStep(TrainerCallback):
        # on_step_end runs before the Trainer's own save/log for that step, so checkpoint-(step-1) is the
        # newest on disk and step `step`'s loss is not logged yet: the kill loses work, as a real one would.
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                marker.write_text(str(step))
                time.sleep(600)

    return PauseAfterStep()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--pause_after_step", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="resume_from_checkpoint=True")
    args = parser.parse_args()
    out = Path(args.output_dir)
    callbacks = []
    if args.pause_after_step is not None:
        callbacks.append(
            _pause_callback(args.pause_after_step, out / f"paused_at_step_{args.pause_after_step}")
        )
    trainer = build_trainer(str(out), callbacks=callbacks)
    trainer.train(resume_from_checkpoint=True if args.resume else None)

    from safetensors.torch import save_file

    save_file(
        {name: p.detach().contiguous() for name, p in trainer.model.named_parameters()},
        str(out / "final_params.safetensors"),
    )
    log = [
        {key: entry[key] for key in ("step", "loss", "grad_norm", "learning_rate")}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    (out / "final_log.json").write_text(json.dumps(log, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
