"""A CPU-sized analogue of the paper's GSM8K comparison (Table I): a tiny Llama, one epoch, several seeds.

The paper fine-tunes Llama-3.2-1B-Instruct on GSM8K for one epoch and reports the mean training loss:
AdamW 0.2188, Superpositional GD lambda=0.1 0.2098, lambda=0.5 0.2097 (-4.1% / -4.2%). A 1B model does not
train on two CPU cores in minutes, so this analogue keeps everything else -- the data format (question as
the user turn, the worked answer as the assistant turn, loss on the answer tokens), quantum attention (4
qubits, depth 2), one epoch, weight decay 0.01, clipping 1.0, linear decay after a warm-up that is the paper's
share of the epoch (500 of 7,473 steps) -- and swaps the model for a tiny Llama built from a config (random
init, 2 layers, 64-d) with a tokenizer trained on the bundled sample, on all 1,000 bundled training problems.
It is a different model in a different regime (from scratch, loss ~5 rather than ~0.2): only the relative
change of the mean loss is comparable, and even that is a weak analogue of a 1B fine-tune.

Example:
    >>> setup = GSM8KAnalogueSetup(num_rows=16, batch_size=8)
    >>> setup.steps(), setup.warmup_steps(), [arm.name for arm in gsm8k_arms((0.1, 0.5))]
    (2, 1, ['adamw', 'sgd_lambda_0.1', 'sgd_lambda_0.5'])
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .classification import ArmSpec

__all__ = ["PAPER_MEAN_LOSS", "PAPER_WARMUP_SHARE", "GSM8KAnalogueSetup", "gsm8k_arms", "train_gsm8k_arm"]

PAPER_MEAN_LOSS = {"adamw": 0.2188, 0.1: 0.2098, 0.5: 0.2097}
"""Paper Table I: mean training loss after one epoch (AdamW, lambda=0.1, lambda=0.5)."""

PAPER_WARMUP_SHARE = 500 / 7473
"""The paper warms up for 500 steps of a 7,473-step epoch (GSM8K train, batch 1)."""


@dataclass(frozen=True)
class GSM8KAnalogueSetup:
    """The tiny model and its one-epoch schedule (see the module docstring)."""

    num_rows: int = field(default=1000, metadata={"help": "Bundled GSM8K training problems (at most 1000)."})
    max_length: int = field(default=160, metadata={"help": "Context length in tokens (longer rows are cut)."})
    hidden_size: int = field(default=64, metadata={"help": "Tiny Llama hidden size."})
    num_layers: int = field(default=2, metadata={"help": "Tiny Llama layers."})
    num_heads: int = field(default=4, metadata={"help": "Tiny Llama attention heads."})
    ffn_size: int = field(default=128, metadata={"help": "Tiny Llama feed-forward width."})
    vocab_size: int = field(default=2048, metadata={"help": "Vocabulary of the tokenizer trained on the sample."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per optimizer step."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak learning rate (tiny from-scratch model)."})
    weight_decay: float = field(default=0.01, metadata={"help": "Decoupled weight decay (paper: 0.01)."})
    quantum_attention: bool = field(default=True, metadata={"help": "Quantum attention in every arm (paper)."})
    n_qubits: int = field(default=4, metadata={"help": "Qubits of the attention circuit (paper: 4)."})
    depth: int = field(default=2, metadata={"help": "Layers of the attention circuit (paper: 2)."})
    logging_steps: int = field(default=8, metadata={"help": "Log the loss and diagnostics every this many steps."})

    def __post_init__(self):
        for name in ("num_rows", "hidden_size", "num_layers", "num_heads", "ffn_size", "batch_size", "n_qubits", "depth", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if self.num_rows > 1000:
            raise ValueError(f"`num_rows` must be at most 1000 (the bundled sample), got {self.num_rows}.")
        if self.max_length < 8:
            raise ValueError(f"`max_length` must be >= 8, got {self.max_length}.")
        if self.learning_rate <= 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate}.")

    def steps(self) -> int:
        """Optimizer steps of the epoch (before rows that lose their whole answer to truncation are dropped)."""
        return math.ceil(self.num_rows / self.batch_size)

    def warmup_steps(self) -> int:
        """Warm-up steps: the paper's share of the epoch, at least one."""
        return max(1, round(PAPER_WARMUP_SHARE * self.steps()))


def gsm8k_arms(lambdas: Sequence[float]) -> list[ArmSpec]:
    """AdamW and one Superpositional AdamW arm per ``lambda`` (``update`` mode, ``first_n``: the paper's)."""
    arms = [ArmSpec("adamw", "AdamW", "adamw_torch", paper={"mean_loss": PAPER_MEAN_LOSS["adamw"]})]
    for weight in lambdas:
        paper = PAPER_MEAN_LOSS.get(float(weight))
        arms.append(
            ArmSpec(
                f"sgd_lambda_{weight:g}",
                f"Superpositional GD λ={weight:g}",
                "superpositional_adamw",
                f"quantum_weight={weight:g},n_qubits=4",
                paper=None if paper is None else {"mean_loss": paper},
            )
        )
    return arms


@functools.lru_cache(maxsize=2)
def _prepared(setup: GSM8KAnalogueSetup):
    """Tokenizer and tokenized training rows (once per process and setup; the tokenizer is deterministic)."""
    from ..tasks.gsm8k.arguments import ModelArguments
    from ..tasks.gsm8k.data import build_sft_dataset, load_gsm8k
    from ..tasks.gsm8k.tokenizer import load_tokenizer

    rows = load_gsm8k("bundled", "train", max_samples=setup.num_rows)
    model_args = ModelArguments(
        model_type="llama",
        train_tokenizer=True,
        tokenizer_vocab_size=setup.vocab_size,
        config_overrides={
            "hidden_size": setup.hidden_size,
            "intermediate_size": setup.ffn_size,
            "num_hidden_layers": setup.num_layers,
            "num_attention_heads": setup.num_heads,
            "num_key_value_heads": setup.num_heads,
            "tie_word_embeddings": True,
        },
    )
    tokenizer = load_tokenizer(model_args, (r["question"] + "\n" + r["answer"] for r in rows))
    dataset, stats = build_sft_dataset(rows, tokenizer, setup.max_length)
    return model_args, tokenizer, dataset, stats


def train_gsm8k_arm(
    setup: GSM8KAnalogueSetup, arm: ArmSpec, seed: int, *, report: Callable[[tuple], None] | None = None
) -> dict[str, Any]:
    """Train the tiny Llama for one epoch with ``arm``'s optimizer and ``seed``; return its losses.

    Args:
        setup: model and schedule.
        arm: the optimizer (``optim`` / ``optim_args``).
        seed: model init, circuit init and data order (shared by every arm).
        report: called with ``("gsm8k <arm name>", seed, None)`` when the epoch ends (progress bars).

    Returns:
        ``{"arm", "seed", "optimizer", "mean_train_loss" (the mean over the epoch, the paper's figure),
        "train_losses" ([step, loss] pairs), "steps", "rows", "train_seconds", "cpu_seconds",
        "perturbation_to_update_ratio" (logged values)}``.
    """
    import torch
    from transformers import PrinterCallback, set_seed

    from .._utils import unwrap_optimizer
    from ..attention.config import QuantumAttentionConfig
    from ..integrations.trainer import SuperpositionalTrainer
    from ..tasks.gsm8k.data import pad_collate
    from ..tasks.gsm8k.model import load_model
    from .presets import gsm8k_training_arguments

    model_args, tokenizer, dataset, stats = _prepared(setup)
    set_seed(seed)  # a model built from a config takes its weights from the seeded global RNG
    model = load_model(model_args, tokenizer)
    quantum = (
        QuantumAttentionConfig(n_qubits=setup.n_qubits, depth=setup.depth, gate_init=1.0, init_seed=seed)
        if setup.quantum_attention
        else None
    )
    with tempfile.TemporaryDirectory(prefix=f"gsm8k-{arm.name}-seed{seed}-") as scratch:
        args = gsm8k_training_arguments(
            scratch,
            optim=arm.optim,
            optim_args=arm.optim_args,
            learning_rate=setup.learning_rate,
            weight_decay=setup.weight_decay,
            warmup_steps=setup.warmup_steps(),
            per_device_train_batch_size=setup.batch_size,
            num_train_epochs=1,
            logging_steps=setup.logging_steps,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            seed=seed,
            data_seed=seed,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            disable_tqdm=True,
            fp16=False,  # fp32 on CPU, said here rather than warned about per run
        )
        trainer = SuperpositionalTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=functools.partial(pad_collate, pad_token_id=tokenizer.pad_token_id),
            quantum_attention_config=quantum,
        )
        trainer.remove_callback(PrinterCallback)
        cpu_start = time.process_time()
        output = trainer.train()
        cpu = time.process_time() - cpu_start
    if report is not None:
        report((f"gsm8k {arm.name}", seed, None))
    history = trainer.state.log_history
    return {
        "arm": arm.name,
        "seed": seed,
        "optimizer": type(unwrap_optimizer(trainer.optimizer)).__name__,
        "mean_train_loss": float(output.training_loss),
        "train_losses": [[int(e["step"]), float(e["loss"])] for e in history if "loss" in e],
        "steps": int(trainer.state.global_step),
        "rows": {**stats, "trained": len(dataset)},
        "train_seconds": float(output.metrics["train_runtime"]),
        "cpu_seconds": cpu,
        "perturbation_to_update_ratio": [
            float(e["quantum/perturbation_to_update_ratio"]) for e in history if "quantum/perturbation_to_update_ratio" in e
        ],
    }
