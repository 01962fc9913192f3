"""Restore quantum attention on ``from_pretrained`` / ``from_config``: the loading hooks and their undo.

How a saved checkpoint comes back (and why this mechanism)
----------------------------------------------------------
A patched model saves like any other: the circuit tensors go into ``model.safetensors`` next to the
weights, and ``config.json`` gains two entries, ``"quantum_attention": {...}`` (the
:class:`~hf_superpositional.attention.config.QuantumAttentionConfig`) and ``"attn_implementation": "quantum"``. The
``model_type`` stays ``"llama"`` / ``"mistral"`` / ``"qwen2"``, so tokenizers, PEFT's default LoRA targets and
other tooling keep recognising the architecture.

Loading needs two things transformers (tested: ``TESTED_TRANSFORMERS_VERSION``) does not do for a foreign sub-module: build the circuit modules
*before* the weights are read (so their keys are expected and loaded rather than reported unexpected), and
initialise them when a checkpoint lacks them (transformers builds the model on the ``meta`` device,
materialises missing keys with ``torch.empty_like`` and then runs ``initialize_weights`` ->
``_initialize_weights(module)`` -> ``_init_weights(module)``, which knows only stock layers and would leave
the circuit as uninitialised memory). :func:`install_loading_hooks` (run by ``import hf_superpositional``)
therefore wraps three ``PreTrainedModel`` methods, all no-ops for a model without quantum attention:

1. ``post_init`` (the last step of every model's ``__init__``, whichever of ``__init__``, ``from_config`` or
   ``from_pretrained`` builds it): attaches the circuits the config asks for, on whatever device the
   construction runs on, and marks them ``_keep_in_fp32_modules_strict`` so ``dtype=torch.bfloat16`` loading
   keeps them float32.
2. ``_initialize_weights`` (the dispatcher ``initialize_weights`` calls for every module, which model classes
   do not override -- unlike ``_init_weights``): initialises a circuit deterministically via
   ``QuantumCircuitParameters.reset_parameters(skip_initialized=True)``, leaving tensors the checkpoint
   provided (flagged ``_is_hf_initialized`` by the loader) untouched;

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

``attn_implementation="quantum"`` on its own (``from_config(config, attn_implementation="quantum")`` or
``from_pretrained(base, attn_implementation="quantum")`` with no ``quantum_attention`` entry) builds the circuits
from the default :class:`~hf_superpositional.attention.config.QuantumAttentionConfig` (``gate_init=0``: the
model computes what the base computed until training moves the gates) and records it in the config, so the
model that reports ``quantum`` has circuits and saves them. A model type the patch does not support raises.

3. ``from_pretrained`` (the public classmethod, wrapped so that the load report can be checked): a reload never
   gives half a model. Weights that hold circuit tensors the model does not expect (``config.json`` lost its
   ``quantum_attention`` entry), or a ``config.json`` that declares circuits its weights lack, raise a
   ``ValueError`` naming the file; so does a LoRA adapter folder over a quantum-attention base, which
   transformers' own adapter loading (``AutoModelForCausalLM.from_pretrained(adapter_folder)``, also wrapped)
   would load without its circuits (it names the loaders that restore them).
   A quantum checkpoint loaded with another attention (``attn_implementation="sdpa"``) raises too: the circuits
   would be silently ignored, and a re-save would write a config that disagrees with what ran.

Without ``import hf_superpositional``, ``from_pretrained`` fails loudly: ``config.json`` asks for
``attn_implementation="quantum"``, which transformers rejects with ``ValueError: Specified
attn_implementation="quantum" is not supported`` (the package cannot add to that message: it is not imported;
its own loaders, :func:`hf_superpositional.load_trained_model` and the recipes, name the import when they
meet it). Overriding that (``attn_implementation="sdpa"``) loads the base model and transformers' load report
lists the ``quantum_circuit`` keys as UNEXPECTED.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from .._utils import TESTED_TRANSFORMERS_VERSION
from ..naming import QUANTUM_CONFIG_KEY, is_quantum_parameter_name
from .circuit_module import QuantumCircuitParameters
from .config import ATTN_IMPLEMENTATIONS, QuantumAttentionConfig
from .patch import SUPPORTED_MODEL_TYPES, attach_circuits, keep_circuits_in_float32, quantum_circuit_modules

__all__ = [
    "QUANTUM_ADAPTER_CONFIG_NAME",
    "check_loaded_circuits",
    "install_loading_hooks",
    "uninstall_loading_hooks",
]

logger = logging.getLogger(__name__)

QUANTUM_ADAPTER_CONFIG_NAME = f"{QUANTUM_CONFIG_KEY}.json"
"""File next to a PEFT adapter holding the base model's ``QuantumAttentionConfig`` (the adapter's circuits
replace the base's, so the base must be patched the same way before the adapter is loaded)."""

LOADERS_HINT = (
    "Load it with hf_superpositional.load_trained_model(path), or with peft's "
    "AutoPeftModelForCausalLM.from_pretrained(path) after `import hf_superpositional`"
)

# Marks the wrappers, so installing twice wraps once and uninstalling removes only ours.
_HOOK_FLAG = "_hf_superpositional_hook"


def _attach_from_config(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    raw = getattr(config, QUANTUM_CONFIG_KEY, None)
    requested = getattr(config, "_attn_implementation", None)
    if raw is None:
        if requested not in ATTN_IMPLEMENTATIONS:
            return
        # attn_implementation="quantum" alone: build the circuits rather than run plain attention under the
        # quantum name (SPEC section 8). gate_init=0 keeps the base's outputs until training moves the gates.
        if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"attn_implementation={requested!r} needs quantum-attention circuits, which support model_type in "
                f"{sorted(SUPPORTED_MODEL_TYPES)}; got {getattr(config, 'model_type', None)!r} "
                f"({type(model).__name__}). Use another attn_implementation for this model."
            )
        cfg = QuantumAttentionConfig(attn_implementation=requested)
        setattr(config, QUANTUM_CONFIG_KEY, cfg.to_dict())
        logger.info(
            "attn_implementation=%r without a quantum_attention config: building the circuits from the default %s "
            "(set config.quantum_attention, or call apply_quantum_attention, to choose another).",
            requested,
            cfg,
        )
    else:
        cfg = QuantumAttentionConfig.from_dict(raw)
        if requested is not None and requested not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"This {getattr(config, 'model_type', None)} model carries quantum attention ({QUANTUM_CONFIG_KEY} "
                f"in its config: {cfg}) but attn_implementation={requested!r} was requested: its trained circuits "
                "would be silently ignored, and a re-save would write a config that disagrees with what ran. Load it "
                f"with attn_implementation={cfg.attn_implementation!r} (or leave attn_implementation unset); to get "
                "the classical model on purpose, load it so and call hf_superpositional.remove_quantum_attention(model)."
            )
    # Built under transformers' init context: on "meta" for from_pretrained, filled by the loader/init hook.
    attach_circuits(model, cfg, move_to_module_device=False)
    config.attn_implementation = cfg.attn_implementation


def _local_file(path: Any, name: str, subfolder: str = "") -> Path | None:
    try:
        candidate = Path(path) / subfolder / name
    except TypeError:
        return None
    return candidate if candidate.is_file() else None


def _checkpoint_file(path: Any, name: str, kwargs: dict[str, Any]) -> Path | None:
    """``name`` in a local folder, or in the Hub cache of a repository ``from_pretrained`` just read."""
    local = _local_file(path, name, kwargs.get("subfolder") or "")
    if local is not None or Path(str(path)).is_dir():
        return local
    try:  # a Hub id: from_pretrained has resolved its files already, so this is a cache look-up
        from transformers.utils import cached_file

        found = cached_file(
            str(path),
            name,
            subfolder=kwargs.get("subfolder") or "",
            revision=kwargs.get("revision"),
            cache_dir=kwargs.get("cache_dir"),
            token=kwargs.get("token"),
            local_files_only=kwargs.get("local_files_only", False),
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except Exception:  # no such repository or file: nothing to check against
        return None
    return None if found is None else Path(found)


def _weights_name(path: Any, kwargs: dict[str, Any]) -> str:
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        found = _local_file(path, name, kwargs.get("subfolder") or "")
        if found is not None:
            return str(found)
    return f"{path}/model.safetensors"


def _refuse_quantum_adapter(path: Any, kwargs: dict[str, Any], *, local_only: bool) -> None:
    # transformers loads a PEFT adapter folder itself (base + load_adapter), which knows nothing of the
    # quantum configuration saved beside the adapter: the base would come back unpatched, the circuits dropped.
    # A local folder is checked before anything loads; a Hub repository after (its files are then resolved).
    def lookup(name: str) -> Path | None:
        if local_only:
            return _local_file(path, name, kwargs.get("subfolder") or "")
        return _checkpoint_file(path, name, kwargs)

    if lookup("adapter_config.json") is None:
        return
    quantum_file = lookup(QUANTUM_ADAPTER_CONFIG_NAME)
    if quantum_file is not None:
        raise ValueError(
            f"{path} is a PEFT adapter over a quantum-attention base ({quantum_file} holds its "
            "QuantumAttentionConfig); AutoModel*.from_pretrained would load the base without its circuits. "
            f"{LOADERS_HINT}."
        )


def check_loaded_circuits(
    model: nn.Module, loading_info: dict[str, Any], path: Any, **from_pretrained_kwargs: Any
) -> None:
    """Refuse a ``from_pretrained`` that loaded half a quantum model (hook 3 of the module docstring).

    Args:
        model: the model ``from_pretrained`` returned.
        loading_info: its ``output_loading_info`` (``missing_keys`` / ``unexpected_keys``).
        path: what ``from_pretrained`` was given (a folder or a Hub id).
        **from_pretrained_kwargs: the keyword arguments it was given (``subfolder``, ``revision``...).

    Raises:
        ValueError: the weights hold circuit tensors the model has no place for, or the checkpoint's
            ``config.json`` declares quantum attention whose circuit tensors the weights lack; the message
            names the file.
    """
    unexpected = sorted(k for k in loading_info.get("unexpected_keys", ()) if is_quantum_parameter_name(k))
    if unexpected:
        raise ValueError(
            f"{_weights_name(path, from_pretrained_kwargs)} holds quantum-attention circuit tensors "
            f"({', '.join(unexpected[:3])}, ...) but the model was built without them: "
            f"{path}/config.json has no {QUANTUM_CONFIG_KEY!r} entry (or the config passed to from_pretrained lacks "
            "it), so they would be dropped. Restore the entry (the QuantumAttentionConfig the model was trained "
            "with), or load the base and call apply_quantum_attention before loading these weights."
        )
    missing = sorted(k for k in loading_info.get("missing_keys", ()) if is_quantum_parameter_name(k))
    if not missing:
        return
    config_file = _checkpoint_file(path, "config.json", from_pretrained_kwargs)
    try:
        declared = config_file is not None and QUANTUM_CONFIG_KEY in json.loads(config_file.read_text())
    except (OSError, ValueError):
        declared = False
    if declared:  # the checkpoint says it has circuits: freshly initialised ones would be half a model
        raise ValueError(
            f"{config_file} declares quantum attention but {_weights_name(path, from_pretrained_kwargs)} lacks "
            f"{len(missing)} of its circuit tensors ({', '.join(missing[:3])}, ...): the weights file is incomplete "
            f"or from another model. Re-save the model, or remove the {QUANTUM_CONFIG_KEY!r} entry to load the "
            "classical model."
        )
    # A base checkpoint loaded into quantum attention on purpose (config.quantum_attention set by the caller):
    # the circuits are initialised deterministically by the _initialize_weights hook.


def _wrap_from_pretrained(original: classmethod) -> classmethod:
    function = original.__func__

    @functools.wraps(function)
    def quantum_from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        _refuse_quantum_adapter(pretrained_model_name_or_path, kwargs, local_only=True)
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = function(cls, pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        if getattr(model, "_hf_peft_config_loaded", False) and not Path(str(pretrained_model_name_or_path)).is_dir():
            _refuse_quantum_adapter(pretrained_model_name_or_path, kwargs, local_only=False)
        if quantum_circuit_modules(model) or any(
            is_quantum_parameter_name(k) for k in info.get("unexpected_keys", ())
        ):
            check_loaded_circuits(model, info, pretrained_model_name_or_path, **kwargs)
        return (model, info) if wants_info else model

    setattr(quantum_from_pretrained, _HOOK_FLAG, True)
    quantum_from_pretrained._original_descriptor = original  # restored as is by uninstall_loading_hooks
    return classmethod(quantum_from_pretrained)


def _wrap_auto_from_pretrained(original: classmethod) -> classmethod:
    # transformers' Auto classes resolve a PEFT adapter folder to its base before any model class is called.
    function = original.__func__

    @functools.wraps(function)
    def quantum_auto_from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        _refuse_quantum_adapter(pretrained_model_name_or_path, kwargs, local_only=True)
        return function(cls, pretrained_model_name_or_path, *args, **kwargs)

    setattr(quantum_auto_from_pretrained, _HOOK_FLAG, True)
    quantum_auto_from_pretrained._original_descriptor = original
    return classmethod(quantum_auto_from_pretrained)


def _auto_model_classes() -> list[type]:
    """transformers' Auto model classes: each holds its own ``from_pretrained`` (a docstring-specialised copy)."""
    from transformers import AutoModel

    base = next(klass for klass in AutoModel.__mro__ if klass.__name__ == "_BaseAutoModelClass")
    found, stack = [], [base]
    while stack:
        klass = stack.pop()
        found.append(klass)
        stack.extend(klass.__subclasses__())
    return [klass for klass in found if isinstance(klass.__dict__.get("from_pretrained"), classmethod)]


def install_loading_hooks() -> None:
    """Make ``from_pretrained`` / ``from_config`` / ``__init__`` rebuild and initialise quantum circuits.

    Wraps ``PreTrainedModel.post_init``, ``PreTrainedModel._initialize_weights`` and
    ``PreTrainedModel.from_pretrained``, and the Auto classes' ``from_pretrained`` (see the module docstring
    for why these and what they do). Idempotent;
    called by ``import hf_superpositional`` and undone by :func:`uninstall_loading_hooks`.

    Raises:
        RuntimeError: if this transformers version lacks the methods (the loading path changed).
    """
    from transformers import PreTrainedModel

    post_init = getattr(PreTrainedModel, "post_init", None)
    initialize_weights = getattr(PreTrainedModel, "_initialize_weights", None)
    from_pretrained = PreTrainedModel.__dict__.get("from_pretrained")
    if (
        post_init is None
        or initialize_weights is None
        or "module" not in inspect.signature(initialize_weights).parameters
        or not isinstance(from_pretrained, classmethod)
    ):
        raise RuntimeError(
            "hf_superpositional cannot hook quantum-attention loading into this transformers version "
            "(PreTrainedModel.post_init / _initialize_weights(module) / from_pretrained(output_loading_info) not "
            f"found); tested with transformers {TESTED_TRANSFORMERS_VERSION}."
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

    if not getattr(from_pretrained.__func__, _HOOK_FLAG, False):
        PreTrainedModel.from_pretrained = _wrap_from_pretrained(from_pretrained)
    for auto in _auto_model_classes():
        auto_from_pretrained = auto.__dict__["from_pretrained"]
        if not getattr(auto_from_pretrained.__func__, _HOOK_FLAG, False):
            auto.from_pretrained = _wrap_auto_from_pretrained(auto_from_pretrained)


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
    for klass in (PreTrainedModel, *_auto_model_classes()):
        current = klass.__dict__.get("from_pretrained")
        if isinstance(current, classmethod) and getattr(current.__func__, _HOOK_FLAG, False):
            klass.from_pretrained = current.__func__._original_descriptor
