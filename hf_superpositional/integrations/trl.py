"""TRL's ``SFTTrainer`` with what ``SuperpositionalTrainer`` adds: :class:`SuperpositionalSFTTrainer`.

``SFTTrainer`` is how most people fine-tune a chat model: conversational ``prompt``/``completion`` datasets
rendered with the tokenizer's chat template, the loss on the completion only, LoRA through ``peft_config=``.
``SFTConfig(optim="superpositional_adamw")`` and ``attn_implementation="quantum"`` work with the plain
``SFTTrainer`` already; this class adds, unchanged, everything ``SuperpositionalTrainer`` does on top of the stock
``Trainer``: the circuit parameters in their own group without weight decay, the ``quantum/...`` values in every
training log (and so in TensorBoard, W&B...), the quantum-attention patch from a ``QuantumAttentionConfig``, the
checkpoint check before resuming, the quantum configuration beside saved adapters, the DeepSpeed ZeRO map, and
this package's model-card section on top of TRL's card.

It is one class built from the two (``SuperpositionalTrainer`` first in the MRO, then ``SFTTrainer``), so
``isinstance(trainer, trl.SFTTrainer)`` holds and every TRL argument is accepted. Needs ``trl``
(``pip install "hf_superpositional[trl]"``); ``recipes/gsm8k_sft_trl.py`` uses it.

Example:
    >>> SuperpositionalSFTTrainer.__mro__[1].__name__, SuperpositionalSFTTrainer.__mro__[2].__name__
    ('SuperpositionalTrainer', 'SFTTrainer')
"""

from __future__ import annotations

try:
    from trl import SFTTrainer
except ImportError as error:  # pragma: no cover - exercised where trl is absent
    raise ImportError(
        "hf_superpositional.integrations.trl needs TRL: pip install trl (or hf_superpositional[trl])"
    ) from error

from .trainer import SuperpositionalTrainer

__all__ = ["SuperpositionalSFTTrainer"]


class SuperpositionalSFTTrainer(SuperpositionalTrainer, SFTTrainer):
    """``trl.SFTTrainer`` plus :class:`~hf_superpositional.integrations.trainer.SuperpositionalTrainer`.

    Takes every ``SFTTrainer`` argument (``args`` an ``SFTConfig``, ``peft_config``, ``formatting_func``...) plus
    ``quantum_attention_config`` and ``model_card_info``, as ``SuperpositionalTrainer`` does.

    Args:
        model: the model to train (an instance, or a Hub id / folder that ``SFTTrainer`` loads).
        args: a ``trl.SFTConfig`` (e.g. ``SFTConfig(optim="superpositional_adamw", ...)``).
        *trainer_args: further positional ``SFTTrainer`` arguments.
        **trainer_kwargs: ``SFTTrainer`` and ``SuperpositionalTrainer`` keyword arguments.

    Example:
        >>> from trl import SFTConfig
        >>> config = SFTConfig("out", optim="superpositional_adamw", optim_args="quantum_weight=0.1", use_cpu=True)
        >>> trainer = SuperpositionalSFTTrainer(model=model, args=config, train_dataset=rows,  # doctest: +SKIP
        ...     processing_class=tokenizer, quantum_attention_config=QuantumAttentionConfig(n_qubits=4, depth=2))
    """
