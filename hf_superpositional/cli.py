"""Command-line and YAML arguments for scripts built on this package (a ``TrlParser`` analogue).

:func:`parse_args_and_config` fills ``HfArgumentParser`` dataclasses from ``--config file.yaml`` and the
command line, the command line winning (the same convention as TRL's ``--config``). A YAML key that no
dataclass has is an error that names the key and the closest valid ones, never silently ignored; so is a
command-line flag (abbreviations are not accepted: ``--n_qubit`` is not ``--n_qubits``). A
``TrainingArguments`` whose ``optim`` is this package's has its ``optim_args`` checked at once, before any
data is loaded. Bad input raises :class:`ArgumentsError` (or, for flags, exits with one ``prog: error:``
line and status 2). On a CPU-only DeepSpeed launch, ``TrainingArguments`` are built with the set-up that
makes every rank count (:func:`hf_superpositional.integrations.deepspeed.cpu_deepspeed_overrides`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._utils import did_you_mean
from .integrations.deepspeed import cpu_deepspeed_overrides
from .integrations.transformers import ArgumentsError, check_optimizer_arguments

__all__ = ["ArgumentsError", "parse_args_and_config"]


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    config_path = Path(path)
    if not config_path.is_file():
        raise ArgumentsError(f"config file not found: {config_path}")
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ArgumentsError(f"{config_path}: not valid YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ArgumentsError(
            f"{config_path}: expected a mapping of argument names to values at the top level"
        )
    return data


def _unknown_key_message(
    unknown: Iterable[str], valid: Sequence[str], source: str, types: Sequence[type]
) -> str:
    parts = []
    for key in sorted(unknown):
        hint = did_you_mean(key, valid)
        parts.append(f"{key!r} ({hint})" if hint else repr(key))
    names = ", ".join(t.__name__ for t in types)
    return (
        f"{source}: unknown key(s) {', '.join(parts)}. Valid keys are the fields of {names}; run the recipe "
        "with --help to list them."
    )


def _unknown_flag_message(extra: Sequence[str], valid_flags: Sequence[str]) -> str:
    hints = []
    for token in extra:
        flag = token.split("=", 1)[0]
        if not flag.startswith("--"):
            continue
        longer = [f for f in valid_flags if f.startswith(flag)]
        if longer:
            hints.append(f"{flag} is not accepted as an abbreviation of {' or '.join(longer[:3])}")
            continue
        hint = did_you_mean(flag, valid_flags, cutoff=0.75)
        if hint:
            hints.append(f"{flag}: {hint}")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"unrecognized arguments: {' '.join(extra)}{hint}; run with --help to list the flags"


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser.error`` print one line (no usage block) and exit with status 2.

    The usage block of a parser holding ``TrainingArguments`` runs to hundreds of lines and buries the
    message; ``--help`` still prints everything.
    """

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    parser.error = error


def parse_args_and_config(
    dataclass_types: Sequence[type],
    args: Sequence[str] | None = None,
    prog: str | None = None,
    ignored_config_types: Sequence[type] = (),
    default_config: str | Path | None = None,
    shared_fields: Sequence[str] = (),
) -> tuple[Any, ...]:
    """Parse ``dataclass_types`` from ``--config file.yaml`` and the command line (which wins).

    The YAML file is a flat mapping of field names to values, exactly the names of the command-line flags.
    Values from YAML become the parser's defaults, so ``--learning_rate 1e-4`` on the command line overrides
    ``learning_rate`` in the file, and fields every dataclass requires may come from either. Flags must be
    spelled out (``allow_abbrev=False``): argparse would otherwise read ``--n_qubit`` as ``--n_qubits``.
    A ``TrainingArguments`` whose ``optim`` is this package's has its ``optim_args`` validated here
    (:func:`check_optimizer_arguments`).

    Args:
        dataclass_types: the dataclasses to fill (e.g. ``ModelArguments, DataArguments, TrainingArguments``).
        args: the command-line arguments (default ``sys.argv[1:]``).
        prog: program name for ``--help`` and error messages.
        ignored_config_types: dataclasses whose fields may appear in the YAML file and are skipped (so an
            evaluation script can read the training YAML); other unknown keys are still errors.
        default_config: YAML file read when ``--config`` is not given (``None``: none).
        shared_fields: field names that several of the dataclasses have and that mean the same thing there
            (e.g. ``max_length`` of ``DataArguments`` and TRL's ``SFTConfig``): one flag / key fills all of
            them, with the default of the last dataclass that has it. Any other repeated name is an error.

    Returns:
        One instance per dataclass, in order.

    Raises:
        ArgumentsError: a missing or malformed config file, or a key no dataclass has (the message names
            the key, suggests close matches and lists the dataclasses); or an invalid value (the dataclass's
            own ``ValueError``, re-raised with its message); or bad ``optim_args``.
        SystemExit: unknown or abbreviated command-line flags, invalid choices (one ``prog: error:`` line,
            status 2, naming close matches) or ``--help`` (status 0).

    Example:
        >>> from hf_superpositional.tasks.gsm8k.arguments import DataArguments, ModelArguments
        >>> model, data = parse_args_and_config([ModelArguments, DataArguments],
        ...     ["--model_type", "llama", "--train_tokenizer", "true", "--max_length", "128"])
        >>> data.max_length, model.model_type
        (128, 'llama')
    """
    from transformers import HfArgumentParser, TrainingArguments

    owners: dict[str, list[str]] = {}
    for dtype in dataclass_types:
        for f in dataclasses.fields(dtype):
            if f.init:
                owners.setdefault(f.name, []).append(dtype.__name__)
    clashes = {name: types for name, types in owners.items() if len(types) > 1 and name not in shared_fields}
    if clashes:
        raise ValueError(f"fields defined by several dataclasses: {clashes}; pass them as shared_fields")
    # With shared fields, argparse keeps the last dataclass's flag for the name; every dataclass reads its value.
    conflicts = {"conflict_handler": "resolve"} if shared_fields else {}
    parser = HfArgumentParser(list(dataclass_types), prog=prog, allow_abbrev=False, **conflicts)
    _one_line_errors(parser)
    parser.add_argument(
        "--config",
        type=str,
        default=None if default_config is None else str(default_config),
        help="YAML file of argument values; command-line flags override it.",
    )
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", type=str, default=None)
    known, _ = pre.parse_known_args(args)
    config = known.config if known.config is not None else default_config
    if config is not None:
        config = str(config)
        values = _load_yaml(config)
        dests = {action.dest: action for action in parser._actions}
        valid = sorted(d for d in dests if d not in ("help", "config"))
        ignored = {f.name for t in ignored_config_types for f in dataclasses.fields(t)} - set(valid)
        unknown = [key for key in values if key not in valid and key not in ignored]
        if unknown:
            raise ArgumentsError(_unknown_key_message(unknown, valid, config, dataclass_types))
        for key, value in values.items():
            if key in ignored:
                continue
            action = dests[key]
            # A value from the file satisfies a required flag; argparse still lets the command line override it.
            action.required = False
            action.default = value
    namespace, extra = parser.parse_known_args(args)
    if extra:
        # HfArgumentParser also registers --n-qubits for --n_qubits: suggest the spelling the docs use.
        flags = [
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and "-" not in option[2:]
        ]
        parser.error(_unknown_flag_message(extra, flags))
    outputs = []
    for dtype in dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        kwargs = {k: v for k, v in vars(namespace).items() if k in names}
        if issubclass(dtype, TrainingArguments):
            # A CPU-only DeepSpeed launch needs accelerate set up before the arguments are built (SPEC 8).
            kwargs.update(cpu_deepspeed_overrides(kwargs))
        try:
            outputs.append(dtype(**kwargs))
        except ArgumentsError:
            raise
        except (ValueError, TypeError) as error:
            raise ArgumentsError(f"{dtype.__name__}: {error}") from error
    for output in outputs:
        if isinstance(output, TrainingArguments):
            check_optimizer_arguments(output)
    return tuple(outputs)
