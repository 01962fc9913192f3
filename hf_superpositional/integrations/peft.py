"""PEFT (LoRA) with quantum attention: circuits that train, save with the adapter and come back with it.

Two things make a LoRA adapter over a quantum-attention model reload as the same model:

- the circuits must be in the adapter: :func:`quantum_lora_config` lists them in ``modules_to_save``
  (PEFT silently leaves hand-unfrozen parameters out of a saved adapter, SPEC section 8);
- the base must be patched the same way before the adapter goes on: :func:`save_adapter_quantum_config`
  writes the base's ``QuantumAttentionConfig`` next to the adapter (:data:`QUANTUM_ADAPTER_CONFIG_NAME`),
  and :func:`load_quantum_adapter` reads it back. ``SuperpositionalTrainer.save_model`` calls the first for
  every adapter it saves, checkpoints included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..attention import QuantumAttentionConfig, apply_quantum_attention, get_quantum_attention_config
from ..naming import QUANTUM_CONFIG_KEY, QUANTUM_MODULE_NAME

__all__ = [
    "QUANTUM_ADAPTER_CONFIG_NAME",
    "base_model_of",
    "is_peft_model",
    "load_quantum_adapter",
    "lora_settings",
    "quantum_lora_config",
    "save_adapter_quantum_config",
]

QUANTUM_ADAPTER_CONFIG_NAME = f"{QUANTUM_CONFIG_KEY}.json"
"""File next to a PEFT adapter holding the base model's ``QuantumAttentionConfig`` (the adapter's circuits
replace the base's, so the base must be patched the same way before the adapter is loaded)."""


def quantum_lora_config(**lora_kwargs: Any):
    """A ``peft.LoraConfig`` whose ``modules_to_save`` includes the circuit modules (SPEC section 8).

    PEFT saves only adapter weights and ``modules_to_save``: circuit parameters given ``requires_grad=True``
    by hand would train but be silently left out of the saved adapter. Listed in ``modules_to_save``, each
    ``quantum_circuit`` gets a trainable per-adapter copy that is saved with the adapter, reloaded by
    ``PeftModel.from_pretrained`` and folded back by ``merge_and_unload``. Patch the base model first.

    Args:
        **lora_kwargs: any ``LoraConfig`` arguments; ``modules_to_save`` entries are kept and extended.

    Example:
        >>> from peft import get_peft_model
        >>> from hf_superpositional import apply_quantum_attention
        >>> model = apply_quantum_attention(base_model)  # doctest: +SKIP
        >>> model = get_peft_model(model, quantum_lora_config(r=8, target_modules=["q_proj", "v_proj"]))  # doctest: +SKIP
    """
    from peft import LoraConfig

    modules_to_save = list(lora_kwargs.pop("modules_to_save", None) or [])
    if QUANTUM_MODULE_NAME not in modules_to_save:
        modules_to_save.append(QUANTUM_MODULE_NAME)
    return LoraConfig(modules_to_save=modules_to_save, **lora_kwargs)


def is_peft_model(model: Any) -> bool:
    """Whether ``model`` carries PEFT adapters (a ``PeftModel`` or a model with ``peft_config``)."""
    return bool(getattr(model, "peft_config", None))


def base_model_of(model: Any) -> Any:
    """The model under a ``PeftModel``'s adapters (the model itself when it has none)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def lora_settings(model: Any) -> dict[str, Any] | None:
    """The active adapter's LoRA settings (rank, alpha, dropout, targets, ``modules_to_save``), or ``None``."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    config = configs.get(getattr(model, "active_adapter", "default")) or next(iter(configs.values()))
    keep = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save")
    out = {}
    for key in keep:
        value = getattr(config, key, None)
        if isinstance(value, (set, frozenset)):
            value = sorted(value)
        out[key] = str(getattr(value, "value", value)) if key == "peft_type" else value
    return out


def save_adapter_quantum_config(model: Any, folder: str | Path) -> Path | None:
    """Write the quantum configuration of a PEFT model's base next to its saved adapter in ``folder``.

    Also rewrites the adapter's ``base_model_name_or_path`` relative to ``folder`` when the base was saved
    inside the run's folder (a LoRA run on a model built from a config), so the folder stays loadable once
    moved or pushed. A model without adapters, or whose base has no quantum attention, writes nothing.

    Returns:
        The file written, or ``None``.
    """
    if not is_peft_model(model):
        return None  # a full model: config.json already carries the quantum configuration
    folder = Path(folder)
    _relative_base_path(folder)
    config = get_quantum_attention_config(base_model_of(model))
    if config is None:
        return None
    path = folder / QUANTUM_ADAPTER_CONFIG_NAME
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return path


def _relative_base_path(folder: Path) -> None:
    # A base model saved inside the run's folder is recorded by its absolute path while training; the saved
    # adapter gets a path relative to itself (load_quantum_adapter resolves it against the adapter folder).
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        return
    data = json.loads(config_file.read_text())
    base = data.get("base_model_name_or_path")
    if not base or not Path(base).is_absolute() or not Path(base).is_dir():
        return
    relative = Path(os.path.relpath(base, folder.resolve()))
    if not relative.as_posix().startswith("../../"):
        data["base_model_name_or_path"] = relative.as_posix()
        config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_quantum_adapter(folder: str | Path, **from_pretrained_kwargs: Any):
    """Load a saved PEFT adapter over its base model, patched with quantum attention as in training.

    The base is the adapter config's ``base_model_name_or_path`` (a path relative to ``folder`` is resolved
    against it); it is patched with :data:`QUANTUM_ADAPTER_CONFIG_NAME` when the folder has one (a no-op if the
    saved base already carries that configuration), then the adapter, with its trained circuits, goes on top.

    Args:
        folder: the adapter folder (``adapter_config.json``).
        **from_pretrained_kwargs: passed to the base model's ``from_pretrained`` (e.g. ``dtype``).

    Returns:
        The ``PeftModel`` (in train mode, as ``PeftModel.from_pretrained`` returns it).

    Raises:
        ValueError: the adapter config names no base model.
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    base_ref = PeftConfig.from_pretrained(folder).base_model_name_or_path
    if not base_ref:
        raise ValueError(
            f"{folder}/adapter_config.json names no base_model_name_or_path; cannot load the base model"
        )
    base_path = folder / base_ref if (folder / base_ref).is_dir() else base_ref
    base = AutoModelForCausalLM.from_pretrained(base_path, **from_pretrained_kwargs)
    quantum_file = folder / QUANTUM_ADAPTER_CONFIG_NAME
    if quantum_file.is_file():
        apply_quantum_attention(base, QuantumAttentionConfig.from_dict(json.loads(quantum_file.read_text())))
    return PeftModel.from_pretrained(base, folder)
