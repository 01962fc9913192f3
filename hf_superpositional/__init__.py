"""hf_superpositional: Superpositional Gradient Descent for the Hugging Face Trainer.

Importing the package registers, idempotently:

- ``optim="superpositional_adamw"`` and ``optim="quantum_moment_adamw"`` for ``TrainingArguments``, the
  stock ``Trainer`` and ``HfArgumentParser`` (a warning, not an error, if the installed transformers lacks
  the private registry: ``superpositional_optimizer_cls_and_kwargs`` stays usable);
- ``attn_implementation="quantum"`` / ``"quantum_flex"`` in transformers' ``AttentionInterface`` with
  matching mask functions, and the loading hooks that restore quantum attention on ``from_pretrained``;
- PEFT hooks: a LoRA adapter over a quantum-attention base saves its quantum configuration beside it, whoever
  saves it (``Trainer``, TRL's ``SFTTrainer``, ``save_pretrained``), and ``PeftModel`` /
  ``AutoPeftModelForCausalLM.from_pretrained`` patch the base with it before the adapter loads;
- custom-code saving: saving a quantum-attention model also writes ``modeling_quantum_attention.py`` and the
  ``auto_map`` of ``config.json``, so ``from_pretrained(path, trust_remote_code=True)`` loads it in a process
  that never imported the package (lm-evaluation-harness, plain scripts, Hub users).

Each registration is one explicit call at the end of this file and has a public undo
(``unregister_superpositional_optimizers``, ``unregister_quantum_attention``, ``uninstall_loading_hooks``,
``uninstall_peft_hooks``, ``uninstall_remote_code_saving``), which gives transformers and peft back as they
shipped.

Example:
    >>> import hf_superpositional
    >>> from transformers import TrainingArguments
    >>> args = TrainingArguments(output_dir="out", optim="superpositional_adamw",
    ...                          optim_args="quantum_weight=0.5,n_qubits=4")
"""

from .attention import (
    SUPPORTED_MODEL_TYPES,
    QuantumAttentionConfig,
    QuantumCircuitParameters,
    apply_quantum_attention,
    get_quantum_attention_config,
    install_loading_hooks,
    register_quantum_attention,
    remove_quantum_attention,
    uninstall_loading_hooks,
    unregister_quantum_attention,
)
from .integrations import (
    QUANTUM_MOMENT_ADAMW,
    SUPERPOSITIONAL_ADAMW,
    CheckpointError,
    SuperpositionalTrainer,
    check_transformers_version,
    install_peft_hooks,
    last_complete_checkpoint,
    load_trained_model,
    quantum_lora_config,
    register_superpositional_optimizers,
    superpositional_optimizer_cls_and_kwargs,
    uninstall_peft_hooks,
    unregister_superpositional_optimizers,
    validate_checkpoint,
)
from .integrations.remote_code import install_remote_code_saving, uninstall_remote_code_saving
from .naming import QUANTUM_CONFIG_KEY, QUANTUM_MODULE_NAME, is_quantum_parameter_name
from .optim import SuperpositionalAdamW
from .optim.args import VALID_OPTIM_ARG_KEYS, format_optim_args, parse_optim_args
from .quantum import add_circuit_term, circuit_kernel, fourier_coefficients, set_circuit_kernel
from .reproduction.presets import (
    GSM8K,
    TEXT_CLASSIFICATION,
    gsm8k_training_arguments,
    text_classification_training_arguments,
)

__version__ = "0.1.0"

# Heavier or optional pieces load on first use: evaluate (metrics) and qiskit (circuits).
_LAZY = {
    "GSM8KAccuracy": "hf_superpositional.tasks.gsm8k.metric",
    "gsm8k_compute_metrics": "hf_superpositional.tasks.gsm8k.metric",
    "GSM8K_ACCURACY_DIR": "hf_superpositional.tasks.gsm8k.metric",
    "build_circuit": "hf_superpositional.quantum.qiskit",
}

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "CheckpointError",
    "QuantumCircuitParameters",
    "add_circuit_term",
    "circuit_kernel",
    "install_loading_hooks",
    "install_peft_hooks",
    "install_remote_code_saving",
    "uninstall_loading_hooks",
    "uninstall_peft_hooks",
    "uninstall_remote_code_saving",
    "unregister_quantum_attention",
    "fourier_coefficients",
    "last_complete_checkpoint",
    "set_circuit_kernel",
    "validate_checkpoint",
    "GSM8K",
    "QUANTUM_CONFIG_KEY",
    "QUANTUM_MODULE_NAME",
    "QUANTUM_MOMENT_ADAMW",
    "SUPERPOSITIONAL_ADAMW",
    "TEXT_CLASSIFICATION",
    "VALID_OPTIM_ARG_KEYS",
    "QuantumAttentionConfig",
    "SuperpositionalAdamW",
    "SuperpositionalTrainer",
    "apply_quantum_attention",
    "format_optim_args",
    "get_quantum_attention_config",
    "gsm8k_training_arguments",
    "is_quantum_parameter_name",
    "load_trained_model",
    "parse_optim_args",
    "quantum_lora_config",
    "register_quantum_attention",
    "register_superpositional_optimizers",
    "remove_quantum_attention",
    "superpositional_optimizer_cls_and_kwargs",
    "text_classification_training_arguments",
    "unregister_superpositional_optimizers",
    "__version__",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_superpositional' has no attribute {name!r}")


# Before any registration: on a transformers older than the tested floor the hooks cannot work.
check_transformers_version()

register_superpositional_optimizers(on_missing="warn")
register_quantum_attention()
install_loading_hooks()
install_peft_hooks()
install_remote_code_saving()
