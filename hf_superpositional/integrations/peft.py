"""PEFT (LoRA) with quantum attention: circuits that train, save with the adapter and come back with it.

Two things make a LoRA adapter over a quantum-attention model reload as the same model:

- the circuits must be in the adapter: :func:`quantum_lora_config` lists them in ``modules_to_save``
  (PEFT silently leaves hand-unfrozen parameters out of a saved adapter, SPEC section 8);
- the base must be patched the same way before the adapter goes on: the base's ``QuantumAttentionConfig`` is
  written next to the adapter (:data:`QUANTUM_ADAPTER_CONFIG_NAME`) and read back before the adapter loads.

Both happen on PEFT's own save and load paths, whoever calls them: :func:`install_peft_hooks` (run by
``import hf_superpositional``, undone by :func:`uninstall_peft_hooks`) wraps

- ``PeftModel.save_pretrained``, which ``model.save_pretrained``, the stock ``Trainer``'s ``save_model`` and
  checkpoints, TRL's ``SFTTrainer`` and ``SuperpositionalTrainer`` all go through: after PEFT has written an
  adapter, :func:`save_adapter_quantum_config` writes the quantum configuration beside it (and refuses to save
  when trainable circuit parameters would be left out of the adapter);
- ``PeftModel.from_pretrained``, which ``AutoPeftModelForCausalLM.from_pretrained`` calls after loading the
  base: :func:`prepare_base_for_adapter` patches the base from the saved configuration (a no-op on a base the
  user already patched the same way), and refuses an adapter whose circuit tensors have no configuration to
  go with, or a base patched differently;
- ``AutoPeftModel*.from_pretrained``: a base recorded relative to the adapter folder (a base saved inside the
  run's folder) is resolved against that folder, and a folder that holds a full model instead of an adapter is
  refused with the loaders that fit it.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from ..attention import QuantumAttentionConfig, apply_quantum_attention, get_quantum_attention_config
from ..attention.loading import QUANTUM_ADAPTER_CONFIG_NAME
from ..naming import QUANTUM_MODULE_NAME, is_quantum_parameter_name

__all__ = [
    "QUANTUM_ADAPTER_CONFIG_NAME",
    "base_model_of",
    "install_peft_hooks",
    "is_peft_model",
    "load_quantum_adapter",
    "lora_settings",
    "prepare_base_for_adapter",
    "quantum_lora_config",
    "save_adapter_quantum_config",
    "uninstall_peft_hooks",
]

_HOOK_FLAG = "_hf_superpositional_hook"


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


def _refuse_circuits_left_out(model: Any) -> None:
    # PEFT saves adapter weights and modules_to_save only: a circuit made trainable by hand trains, and is
    # then silently missing from the saved adapter (SPEC section 8).
    lost = [
        name
        for name, param in model.named_parameters()
        if param.requires_grad and is_quantum_parameter_name(name) and ".modules_to_save." not in name
    ]
    if lost:
        raise ValueError(
            f"{len(lost)} trainable circuit parameter(s) ({', '.join(lost[:3])}, ...) are not in the adapter's "
            f"modules_to_save, so PEFT would leave their trained values out of the saved adapter. Build the LoRA "
            f"config with hf_superpositional.quantum_lora_config(...) (it lists {QUANTUM_MODULE_NAME!r} in "
            "modules_to_save), or freeze the circuits."
        )


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
    against it); the adapter, with its trained circuits, goes on top through ``PeftModel.from_pretrained``,
    which patches the base from :data:`QUANTUM_ADAPTER_CONFIG_NAME` first (:func:`prepare_base_for_adapter`).

    Args:
        folder: the adapter folder (``adapter_config.json``).
        **from_pretrained_kwargs: passed to the base model's ``from_pretrained`` (e.g. ``dtype``).

    Returns:
        The ``PeftModel`` (in train mode, as ``PeftModel.from_pretrained`` returns it).

    Raises:
        ValueError: the adapter config names no base model, or :func:`prepare_base_for_adapter` refuses.
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    base_ref = PeftConfig.from_pretrained(folder).base_model_name_or_path
    if not base_ref:
        raise ValueError(
            f"{folder}/adapter_config.json names no base_model_name_or_path; cannot load the base model"
        )
    base = AutoModelForCausalLM.from_pretrained(_resolve_base(folder, base_ref), **from_pretrained_kwargs)
    prepare_base_for_adapter(base, folder)  # what the PeftModel.from_pretrained hook does, should it be uninstalled
    return PeftModel.from_pretrained(base, folder)


def _resolve_base(folder: Path, base_ref: str) -> str | Path:
    return folder / base_ref if not Path(base_ref).is_absolute() and (folder / base_ref).is_dir() else base_ref


def _adapter_file(model_id: Any, name: str, subfolder: str | None = None, **hub_kwargs: Any) -> Path | None:
    """``name`` in an adapter folder, or in the Hub repository ``model_id`` (``None`` when it has none)."""
    local = Path(str(model_id)) / (subfolder or "") / name
    if Path(str(model_id)).is_dir():
        return local if local.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        keep = ("revision", "token", "cache_dir", "local_files_only")
        return Path(
            hf_hub_download(str(model_id), name, subfolder=subfolder or None, **{k: v for k, v in hub_kwargs.items() if k in keep})
        )
    except Exception:  # not in that repository (or no repository): the adapter has no such file
        return None


def _adapter_circuit_keys(weights: Path | None) -> list[str]:
    if weights is None:
        return []
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            keys = list(handle.keys())
    else:
        import torch

        keys = list(torch.load(weights, map_location="meta", weights_only=True))
    return sorted(k for k in keys if is_quantum_parameter_name(k))


def prepare_base_for_adapter(base: Any, model_id: str | Path, subfolder: str | None = None, **hub_kwargs: Any) -> None:
    """Patch ``base`` as the adapter at ``model_id`` was trained, before (or after) its weights load.

    - The adapter folder has :data:`QUANTUM_ADAPTER_CONFIG_NAME`: an unpatched base is patched with it; a base
      patched with the same configuration is left alone; one patched differently is refused.
    - It has none but its weights hold circuit tensors: with an unpatched base the circuits would be dropped,
      so this raises, naming the missing file and how to load the adapter.

    Args:
        base: the model the adapter goes on (not a ``PeftModel``).
        model_id: the adapter folder or Hub repository.
        subfolder: the adapter's subfolder in it, if any.
        **hub_kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only`` for a Hub repository.

    Raises:
        ValueError: naming the file, as above.
    """
    quantum_file = _adapter_file(model_id, QUANTUM_ADAPTER_CONFIG_NAME, subfolder, **hub_kwargs)
    current = get_quantum_attention_config(base)
    if quantum_file is not None:
        try:
            saved = QuantumAttentionConfig.from_dict(json.loads(quantum_file.read_text()))
        except ValueError as error:
            raise ValueError(f"{quantum_file}: not a valid QuantumAttentionConfig ({error}).") from None
        _refuse_circuits_missing_from_adapter(model_id, subfolder, quantum_file, hub_kwargs)
        if current is None:
            apply_quantum_attention(base, saved)
        elif current != saved:
            raise ValueError(
                f"{quantum_file} says the adapter was trained on a base patched with {saved}, but the base model "
                f"given is patched with {current}: the adapter's circuits would not fit. Load the base unpatched "
                "(the adapter's configuration is then applied) or patch it with the saved configuration."
            )
        return
    if current is not None:
        return  # the user patched the base; PEFT's own loading checks the circuit shapes
    weights = _adapter_file(model_id, "adapter_model.safetensors", subfolder, **hub_kwargs) or _adapter_file(
        model_id, "adapter_model.bin", subfolder, **hub_kwargs
    )
    circuit_keys = _adapter_circuit_keys(weights)
    if circuit_keys:
        where = Path(str(model_id)) / (subfolder or "")
        raise ValueError(
            f"{weights} holds quantum-attention circuit tensors ({', '.join(circuit_keys[:2])}, ...) but "
            f"{where / QUANTUM_ADAPTER_CONFIG_NAME} is missing and the base model has no quantum attention: the "
            "circuits would be dropped. Patch the base as in training before loading the adapter "
            "(hf_superpositional.apply_quantum_attention(base, QuantumAttentionConfig(...))), or restore "
            f"{QUANTUM_ADAPTER_CONFIG_NAME}."
        )


def _refuse_circuits_missing_from_adapter(model_id: Any, subfolder: str | None, quantum_file: Path, hub_kwargs: dict) -> None:
    # The reverse of a lost quantum_attention.json: an adapter that lists the circuits in modules_to_save but
    # holds none of their tensors would load the base's circuits in place of the trained ones.
    config_file = _adapter_file(model_id, "adapter_config.json", subfolder, **hub_kwargs)
    modules = json.loads(config_file.read_text()).get("modules_to_save") or [] if config_file is not None else []
    if QUANTUM_MODULE_NAME not in modules:
        return  # circuits frozen in training: the base's (re-patched from quantum_file) are the trained ones
    weights = _adapter_file(model_id, "adapter_model.safetensors", subfolder, **hub_kwargs) or _adapter_file(
        model_id, "adapter_model.bin", subfolder, **hub_kwargs
    )
    if weights is not None and not _adapter_circuit_keys(weights):
        raise ValueError(
            f"{weights} holds no quantum-attention circuit tensors although {config_file} lists "
            f"{QUANTUM_MODULE_NAME!r} in modules_to_save and {quantum_file} describes the circuits: the trained "
            "circuits are missing from the adapter (a partial copy?); it cannot be loaded as trained."
        )


def _refuse_full_model_folder(model_id: Any, subfolder: str | None = None) -> None:
    folder = Path(str(model_id)) / (subfolder or "")
    if folder.is_dir() and not (folder / "adapter_config.json").is_file() and (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} holds a full model (config.json), not a PEFT adapter (no adapter_config.json). Load it with "
            "transformers' AutoModelForCausalLM.from_pretrained(folder) after `import hf_superpositional`, or with "
            "hf_superpositional.load_trained_model(folder)."
        )


def _wrap_save_pretrained(original):
    @functools.wraps(original)
    def save_pretrained(self, save_directory, *args, **kwargs):
        _refuse_circuits_left_out(self)
        out = original(self, save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            selected = kwargs.get("selected_adapters") or list(self.peft_config)
            for name in selected:
                # PEFT writes the default adapter into save_directory, every other one into a subfolder
                folder = Path(save_directory) if name == "default" else Path(save_directory) / name
                if folder.is_dir():
                    save_adapter_quantum_config(self, folder)
        return out

    setattr(save_pretrained, _HOOK_FLAG, True)
    return save_pretrained


def _wrap_peft_from_pretrained(original: classmethod) -> classmethod:
    function = original.__func__

    @functools.wraps(function)
    def from_pretrained(cls, model, model_id, *args, **kwargs):
        _refuse_full_model_folder(model_id, kwargs.get("subfolder"))
        hub_kwargs = {k: v for k, v in kwargs.items() if k != "subfolder"}
        prepare_base_for_adapter(model, model_id, kwargs.get("subfolder"), **hub_kwargs)
        return function(cls, model, model_id, *args, **kwargs)

    setattr(from_pretrained, _HOOK_FLAG, True)
    from_pretrained._original_descriptor = original
    return classmethod(from_pretrained)


def _wrap_auto_from_pretrained(original: classmethod) -> classmethod:
    function = original.__func__

    @functools.wraps(function)
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        _refuse_full_model_folder(pretrained_model_name_or_path, kwargs.get("subfolder"))
        folder = Path(str(pretrained_model_name_or_path)) / (kwargs.get("subfolder") or "")
        config_file = folder / "adapter_config.json"
        base_ref = json.loads(config_file.read_text()).get("base_model_name_or_path") if config_file.is_file() else None
        if base_ref and not Path(base_ref).is_absolute() and (folder / base_ref).is_dir() and not Path(base_ref).is_dir():
            # PEFT would look for a relative base from the working directory; it was recorded relative to the adapter.
            from peft import PeftConfig

            target = getattr(cls, "_target_class", None)
            if target is None:
                raise ValueError(f"{config_file}: the base model class cannot be inferred for {cls.__name__}.")
            config = kwargs.pop("config", None) or PeftConfig.from_pretrained(folder)
            base_kwargs = {k: v for k, v in kwargs.items() if k not in ("subfolder", "adapter_name", "is_trainable")}
            base = target.from_pretrained(folder / base_ref, **base_kwargs)
            return cls._target_peft_class.from_pretrained(
                base,
                folder,
                adapter_name=kwargs.get("adapter_name", "default"),
                is_trainable=kwargs.get("is_trainable", False),
                config=config,
            )
        return function(cls, pretrained_model_name_or_path, *args, **kwargs)

    setattr(from_pretrained, _HOOK_FLAG, True)
    from_pretrained._original_descriptor = original
    return classmethod(from_pretrained)


def _auto_peft_base():
    from peft import AutoPeftModel

    return next(klass for klass in AutoPeftModel.__mro__ if "from_pretrained" in klass.__dict__)


def install_peft_hooks() -> None:
    """Make PEFT's own save and load paths keep the circuits of a quantum-attention base (module docstring).

    Wraps ``PeftModel.save_pretrained``, ``PeftModel.from_pretrained`` and ``AutoPeftModel*.from_pretrained``.
    Idempotent; called by ``import hf_superpositional`` and undone by :func:`uninstall_peft_hooks`.
    """
    from peft import PeftModel

    save = PeftModel.__dict__["save_pretrained"]
    if not getattr(save, _HOOK_FLAG, False):
        PeftModel.save_pretrained = _wrap_save_pretrained(save)
    load = PeftModel.__dict__["from_pretrained"]
    if not getattr(load.__func__, _HOOK_FLAG, False):
        PeftModel.from_pretrained = _wrap_peft_from_pretrained(load)
    auto = _auto_peft_base()
    auto_load = auto.__dict__["from_pretrained"]
    if not getattr(auto_load.__func__, _HOOK_FLAG, False):
        auto.from_pretrained = _wrap_auto_from_pretrained(auto_load)


def uninstall_peft_hooks() -> None:
    """Undo :func:`install_peft_hooks`: PEFT gets back the methods it shipped.

    Example:
        >>> from peft import PeftModel
        >>> uninstall_peft_hooks()
        >>> hasattr(PeftModel.save_pretrained, "__wrapped__")
        False
        >>> install_peft_hooks()
    """
    from peft import PeftModel

    save = PeftModel.__dict__["save_pretrained"]
    if getattr(save, _HOOK_FLAG, False):
        PeftModel.save_pretrained = save.__wrapped__
    for klass in (PeftModel, _auto_peft_base()):
        load = klass.__dict__["from_pretrained"]
        if getattr(load.__func__, _HOOK_FLAG, False):
            klass.from_pretrained = load.__func__._original_descriptor
