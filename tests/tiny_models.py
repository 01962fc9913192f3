"""Tiny random Llama / Qwen2 / Mistral models built from configs on CPU (no Hub access), seeded.

Shared by the test modules: ``tiny_llama(seed=0)`` is a 2-layer, 32-wide causal LM that runs a forward in
about a millisecond. Every builder takes config overrides as keyword arguments and builds the weights under
``torch.random.fork_rng`` so the global RNG of the calling test is left untouched. Models are built with
``attn_implementation="eager"`` (the reference the quantum attention is compared against) and in eval mode.

Example:
    >>> from tests.tiny_models import tiny_llama
    >>> model = tiny_llama(seed=0, num_key_value_heads=2)
    >>> model.config.num_attention_heads, model.config.num_key_value_heads
    (4, 2)
"""

from __future__ import annotations

import torch

__all__ = [
    "TINY_COMMON",
    "tiny_causal_lm",
    "tiny_config",
    "tiny_llama",
    "tiny_llama_config",
    "tiny_mistral",
    "tiny_mistral_config",
    "tiny_qwen2",
    "tiny_qwen2_config",
    "tiny_input_ids",
]

TINY_COMMON = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=128,
    attention_dropout=0.0,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)
"""Shared sizes: head_dim 8, 2 layers, 4 heads, vocabulary 96 (token 0 is padding)."""


def tiny_config(model_type: str = "llama", **overrides):
    """A tiny transformers config of ``model_type`` ("llama", "qwen2", "mistral"), with overrides."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    classes = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}
    if model_type not in classes:
        raise ValueError(f"`model_type` must be one of {sorted(classes)}, got {model_type!r}.")
    kwargs = dict(TINY_COMMON)
    if model_type == "mistral":
        kwargs["sliding_window"] = None  # full attention, so masks match the other two architectures
    kwargs.update(overrides)
    kwargs.setdefault("attn_implementation", "eager")
    return classes[model_type](**kwargs)


def tiny_llama_config(**overrides):
    """A tiny ``LlamaConfig`` (see :data:`TINY_COMMON`), eager attention, with overrides."""
    return tiny_config("llama", **overrides)


def tiny_qwen2_config(**overrides):
    """A tiny ``Qwen2Config`` (see :data:`TINY_COMMON`), eager attention, with overrides."""
    return tiny_config("qwen2", **overrides)


def tiny_mistral_config(**overrides):
    """A tiny ``MistralConfig`` (see :data:`TINY_COMMON`, no sliding window), eager attention, with overrides."""
    return tiny_config("mistral", **overrides)


def tiny_causal_lm(model_type: str = "llama", seed: int = 0, **overrides):
    """A seeded tiny ``*ForCausalLM`` in eval mode, built from :func:`tiny_config`."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=config._attn_implementation)
    return model.eval()


def tiny_llama(seed: int = 0, **overrides):
    """A seeded tiny ``LlamaForCausalLM`` (eager attention, eval mode)."""
    return tiny_causal_lm("llama", seed=seed, **overrides)


def tiny_qwen2(seed: int = 0, **overrides):
    """A seeded tiny ``Qwen2ForCausalLM`` (eager attention, eval mode)."""
    return tiny_causal_lm("qwen2", seed=seed, **overrides)


def tiny_mistral(seed: int = 0, **overrides):
    """A seeded tiny ``MistralForCausalLM`` (eager attention, eval mode)."""
    return tiny_causal_lm("mistral", seed=seed, **overrides)


def tiny_input_ids(
    batch: int = 2, length: int = 10, seed: int = 0, vocab_size: int = TINY_COMMON["vocab_size"]
):
    """Seeded random token ids in ``[3, vocab_size)`` (avoiding the pad/bos/eos ids), ``[batch, length]``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab_size, (batch, length), generator=generator)
