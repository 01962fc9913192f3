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


def test_lora_config_keeps_the_circuits_in_the_adapter_only_with_quantum_attention():
    from hf_superpositional.naming import QUANTUM_MODULE_NAME
    from hf_superpositional.tasks.gsm8k.model import lora_config

    args = ModelArguments(model_type="llama", train_tokenizer=True, use_lora=True, lora_r=4, lora_alpha=8,
                          lora_target_modules=["q_proj", "v_proj"])  # fmt: skip
    quantum = lora_config(args)
    assert (quantum.r, quantum.lora_alpha, set(quantum.target_modules)) == (4, 8, {"q_proj", "v_proj"})
    assert quantum.modules_to_save == [QUANTUM_MODULE_NAME] and quantum.task_type == "CAUSAL_LM"
    assert lora_config(dataclasses.replace(args, quantum_attention=False)).modules_to_save is None


def test_save_built_base_saves_only_a_built_model_and_only_on_the_main_process(tmp_path):
    from hf_superpositional.tasks.gsm8k.model import BASE_MODEL_DIR, save_built_base

    args = ModelArguments(model_type="llama", train_tokenizer=True, tokenizer_vocab_size=300,
                          config_overrides="hidden_size=16,num_attention_heads=2,num_hidden_layers=1,intermediate_size=32")  # fmt: skip
    tokenizer = load_tokenizer(args, ["Natalia sold 48 clips.", "#### 72"])
    model = load_model(args, tokenizer)
    assert save_built_base(model, tokenizer, args, str(tmp_path / "other"), is_main_process=False) == (
        tmp_path / "other" / BASE_MODEL_DIR
    ).resolve()
    assert not (tmp_path / "other").exists()
    base_dir = save_built_base(model, tokenizer, args, str(tmp_path), is_main_process=True)
    assert base_dir == (tmp_path / BASE_MODEL_DIR).resolve() and (base_dir / "config.json").is_file()
    assert (base_dir / "tokenizer.json").is_file()
    pretrained = dataclasses.replace(args, model_type=None, config_overrides=None, train_tokenizer=False,
                                     model_name_or_path=str(base_dir))
    assert save_built_base(model, tokenizer, pretrained, str(tmp_path / "again"), is_main_process=True) is None
