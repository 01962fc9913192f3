"""The model card of a model trained with this package: what it was trained on, how, and how to load it.

``SuperpositionalTrainer.create_model_card`` (which ``Trainer.push_to_hub`` calls before uploading) adds
this package's section to transformers' card: the base model and dataset (:class:`ModelCardInfo`), the
optimizer with every hyper-parameter it ran with, the schedule and precision, the quantum-attention
configuration, LoRA settings, results and a loading snippet (:func:`training_details`,
:func:`render_model_card_section`, :func:`update_model_card`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._utils import unwrap_optimizer
from ..attention import get_quantum_attention_config
from ..optim.args import parse_optim_args
from .peft import base_model_of, lora_settings
from .transformers import is_superpositional_optim

__all__ = [
    "CARD_BEGIN",
    "CARD_END",
    "ModelCardInfo",
    "is_hub_id",
    "render_model_card_section",
    "training_details",
    "update_model_card",
]

CARD_BEGIN = "<!-- hf_superpositional:begin -->"
CARD_END = "<!-- hf_superpositional:end -->"
"""Markers around this package's section of a model card, so rewriting it replaces rather than repeats it."""

_PAPER = "Superpositional Gradient Descent: Harnessing Quantum Principles for Model Training (IEEE QAI 2025)"


@dataclass
class ModelCardInfo:
    """What a training script knows that the Trainer does not: written into the model card.

    Args:
        base_model: Hub id (or description) of the model fine-tuned.
        dataset: Hub id (or description) of the training data (e.g. ``openai/gsm8k``).
        dataset_note: how the data was cut, shown next to the dataset (e.g. "bundled sample: first 1,000").
        dataset_config: the dataset's config (GSM8K: ``main``).
        train_split: the split trained on.
        max_length: context length in tokens.
        results: metric name -> value (e.g. ``eval_loss``, ``gsm8k_accuracy_strict``); filled after evaluation.
        tags: extra model-card tags (e.g. ``["gsm8k", "math"]``).
        notes: free text appended to the section (e.g. data formatting).

    Example:
        >>> info = ModelCardInfo(base_model="meta-llama/Llama-3.2-1B-Instruct", dataset="openai/gsm8k")
        >>> info.results["eval_loss"] = 0.21
    """

    base_model: str | None = None
    dataset: str | None = None
    dataset_note: str | None = None
    dataset_config: str | None = None
    train_split: str | None = None
    max_length: int | None = None
    results: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    notes: str | None = None


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` can be a Hub repository id (and is not a local path)."""
    if not name or Path(name).exists():
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return str(getattr(value, "value", value))


def training_details(trainer: Any) -> dict[str, Any]:
    """Optimizer, schedule, precision, quantum attention and LoRA of a Trainer, for the model card.

    The optimizer's hyper-parameters are read from the optimizer the Trainer built (its ``defaults``: every
    value it ran with, ``quantum_weight`` and ``n_qubits`` included) when there is one, else from
    ``TrainingArguments`` and ``optim_args``.

    Returns:
        ``{"optimizer": {...}, "training": {...}, "quantum_attention": {...} | None, "lora": {...} | None}``.
    """
    args = trainer.args
    optim = str(getattr(args.optim, "value", args.optim))
    optimizer: dict[str, Any] = {"optim": optim}
    built = unwrap_optimizer(trainer.optimizer) if trainer.optimizer is not None else None
    if built is not None:
        optimizer["class"] = type(built).__name__
        keys = ("lr", "betas", "eps", "weight_decay", "quantum_weight", "n_qubits", "mode", "scope")
        optimizer.update({k: _jsonable(built.defaults[k]) for k in keys if k in built.defaults})
    else:
        optimizer.update(
            lr=args.learning_rate,
            betas=[args.adam_beta1, args.adam_beta2],
            eps=args.adam_epsilon,
            weight_decay=args.weight_decay,
        )
        if is_superpositional_optim(args.optim):
            optimizer.update({k: _jsonable(v) for k, v in parse_optim_args(args.optim_args).items()})
    if args.optim_args:
        optimizer["optim_args"] = args.optim_args
    world = max(1, getattr(args, "world_size", 1))
    training = {
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_steps": args.warmup_steps,
        "max_grad_norm": args.max_grad_norm,
        "num_train_epochs": args.num_train_epochs,
        "max_steps": args.max_steps,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world,
        "mixed_precision": "fp16" if args.fp16 else "bf16" if args.bf16 else "no",
        "seed": args.seed,
    }
    if getattr(trainer, "state", None) is not None and trainer.state.global_step:
        training["global_step"] = trainer.state.global_step
    quantum = None
    if trainer.model is not None:
        config = get_quantum_attention_config(base_model_of(trainer.model))
        quantum = None if config is None else config.to_dict()
    lora = lora_settings(trainer.model) if trainer.model is not None else None
    return {"optimizer": optimizer, "training": training, "quantum_attention": quantum, "lora": lora}


def _table(rows: dict[str, Any], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    for key, value in rows.items():
        shown = f"{value:.6g}" if isinstance(value, float) else value
        lines.append(f"| {key} | `{shown}` |")
    return "\n".join(lines)


def render_model_card_section(
    info: ModelCardInfo, details: dict[str, Any], repo_id: str | None = None
) -> str:
    """This package's model-card section (markdown between :data:`CARD_BEGIN` and :data:`CARD_END`).

    Args:
        info: what the training script knows (base model, dataset, results).
        details: :func:`training_details` of the Trainer.
        repo_id: the Hub repository, for the loading snippet (default: a placeholder).

    Example:
        >>> text = render_model_card_section(ModelCardInfo(base_model="m", dataset="openai/gsm8k"),
        ...     {"optimizer": {"optim": "adamw_torch", "lr": 2e-5}, "training": {}, "quantum_attention": None,
        ...      "lora": None})
        >>> "| lr | `2e-05` |" in text
        True
    """
    repo = repo_id or "<user>/<repo>"
    optimizer = details["optimizer"]
    quantum = details.get("quantum_attention")
    lora = details.get("lora")
    superpositional = is_superpositional_optim(optimizer.get("optim"))
    parts = [CARD_BEGIN, "## Superpositional Gradient Descent fine-tune", ""]
    parts.append(f"Trained with `hf_superpositional` (paper: *{_PAPER}*).")
    parts.append("")
    dataset = f"`{info.dataset}`" if info.dataset else "unknown"
    if info.dataset_config:
        dataset += f" (config `{info.dataset_config}`"
        dataset += f", split `{info.train_split}`)" if info.train_split else ")"
    if info.dataset_note:
        dataset += f"; {info.dataset_note}"
    parts += [
        f"- **Base model:** `{info.base_model}`" if info.base_model else "- **Base model:** unknown",
        f"- **Dataset:** {dataset}",
    ]
    if info.max_length:
        parts.append(f"- **Context length:** {info.max_length} tokens")
    name = optimizer.get("class", optimizer.get("optim"))
    kind = "Superpositional Gradient Descent" if superpositional else "baseline"
    parts += [f"- **Optimizer:** `{optimizer.get('optim')}` ({name}; {kind})", ""]
    parts += [
        "### Optimizer hyper-parameters",
        "",
        _table({k: v for k, v in optimizer.items() if k != "optim"}, ("hyper-parameter", "value")),
        "",
    ]
    if details.get("training"):
        parts += ["### Training", "", _table(details["training"], ("setting", "value")), ""]
    parts += ["### Quantum attention", ""]
    if quantum is None:
        parts += ["Not used: the model has stock attention.", ""]
    else:
        parts += [
            "Every patched attention layer adds `gate * Phi(score)` to its logits, `Phi` being the readout of a "
            "parameterised circuit (paper eq. 3-5); the circuit parameters are part of the weights.",
            "",
            _table(quantum, ("field", "value")),
            "",
        ]
    if lora is not None:
        parts += ["### LoRA", "", _table(lora, ("field", "value")), ""]
    parts += ["### Results", ""]
    if info.results:
        parts += [_table(dict(info.results), ("metric", "value")), ""]
    else:
        parts += ["No evaluation recorded.", ""]
    if info.notes:
        parts += [info.notes, ""]
    parts += ["### Loading", "", "```python"]
    if lora is not None:
        parts += [
            "import hf_superpositional  # registers quantum attention and restores the circuits on load",
            "from hf_superpositional import load_trained_model",
            f'model = load_trained_model("{repo}")  # base model, patched, plus this adapter',
        ]
    else:
        parts += [
            "import hf_superpositional  # registers quantum attention and restores the circuits on load",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'model = AutoModelForCausalLM.from_pretrained("{repo}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
        ]
    parts += ["```"]
    if quantum is not None:
        parts += [
            "",
            "Without `import hf_superpositional`, loading fails with "
            '`attn_implementation="quantum" is not supported`: the circuits are never silently dropped.',
        ]
    parts.append(CARD_END)
    return "\n".join(parts)


def update_model_card(
    path: str | Path,
    info: ModelCardInfo,
    details: dict[str, Any],
    repo_id: str | None = None,
    extra_tags: list[str] | None = None,
) -> Path:
    """Add (or replace) this package's section and metadata in the model card at ``path``.

    The metadata gains ``base_model`` (when it is a Hub id), ``datasets``, ``tags`` (``info.tags`` and
    ``extra_tags``) and ``pipeline_tag``; the section goes right after the card's first heading. A card that
    does not exist yet is created.

    Returns:
        ``path``.
    """
    from huggingface_hub import ModelCard, ModelCardData

    path = Path(path)
    card = ModelCard.load(path) if path.is_file() else ModelCard(f"---\n{ModelCardData().to_yaml()}\n---\n")
    data = card.data
    if is_hub_id(info.base_model):
        data.base_model = info.base_model
    elif data.get("base_model") is not None:
        data.base_model = None  # not a Hub repository: the Hub would reject the card
    if is_hub_id(info.dataset):
        datasets = list(data.datasets or [])
        if info.dataset not in datasets:
            datasets.append(info.dataset)
        data.datasets = datasets
    # PEFT tags an adapter "base_model:adapter:<base>"; with a local base that is left empty and meaningless.
    tags = [tag for tag in data.tags or [] if tag != "base_model:adapter:"]
    for tag in ["hf_superpositional", *(extra_tags or []), *info.tags]:
        if tag not in tags:
            tags.append(tag)
    data.tags = tags
    data.pipeline_tag = data.pipeline_tag or "text-generation"
    if data.library_name is None:
        data.library_name = "peft" if details.get("lora") else "transformers"

    section = render_model_card_section(info, details, repo_id)
    text = card.text
    if CARD_BEGIN in text and CARD_END in text:
        before, _, rest = text.partition(CARD_BEGIN)
        _, _, after = rest.partition(CARD_END)
        text = before + section + after
    else:
        lines = text.splitlines()
        heading = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
        if heading is None:
            text = section + "\n\n" + text
        else:
            text = "\n".join(lines[: heading + 1] + ["", section, ""] + lines[heading + 1 :])
    card.text = text
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path
