"""A saved quantum-attention model that loads where ``hf_superpositional`` was never imported.

The Hub's mechanism for code transformers does not ship ("custom code"): ``config.json`` names, under
``auto_map``, a class in a Python file saved beside the weights, and ``from_pretrained(path,
trust_remote_code=True)`` imports that file and loads with that class. lm-evaluation-harness, vLLM-style
loaders and plain scripts all go through it. For a model with quantum attention the file
(:data:`REMOTE_CODE_FILE`, rendered from ``templates/remote_code.py.tmpl``) imports ``hf_superpositional`` --
which registers ``attn_implementation="quantum"`` and makes loading rebuild the circuits -- and defines
renamed subclasses of the stock classes (``QuantumLlamaForCausalLM``...), so registering them for remote code
leaves transformers' own classes untouched. The file needs the package installed; without it, it raises an
``ImportError`` that names ``pip install``.

Where it is written: every save of a model goes through ``PreTrainedModel.save_pretrained``, which writes
``config.json`` with ``config.save_pretrained`` (``Trainer.save_model`` and its checkpoints,
``push_to_hub``, ``merge_and_unload()`` then ``save_pretrained``). :func:`install_remote_code_saving` (run by
``import hf_superpositional``) wraps ``PreTrainedConfig.save_pretrained``: for a config carrying
``quantum_attention`` it writes the code file into the folder and adds the ``auto_map`` entries to the
``config.json`` it writes (the live config is left as it was). A config without ``quantum_attention`` saves
exactly as before, minus any ``auto_map`` entry pointing at this file (left over from a model whose quantum
attention was removed).

Without ``trust_remote_code``, transformers uses its own class for the ``model_type`` (``llama``...), which
refuses ``attn_implementation="quantum"`` unless ``hf_superpositional`` was imported: such a model never
loads as a plain Llama.

Example:
    >>> sorted(auto_map_for("llama"))[:2]
    ['AutoModel', 'AutoModelForCausalLM']
    >>> auto_map_for("llama")["AutoModelForCausalLM"]
    'modeling_quantum_attention.QuantumLlamaForCausalLM'
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from ..naming import QUANTUM_CONFIG_KEY

__all__ = [
    "REMOTE_CODE_FILE",
    "auto_map_for",
    "install_remote_code_saving",
    "render_remote_code",
    "uninstall_remote_code_saving",
    "write_remote_code",
]

REMOTE_CODE_FILE = "modeling_quantum_attention.py"
"""The custom-code file written beside the weights of a quantum-attention model."""

_MODULE = REMOTE_CODE_FILE.removesuffix(".py")
# Auto class -> the name of transformers' mapping from model_type to that head's class.
_AUTO_HEADS = {
    "AutoModel": "MODEL_MAPPING_NAMES",
    "AutoModelForCausalLM": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "AutoModelForSequenceClassification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForTokenClassification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForQuestionAnswering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
}
_HOOK_FLAG = "_hf_superpositional_remote_code_hook"


def _head_classes(model_type: str) -> dict[str, str]:
    """Auto class -> transformers' class name, for every head transformers has for ``model_type``."""
    from transformers.models.auto import modeling_auto

    heads = {}
    for auto_class, mapping_name in _AUTO_HEADS.items():
        class_name = getattr(modeling_auto, mapping_name, {}).get(model_type)
        if isinstance(class_name, str):
            heads[auto_class] = class_name
    if "AutoModelForCausalLM" not in heads:
        raise ValueError(f"transformers has no causal-LM class for model_type {model_type!r}")
    return heads


def auto_map_for(model_type: str) -> dict[str, str]:
    """The ``auto_map`` entries of a quantum-attention model of ``model_type``: auto class -> code-file class."""
    return {auto: f"{_MODULE}.Quantum{name}" for auto, name in _head_classes(model_type).items()}


def render_remote_code(model_type: str) -> str:
    """The text of :data:`REMOTE_CODE_FILE` for a ``model_type`` (``llama``, ``mistral``, ``qwen2``).

    Example:
        >>> code = render_remote_code("llama")
        >>> "class QuantumLlamaForCausalLM(LlamaForCausalLM):" in code, "pip install hf_superpositional" in code
        (True, True)
    """
    from .. import __version__

    names = sorted(set(_head_classes(model_type).values()))
    template = Template(
        (resources.files(__package__) / "templates" / "remote_code.py.tmpl").read_text(encoding="utf-8")
    )
    classes = "\n\n".join(
        f"class Quantum{name}({name}):\n"
        f'    """transformers\' ``{name}``, its circuits rebuilt from config.json by hf_superpositional."""\n'
        for name in names
    )
    return template.substitute(
        version=__version__, model_type=model_type, imports=", ".join(names), classes=classes.rstrip() + "\n"
    )


def write_remote_code(save_directory: str | Path, config: Any) -> Path | None:
    """Write :data:`REMOTE_CODE_FILE` into ``save_directory`` if ``config`` carries quantum attention.

    Returns:
        The file's path, or ``None`` for a config without ``quantum_attention`` (nothing is written).
    """
    if getattr(config, QUANTUM_CONFIG_KEY, None) is None:
        return None
    path = Path(save_directory) / REMOTE_CODE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_remote_code(config.model_type), encoding="utf-8")
    return path


def _saved_auto_map(config: Any) -> dict[str, str] | None:
    """The ``auto_map`` that ``config.json`` should hold: ours added for a quantum config, ours removed else."""
    current = dict(getattr(config, "auto_map", None) or {})
    kept = {k: v for k, v in current.items() if not str(v).startswith(_MODULE + ".")}
    if getattr(config, QUANTUM_CONFIG_KEY, None) is not None:
        kept.update(auto_map_for(config.model_type))
    return kept or None


def _config_class():
    import transformers

    return getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig


def install_remote_code_saving() -> None:
    """Make saving a quantum-attention model write :data:`REMOTE_CODE_FILE` and its ``auto_map`` entries.

    Wraps ``PreTrainedConfig.save_pretrained`` (see the module docstring). Idempotent; called by
    ``import hf_superpositional`` and undone by :func:`uninstall_remote_code_saving`.
    """
    config_class = _config_class()
    save_pretrained = config_class.save_pretrained
    if getattr(save_pretrained, _HOOK_FLAG, False):
        return

    @functools.wraps(save_pretrained)
    def quantum_save_pretrained(self, save_directory, *args, **kwargs):
        if Path(save_directory).is_file():  # transformers' own error for this case
            return save_pretrained(self, save_directory, *args, **kwargs)
        wanted = _saved_auto_map(self)
        if wanted == (getattr(self, "auto_map", None) or None):
            write_remote_code(save_directory, self)  # before a push inside save_pretrained uploads the folder
            return save_pretrained(self, save_directory, *args, **kwargs)
        had_own = "auto_map" in self.__dict__
        previous = self.__dict__.get("auto_map")
        write_remote_code(save_directory, self)
        # The entries go into the written config.json only; the live config is restored afterwards.
        self.auto_map = wanted
        if wanted is None:
            del self.auto_map
        try:
            return save_pretrained(self, save_directory, *args, **kwargs)
        finally:
            if had_own:
                self.auto_map = previous
            elif "auto_map" in self.__dict__:
                del self.auto_map

    setattr(quantum_save_pretrained, _HOOK_FLAG, True)
    config_class.save_pretrained = quantum_save_pretrained


def uninstall_remote_code_saving() -> None:
    """Undo :func:`install_remote_code_saving`: configs save as transformers shipped them.

    Example:
        >>> uninstall_remote_code_saving()
        >>> hasattr(_config_class().save_pretrained, "__wrapped__")
        False
        >>> install_remote_code_saving()
    """
    config_class = _config_class()
    current = config_class.__dict__.get("save_pretrained")
    if getattr(current, _HOOK_FLAG, False):
        config_class.save_pretrained = current.__wrapped__
