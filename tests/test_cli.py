"""YAML and command-line arguments (cli.py): the file gives defaults and the command line wins, unknown keys and flags are named with a suggestion, errors are one line, optim_args are checked while parsing."""

from __future__ import annotations

import pytest
import yaml
from transformers import TrainingArguments

from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.cli import ArgumentsError, parse_args_and_config
from hf_superpositional.tasks.gsm8k.arguments import (
    DataArguments,
)
from tests.cli_cases import TYPES

TINY = ["--model_type", "llama", "--train_tokenizer", "true"]


def write_yaml(tmp_path, data, name="config.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_yaml_gives_defaults_and_command_line_wins(tmp_path):
    config = write_yaml(
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
    config = write_yaml(
        tmp_path, {"model_type": "llama", "train_tokenizer": True, "lerning_rate": 1e-3, "colour": 1}
    )
    with pytest.raises(ArgumentsError) as info:
        parse_args_and_config(TYPES, ["--config", config, "--output_dir", str(tmp_path)])
    message = str(info.value)
    assert "'lerning_rate' (did you mean 'learning_rate'" in message and "'colour'" in message
    assert "ModelArguments, DataArguments" in message and "--help" in message


def test_ignored_config_types_skip_training_keys_only(tmp_path):
    config = write_yaml(tmp_path, {"max_length": 100, "learning_rate": 1e-3, "n_qubits": 2, "nonsense": 1})
    with pytest.raises(ArgumentsError, match="'nonsense'"):
        parse_args_and_config((DataArguments,), ["--config", config], ignored_config_types=(TrainingArguments,))
    config = write_yaml(tmp_path, {"max_length": 100, "learning_rate": 1e-3, "n_qubits": 2})
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
    config = write_yaml(tmp_path, {"n_qubits": 0})
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
    default = write_yaml(tmp_path, {"max_length": 100, "eval_split": "train"}, "default.yaml")
    other = write_yaml(tmp_path, {"max_length": 50}, "other.yaml")
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


def test_a_shared_field_fills_every_dataclass_that_has_it_and_other_clashes_are_refused(tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Data:
        max_length: int = 2048
        max_train_samples: int = 10

    @dataclasses.dataclass
    class Trainer:
        max_length: int = 1024
        max_train_samples: int = 5

    with pytest.raises(ValueError, match="max_train_samples"):
        parse_args_and_config([Data, Trainer], [], shared_fields=("max_length",))

    @dataclasses.dataclass
    class Sft:
        max_length: int = 1024

    data, sft = parse_args_and_config([Data, Sft], ["--max_length", "300"], shared_fields=("max_length",))
    assert data.max_length == sft.max_length == 300
    config = tmp_path / "c.yaml"
    config.write_text("max_length: 128\n")
    data, sft = parse_args_and_config([Data, Sft], ["--config", str(config)], shared_fields=("max_length",))
    assert data.max_length == sft.max_length == 128
    data, sft = parse_args_and_config([Data, Sft], [], shared_fields=("max_length",))
    assert data.max_length == sft.max_length == 1024  # the last dataclass's default
