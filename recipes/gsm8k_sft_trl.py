#!/usr/bin/env python
"""Fine-tune a chat model on GSM8K with TRL's ``SFTTrainer``, Superpositional AdamW and quantum attention.

The TRL way of ``recipes/gsm8k_finetune.py``: the same data, model and evaluation, trained by
``hf_superpositional.integrations.trl.SuperpositionalSFTTrainer`` (``trl.SFTTrainer`` plus what
``SuperpositionalTrainer`` adds) with ``SFTConfig(optim="superpositional_adamw", ...)``::

    # offline, CPU, about a minute: tiny Llama built from a config, tokenizer trained on the bundled sample
    python recipes/gsm8k_sft_trl.py --config recipes/configs/gsm8k_sft_trl_tiny.yaml
    # the paper's run (Table III: Llama-3.2-1B-Instruct, fp16, batch 1, lr 2e-5, ...): the default config
    accelerate launch --config_file recipes/accelerate/single_gpu.yaml recipes/gsm8k_sft_trl.py
    # LoRA (the circuits train and save with the adapter), pushed to the Hub with its card
    ... --use_lora true --push_to_hub true --hub_model_id user/name

Data: each GSM8K row becomes a conversational ``prompt`` (the question as the user turn) / ``completion`` (the
worked answer as the assistant turn) pair; TRL renders both with the tokenizer's chat template and computes the
loss on the completion tokens only (``completion_only_loss``). LoRA goes through TRL's ``peft_config`` with
``quantum_lora_config`` (the circuits in ``modules_to_save``).

Arguments: ``ModelArguments``, ``DataArguments``, ``GenerationEvalArguments``
(``hf_superpositional.tasks.gsm8k.arguments``), ``QuantumAttentionConfig`` and ``trl.SFTConfig``, from ``--config``
(default: ``recipes/configs/gsm8k_sft_trl.yaml``, the paper's presets) and flags; ``max_length`` is one value for
both the data and ``SFTConfig``. Leaves in ``output_dir`` what ``gsm8k_finetune.py`` leaves (model or adapter,
tokenizer, ``README.md`` card, ``eval_results.json`` with the strict and flexible accuracy, ``generations.jsonl``).
Bad input prints one ``gsm8k_sft_trl.py: error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import set_seed

import hf_superpositional  # noqa: F401  (registers optim names, quantum attention and the loading hooks)
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.cli import parse_args_and_config
from hf_superpositional.integrations import ModelCardInfo
from hf_superpositional.tasks.gsm8k.arguments import DataArguments, GenerationEvalArguments, ModelArguments
from hf_superpositional.tasks.gsm8k.data import chat_messages
from hf_superpositional.tasks.gsm8k.evaluation import evaluate_and_save
from hf_superpositional.tasks.gsm8k.model import load_model, lora_config, save_built_base
from hf_superpositional.tasks.gsm8k.tokenizer import load_tokenizer

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "gsm8k_sft_trl.yaml"


def _argument_types() -> tuple[type, ...]:
    from trl import SFTConfig

    return (ModelArguments, DataArguments, GenerationEvalArguments, QuantumAttentionConfig, SFTConfig)


@dataclass
class RecipeArgs:
    """The five parsed argument groups (``training`` is a ``trl.SFTConfig``)."""

    model: ModelArguments
    data: DataArguments
    generation: GenerationEvalArguments
    quantum: QuantumAttentionConfig
    training: Any


def parse_args(argv: list[str] | None = None, prog: str = "gsm8k_sft_trl.py") -> RecipeArgs:
    """Parse the recipe's arguments from ``--config`` (default: the paper's presets) and flags."""
    return RecipeArgs(
        *parse_args_and_config(
            _argument_types(), argv, prog=prog, default_config=DEFAULT_CONFIG, shared_fields=("max_length",)
        )
    )


def conversational_dataset(rows: list[dict[str, str]]):
    """TRL's conversational prompt-completion format: the question as the user turn, the answer as the assistant's.

    Example:
        >>> conversational_dataset([{"question": "2+2?", "answer": "#### 4"}])[0]["completion"]
        [{'content': '#### 4', 'role': 'assistant'}]
    """
    import datasets

    return datasets.Dataset.from_list(
        [{"prompt": chat_messages(r)[:1], "completion": chat_messages(r)[1:]} for r in rows]
    )


def build_trainer(args: RecipeArgs, train_rows, eval_rows, tokenizer):
    """The model (built or loaded, seeded) and the ``SuperpositionalSFTTrainer`` that trains it."""
    from hf_superpositional.integrations.trl import SuperpositionalSFTTrainer

    set_seed(args.training.seed)  # built models take their weights from the seeded global RNG
    model = load_model(args.model, tokenizer)
    peft_config = base_dir = None
    if args.model.use_lora:  # the circuits train and are saved with the adapter
        peft_config = lora_config(args.model)
        base_dir = save_built_base(model, tokenizer, args.model, args.training.output_dir,
                                   args.training.process_index == 0)  # fmt: skip
    card = ModelCardInfo(
        base_model=args.model.model_name_or_path,
        dataset=args.data.card_dataset,
        dataset_note=args.data.card_dataset_note,
        dataset_config=args.data.dataset_config_name if args.data.train_file is None else None,
        train_split=args.data.train_split,
        max_length=args.training.max_length,
        tags=["gsm8k", "math"],
        notes=(
            "Trained with TRL's SFTTrainer: the question is the prompt (user turn) and the worked answer (ending in "
            "`#### N`) the completion (assistant turn) of the tokenizer's chat template; the loss covers the "
            "completion tokens only."
        ),
    )
    trainer = SuperpositionalSFTTrainer(
        model=model,
        args=args.training,
        train_dataset=conversational_dataset(train_rows),
        eval_dataset=conversational_dataset(eval_rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        quantum_attention_config=args.quantum if args.model.quantum_attention else None,
        model_card_info=card,
    )
    if base_dir is not None:
        trainer.model.peft_config["default"].base_model_name_or_path = str(base_dir)
    return trainer


def run(args: RecipeArgs) -> tuple[dict[str, Any], Any]:
    """Train, evaluate (held-out loss, strict and flexible generation accuracy), save or push."""
    training = args.training
    train_rows, eval_rows = args.data.load_rows("train"), args.data.load_rows("eval")
    tokenizer = load_tokenizer(args.model, (r["question"] + "\n" + r["answer"] for r in train_rows))
    trainer = build_trainer(args, train_rows, eval_rows, tokenizer)
    train_metrics = dict(trainer.train(resume_from_checkpoint=training.resume_from_checkpoint).metrics)
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()
    eval_metrics = trainer.evaluate()  # eval_loss: the completion tokens' mean loss, as TRL computes it
    evaluate_and_save(
        trainer,
        tokenizer,
        eval_rows,
        args.generation,
        train_metrics=train_metrics,
        eval_metrics=eval_metrics,
        eval_loss_label="eval_loss (completion tokens)",
    )
    return {"train": train_metrics, "eval": eval_metrics, "log_history": trainer.state.log_history}, trainer


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input)."""
    prog = "gsm8k_sft_trl.py"
    try:
        args = parse_args(argv, prog=prog)
        args.data.load_rows("train")  # input errors (missing or malformed data) before any model is built
    except (ValueError, FileNotFoundError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
