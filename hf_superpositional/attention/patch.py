"""Attach quantum attention to a transformers model instance, and undo it.

- :func:`apply_quantum_attention` patches a model *instance* (routed by ``config.model_type``; Llama, Mistral
  and Qwen2): a :class:`~hf_superpositional.attention.circuit_module.QuantumCircuitParameters` under
  :data:`~hf_superpositional.naming.QUANTUM_MODULE_NAME` on each selected attention module, the
  configuration under ``config.quantum_attention`` and the attention switched with
  ``model.set_attn_implementation``. With ``gate_init=0`` the patched model's logits are bit-identical to
  the unpatched model run with ``attn_implementation="eager"``.
- :func:`remove_quantum_attention` undoes all of it.

Models loaded with ``from_pretrained`` get their circuits back through :mod:`.loading`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from torch import nn

from ..naming import QUANTUM_CONFIG_KEY, QUANTUM_MODULE_NAME
from .circuit_module import QuantumCircuitParameters
from .config import ATTN_IMPLEMENTATIONS, QuantumAttentionConfig

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "apply_quantum_attention",
    "attach_circuits",
    "attention_modules",
    "get_quantum_attention_config",
    "is_quantum_attention_applied",
    "keep_circuits_in_float32",
    "quantum_circuit_modules",
    "remove_quantum_attention",
]

SUPPORTED_MODEL_TYPES: dict[str, tuple[str, str]] = {
    "llama": ("transformers.models.llama.modeling_llama", "LlamaAttention"),
    "mistral": ("transformers.models.mistral.modeling_mistral", "MistralAttention"),
    "qwen2": ("transformers.models.qwen2.modeling_qwen2", "Qwen2Attention"),
}
"""``config.model_type`` -> (module, attention class) of the architectures the patch supports."""

_PREVIOUS_ATTN_ATTR = "_hf_superpositional_previous_attn_implementation"


def attention_modules(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """``(layer_idx, attention module)`` of every decoder layer of a supported model.

    Raises:
        ValueError: the model's ``config.model_type`` is not in :data:`SUPPORTED_MODEL_TYPES` (the message
            lists them), or the model holds no attention module of its architecture.

    Example:
        >>> from torch import nn
        >>> attention_modules(nn.Linear(2, 2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Quantum attention supports model_type in ['llama', 'mistral', 'qwen2']; got None (Linear).
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"Quantum attention supports model_type in {sorted(SUPPORTED_MODEL_TYPES)}; got {model_type!r} "
            f"({type(model).__name__})."
        )
    module_name, class_name = SUPPORTED_MODEL_TYPES[model_type]
    attention_cls = getattr(importlib.import_module(module_name), class_name)
    found = [(m.layer_idx, m) for m in model.modules() if isinstance(m, attention_cls)]
    if not found:
        raise ValueError(f"No {attention_cls.__name__} modules found in {type(model).__name__}.")
    return found


def _resolve_config(
    config: QuantumAttentionConfig | dict | None, overrides: dict[str, Any]
) -> QuantumAttentionConfig:
    if config is None:
        config = QuantumAttentionConfig()
    elif not isinstance(config, QuantumAttentionConfig):
        config = QuantumAttentionConfig.from_dict(config)
    if overrides:
        valid = [f.name for f in dataclasses.fields(QuantumAttentionConfig)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(f"Unknown QuantumAttentionConfig keys {unknown}; valid keys are {valid}.")
        config = dataclasses.replace(config, **overrides)
    return config


def attach_circuits(model: nn.Module, config: QuantumAttentionConfig, *, move_to_module_device: bool) -> None:
    """Add a :class:`~hf_superpositional.attention.circuit_module.QuantumCircuitParameters` to each attention
    module ``config`` selects that has none yet (nothing else about the model changes).

    Args:
        model: a model of :data:`SUPPORTED_MODEL_TYPES`.
        config: the circuits to build.
        move_to_module_device: put each circuit on its attention module's device; otherwise it is built
            where torch's device context says (``meta`` inside ``from_pretrained``).
    """
    for layer_idx, attention in attention_modules(model):
        if not config.selects_layer(layer_idx) or hasattr(attention, QUANTUM_MODULE_NAME):
            continue
        num_heads = attention.config.num_attention_heads
        circuit = QuantumCircuitParameters(config, num_heads=num_heads, layer_idx=layer_idx)
        if move_to_module_device:
            reference = next(attention.parameters(), None)
            if reference is not None:
                circuit.to(reference.device)
        attention.add_module(QUANTUM_MODULE_NAME, circuit)


def keep_circuits_in_float32(model: nn.Module) -> None:
    """List the circuit modules in the model's ``_keep_in_fp32_modules_strict``, so that loading with
    ``dtype=torch.bfloat16`` (or fp16) keeps the circuit parameters float32."""
    keep = getattr(model, "_keep_in_fp32_modules_strict", None)
    if isinstance(keep, set):
        keep.add(QUANTUM_MODULE_NAME)


def quantum_circuit_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The circuit modules of a model by qualified name (``model.layers.0.self_attn.quantum_circuit``).

    Example:
        >>> from torch import nn
        >>> quantum_circuit_modules(nn.Linear(2, 2))
        {}
    """
    suffix = "." + QUANTUM_MODULE_NAME
    return {
        name: module
        for name, module in model.named_modules()
        if name == QUANTUM_MODULE_NAME or name.endswith(suffix)
    }


def get_quantum_attention_config(model: nn.Module) -> QuantumAttentionConfig | None:
    """The :class:`QuantumAttentionConfig` a model was patched with (``None`` if it is not patched)."""
    raw = getattr(getattr(model, "config", None), QUANTUM_CONFIG_KEY, None)
    return None if raw is None else QuantumAttentionConfig.from_dict(raw)


def is_quantum_attention_applied(model: nn.Module) -> bool:
    """Whether ``model`` carries a quantum-attention configuration or circuit modules."""
    return get_quantum_attention_config(model) is not None or bool(quantum_circuit_modules(model))


def apply_quantum_attention(
    model: nn.Module, config: QuantumAttentionConfig | dict | None = None, **overrides: Any
) -> nn.Module:
    """Patch a transformers model instance with quantum attention (in place; the model is also returned).

    Attaches a :class:`~hf_superpositional.attention.circuit_module.QuantumCircuitParameters` to every selected attention
    module (on that module's device, float32), stores the config in ``model.config.quantum_attention`` (and
    ``attn_implementation`` in ``config.json``) and switches ``model.set_attn_implementation``. Applying the
    same config twice is a no-op; a different one raises (call :func:`remove_quantum_attention` first).
    Apply it before ``get_peft_model`` (see :func:`quantum_lora_config`).

    Args:
        model: a ``PreTrainedModel`` whose ``config.model_type`` is in :data:`SUPPORTED_MODEL_TYPES`.
        config: a :class:`QuantumAttentionConfig` or its dict form (default: ``QuantumAttentionConfig()``).
        **overrides: field values replacing those of ``config`` (e.g. ``gate_init=1.0, per_head=True``).

    Returns:
        The same ``model``.

    Raises:
        ValueError: unsupported ``model_type`` (the message lists the supported ones), an unknown override,
            a layer index beyond the model's layers, or a model already patched with a different config.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        ...                                      num_attention_heads=4, vocab_size=64))
        >>> model = apply_quantum_attention(model, n_qubits=2, depth=1)
        >>> model.config._attn_implementation, model.model.layers[0].self_attn.quantum_circuit.ry.shape
        ('quantum', torch.Size([1, 2]))
    """
    cfg = _resolve_config(config, overrides)
    modules = attention_modules(model)
    num_layers = max(idx for idx, _ in modules) + 1
    if cfg.layers is not None and max(cfg.layers) >= num_layers:
        raise ValueError(f"`layers` must hold indices in [0, {num_layers - 1}], got {cfg.layers}.")

    current = get_quantum_attention_config(model)
    if current is not None or quantum_circuit_modules(model):
        if current != cfg:
            raise ValueError(
                f"The model is already patched with {current}; call remove_quantum_attention(model) before "
                f"applying a different QuantumAttentionConfig ({cfg})."
            )
        if model.config._attn_implementation != cfg.attn_implementation:
            model.set_attn_implementation(cfg.attn_implementation)
        return model

    setattr(model, _PREVIOUS_ATTN_ATTR, model.config._attn_implementation)
    attach_circuits(model, cfg, move_to_module_device=True)
    setattr(model.config, QUANTUM_CONFIG_KEY, cfg.to_dict())
    # Persisted in config.json: loading without the plugin then fails loudly instead of dropping the circuit.
    model.config.attn_implementation = cfg.attn_implementation
    model.set_attn_implementation(cfg.attn_implementation)
    keep_circuits_in_float32(model)
    return model


def remove_quantum_attention(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_quantum_attention`: delete the circuits and config entries, restore the attention.

    The attention implementation goes back to the one in use before patching; for a model loaded from a
    quantum checkpoint (no "before" in this session) it goes to transformers' default (SDPA, else eager).
    A model that is not patched is returned unchanged.

    Args:
        model: a patched model (modified in place and returned).

    Example:
        >>> model = remove_quantum_attention(model)  # doctest: +SKIP
        >>> hasattr(model.model.layers[0].self_attn, "quantum_circuit")  # doctest: +SKIP
        False
    """
    if not is_quantum_attention_applied(model):
        return model
    for name in quantum_circuit_modules(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        delattr(parent, child)
    for key in (QUANTUM_CONFIG_KEY, "attn_implementation"):
        if key in model.config.__dict__:
            delattr(model.config, key)
    keep = getattr(model, "_keep_in_fp32_modules_strict", None)
    if isinstance(keep, set):
        keep.discard(QUANTUM_MODULE_NAME)
    previous = getattr(model, _PREVIOUS_ATTN_ATTR, None)
    if previous is None or previous in ATTN_IMPLEMENTATIONS:
        previous = model.get_correct_attn_implementation(None)
    model.set_attn_implementation(previous)
    if _PREVIOUS_ATTN_ATTR in model.__dict__:
        delattr(model, _PREVIOUS_ATTN_ATTR)
    return model
