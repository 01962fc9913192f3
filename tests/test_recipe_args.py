"""Recipe arguments (hf_superpositional/recipe_args.py): validation, YAML + CLI parsing, shipped configs."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import yaml
from transformers import TrainingArguments

from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.cli import ArgumentsError, parse_args_and_config
from hf_superpositional.integrations.transformers import check_optimizer_arguments
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
from hf_superpositional.tasks.gsm8k.model import load_model
from hf_superpositional.tasks.gsm8k.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TYPES = (ModelArguments, DataArguments, GenerationEvalArguments, QuantumAttentionConfig, TrainingArguments)
TINY = ["--model_type", "llama", "--train_tokenizer", "true"]


def _yaml(tmp_path, data, name="config.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


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


def test_yaml_gives_defaults_and_command_line_wins(tmp_path):
    config = _yaml(
        tmp_path,
        {
            "model_type": "llama",
            "train_tokenizer": True,
            "config_overrides": {"hidden_size": 32},
            "max_length": 256,
            "n_qubits": 2,
            "layers": [0],
            "output_dir": str(tmp_path / "out"),
            "learning_rate": 3.0e-3,
            "optim": "superpositional_adamw",
            "optim_args": "quantum_weight=0.5",
        },
    )
    model, data, generation, quantum, training = parse_args_and_config(
        TYPES, ["--config", config, "--max_length", "128", "--depth", "3"]
    )
    assert model.config_overrides == {"hidden_size": 32}  # a YAML mapping is accepted as it is
    assert data.max_length == 128  # command line over YAML
    assert (quantum.n_qubits, quantum.depth, quantum.layers) == (2, 3, [0])
    assert training.learning_rate == 3e-3 and training.output_dir == str(tmp_path / "out")
    assert training.optim_args == "quantum_weight=0.5" and generation.max_new_tokens == 256


def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path):
    config = _yaml(
        tmp_path, {"model_type": "llama", "train_tokenizer": True, "lerning_rate": 1e-3, "colour": 1}
    )
    with pytest.raises(ArgumentsError) as info:
        parse_args_and_config(TYPES, ["--config", config, "--output_dir", str(tmp_path)])
    message = str(info.value)
    assert "'lerning_rate' (did you mean 'learning_rate'" in message and "'colour'" in message
    assert "ModelArguments, DataArguments" in message and "--help" in message


def test_ignored_config_types_skip_training_keys_only(tmp_path):
    config = _yaml(tmp_path, {"max_length": 100, "learning_rate": 1e-3, "n_qubits": 2, "nonsense": 1})
    with pytest.raises(ArgumentsError, match="'nonsense'"):
        parse_args_and_config((DataArguments,), ["--config", config], ignored_config_types=(TrainingArguments,))
    config = _yaml(tmp_path, {"max_length": 100, "learning_rate": 1e-3, "n_qubits": 2})
    (data,) = parse_args_and_config(
        (DataArguments,),
        ["--config", config],
        ignored_config_types=(TrainingArguments, QuantumAttentionConfig),
    )
    assert data.max_length == 100


def test_bad_config_files_and_values(tmp_path):
    with pytest.raises(ArgumentsError, match="config file not found"):
        parse_args_and_config((DataArguments,), ["--config", str(tmp_path / "missing.yaml")])
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ArgumentsError, match="expected a mapping"):
        parse_args_and_config((DataArguments,), ["--config", str(tmp_path / "list.yaml")])
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ArgumentsError, match="not valid YAML"):
        parse_args_and_config((DataArguments,), ["--config", str(tmp_path / "broken.yaml")])
    config = _yaml(tmp_path, {"n_qubits": 0})
    with pytest.raises(
        ArgumentsError, match=r"QuantumAttentionConfig: `n_qubits` must be an integer >= 1"
    ):
        parse_args_and_config((QuantumAttentionConfig,), ["--config", config])
    with pytest.raises(SystemExit) as exit_info:  # unknown flags: argparse's own error and status 2
        parse_args_and_config((DataArguments,), ["--no_such_flag", "1"])
    assert exit_info.value.code == 2


def test_flags_must_be_spelled_out_and_errors_are_one_line(capsys):
    # argparse's default (allow_abbrev=True) would silently read --max_len as --max_length.
    with pytest.raises(SystemExit) as exit_info:
        parse_args_and_config((DataArguments,), ["--max_len", "64"], prog="recipe.py")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "recipe.py: error: unrecognized arguments: --max_len 64 (--max_len is not accepted as an abbreviation "
        "of --max_length); run with --help to list the flags\n"
    )
    with pytest.raises(SystemExit):
        parse_args_and_config((DataArguments,), ["--max_lenght=64"], prog="recipe.py")
    assert "(--max_lenght: did you mean '--max_length'?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # invalid choice: argparse's message, without the usage block
        parse_args_and_config((DataArguments,), ["--assistant_mask", "all"], prog="recipe.py")
    err = capsys.readouterr().err
    assert err.startswith(
        "recipe.py: error: argument --assistant_mask/--assistant-mask: invalid choice: 'all' "
        "(choose from 'auto', 'generation', 'prefix')"
    )
    assert "usage:" not in err and err.count("\n") == 1
    (data,) = parse_args_and_config((DataArguments,), ["--max_length", "64", "--max-train-samples", "3"])
    assert (data.max_length, data.max_train_samples) == (64, 3)  # full names (either spelling) still work


def test_default_config_is_read_unless_config_is_given(tmp_path):
    default = _yaml(tmp_path, {"max_length": 100, "eval_split": "train"}, "default.yaml")
    other = _yaml(tmp_path, {"max_length": 50}, "other.yaml")
    (data,) = parse_args_and_config((DataArguments,), ["--max_train_samples", "4"], default_config=default)
    assert (data.max_length, data.eval_split, data.max_train_samples) == (100, "train", 4)
    (data,) = parse_args_and_config((DataArguments,), ["--config", other], default_config=default)
    assert (data.max_length, data.eval_split) == (50, "test")  # the default file is not merged in
    (data,) = parse_args_and_config((DataArguments,), ["--max_length", "64"], default_config=default)
    assert data.max_length == 64


@pytest.mark.parametrize(
    "optim, optim_args, message",
    [
        ("superpositional_adamw", "bogus=1", r"TrainingArguments: optim_args: unknown key 'bogus'"),
        ("superpositional_adamw", "quantum_weight", r"malformed piece 'quantum_weight'"),
        ("quantum_moment_adamw", "mode=update", r"always uses mode='moment', but mode='update' was given"),
    ],
)
def test_optim_args_are_checked_while_parsing(tmp_path, optim, optim_args, message):
    argv = [*TINY, "--output_dir", str(tmp_path), "--optim", optim, "--optim_args", optim_args]
    with pytest.raises(ArgumentsError, match=message):
        parse_args_and_config(TYPES, argv)


def test_check_optimizer_arguments_leaves_other_optimizers_and_good_args_alone(tmp_path):
    out = str(tmp_path)
    # transformers' own optimizers parse optim_args themselves (and differently): not ours to judge.
    check_optimizer_arguments(
        TrainingArguments(out, optim="adamw_torch", optim_args="bogus=1", report_to="none")
    )
    check_optimizer_arguments(
        TrainingArguments(
            out, optim="superpositional_adamw", optim_args="quantum_weight=0.5", report_to="none"
        )
    )
    # Values parsing accepts but the optimizer rejects are caught too (without a model or a device).
    with pytest.raises(ArgumentsError, match="quantum_weight must be a non-negative float"):
        check_optimizer_arguments(
            TrainingArguments(
                out, optim="superpositional_adamw", optim_args="quantum_weight=-1", report_to="none"
            )
        )
    with pytest.raises(ArgumentsError, match="lr must be a non-negative float"):
        check_optimizer_arguments(
            TrainingArguments(out, optim="quantum_moment_adamw", learning_rate=-1.0, report_to="none")
        )


def test_check_model_path(tmp_path):
    check_model_path(str(tmp_path))  # an existing folder
    check_model_path("meta-llama/Llama-3.2-1B-Instruct")  # Hub-id shaped: left to the loader
    for missing in (tmp_path / "nomodel", "./nomodel", "outputs/run/checkpoint-10"):
        with pytest.raises(ArgumentsError, match=r"not found \(neither a local folder nor a Hub id\)"):
            check_model_path(str(missing))


def test_paper_config_matches_table_iii_preset():
    """The 1B YAML against the presets module's record of the paper's Table III (written independently)."""
    model, data, generation, quantum, training = parse_args_and_config(
        TYPES, ["--config", str(ROOT / "recipes/configs/gsm8k_llama32_1b.yaml")]
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
        TYPES, ["--config", str(ROOT / "recipes/configs/gsm8k_tiny_offline.yaml")]
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

    config = load_config_from_file(str(ROOT / f"recipes/accelerate/{name}.yaml"))
    assert str(config.distributed_type).endswith(distributed) and config.num_processes == processes
    assert config.mixed_precision == "no"  # precision is the recipe's (TrainingArguments fp16/bf16)
    assert config.use_cpu == (name == "cpu")
    if name == "fsdp2":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


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
