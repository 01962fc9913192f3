"""The Hugging Face integration tier: the optimizer names in transformers, ``SuperpositionalTrainer``,
checkpoint validation, PEFT, the model card and the Hub.

- :mod:`.transformers`: ``optim="superpositional_adamw"`` in ``TrainingArguments`` (and its undo);
- :mod:`.trainer`: ``SuperpositionalTrainer``;
- :mod:`.checkpoint`: checks a checkpoint before resuming from it;
- :mod:`.peft`: LoRA adapters that keep their circuits;
- :mod:`.model_card`: the model card's section (rendered from ``templates/``);
- :mod:`.hub`: the exact upload and ``load_trained_model``;
- :mod:`.remote_code`: the custom code saved beside a quantum model, for ``trust_remote_code=True``;
- :mod:`.deepspeed`: ``scope="first_n"`` on DeepSpeed ZeRO's flat partitions, and ZeRO launches on CPU;
- :mod:`.trl`: ``SuperpositionalSFTTrainer``, TRL's ``SFTTrainer`` with ``SuperpositionalTrainer``'s additions
  (imported on its own: it needs ``trl``).
"""

from .._utils import unwrap_optimizer
from .checkpoint import CheckpointError, last_complete_checkpoint, validate_checkpoint
from .hub import load_trained_model
from .model_card import ModelCardInfo
from .peft import install_peft_hooks, quantum_lora_config, uninstall_peft_hooks
from .trainer import SuperpositionalTrainer
from .transformers import (
    QUANTUM_MOMENT_ADAMW,
    SUPERPOSITIONAL_ADAMW,
    check_transformers_version,
    register_superpositional_optimizers,
    superpositional_optimizer_cls_and_kwargs,
    unregister_superpositional_optimizers,
)

__all__ = [
    "QUANTUM_MOMENT_ADAMW",
    "SUPERPOSITIONAL_ADAMW",
    "CheckpointError",
    "ModelCardInfo",
    "SuperpositionalTrainer",
    "check_transformers_version",
    "install_peft_hooks",
    "last_complete_checkpoint",
    "load_trained_model",
    "quantum_lora_config",
    "register_superpositional_optimizers",
    "superpositional_optimizer_cls_and_kwargs",
    "uninstall_peft_hooks",
    "unregister_superpositional_optimizers",
    "unwrap_optimizer",
    "validate_checkpoint",
]
