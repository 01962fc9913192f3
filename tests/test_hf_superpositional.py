"""The package's face (__init__.py): the public names, and every registration ``import hf_superpositional``
makes undone by its public undo, leaving transformers as it shipped."""

from __future__ import annotations

import subprocess
import sys

import hf_superpositional
from tests.subprocess_env import REPO, repo_env

PUBLIC = {
    # kept from before the redesign (ARCHITECTURE.md section 4)
    "SUPPORTED_MODEL_TYPES", "CheckpointError", "QuantumCircuitParameters", "add_circuit_term",
    "fourier_coefficients", "last_complete_checkpoint", "set_circuit_kernel", "validate_checkpoint", "GSM8K",
    "QUANTUM_CONFIG_KEY", "QUANTUM_MODULE_NAME", "QUANTUM_MOMENT_ADAMW", "SUPERPOSITIONAL_ADAMW",
    "TEXT_CLASSIFICATION", "VALID_OPTIM_ARG_KEYS", "QuantumAttentionConfig", "SuperpositionalAdamW",
    "SuperpositionalTrainer", "apply_quantum_attention", "format_optim_args", "get_quantum_attention_config",
    "gsm8k_training_arguments", "is_quantum_parameter_name", "parse_optim_args", "quantum_lora_config",
    "register_quantum_attention", "register_superpositional_optimizers", "remove_quantum_attention",
    "superpositional_optimizer_cls_and_kwargs", "text_classification_training_arguments",
    "unregister_superpositional_optimizers", "__version__",
    "GSM8KAccuracy", "gsm8k_compute_metrics", "GSM8K_ACCURACY_DIR", "build_circuit",  # loaded on first use
    # the undo of every import-time registration, and loading back what was trained
    "unregister_quantum_attention", "install_loading_hooks", "uninstall_loading_hooks", "load_trained_model",
    "circuit_kernel", "install_peft_hooks", "uninstall_peft_hooks", "install_remote_code_saving",
    "uninstall_remote_code_saving",
}  # fmt: skip


def test_public_names_are_exported_and_resolve():
    assert PUBLIC <= set(hf_superpositional.__all__)
    for name in hf_superpositional.__all__:
        assert getattr(hf_superpositional, name) is not None, name


# Runs in a fresh process: records transformers' registries before the import, then checks the import
# changed them and that the undos restore every entry, object for object.
UNDO_CHECK = """
import transformers
from transformers import AttentionInterface, PreTrainedConfig, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface
import transformers.trainer as trainer_module
import transformers.trainer_optimizer as trainer_optimizer
from transformers.training_args import OptimizerNames
import peft
from peft import PeftModel

auto_peft = next(k for k in peft.AutoPeftModel.__mro__ if "from_pretrained" in k.__dict__)
from transformers import AutoModelForCausalLM

def snapshot():
    return {
        "attention": dict(AttentionInterface._global_mapping),
        "masks": dict(AttentionMaskInterface._global_mapping),
        "post_init": PreTrainedModel.__dict__["post_init"],
        "initialize_weights": PreTrainedModel.__dict__["_initialize_weights"],
        "from_pretrained": PreTrainedModel.__dict__["from_pretrained"],
        "auto_from_pretrained": AutoModelForCausalLM.__dict__["from_pretrained"],
        "peft_save": PeftModel.__dict__["save_pretrained"],
        "peft_load": PeftModel.__dict__["from_pretrained"],
        "auto_peft_load": auto_peft.__dict__["from_pretrained"],
        "config_save": PreTrainedConfig.__dict__["save_pretrained"],
        "optim_names": list(OptimizerNames.__members__),
        "handlers": dict(trainer_optimizer._OPTIMIZER_HANDLERS),
        "parse_optim_args": trainer_module._parse_optim_args,
    }

shipped = snapshot()
import hf_superpositional
registered = snapshot()
assert {k for k in shipped if shipped[k] != registered[k]} == set(shipped), "the import changed nothing"

hf_superpositional.unregister_superpositional_optimizers()
hf_superpositional.unregister_quantum_attention()
hf_superpositional.uninstall_loading_hooks()
hf_superpositional.uninstall_peft_hooks()
hf_superpositional.uninstall_remote_code_saving()
undone = snapshot()
differences = {k for k in shipped if undone[k] != shipped[k]}
assert not differences, differences
assert all(undone["attention"][k] is v for k, v in shipped["attention"].items())
for key in ("from_pretrained", "auto_from_pretrained", "peft_load", "auto_peft_load", "peft_save", "config_save"):  # the very objects shipped
    assert undone[key] is shipped[key], key

hf_superpositional.register_superpositional_optimizers()
hf_superpositional.register_quantum_attention()
hf_superpositional.install_loading_hooks()
hf_superpositional.install_peft_hooks()
hf_superpositional.install_remote_code_saving()
again = snapshot()
for key in ("attention", "masks", "optim_names", "handlers"):  # the same entries as the first time
    assert again[key] == registered[key], key
for key in ("post_init", "initialize_weights", "parse_optim_args", "peft_save", "config_save"):  # wrapped again (new wrappers)
    assert again[key] is not shipped[key] and again[key].__wrapped__ is shipped[key], key
for key in ("from_pretrained", "auto_from_pretrained", "peft_load", "auto_peft_load"):  # classmethods: the function inside is wrapped
    assert again[key] is not shipped[key] and again[key].__func__.__wrapped__ is shipped[key].__func__, key
print("restored")
"""


def test_every_import_time_registration_has_a_public_undo():
    result = subprocess.run(
        [sys.executable, "-c", UNDO_CHECK], cwd=REPO, env=repo_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "restored" in result.stdout, result.stderr[-3000:]


def test_import_makes_its_registrations_explicitly_one_line_each():
    lines = (REPO / "hf_superpositional" / "__init__.py").read_text().strip().splitlines()
    assert lines[-5:] == [
        'register_superpositional_optimizers(on_missing="warn")',
        "register_quantum_attention()",
        "install_loading_hooks()",
        "install_peft_hooks()",
        "install_remote_code_saving()",
    ]
