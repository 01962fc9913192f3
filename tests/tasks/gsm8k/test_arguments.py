"""The GSM8K scripts' arguments (tasks/gsm8k/arguments.py): validation naming the field, config overrides, comparison arms, model paths, and the shipped YAML and accelerate configs."""

from __future__ import annotations

import warnings

import pytest

from hf_superpositional.cli import ArgumentsError, parse_args_and_config
from hf_superpositional.reproduction.presets import GSM8K, gsm8k_training_arguments
from hf_superpositional.tasks.gsm8k.arguments import (
    CompareArguments,
    DataArguments,
    EvaluationArguments,
    GenerationEvalArguments,
    ModelArguments,
    arm_name,
    check_model_path,
    parse_config_overrides,
)
from tests.cli_cases import TYPES
from tests.subprocess_env import REPO


def test_config_overrides_are_typed_and_bad_pieces_named():
    assert parse_config_overrides(
        "hidden_size=64, tie_word_embeddings=false,rms_norm_eps=1e-5,hidden_act=gelu"
    ) == {
        "hidden_size": 64,
        "tie_word_embeddings": False,
        "rms_norm_eps": 1e-5,
        "hidden_act": "gelu",
    }
    assert parse_config_overrides({"hidden_size": 64}) == {"hidden_size": 64}
    assert parse_config_overrides(None) == {}
    for bad in ("hidden_size", "=3", "a=1=2"):
        with pytest.raises(ArgumentsError, match="malformed piece.*expected exactly one 'key=value'"):
            parse_config_overrides(bad)
    with pytest.raises(ArgumentsError, match="given twice"):
        parse_config_overrides("a=1,a=2")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of `model_name_or_path`"),
        ({"model_name_or_path": "m", "model_type": "llama"}, "exactly one of"),
        (
            {"model_type": "gpt2", "train_tokenizer": True},
            r"`model_type` must be one of \['llama', 'mistral', 'qwen2'\]",
        ),
        ({"model_name_or_path": "m", "config_overrides": "hidden_size=8"}, "only applies to `model_type`"),
        ({"model_name_or_path": "m", "train_tokenizer": True}, "pretrained model needs its own tokenizer"),
        ({"model_type": "llama"}, "needs a tokenizer"),
        (
            {"model_type": "llama", "train_tokenizer": True, "tokenizer_vocab_size": 100},
            "tokenizer_vocab_size",
        ),
        ({"model_name_or_path": "m", "dtype": "fp8"}, "`dtype` must be one of"),
        ({"model_name_or_path": "m", "lora_r": 0}, "lora_r"),
        ({"model_name_or_path": "m", "lora_dropout": 1.0}, r"lora_dropout.*\[0, 1\)"),
        ({"model_name_or_path": "m", "lora_target_modules": []}, "lora_target_modules"),
    ],
)
def test_model_arguments_reject_bad_input(kwargs, message):
    with pytest.raises(ArgumentsError, match=message):
        ModelArguments(**kwargs)


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (DataArguments, {"max_length": 4}, "max_length"),
        (DataArguments, {"max_train_samples": 0}, "max_train_samples"),
        (DataArguments, {"assistant_mask": "labels"}, r"assistant_mask.*\['auto', 'generation', 'prefix'\]"),
        (DataArguments, {"dataset_name": " "}, "dataset_name"),
        (GenerationEvalArguments, {"generation_batch_size": 0}, "generation_batch_size"),
        (GenerationEvalArguments, {"generation_eval_samples": -1}, "generation_eval_samples"),
        (EvaluationArguments, {}, "model_path"),
        (CompareArguments, {"arms": []}, "at least one"),
        (CompareArguments, {"arms": ["adamw_torch", "adamw_torch"]}, "repeats"),
        (CompareArguments, {"arms": [":quantum_weight=0.1"]}, "names no optimizer"),
    ],
)
def test_other_arguments_reject_bad_input(cls, kwargs, message):
    with pytest.raises(ArgumentsError, match=message):
        cls(**kwargs)


def test_compare_arms_parse_and_name_folders():
    arms = CompareArguments().parsed_arms()
    assert arms == [
        ("adamw_torch", None),
        ("superpositional_adamw", "quantum_weight=0.1,n_qubits=4"),
        ("superpositional_adamw", "quantum_weight=0.5,n_qubits=4"),
    ]
    assert arm_name(*arms[2]) == "superpositional_adamw-quantum_weight0.5-n_qubits4"


def test_check_model_path(tmp_path):
    check_model_path(str(tmp_path))  # an existing folder
    check_model_path("meta-llama/Llama-3.2-1B-Instruct")  # Hub-id shaped: left to the loader
    for missing in (tmp_path / "nomodel", "./nomodel", "outputs/run/checkpoint-10"):
        with pytest.raises(ArgumentsError, match=r"not found \(neither a local folder nor a Hub id\)"):
            check_model_path(str(missing))


def test_paper_config_matches_table_iii_preset():
    """The 1B YAML against the presets module's record of the paper's Table III (written independently)."""
    model, data, generation, quantum, training = parse_args_and_config(
        TYPES, ["--config", str(REPO / "recipes/configs/gsm8k_llama32_1b.yaml")]
    )
    assert model.model_name_or_path == GSM8K.base_model and model.quantum_attention and not model.use_lora
    assert data.dataset_name == "openai/gsm8k" and data.dataset_config_name == "main"
    assert data.max_length == GSM8K.max_length
    assert (quantum.n_qubits, quantum.depth, quantum.gate_init) == (GSM8K.n_qubits, GSM8K.depth, 0.0)
    assert training.optim_args == f"quantum_weight={GSM8K.quantum_weight},n_qubits={GSM8K.n_qubits}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "fp16 needs CUDA" on CPU machines
        preset = gsm8k_training_arguments("unused")
    for name in (
        "per_device_train_batch_size",
        "learning_rate",
        "weight_decay",
        "warmup_steps",
        "lr_scheduler_type",
        "max_grad_norm",
        "num_train_epochs",
        "optim",
    ):
        assert getattr(training, name) == getattr(preset, name), name
    assert training.fp16  # the paper's mixed precision (the preset only enables it where CUDA exists)


def test_tiny_config_is_offline_and_small():
    model, data, generation, quantum, training = parse_args_and_config(
        TYPES, ["--config", str(REPO / "recipes/configs/gsm8k_tiny_offline.yaml")]
    )
    assert model.model_type == "llama" and model.train_tokenizer and model.model_name_or_path is None
    assert data.dataset_name == "bundled" and data.max_length <= 256 and data.max_train_samples <= 512
    assert model.config_overrides["hidden_size"] == 64 and model.config_overrides["num_hidden_layers"] == 2
    assert (
        training.use_cpu and quantum.gate_init == 1.0 and str(training.optim.value) == "superpositional_adamw"
    )


@pytest.mark.parametrize(
    "name, distributed, processes",
    [("cpu", "NO", 1), ("single_gpu", "NO", 1), ("multi_gpu", "MULTI_GPU", 2), ("fsdp2", "FSDP", 2)],
)
def test_accelerate_configs_load_with_accelerates_own_loader(name, distributed, processes):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / f"recipes/accelerate/{name}.yaml"))
    assert str(config.distributed_type).endswith(distributed) and config.num_processes == processes
    assert config.mixed_precision == "no"  # precision is the recipe's (TrainingArguments fp16/bf16)
    assert config.use_cpu == (name == "cpu")
    if name == "fsdp2":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
