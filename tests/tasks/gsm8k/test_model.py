"""Building the model a GSM8K run trains (tasks/gsm8k/model.py)."""

from __future__ import annotations

import dataclasses

import pytest

from hf_superpositional.cli import ArgumentsError
from hf_superpositional.tasks.gsm8k.arguments import (
    ModelArguments,
)
from hf_superpositional.tasks.gsm8k.model import load_model
from hf_superpositional.tasks.gsm8k.tokenizer import load_tokenizer


def test_load_model_builds_from_config_with_tokenizer_ids():
    args = ModelArguments(
        model_type="llama",
        train_tokenizer=True,
        tokenizer_vocab_size=300,
        config_overrides="hidden_size=48,num_attention_heads=4,num_key_value_heads=2,num_hidden_layers=1,intermediate_size=64",
    )
    tokenizer = load_tokenizer(args, ["Natalia sold 48 clips.", "#### 72"])
    model = load_model(args, tokenizer)
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (48, 1, 2)
    assert config.head_dim == 12  # derived from the overridden hidden size, not the default's 128
    assert config.vocab_size == len(tokenizer) and config.pad_token_id == tokenizer.pad_token_id
    assert config.eos_token_id == tokenizer.eos_token_id
    typo = dataclasses.replace(args, config_overrides={"hiden_size": 8})
    with pytest.raises(ArgumentsError, match=r"\['hiden_size'\] are not fields of the llama config"):
        load_model(typo, tokenizer)


def test_a_context_longer_than_the_models_positions_warns():
    from transformers import LlamaConfig

    from hf_superpositional.tasks.gsm8k.model import check_context_length

    config = LlamaConfig(max_position_embeddings=128)
    with pytest.warns(UserWarning, match=r"max_length=160 exceeds the model's max_position_embeddings=128"):
        assert check_context_length(config, 160)
    assert not check_context_length(config, 128)
