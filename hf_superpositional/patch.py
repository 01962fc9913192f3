"""Attach quantum attention to a transformers model, undo it, and restore it on ``from_pretrained``.

- :func:`apply_quantum_attention` patches a model *instance* (routed by ``config.model_type``; Llama, Mistral
  and Qwen2): a :class:`~hf_superpositional.modeling.QuantumCircuitParameters` under
  :data:`~hf_superpositional.naming.QUANTUM_MODULE_NAME` on each selected attention module, the
  configuration under ``config.quantum_attention`` and the attention switched with
  ``model.set_attn_implementation``. With ``gate_init=0`` the patched model's logits are bit-identical to
  the unpatched model run with ``attn_implementation="eager"``.
- :func:`remove_quantum_attention` undoes all of it.
- :func:`quantum_lora_config` builds a PEFT ``LoraConfig`` that trains *and saves* the circuits.

How a saved checkpoint comes back (and why this mechanism)
----------------------------------------------------------
A patched model saves like any other: the circuit tensors go into ``model.safetensors`` next to the
weights, and ``config.json`` gains two entries, ``"quantum_attention": {...}`` (the
:class:`~hf_superpositional.config.QuantumAttentionConfig`) and ``"attn_implementation": "quantum"``. The
``model_type`` stays ``"llama"`` / ``"mistral"`` / ``"qwen2"``, so tokenizers, PEFT's default LoRA targets and
other tooling keep recognising the architecture.

Loading needs two things transformers 5.23 does not do for a foreign sub-module: build the circuit modules
*before* the weights are read (so their keys are expected and loaded rather than reported unexpected), and
initialise them when a checkpoint lacks them (transformers builds the model on the ``meta`` device,
materialises missing keys with ``torch.empty_like`` and then runs ``initialize_weights`` ->
``_initialize_weights(module)`` -> ``_init_weights(module)``, which knows only stock layers and would leave
the circuit as uninitialised memory). :func:`install_loading_hooks` (run by ``import hf_superpositional``)
therefore wraps two ``PreTrainedModel`` methods, both no-ops for a config without ``quantum_attention``:

1. ``post_init`` (the last step of every model's ``__init__``, whichever of ``__init__``, ``from_config`` or
   ``from_pretrained`` builds it): attaches the circuits the config asks for, on whatever device the
   construction runs on, and marks them ``_keep_in_fp32_modules_strict`` so ``dtype=torch.bfloat16`` loading
   keeps them float32.
2. ``_initialize_weights`` (the dispatcher ``initialize_weights`` calls for every module, which model classes
   do not override -- unlike ``_init_weights``): initialises a circuit deterministically via
   ``QuantumCircuitParameters.reset_parameters(skip_initialized=True)``, leaving tensors the checkpoint
   provided (flagged ``_is_hf_initialized`` by the loader) untouched.

Alternatives considered: ``AutoConfig.register`` / ``AutoModelForCausalLM.register`` with a new
``model_type`` (e.g. ``"quantum_llama"``) needs a config and model subclass per architecture and head,
swapping ``__class__`` on live instances to patch and unpatch, and renames the architecture for every other
tool; ``transformers.monkey_patching.register_patch_mapping`` replaces attention classes for every model
loaded afterwards, only inside ``from_pretrained``/``from_config``, and still leaves missing circuit keys
uninitialised.

The same hooks let a base checkpoint be loaded straight into quantum attention, the circuits initialised
deterministically::

    config = AutoConfig.from_pretrained(base_folder)
    config.quantum_attention = QuantumAttentionConfig(gate_init=0.0).to_dict()
    model = AutoModelForCausalLM.from_pretrained(base_folder, config=config, attn_implementation="quantum")

(equivalent to ``apply_quantum_attention(AutoModelForCausalLM.from_pretrained(base_folder))``).

Without ``import hf_superpositional``, ``from_pretrained`` fails loudly: ``config.json`` asks for
``attn_implementation="quantum"``, which transformers rejects with ``ValueError: Specified
attn_implementation="quantum" is not supported``. Overriding that (``attn_implementation="sdpa"``) loads the
base model and transformers' load report lists the ``quantum_circuit`` keys as UNEXPECTED; with the plugin
imported, the same override keeps the circuits but warns that they are not applied.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

from torch import nn

from ._utils import TESTED_TRANSFORMERS_VERSION
from .config import ATTN_IMPLEMENTATIONS, QuantumAttentionConfig
from .modeling import QuantumCircuitParameters
from .naming import QUANTUM_CONFIG_KEY, QUANTUM_MODULE_NAME

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "apply_quantum_attention",
    "get_quantum_attention_config",
    "install_loading_hooks",
    "uninstall_loading_hooks",
    "is_quantum_attention_applied",
    "quantum_circuit_modules",
    "quantum_lora_config",
    "remove_quantum_attention",
]

SUPPORTED_MODEL_TYPES: dict[str, tuple[str, str]] = {
    "llama": ("transformers.models.llama.modeling_llama", "LlamaAttention"),
    "mistral": ("transformers.models.mistral.modeling_mistral", "MistralAttention"),
    "qwen2": ("transformers.models.qwen2.modeling_qwen2", "Qwen2Attention"),
}
"""``config.model_type`` -> (module, attention class) of the architectures the patch supports."""

_PREVIOUS_ATTN_ATTR = "_hf_superpositional_previous_attn_implementation"
_HOOK_FLAG = "_hf_superpositional_hook"


def _attention_class(model_type: str) -> type[nn.Module]:
    import importlib

    module_name, class_name = SUPPORTED_MODEL_TYPES[model_type]
    return getattr(importlib.import_module(module_name), class_name)


def _model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"Quantum attention supports model_type in {sorted(SUPPORTED_MODEL_TYPES)}; got {model_type!r} "
            f"({type(model).__name__})."
        )
    return model_type


def _attention_modules(model: nn.Module, model_type: str) -> list[tuple[int, nn.Module]]:
    attention_cls = _attention_class(model_type)
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


def _attach_circuits(
    modules: list[tuple[int, nn.Module]], config: QuantumAttentionConfig, move_to_module_device: bool
) -> None:
    for layer_idx, attention in modules:
        if not config.selects_layer(layer_idx) or hasattr(attention, QUANTUM_MODULE_NAME):
            continue
        num_heads = attention.config.num_attention_heads
        circuit = QuantumCircuitParameters(config, num_heads=num_heads, layer_idx=layer_idx)
        if move_to_module_device:
            reference = next(attention.parameters(), None)
            if reference is not None:
                circuit.to(reference.device)
        attention.add_module(QUANTUM_MODULE_NAME, circuit)


def _keep_circuits_fp32(model: nn.Module) -> None:
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

    Attaches a :class:`~hf_superpositional.modeling.QuantumCircuitParameters` to every selected attention
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
    model_type = _model_type(model)
    modules = _attention_modules(model, model_type)
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
    _attach_circuits(modules, cfg, move_to_module_device=True)
    setattr(model.config, QUANTUM_CONFIG_KEY, cfg.to_dict())
    # Persisted in config.json: loading without the plugin then fails loudly instead of dropping the circuit.
    model.config.attn_implementation = cfg.attn_implementation
    model.set_attn_implementation(cfg.attn_implementation)
    _keep_circuits_fp32(model)
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
        >>> model = apply_quantum_attention(base_model)  # doctest: +SKIP
        >>> model = get_peft_model(model, quantum_lora_config(r=8, target_modules=["q_proj", "v_proj"]))  # doctest: +SKIP
    """
    from peft import LoraConfig

    modules_to_save = list(lora_kwargs.pop("modules_to_save", None) or [])
    if QUANTUM_MODULE_NAME not in modules_to_save:
        modules_to_save.append(QUANTUM_MODULE_NAME)
    return LoraConfig(modules_to_save=modules_to_save, **lora_kwargs)


# --------------------------------------------------------------------------------------------------------
# from_pretrained / from_config support (see the module docstring)
# --------------------------------------------------------------------------------------------------------


def _attach_from_config(model: nn.Module) -> None:
    raw = getattr(getattr(model, "config", None), QUANTUM_CONFIG_KEY, None)
    if raw is None:
        return
    cfg = QuantumAttentionConfig.from_dict(raw)
    model_type = _model_type(model)
    # Built under transformers' init context: on "meta" for from_pretrained, filled by the loader/init hook.
    _attach_circuits(_attention_modules(model, model_type), cfg, move_to_module_device=False)
    model.config.attn_implementation = cfg.attn_implementation
    if model.config._attn_implementation not in ATTN_IMPLEMENTATIONS:
        from transformers.utils import logging

        logging.get_logger(__name__).warning_once(
            f"This {model_type} model carries quantum-attention circuits ({QUANTUM_CONFIG_KEY} in its config) but "
            f"runs attn_implementation={model.config._attn_implementation!r}: the circuit term is NOT applied. "
            f"Use attn_implementation={cfg.attn_implementation!r} to run the quantum attention."
        )


def install_loading_hooks() -> None:
    """Make ``from_pretrained`` / ``from_config`` / ``__init__`` rebuild and initialise quantum circuits.

    Wraps ``PreTrainedModel.post_init`` and ``PreTrainedModel._initialize_weights`` (see the module docstring
    for why these two and what they do). Idempotent; called by ``import hf_superpositional`` and undone by
    :func:`uninstall_loading_hooks`.

    Raises:
        RuntimeError: if this transformers version lacks the two methods (the loading path changed).
    """
    from transformers import PreTrainedModel

    post_init = getattr(PreTrainedModel, "post_init", None)
    initialize_weights = getattr(PreTrainedModel, "_initialize_weights", None)
    if (
        post_init is None
        or initialize_weights is None
        or "module" not in inspect.signature(initialize_weights).parameters
    ):
        raise RuntimeError(
            "hf_superpositional cannot hook quantum-attention loading into this transformers version "
            "(PreTrainedModel.post_init / _initialize_weights(module) not found); tested with transformers "
            f"{TESTED_TRANSFORMERS_VERSION}."
        )
    if not getattr(post_init, _HOOK_FLAG, False):

        @functools.wraps(post_init)
        def quantum_post_init(self, *args, **kwargs):
            _attach_from_config(self)
            out = post_init(self, *args, **kwargs)
            if quantum_circuit_modules(self):
                _keep_circuits_fp32(self)
            return out

        setattr(quantum_post_init, _HOOK_FLAG, True)
        PreTrainedModel.post_init = quantum_post_init

    if not getattr(initialize_weights, _HOOK_FLAG, False):

        @functools.wraps(initialize_weights)
        def quantum_initialize_weights(self, module, *args, **kwargs):
            if isinstance(module, QuantumCircuitParameters):
                if not getattr(module, "_is_hf_initialized", False):
                    module.reset_parameters(skip_initialized=True)
                    module._is_hf_initialized = True
                return None
            return initialize_weights(self, module, *args, **kwargs)

        setattr(quantum_initialize_weights, _HOOK_FLAG, True)
        PreTrainedModel._initialize_weights = quantum_initialize_weights


def uninstall_loading_hooks() -> None:
    """Undo :func:`install_loading_hooks`: ``PreTrainedModel`` gets back the methods transformers shipped.

    Models built afterwards from a quantum ``config.json`` no longer get their circuits (loading one then
    fails loudly: transformers rejects ``attn_implementation="quantum"`` once the attention is unregistered,
    or reports the circuit keys as unexpected).

    Example:
        >>> from transformers import PreTrainedModel
        >>> uninstall_loading_hooks()
        >>> hasattr(PreTrainedModel.post_init, "__wrapped__")
        False
        >>> install_loading_hooks()
    """
    from transformers import PreTrainedModel

    for name in ("post_init", "_initialize_weights"):
        current = PreTrainedModel.__dict__.get(name)
        if getattr(current, _HOOK_FLAG, False):
            setattr(PreTrainedModel, name, current.__wrapped__)
