"""Arguments of the GSM8K recipes: dataclasses with help text and validation, parsed from YAML and the CLI.

``recipes/gsm8k_finetune.py``, ``gsm8k_evaluate.py`` and ``gsm8k_compare.py`` read the same dataclasses:

- :class:`ModelArguments`: a pretrained model (Hub id or folder) or one built from a config, its tokenizer
  (or one trained offline), quantum attention on/off, LoRA;
- :class:`DataArguments`: GSM8K from the Hub (``openai/gsm8k``, config ``main``), a local JSONL or the sample
  bundled in the package; context length and sample caps;
- :class:`GenerationEvalArguments`: the greedy generation-based evaluation;
- plus :class:`~hf_superpositional.attention.config.QuantumAttentionConfig` and ``transformers.TrainingArguments``.

:func:`parse_recipe_args` reads them from ``--config file.yaml`` and the command line, the command line
winning (the same convention as TRL's ``--config``). A YAML key that no dataclass has is an error that
names the key and the closest valid ones, never silently ignored; so is a command-line flag (abbreviations
are not accepted: ``--n_qubit`` is not ``--n_qubits``). :func:`check_optimizer_arguments` and
:func:`check_model_path` catch bad ``optim_args`` and missing model folders before any data is loaded.
:func:`load_tokenizer` and :func:`load_model` turn :class:`ModelArguments` into objects.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .integrations.transformers import ArgumentsError, check_optimizer_arguments

__all__ = [
    "ASSISTANT_MASKS",
    "BUNDLED_DATASET",
    "DTYPES",
    "CompareArguments",
    "DataArguments",
    "EvaluationArguments",
    "GenerationEvalArguments",
    "ModelArguments",
    "RecipeArgumentError",
    "check_model_path",
    "check_optimizer_arguments",
    "load_model",
    "load_tokenizer",
    "parse_config_overrides",
    "parse_recipe_args",
]

BUNDLED_DATASET = "bundled"
"""``dataset_name`` value selecting the GSM8K sample shipped in ``hf_superpositional/data`` (offline)."""

ASSISTANT_MASKS = ("auto", "generation", "prefix")
"""How the answer tokens are found (see :func:`hf_superpositional.gsm8k.tokenize_for_sft`)."""

DTYPES = ("float32", "bfloat16", "float16", "auto")
"""``dtype`` choices for loading pretrained weights."""

# The architectures quantum attention can patch (kept literal here so this module imports no model code).
MODEL_TYPES = ("llama", "mistral", "qwen2")


RecipeArgumentError = ArgumentsError  # one error class; recipe_args itself moves next (tasks tier)


def _positive_or_none(name: str, value: Any, minimum: int = 1) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecipeArgumentError(f"`{name}` must be None or an integer >= {minimum}, got {value!r}.")


def parse_config_overrides(overrides: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parse ``"hidden_size=64,num_hidden_layers=2"`` (or a mapping from YAML) into a dict.

    Values in the string form are read as ``true``/``false``, integers, floats, or strings, in that order.

    Raises:
        RecipeArgumentError: a piece without exactly one ``=``, an empty key, or a repeated key.

    Example:
        >>> parse_config_overrides("hidden_size=64,tie_word_embeddings=true,rope_theta=1e4")
        {'hidden_size': 64, 'tie_word_embeddings': True, 'rope_theta': 10000.0}
    """
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return {str(k): v for k, v in overrides.items()}
    if not isinstance(overrides, str):
        raise RecipeArgumentError(
            f"`config_overrides` must be 'key=value,key=value' or a mapping, got {type(overrides).__name__}."
        )
    out: dict[str, Any] = {}
    for piece in filter(None, (p.strip() for p in overrides.split(","))):
        key, sep, raw = piece.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or "=" in raw:
            raise RecipeArgumentError(f"`config_overrides`: expected 'key=value', got {piece!r}.")
        if key in out:
            raise RecipeArgumentError(f"`config_overrides`: key {key!r} is given twice.")
        out[key] = _literal(raw)
    return out


def _literal(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


@dataclass
class ModelArguments:
    """Which model and tokenizer the recipe trains, and how (quantum attention, LoRA).

    Give exactly one of ``model_name_or_path`` (a pretrained causal LM: Hub id or local folder) and
    ``model_type`` (a randomly initialised model built from a config, e.g. the tiny offline Llama).

    Args:
        model_name_or_path: Hub id or folder of a pretrained causal LM (e.g. ``meta-llama/Llama-3.2-1B-Instruct``).
        model_type: ``"llama"``, ``"mistral"`` or ``"qwen2"``: build this architecture from its config.
        config_overrides: config fields for ``model_type`` builds, ``"hidden_size=64,num_hidden_layers=2"``
            (or a mapping in YAML).
        tokenizer_name: Hub id or folder of the tokenizer (default: ``model_name_or_path``).
        train_tokenizer: train a byte-level BPE on the training split, offline (``model_type`` builds only).
        tokenizer_vocab_size: vocabulary size of that tokenizer.
        dtype: dtype to load pretrained weights in; keep ``float32`` for fp16/bf16 mixed-precision training.
        quantum_attention: patch the model with quantum attention (the ``QuantumAttentionConfig`` flags).
        use_lora: train LoRA adapters (PEFT) instead of all weights; the circuits train and are saved too.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator.
        lora_dropout: dropout on the LoRA input.
        lora_target_modules: module names that get adapters.

    Example:
        >>> args = ModelArguments(model_type="llama", config_overrides="hidden_size=64", train_tokenizer=True)
        >>> args.config_overrides
        {'hidden_size': 64}
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub id or local folder of a pretrained causal LM (or use --model_type)."},
    )
    model_type: str | None = field(
        default=None,
        metadata={
            "help": "Build this architecture from its config with random weights (instead of "
            "--model_name_or_path).",
            "choices": list(MODEL_TYPES),
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config fields for --model_type builds: 'hidden_size=64,num_hidden_layers=2'."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Hub id or folder of the tokenizer (default: the model's)."}
    )
    train_tokenizer: bool = field(
        default=False,
        metadata={"help": "Train a byte-level BPE with a chat template on the training split (offline)."},
    )
    tokenizer_vocab_size: int = field(
        default=2048, metadata={"help": "Vocabulary of --train_tokenizer (>= 300)."}
    )
    dtype: str = field(
        default="float32",
        metadata={
            "help": "dtype to load pretrained weights in; keep float32 for fp16/bf16 mixed precision.",
            "choices": list(DTYPES),
        },
    )
    quantum_attention: bool = field(
        default=True,
        metadata={
            "help": "Patch the model with quantum attention (configured by the QuantumAttentionConfig flags)."
        },
    )
    use_lora: bool = field(
        default=False, metadata={"help": "Train LoRA adapters (PEFT); circuits train and save too."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (>= 1)."})
    lora_alpha: float = field(default=32.0, metadata={"help": "LoRA alpha (> 0)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout, in [0, 1)."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "Module names that get LoRA adapters."},
    )

    def __post_init__(self):
        if (self.model_name_or_path is None) == (self.model_type is None):
            raise RecipeArgumentError(
                "give exactly one of `model_name_or_path` (a pretrained model) and `model_type` (build from a "
                f"config; one of {list(MODEL_TYPES)}), got model_name_or_path={self.model_name_or_path!r}, "
                f"model_type={self.model_type!r}."
            )
        if self.model_type is not None and self.model_type not in MODEL_TYPES:
            raise RecipeArgumentError(
                f"`model_type` must be one of {list(MODEL_TYPES)}, got {self.model_type!r}."
            )
        self.config_overrides = parse_config_overrides(self.config_overrides) or None
        if self.config_overrides and self.model_name_or_path is not None:
            raise RecipeArgumentError(
                "`config_overrides` only applies to `model_type` builds; a pretrained model keeps its config."
            )
        if self.train_tokenizer and self.model_name_or_path is not None:
            raise RecipeArgumentError(
                "`train_tokenizer` only applies to `model_type` builds: a pretrained model needs its own tokenizer."
            )
        if self.model_type is not None and not self.train_tokenizer and self.tokenizer_name is None:
            raise RecipeArgumentError(
                "a `model_type` build needs a tokenizer: set `train_tokenizer: true` or `tokenizer_name`."
            )
        if (
            isinstance(self.tokenizer_vocab_size, bool)
            or not isinstance(self.tokenizer_vocab_size, int)
            or (self.tokenizer_vocab_size < 300)
        ):
            raise RecipeArgumentError(
                f"`tokenizer_vocab_size` must be an integer >= 300, got {self.tokenizer_vocab_size!r}."
            )
        if self.dtype not in DTYPES:
            raise RecipeArgumentError(f"`dtype` must be one of {list(DTYPES)}, got {self.dtype!r}.")
        _positive_or_none("lora_r", self.lora_r)
        if not self.lora_alpha > 0:
            raise RecipeArgumentError(f"`lora_alpha` must be > 0, got {self.lora_alpha!r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise RecipeArgumentError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout!r}.")
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [self.lora_target_modules]
        if not self.lora_target_modules:
            raise RecipeArgumentError("`lora_target_modules` must name at least one module.")

    @property
    def base_model_name(self) -> str:
        """What the model card records as the base model."""
        if self.model_name_or_path is not None:
            return self.model_name_or_path
        return f"{self.model_type} built from a config (random init)"


@dataclass
class DataArguments:
    """Where GSM8K comes from and how it is cut.

    Args:
        dataset_name: Hub dataset id (default ``openai/gsm8k``) or ``"bundled"`` for the package's sample.
        dataset_config_name: Hub dataset config (``main``).
        train_file: a local JSONL of ``{"question", "answer"}`` rows; replaces the dataset's train split.
        eval_file: a local JSONL for evaluation; replaces the dataset's evaluation split.
        train_split: split name for training.
        eval_split: split name for evaluation (GSM8K has ``train`` and ``test``).
        max_length: context length in tokens; longer rows are truncated (and counted in the log).
        max_train_samples: keep only the first N training rows.
        max_eval_samples: keep only the first N evaluation rows.
        assistant_mask: how answer tokens are found: ``generation`` (the template's ``{% generation %}``
            blocks), ``prefix`` (everything after the prompt with the generation prompt), ``auto`` (the first
            when the template has such blocks, else the second).

    Example:
        >>> DataArguments(dataset_name="bundled", max_length=256).max_length
        256
    """

    dataset_name: str = field(
        default="openai/gsm8k",
        metadata={
            "help": "Hub dataset id, or 'bundled' for the GSM8K sample shipped in the package (offline)."
        },
    )
    dataset_config_name: str = field(default="main", metadata={"help": "Hub dataset config name."})
    train_file: str | None = field(
        default=None, metadata={"help": "Local JSONL of {question, answer} rows for training."}
    )
    eval_file: str | None = field(
        default=None, metadata={"help": "Local JSONL of {question, answer} rows for evaluation."}
    )
    train_split: str = field(default="train", metadata={"help": "Split used for training."})
    eval_split: str = field(default="test", metadata={"help": "Split used for evaluation."})
    max_length: int = field(
        default=2048, metadata={"help": "Context length in tokens (longer rows are truncated)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training rows."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N evaluation rows."}
    )
    assistant_mask: str = field(
        default="auto",
        metadata={
            "help": "How answer tokens are found for the loss: 'generation' ({%% generation %%} blocks), "
            "'prefix' (after the generation prompt) or 'auto'.",
            "choices": list(ASSISTANT_MASKS),
        },
    )

    def __post_init__(self):
        if not isinstance(self.dataset_name, str) or not self.dataset_name.strip():
            raise RecipeArgumentError(
                f"`dataset_name` must be a Hub id or {BUNDLED_DATASET!r}, got {self.dataset_name!r}."
            )
        _positive_or_none("max_length", self.max_length, minimum=8)
        if self.max_length is None:
            raise RecipeArgumentError("`max_length` must be an integer >= 8, got None.")
        _positive_or_none("max_train_samples", self.max_train_samples)
        _positive_or_none("max_eval_samples", self.max_eval_samples)
        if self.assistant_mask not in ASSISTANT_MASKS:
            raise RecipeArgumentError(
                f"`assistant_mask` must be one of {list(ASSISTANT_MASKS)}, got {self.assistant_mask!r}."
            )

    def load_rows(self, which: str) -> list[dict[str, str]]:
        """The training (``which="train"``) or evaluation (``"eval"``) rows these arguments select.

        One place for the source, split, local file and row limit of each side, so the fine-tuning and
        evaluation recipes cannot read different data for the same arguments.

        Example:
            >>> len(DataArguments(dataset_name="bundled", max_eval_samples=3).load_rows("eval"))
            3
        """
        from .gsm8k import load_gsm8k

        if which not in ("train", "eval"):
            raise ValueError(f"which must be 'train' or 'eval', got {which!r}")
        train = which == "train"
        return load_gsm8k(
            self.dataset_name,
            self.train_split if train else self.eval_split,
            config_name=self.dataset_config_name,
            data_file=self.train_file if train else self.eval_file,
            max_samples=self.max_train_samples if train else self.max_eval_samples,
        )

    @property
    def card_dataset(self) -> str:
        """What the model card records as the training data: a Hub id, or a local file's name."""
        if self.train_file is not None:
            return f"local file {Path(self.train_file).name}"
        if self.dataset_name == BUNDLED_DATASET:
            return "openai/gsm8k"
        return self.dataset_name

    @property
    def card_dataset_note(self) -> str | None:
        """How the training data was cut, for the model card (``None`` for a whole Hub split)."""
        notes = []
        if self.train_file is None and self.dataset_name == BUNDLED_DATASET:
            notes.append("the sample bundled with hf_superpositional (first 1,000 train problems)")
        if self.max_train_samples is not None:
            notes.append(f"first {self.max_train_samples} rows")
        return ", ".join(notes) or None


@dataclass
class GenerationEvalArguments:
    """The greedy, batched, generation-based GSM8K evaluation (strict and flexible accuracy).

    Args:
        generation_eval_samples: evaluation rows graded by generation (``None``: all; ``0``: skip).
        generation_batch_size: prompts per ``generate`` call (left-padded).
        max_new_tokens: tokens generated per answer.

    Example:
        >>> GenerationEvalArguments(generation_eval_samples=8).max_new_tokens
        256
    """

    generation_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluation rows graded by generation (default all; 0 skips it)."}
    )
    generation_batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    max_new_tokens: int = field(default=256, metadata={"help": "Tokens generated per answer."})

    def __post_init__(self):
        _positive_or_none("generation_eval_samples", self.generation_eval_samples, minimum=0)
        _positive_or_none("generation_batch_size", self.generation_batch_size)
        _positive_or_none("max_new_tokens", self.max_new_tokens)
        if self.generation_batch_size is None or self.max_new_tokens is None:
            raise RecipeArgumentError("`generation_batch_size` and `max_new_tokens` must be integers >= 1.")


@dataclass
class EvaluationArguments:
    """What ``recipes/gsm8k_evaluate.py`` evaluates and where the report goes.

    Args:
        model_path: folder (or Hub id) of a model or LoRA adapter written by ``gsm8k_finetune.py``.
        output_file: JSON report path (default ``<model_path>/gsm8k_evaluation.json`` for a local folder).
        loss_batch_size: rows per forward pass for the held-out loss.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default: accelerate's device for this process).

    Example:
        >>> EvaluationArguments(model_path="outputs/gsm8k_tiny_offline").loss_batch_size
        8
    """

    model_path: str = field(
        default=None,
        metadata={"help": "Folder or Hub id of a model or LoRA adapter written by gsm8k_finetune.py."},
    )
    output_file: str | None = field(
        default=None, metadata={"help": "JSON report path (default <model_path>/gsm8k_evaluation.json)."}
    )
    loss_batch_size: int = field(default=8, metadata={"help": "Rows per forward pass for the held-out loss."})
    device: str | None = field(
        default=None, metadata={"help": "Device (default: accelerate's for this process)."}
    )

    def __post_init__(self):
        if not isinstance(self.model_path, str) or not self.model_path:
            raise RecipeArgumentError(
                "`model_path` is required: the folder or Hub id of the model to evaluate."
            )
        _positive_or_none("loss_batch_size", self.loss_batch_size)
        if self.loss_batch_size is None:
            raise RecipeArgumentError("`loss_batch_size` must be an integer >= 1.")


@dataclass
class CompareArguments:
    """The optimizer arms of ``recipes/gsm8k_compare.py`` (paper Table I: AdamW, lambda=0.1, lambda=0.5).

    Args:
        arms: each ``optim`` or ``optim:optim_args`` (e.g. ``superpositional_adamw:quantum_weight=0.5,n_qubits=4``).
            Every arm trains from the same seed, data and schedule; only the optimizer differs.

    Example:
        >>> CompareArguments().parsed_arms()[0]
        ('adamw_torch', None)
    """

    arms: list[str] = field(
        default_factory=lambda: [
            "adamw_torch",
            "superpositional_adamw:quantum_weight=0.1,n_qubits=4",
            "superpositional_adamw:quantum_weight=0.5,n_qubits=4",
        ],
        metadata={"help": "Optimizer arms, each 'optim' or 'optim:optim_args'."},
    )

    def __post_init__(self):
        if isinstance(self.arms, str):
            self.arms = [self.arms]
        if not self.arms:
            raise RecipeArgumentError("`arms` must list at least one optimizer.")
        names = [self.arm_name(*arm) for arm in self.parsed_arms()]
        if len(set(names)) != len(names):
            raise RecipeArgumentError(f"`arms` repeats an arm: {self.arms}.")

    def parsed_arms(self) -> list[tuple[str, str | None]]:
        """``(optim, optim_args or None)`` per arm."""
        out = []
        for spec in self.arms:
            optim, _, optim_args = str(spec).partition(":")
            if not optim.strip():
                raise RecipeArgumentError(f"`arms`: {spec!r} names no optimizer.")
            out.append((optim.strip(), optim_args.strip() or None))
        return out

    @staticmethod
    def arm_name(optim: str, optim_args: str | None) -> str:
        """A folder-safe name: ``adamw_torch``, ``superpositional_adamw-quantum_weight0.5-n_qubits4``."""
        if not optim_args:
            return optim
        return optim + "-" + optim_args.replace("=", "").replace(",", "-")


# --------------------------------------------------------------------------------------------------------
# Parsing: --config file.yaml plus command-line overrides
# --------------------------------------------------------------------------------------------------------


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    config_path = Path(path)
    if not config_path.is_file():
        raise RecipeArgumentError(f"config file not found: {config_path}")
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RecipeArgumentError(f"{config_path}: not valid YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeArgumentError(
            f"{config_path}: expected a mapping of argument names to values at the top level"
        )
    return data


def _unknown_key_message(
    unknown: Iterable[str], valid: Sequence[str], source: str, types: Sequence[type]
) -> str:
    parts = []
    for key in sorted(unknown):
        close = difflib.get_close_matches(key, valid, n=3)
        parts.append(f"{key!r}" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
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
        close = difflib.get_close_matches(flag, valid_flags, n=3, cutoff=0.75)
        if close:
            hints.append(f"{flag}: did you mean {' or '.join(close)}?")
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


def check_model_path(model_path: str) -> None:
    """Reject a ``model_path`` that is neither an existing local path nor shaped like a Hub id.

    A missing folder such as ``outputs/run/checkpoint-10`` or ``/data/model`` cannot be a Hub id
    (``name`` or ``namespace/name``), and huggingface_hub would otherwise answer with an unrelated
    "Repo id must be in the form ..." error.

    Args:
        model_path: the folder or Hub id to load.

    Raises:
        RecipeArgumentError: the path does not exist and cannot be a Hub id.

    Example:
        >>> check_model_path("meta-llama/Llama-3.2-1B-Instruct")  # Hub-id shaped: left to the loader
        >>> check_model_path("/no/such/folder")
        Traceback (most recent call last):
        ...
        hf_superpositional.integrations.transformers.ArgumentsError: `model_path` '/no/such/folder' not found (neither a local folder nor a Hub id).
    """
    if Path(model_path).exists():
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model_path)
    except HFValidationError:
        raise RecipeArgumentError(
            f"`model_path` {model_path!r} not found (neither a local folder nor a Hub id)."
        ) from None


def parse_recipe_args(
    dataclass_types: Sequence[type],
    args: Sequence[str] | None = None,
    prog: str | None = None,
    ignored_config_types: Sequence[type] = (),
    default_config: str | Path | None = None,
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

    Returns:
        One instance per dataclass, in order.

    Raises:
        RecipeArgumentError: a missing or malformed config file, or a key no dataclass has (the message names
            the key, suggests close matches and lists the dataclasses); or an invalid value (the dataclass's
            own ``ValueError``, re-raised with its message); or bad ``optim_args``.
        SystemExit: unknown or abbreviated command-line flags, invalid choices (one ``prog: error:`` line,
            status 2, naming close matches) or ``--help`` (status 0).

    Example:
        >>> model, data = parse_recipe_args([ModelArguments, DataArguments],
        ...     ["--model_type", "llama", "--train_tokenizer", "true", "--max_length", "128"])
        >>> data.max_length, model.model_type
        (128, 'llama')
    """
    from transformers import HfArgumentParser, TrainingArguments

    parser = HfArgumentParser(list(dataclass_types), prog=prog, allow_abbrev=False)
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
            raise RecipeArgumentError(_unknown_key_message(unknown, valid, config, dataclass_types))
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
        try:
            outputs.append(dtype(**kwargs))
        except RecipeArgumentError:
            raise
        except (ValueError, TypeError) as error:
            raise RecipeArgumentError(f"{dtype.__name__}: {error}") from error
    for output in outputs:
        if isinstance(output, TrainingArguments):
            check_optimizer_arguments(output)
    return tuple(outputs)


# --------------------------------------------------------------------------------------------------------
# Building the tokenizer and the model from ModelArguments
# --------------------------------------------------------------------------------------------------------


def load_tokenizer(model_args: ModelArguments, training_texts: Iterable[str] | None = None):
    """The tokenizer ``model_args`` asks for, with a pad token.

    Args:
        model_args: the model arguments.
        training_texts: the corpus for ``train_tokenizer`` (e.g. GSM8K questions and answers).

    Returns:
        A ``PreTrainedTokenizerFast`` with a chat template and a pad token (the end-of-sequence token when
        the tokenizer has none, as for Llama 3).

    Example:
        >>> tok = load_tokenizer(ModelArguments(model_type="llama", train_tokenizer=True, tokenizer_vocab_size=300),
        ...                      ["What is 2+2?", "#### 4"])
        >>> tok.pad_token
        '<|pad|>'
    """
    if model_args.train_tokenizer:
        if training_texts is None:
            raise RecipeArgumentError("`train_tokenizer` needs the training texts.")
        from .tokenizer import train_offline_tokenizer

        tokenizer = train_offline_tokenizer(list(training_texts), vocab_size=model_args.tokenizer_vocab_size)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    if tokenizer.pad_token is None:
        # Padding positions are masked out of attention and loss, so reusing EOS as pad changes nothing.
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None) is None:
        raise RecipeArgumentError(
            f"the tokenizer of {model_args.tokenizer_name or model_args.model_name_or_path!r} has no chat template; "
            "GSM8K formatting needs one (use an instruction-tuned model's tokenizer)."
        )
    return tokenizer


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
        RecipeArgumentError: a config override that is not a field of the architecture's config.

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
        raise RecipeArgumentError(
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
