"""Restore quantum attention on ``from_pretrained`` / ``from_config``: the loading hooks and their undo.

How a saved checkpoint comes back (and why this mechanism)
----------------------------------------------------------
A patched model saves like any other: the circuit tensors go into ``model.safetensors`` next to the
weights, and ``config.json`` gains two entries, ``"quantum_attention": {...}`` (the
:class:`~hf_superpositional.attention.config.QuantumAttentionConfig`) and ``"attn_implementation": "quantum"``. The
``model_type`` stays ``"llama"`` / ``"mistral"`` / ``"qwen2"``, so tokenizers, PEFT's default LoRA targets and
other tooling keep recognising the architecture.

Loading needs two things transformers (tested: 5.23) does not do for a foreign sub-module: build the circuit modules
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

import functools
import inspect

from torch import nn

from .._utils import TESTED_TRANSFORMERS_VERSION
from ..naming import QUANTUM_CONFIG_KEY
from .circuit_module import QuantumCircuitParameters
from .config import ATTN_IMPLEMENTATIONS, QuantumAttentionConfig
from .patch import attach_circuits, keep_circuits_in_float32, quantum_circuit_modules

__all__ = ["install_loading_hooks", "uninstall_loading_hooks"]

# Marks the wrappers, so installing twice wraps once and uninstalling removes only ours.
_HOOK_FLAG = "_hf_superpositional_hook"


def _attach_from_config(model: nn.Module) -> None:
    raw = getattr(getattr(model, "config", None), QUANTUM_CONFIG_KEY, None)
    if raw is None:
        return
    cfg = QuantumAttentionConfig.from_dict(raw)
    # Built under transformers' init context: on "meta" for from_pretrained, filled by the loader/init hook.
    attach_circuits(model, cfg, move_to_module_device=False)
    model.config.attn_implementation = cfg.attn_implementation
    if model.config._attn_implementation not in ATTN_IMPLEMENTATIONS:
        from transformers.utils import logging

        logging.get_logger(__name__).warning_once(
            f"This {model.config.model_type} model carries quantum-attention circuits ({QUANTUM_CONFIG_KEY} in its config) but "
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
                keep_circuits_in_float32(self)
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
