"""The model card of a model trained with this package: what it was trained on, how, and how to load it.

``SuperpositionalTrainer.create_model_card`` (which ``Trainer.push_to_hub`` calls before uploading) adds
this package's section to transformers' card: what the model is (fine-tuned from a base model, or trained from
scratch from a config, with that config), its data (:class:`ModelCardInfo`), the optimizer with every
hyper-parameter it ran with, the schedule and the precision that actually ran (fp16 requested on a CPU trains in
float32, and the card says so), the quantum-attention configuration, LoRA settings, results and how to load it,
with and without importing the package (:func:`training_details`, :func:`render_model_card_section`,
:func:`update_model_card`). Like TRL's cards, the section is rendered from a template file
(``templates/model_card_section.md.jinja``); this module only gathers the values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
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
    "model_details",
    "precision_that_ran",
    "render_model_card_section",
    "training_details",
    "update_model_card",
]

CARD_BEGIN = "<!-- hf_superpositional:begin -->"
CARD_END = "<!-- hf_superpositional:end -->"
"""Markers around this package's section of a model card, so rewriting it replaces rather than repeats it."""

_PAPER = "Superpositional Gradient Descent: Harnessing Quantum Principles for Model Training (IEEE QAI 2025)"
# What transformers' card (empty name) and TRL's (None) write for a model built from a config, never loaded: they
# would call a model trained from scratch a fine-tune of nothing.
_EMPTY_FINETUNE = re.compile(r"This model is a fine-tuned version of \[(?:None)?\]\(https://huggingface\.co/(?:None)?\)")
_FROM_SCRATCH = "This model was trained from scratch"
# Config fields shown for a model trained from scratch (those the architecture has).
_CONFIG_FIELDS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "rope_theta",
    "hidden_act",
    "tie_word_embeddings",
    "attention_dropout",
)


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


def precision_that_ran(trainer: Any) -> dict[str, str]:
    """The mixed precision a Trainer asked for and the one its accelerator actually runs.

    ``fp16=True`` on a CPU gets no fp16 autocast (accelerate enables it on accelerators only), so the model
    trains in its parameters' dtype; under DeepSpeed the precision is DeepSpeed's (``fp16`` / ``bf16`` in its
    config) and the weights themselves are half precision.

    Returns:
        ``{"requested": "fp16" | "bf16" | "no", "ran": ..., "parameters": "float32" | ...}``.
    """
    args = trainer.args
    requested = "fp16" if args.fp16 else "bf16" if args.bf16 else "no"
    accelerator = getattr(trainer, "accelerator", None)
    ran = requested
    if accelerator is not None:
        if getattr(trainer, "is_deepspeed_enabled", False):
            config = getattr(accelerator.state.deepspeed_plugin, "deepspeed_config", {}) or {}
            enabled = [k for k in ("fp16", "bf16") if str((config.get(k) or {}).get("enabled", False)).lower() == "true"]
            ran = f"{enabled[0]} (DeepSpeed)" if enabled else "no"
        else:
            ran = str(accelerator.mixed_precision) if accelerator.native_amp else "no"
    parameters = next((str(p.dtype).removeprefix("torch.") for p in trainer.model.parameters()), "unknown")
    return {"requested": requested, "ran": ran, "parameters": parameters}


def model_details(model: Any) -> dict[str, Any]:
    """What the model is, for the card: trained from scratch or not, architecture, configuration, size.

    A model built from a config (``from_config`` or its constructor) has an empty ``config._name_or_path``;
    one loaded with ``from_pretrained`` records where it came from. Only the former is "trained from scratch".

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> details = model_details(LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, vocab_size=32)))
        >>> details["from_scratch"], details["architecture"], details["config"]["hidden_size"]
        (True, 'LlamaForCausalLM', 16)
    """
    base = base_model_of(model)
    config = getattr(base, "config", None)
    if config is None:
        return {"from_scratch": False, "architecture": type(base).__name__, "model_type": None, "config": None}
    shown = {key: _jsonable(getattr(config, key)) for key in _CONFIG_FIELDS if getattr(config, key, None) is not None}
    shown["parameters"] = sum(p.numel() for p in base.parameters())
    return {
        "from_scratch": not getattr(config, "_name_or_path", ""),
        "architecture": type(base).__name__,
        "model_type": getattr(config, "model_type", None),
        "config": shown,
    }


def training_details(trainer: Any) -> dict[str, Any]:
    """Model, optimizer, schedule, precision, quantum attention and LoRA of a Trainer, for the model card.

    The optimizer's hyper-parameters are read from the optimizer the Trainer built (its ``defaults``: every
    value it ran with, ``quantum_weight`` and ``n_qubits`` included) when there is one, else from
    ``TrainingArguments`` and ``optim_args``. The precision is the one that ran (:func:`precision_that_ran`).

    Returns:
        ``{"model": {...}, "optimizer": {...}, "training": {...}, "quantum_attention": {...} | None,
        "lora": {...} | None}``.
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
    precision = precision_that_ran(trainer) if trainer.model is not None else None
    training = {
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_steps": args.warmup_steps,
        "max_grad_norm": args.max_grad_norm,
        "num_train_epochs": args.num_train_epochs,
        "max_steps": args.max_steps,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world,
        "mixed_precision": precision["ran"] if precision else ("fp16" if args.fp16 else "bf16" if args.bf16 else "no"),
        "seed": args.seed,
    }
    if precision is not None:
        if precision["requested"] != precision["ran"]:
            training["mixed_precision_requested"] = precision["requested"]
        training["parameter_dtype"] = precision["parameters"]
    if world > 1:
        training["processes"] = world
    if getattr(trainer, "state", None) is not None and trainer.state.global_step:
        training["global_step"] = trainer.state.global_step
    quantum = None
    if trainer.model is not None:
        config = get_quantum_attention_config(base_model_of(trainer.model))
        quantum = None if config is None else config.to_dict()
    lora = lora_settings(trainer.model) if trainer.model is not None else None
    model = model_details(trainer.model) if trainer.model is not None else None
    return {"model": model, "optimizer": optimizer, "training": training, "quantum_attention": quantum, "lora": lora}


def _shown(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _precision_note(training: dict[str, Any]) -> str:
    ran = training.get("mixed_precision")
    text = "float32 (no mixed precision)" if ran == "no" else f"`{ran}` mixed precision"
    requested = training.get("mixed_precision_requested")
    if requested is not None:
        text += (
            f"; `{requested}` was requested, but this run's device has no {requested} autocast, "
            f"so it trained in {training.get('parameter_dtype', 'its parameter dtype')}"
            if ran == "no"
            else f"; `{requested}` was requested"
        )
    if training.get("parameter_dtype"):
        text += f"; parameters `{training['parameter_dtype']}`"
    return text


def render_model_card_section(
    info: ModelCardInfo, details: dict[str, Any], repo_id: str | None = None
) -> str:
    """This package's model-card section (markdown between :data:`CARD_BEGIN` and :data:`CARD_END`).

    Rendered from ``templates/model_card_section.md.jinja`` (the way TRL renders its cards).

    Args:
        info: what the training script knows (base model, dataset, results).
        details: :func:`training_details` of the Trainer.
        repo_id: the Hub repository, for the loading snippet (default: a placeholder).

    Example:
        >>> text = render_model_card_section(ModelCardInfo(base_model="m", dataset="openai/gsm8k"),
        ...     {"optimizer": {"optim": "adamw_torch", "lr": 2e-5}, "training": {}, "quantum_attention": None,
        ...      "lora": None})
        >>> "| lr | `2e-05` |" in text, "- **Base model:** `m`" in text
        (True, True)
    """
    import jinja2

    optimizer = details["optimizer"]
    dataset = f"`{info.dataset}`" if info.dataset else "unknown"
    if info.dataset_config:
        dataset += f" (config `{info.dataset_config}`"
        dataset += f", split `{info.train_split}`)" if info.train_split else ")"
    if info.dataset_note:
        dataset += f"; {info.dataset_note}"
    model = details.get("model") or {"from_scratch": False, "architecture": None, "model_type": None, "config": None}
    training = details.get("training") or {}
    environment = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, undefined=jinja2.StrictUndefined
    )
    environment.filters["shown"] = _shown
    source = (resources.files(__package__) / "templates" / "model_card_section.md.jinja").read_text(encoding="utf-8")
    text = environment.from_string(source).render(
        begin=CARD_BEGIN,
        end=CARD_END,
        paper=_PAPER,
        info=info,
        model=model,
        dataset=dataset,
        optimizer=optimizer,
        optimizer_rows={k: v for k, v in optimizer.items() if k != "optim"},
        superpositional=is_superpositional_optim(optimizer.get("optim")),
        training=training,
        precision_note=_precision_note(training),
        quantum=details.get("quantum_attention"),
        lora=details.get("lora"),
        repo=repo_id or "<user>/<repo>",
    )
    return text.strip("\n")


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
    does not exist yet is created. For a model trained from scratch, transformers' sentence calling it "a
    fine-tuned version of []" (what it writes for a model built from a config) becomes "trained from scratch".

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
        datasets = [data.datasets] if isinstance(data.datasets, str) else list(data.datasets or [])  # TRL: a str
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
    if (details.get("model") or {}).get("from_scratch"):
        text = _EMPTY_FINETUNE.sub(_FROM_SCRATCH, text)
    card.text = text
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path
