"""Arguments of the GSM8K scripts: dataclasses with help text and validation (``HfArgumentParser`` reads them).

``recipes/gsm8k_finetune.py``, ``gsm8k_evaluate.py`` and ``gsm8k_compare.py`` read the same dataclasses:

- :class:`ModelArguments`: a pretrained model (Hub id or folder) or one built from a config, its tokenizer
  (or one trained offline), quantum attention on/off, LoRA;
- :class:`DataArguments`: GSM8K from the Hub (``openai/gsm8k``, config ``main``), a local JSONL or the sample
  bundled in the package; context length and sample caps;
- :class:`GenerationEvalArguments`: the greedy generation-based evaluation;
- :class:`EvaluationArguments`, :class:`CompareArguments`: what the evaluation and comparison scripts read;
- plus :class:`~hf_superpositional.attention.config.QuantumAttentionConfig` and ``transformers.TrainingArguments``.

Invalid values raise :class:`~hf_superpositional.integrations.transformers.ArgumentsError` naming the field;
:func:`hf_superpositional.cli.parse_args_and_config` reads them from YAML and the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._utils import parse_key_value_pairs
from ...attention import SUPPORTED_MODEL_TYPES
from ...integrations.model_card import is_hub_id
from ...integrations.transformers import ArgumentsError
from .data import ASSISTANT_MASK_MODES, BUNDLED_SOURCE, load_gsm8k

__all__ = [
    "DTYPES",
    "CompareArguments",
    "DataArguments",
    "EvaluationArguments",
    "GenerationEvalArguments",
    "ModelArguments",
    "arm_name",
    "check_model_path",
    "parse_arm",
    "parse_config_overrides",
]

DTYPES = ("float32", "bfloat16", "float16", "auto")
"""``dtype`` choices for loading pretrained weights."""

MODEL_TYPES = tuple(SUPPORTED_MODEL_TYPES)
"""The architectures a ``model_type`` build may use: those quantum attention can patch."""


def _positive_or_none(name: str, value: Any, minimum: int = 1) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ArgumentsError(f"`{name}` must be None or an integer >= {minimum}, got {value!r}.")


def parse_config_overrides(overrides: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parse ``"hidden_size=64,num_hidden_layers=2"`` (or a mapping from YAML) into a dict.

    Values in the string form are read as ``true``/``false``, integers, floats, or strings, in that order.

    Raises:
        ArgumentsError: a piece without exactly one ``=``, an empty key, or a repeated key.

    Example:
        >>> parse_config_overrides("hidden_size=64,tie_word_embeddings=true,rope_theta=1e4")
        {'hidden_size': 64, 'tie_word_embeddings': True, 'rope_theta': 10000.0}
    """
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return {str(k): v for k, v in overrides.items()}
    if not isinstance(overrides, str):
        raise ArgumentsError(
            f"`config_overrides` must be 'key=value,key=value' or a mapping, got {type(overrides).__name__}."
        )
    try:
        pieces = parse_key_value_pairs(overrides, "`config_overrides`")
    except ValueError as error:
        raise ArgumentsError(str(error)) from None
    return {key: _literal(raw) for key, raw in pieces.items()}


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
            raise ArgumentsError(
                "give exactly one of `model_name_or_path` (a pretrained model) and `model_type` (build from a "
                f"config; one of {list(MODEL_TYPES)}), got model_name_or_path={self.model_name_or_path!r}, "
                f"model_type={self.model_type!r}."
            )
        if self.model_type is not None and self.model_type not in MODEL_TYPES:
            raise ArgumentsError(
                f"`model_type` must be one of {list(MODEL_TYPES)}, got {self.model_type!r}."
            )
        self.config_overrides = parse_config_overrides(self.config_overrides) or None
        if self.config_overrides and self.model_name_or_path is not None:
            raise ArgumentsError(
                "`config_overrides` only applies to `model_type` builds; a pretrained model keeps its config."
            )
        if self.train_tokenizer and self.model_name_or_path is not None:
            raise ArgumentsError(
                "`train_tokenizer` only applies to `model_type` builds: a pretrained model needs its own tokenizer."
            )
        if self.model_type is not None and not self.train_tokenizer and self.tokenizer_name is None:
            raise ArgumentsError(
                "a `model_type` build needs a tokenizer: set `train_tokenizer: true` or `tokenizer_name`."
            )
        if (
            isinstance(self.tokenizer_vocab_size, bool)
            or not isinstance(self.tokenizer_vocab_size, int)
            or (self.tokenizer_vocab_size < 300)
        ):
            raise ArgumentsError(
                f"`tokenizer_vocab_size` must be an integer >= 300, got {self.tokenizer_vocab_size!r}."
            )
        if self.dtype not in DTYPES:
            raise ArgumentsError(f"`dtype` must be one of {list(DTYPES)}, got {self.dtype!r}.")
        _positive_or_none("lora_r", self.lora_r)
        if not self.lora_alpha > 0:
            raise ArgumentsError(f"`lora_alpha` must be > 0, got {self.lora_alpha!r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ArgumentsError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout!r}.")
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [self.lora_target_modules]
        if not self.lora_target_modules:
            raise ArgumentsError("`lora_target_modules` must name at least one module.")

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
            "choices": list(ASSISTANT_MASK_MODES),
        },
    )

    def __post_init__(self):
        if not isinstance(self.dataset_name, str) or not self.dataset_name.strip():
            raise ArgumentsError(
                f"`dataset_name` must be a Hub id or {BUNDLED_SOURCE!r}, got {self.dataset_name!r}."
            )
        _positive_or_none("max_length", self.max_length, minimum=8)
        if self.max_length is None:
            raise ArgumentsError("`max_length` must be an integer >= 8, got None.")
        _positive_or_none("max_train_samples", self.max_train_samples)
        _positive_or_none("max_eval_samples", self.max_eval_samples)
        if self.assistant_mask not in ASSISTANT_MASK_MODES:
            raise ArgumentsError(
                f"`assistant_mask` must be one of {list(ASSISTANT_MASK_MODES)}, got {self.assistant_mask!r}."
            )

    def load_rows(self, which: str) -> list[dict[str, str]]:
        """The training (``which="train"``) or evaluation (``"eval"``) rows these arguments select.

        One place for the source, split, local file and row limit of each side, so the fine-tuning and
        evaluation recipes cannot read different data for the same arguments.

        Example:
            >>> len(DataArguments(dataset_name="bundled", max_eval_samples=3).load_rows("eval"))
            3
        """
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
        if self.dataset_name == BUNDLED_SOURCE:
            return "openai/gsm8k"
        return self.dataset_name

    @property
    def card_dataset_note(self) -> str | None:
        """How the training data was cut, for the model card (``None`` for a whole Hub split)."""
        notes = []
        if self.train_file is None and self.dataset_name == BUNDLED_SOURCE:
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
            raise ArgumentsError("`generation_batch_size` and `max_new_tokens` must be integers >= 1.")


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
            raise ArgumentsError(
                "`model_path` is required: the folder or Hub id of the model to evaluate."
            )
        _positive_or_none("loss_batch_size", self.loss_batch_size)
        if self.loss_batch_size is None:
            raise ArgumentsError("`loss_batch_size` must be an integer >= 1.")


@dataclass
class CompareArguments:
    """The optimizer arms of ``recipes/gsm8k_compare.py`` (paper Table I: AdamW, lambda=0.1, lambda=0.5).

    Args:
        arms: each ``optim`` or ``optim:optim_args`` (e.g. ``superpositional_adamw:quantum_weight=0.5,n_qubits=4``).
            Every arm trains from the same seed, data and schedule; only the optimizer differs.

    Example:
        >>> CompareArguments().parsed_arms()[0]
        ('adamw_torch', None)
        >>> arm_name(*CompareArguments().parsed_arms()[2])
        'superpositional_adamw-quantum_weight0.5-n_qubits4'
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
            raise ArgumentsError("`arms` must list at least one optimizer.")
        names = [arm_name(*arm) for arm in self.parsed_arms()]
        if len(set(names)) != len(names):
            raise ArgumentsError(f"`arms` repeats an arm: {self.arms}.")

    def parsed_arms(self) -> list[tuple[str, str | None]]:
        """``(optim, optim_args or None)`` per arm (:func:`parse_arm`)."""
        return [parse_arm(spec) for spec in self.arms]


def parse_arm(spec: str) -> tuple[str, str | None]:
    """``"optim"`` or ``"optim:optim_args"`` as ``(optim, optim_args or None)``.

    Raises:
        ArgumentsError: the spec names no optimizer.

    Example:
        >>> parse_arm("superpositional_adamw:quantum_weight=0.5,n_qubits=4")
        ('superpositional_adamw', 'quantum_weight=0.5,n_qubits=4')
    """
    optim, _, optim_args = str(spec).partition(":")
    if not optim.strip():
        raise ArgumentsError(f"`arms`: {spec!r} names no optimizer.")
    return optim.strip(), optim_args.strip() or None


def arm_name(optim: str, optim_args: str | None) -> str:
    """A folder-safe name of an arm: ``adamw_torch``, ``superpositional_adamw-quantum_weight0.5-n_qubits4``.

    Example:
        >>> arm_name("superpositional_adamw", "quantum_weight=0.1")
        'superpositional_adamw-quantum_weight0.1'
    """
    if not optim_args:
        return optim
    return optim + "-" + optim_args.replace("=", "").replace(",", "-")


def check_model_path(model_path: str) -> None:
    """Reject a ``model_path`` that is neither an existing local path nor shaped like a Hub id.

    A missing folder such as ``outputs/run/checkpoint-10`` or ``/data/model`` cannot be a Hub id
    (``name`` or ``namespace/name``), and huggingface_hub would otherwise answer with an unrelated
    "Repo id must be in the form ..." error.

    Args:
        model_path: the folder or Hub id to load.

    Raises:
        ArgumentsError: the path does not exist and cannot be a Hub id.

    Example:
        >>> check_model_path("meta-llama/Llama-3.2-1B-Instruct")  # Hub-id shaped: left to the loader
        >>> check_model_path("/no/such/folder")
        Traceback (most recent call last):
        ...
        hf_superpositional.integrations.transformers.ArgumentsError: `model_path` '/no/such/folder' not found (neither a local folder nor a Hub id).
    """
    if not Path(model_path).exists() and not is_hub_id(model_path):
        raise ArgumentsError(f"`model_path` {model_path!r} not found (neither a local folder nor a Hub id).")
