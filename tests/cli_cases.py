"""The dataclasses a GSM8K training script parses, shared by the cli and arguments tests."""

from __future__ import annotations

from transformers import TrainingArguments

from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.tasks.gsm8k.arguments import (
    DataArguments,
    GenerationEvalArguments,
    ModelArguments,
)

TYPES = (ModelArguments, DataArguments, GenerationEvalArguments, QuantumAttentionConfig, TrainingArguments)


def assert_bad_input_exits_with_one_line(main, argv: str, prog: str, message: str, capsys) -> None:
    """``main(argv.split())`` answers bad input as every recipe must: status 2 and one ``<prog>: error: ...`` line
    on stderr matching ``message``, no traceback (argparse's own errors exit from inside the parser)."""
    import re

    try:
        status = main(argv.split())
    except SystemExit as done:
        status = done.code
    assert status == 2, argv
    err = capsys.readouterr().err
    assert re.search(message, err) and err.startswith(f"{prog}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
