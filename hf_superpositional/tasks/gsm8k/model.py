"""The causal LM a GSM8K run trains: a pretrained one, or one built from a config with random weights."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ...integrations.transformers import ArgumentsError
from .arguments import ModelArguments

__all__ = ["BASE_MODEL_DIR", "check_context_length", "load_model", "lora_config", "save_built_base"]

BASE_MODEL_DIR = "base_model"
"""Where a LoRA run on a model built from a config keeps that (frozen) base, inside its output folder."""

logger = logging.getLogger(__name__)


def check_context_length(model_config, max_length: int) -> bool:
    """Warn when ``max_length`` exceeds the model's ``max_position_embeddings`` (beyond them the positions it was
    trained on run out: RoPE models extrapolate silently, learned positions fail).

    Returns:
        Whether a warning was issued.

    Example:
        >>> from transformers import LlamaConfig
        >>> check_context_length(LlamaConfig(max_position_embeddings=2048), 512)
        False
    """
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit is None or max_length <= limit:
        return False
    message = (
        f"max_length={max_length} exceeds the model's max_position_embeddings={limit}: positions past {limit} were "
        "never trained and the model may degrade there. Lower --max_length, or raise max_position_embeddings "
        "(config_overrides) for a model built from a config."
    )
    logger.warning(message)
    warnings.warn(message, stacklevel=2)
    return True


def _torch_dtype(name: str):
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def load_model(model_args: ModelArguments, tokenizer):
    """Build or load the causal LM ``model_args`` names (not yet patched, no LoRA).

    ``model_type`` builds use transformers' config defaults, then ``config_overrides``, then the tokenizer's
    vocabulary size and special tokens; the weights come from the global RNG (call ``set_seed`` first).

    Args:
        model_args: the model arguments.
        tokenizer: the tokenizer (its vocabulary size and pad/bos/eos ids configure built models).

    Returns:
        A ``PreTrainedModel``.

    Raises:
        ArgumentsError: a config override that is not a field of the architecture's config.

    Example:
        >>> model = load_model(ModelArguments(model_type="llama", train_tokenizer=True,  # doctest: +SKIP
        ...     config_overrides="hidden_size=64,num_hidden_layers=2"), tokenizer)
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if model_args.model_name_or_path is not None:
        return AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path, dtype=_torch_dtype(model_args.dtype)
        )
    overrides = dict(model_args.config_overrides or {})
    # Config classes accept (and keep) any keyword, so a typo would pass silently: check against the defaults.
    defaults = AutoConfig.for_model(model_args.model_type)
    unknown = sorted(k for k in overrides if not hasattr(defaults, k))
    if unknown:
        raise ArgumentsError(
            f"`config_overrides`: {unknown} are not fields of the {model_args.model_type} config."
        )
    overrides.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    # Built through the constructor (not setattr) so derived fields such as head_dim follow hidden_size.
    config = AutoConfig.for_model(model_args.model_type, **overrides)
    model = AutoModelForCausalLM.from_config(config, dtype=_torch_dtype(model_args.dtype))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def lora_config(model_args: ModelArguments):
    """The LoRA configuration ``model_args`` asks for (``lora_r``, ``lora_alpha``, ``lora_dropout``,
    ``lora_target_modules``).

    With quantum attention it is :func:`~hf_superpositional.integrations.peft.quantum_lora_config`: the circuits
    must be in ``modules_to_save``, since trainable parameters outside it are left out of the adapter.

    Example:
        >>> config = lora_config(ModelArguments(model_type="llama", train_tokenizer=True, use_lora=True))
        >>> config.r, config.modules_to_save
        (16, ['quantum_circuit'])
    """
    kwargs = dict(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=list(model_args.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    if model_args.quantum_attention:
        from ...integrations.peft import quantum_lora_config

        return quantum_lora_config(**kwargs)
    from peft import LoraConfig

    return LoraConfig(**kwargs)


def save_built_base(model, tokenizer, model_args: ModelArguments, output_dir: str, is_main_process: bool) -> Path | None:
    """Before LoRA wraps a model built from a config, save that base under ``output_dir/BASE_MODEL_DIR``.

    Such a base exists nowhere else, and it stays frozen under LoRA, so the adapter reloads over it (set the
    returned folder as the adapter's ``base_model_name_or_path``). A pretrained base is not copied.

    Returns:
        The absolute base folder for a built model, ``None`` for a pretrained one.

    Example:
        >>> base_dir = save_built_base(model, tokenizer, model_args, "out", is_main_process=True)  # doctest: +SKIP
    """
    if model_args.model_type is None:
        return None
    base_dir = (Path(output_dir) / BASE_MODEL_DIR).resolve()
    if is_main_process:
        model.save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
    return base_dir
