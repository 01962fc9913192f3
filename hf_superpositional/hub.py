"""Pushing a trained model to the Hugging Face Hub: its model card, the exact upload, and loading it back.

- :class:`RecipeTrainer`: :class:`~hf_superpositional.trainer.SuperpositionalTrainer` whose
  ``create_model_card`` (called by ``Trainer.push_to_hub``) also records the base model, the dataset, the
  optimizer and every hyper-parameter it ran with, the quantum-attention configuration, LoRA settings and
  the results; next to a PEFT adapter it saves the quantum-attention configuration
  (:data:`QUANTUM_ADAPTER_CONFIG_NAME`) so the adapter can be loaded back onto a freshly patched base.
- :func:`files_to_upload` / :func:`stage_upload_folder`: the files ``Trainer.push_to_hub`` uploads from its
  ``output_dir`` (same ignore patterns, same filter as ``huggingface_hub.HfApi.upload_folder``), listed or
  copied to a folder: a dry run of the push, offline.
- :func:`load_trained_model`: load a pushed (or local) full model or adapter with quantum attention.

Example:
    >>> import hf_superpositional
    >>> from hf_superpositional.hub import ModelCardInfo, RecipeTrainer
    >>> trainer = RecipeTrainer(model=model, args=args, train_dataset=ds,  # doctest: +SKIP
    ...     model_card_info=ModelCardInfo(base_model="meta-llama/Llama-3.2-1B-Instruct", dataset="openai/gsm8k"))
    >>> trainer.train(); trainer.push_to_hub()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .integration import is_superpositional_optim
from .naming import QUANTUM_CONFIG_KEY
from .trainer import SuperpositionalTrainer, _unwrap_optimizer

__all__ = [
    "CARD_BEGIN",
    "CARD_END",
    "QUANTUM_ADAPTER_CONFIG_NAME",
    "TRAINER_PUSH_IGNORE_PATTERNS",
    "ModelCardInfo",
    "RecipeTrainer",
    "files_to_upload",
    "load_trained_model",
    "render_model_card_section",
    "stage_upload_folder",
    "training_details",
    "update_model_card",
]

QUANTUM_ADAPTER_CONFIG_NAME = f"{QUANTUM_CONFIG_KEY}.json"
"""File next to a PEFT adapter holding the base model's ``QuantumAttentionConfig`` (the adapter's circuits
replace the base's, so the base must be patched the same way before the adapter is loaded)."""

TRAINER_PUSH_IGNORE_PATTERNS = ("_*", "checkpoint-*")
"""What ``Trainer.push_to_hub`` leaves out of ``output_dir`` (transformers 5.23: ``["_*", "checkpoint-*"]``)."""

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


def _hub_id(name: str | None) -> bool:
    """Whether ``name`` can be a Hub repository id (and is not a local path)."""
    if not name or Path(name).exists():
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _base_model(model: Any) -> Any:
    get_base = getattr(model, "get_base_model", None)  # PeftModel
    return get_base() if callable(get_base) else model


def _peft_config(model: Any) -> dict[str, Any] | None:
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    config = configs.get(getattr(model, "active_adapter", "default")) or next(iter(configs.values()))
    keep = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save")
    out = {}
    for key in keep:
        value = getattr(config, key, None)
        if isinstance(value, (set, frozenset)):
            value = sorted(value)
        out[key] = str(getattr(value, "value", value)) if key == "peft_type" else value
    return out


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
    from .attention.patch import get_quantum_attention_config
    from .optim.args import parse_optim_args

    args = trainer.args
    optim = str(getattr(args.optim, "value", args.optim))
    optimizer: dict[str, Any] = {"optim": optim}
    built = _unwrap_optimizer(trainer.optimizer) if trainer.optimizer is not None else None
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
        config = get_quantum_attention_config(_base_model(trainer.model))
        quantum = None if config is None else config.to_dict()
    lora = _peft_config(trainer.model) if trainer.model is not None else None
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
            "from hf_superpositional.hub import load_trained_model",
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
    if _hub_id(info.base_model):
        data.base_model = info.base_model
    elif data.get("base_model") is not None:
        data.base_model = None  # not a Hub repository: the Hub would reject the card
    if _hub_id(info.dataset):
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


class RecipeTrainer(SuperpositionalTrainer):
    """``SuperpositionalTrainer`` that writes a complete model card and keeps adapters loadable.

    On top of :class:`~hf_superpositional.trainer.SuperpositionalTrainer`:

    - ``create_model_card`` (which ``push_to_hub`` calls before uploading) adds :func:`render_model_card_section`
      built from ``model_card_info`` and :func:`training_details`;
    - saving a PEFT model also writes :data:`QUANTUM_ADAPTER_CONFIG_NAME` next to the adapter when the base
      model has quantum attention (checkpoints included), which :func:`load_trained_model` reads.

    Args:
        *args: as for ``SuperpositionalTrainer``.
        model_card_info: a :class:`ModelCardInfo`; its ``results`` can be filled in after evaluation, before
            ``push_to_hub`` / ``create_model_card``.
        **kwargs: as for ``SuperpositionalTrainer``.

    Example:
        >>> trainer = RecipeTrainer(model=model, args=args, train_dataset=ds,  # doctest: +SKIP
        ...                         model_card_info=ModelCardInfo(dataset="openai/gsm8k"))
    """

    def __init__(self, *args: Any, model_card_info: ModelCardInfo | None = None, **kwargs: Any) -> None:
        self.model_card_info = model_card_info
        super().__init__(*args, **kwargs)

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """``SuperpositionalTrainer.create_model_card``, then this package's section and metadata."""
        info = self.model_card_info
        if info is not None:
            # Only Hub ids go into the Trainer's metadata: the Hub rejects a `base_model` that is no repo.
            if _hub_id(info.base_model):
                kwargs.setdefault("finetuned_from", info.base_model)
            if _hub_id(info.dataset) and "dataset" not in kwargs:
                kwargs.setdefault("dataset_tags", info.dataset)
                kwargs["dataset"] = info.dataset
                if info.dataset_config:
                    kwargs.setdefault("dataset_args", info.dataset_config)
        super().create_model_card(*args, **kwargs)
        if not self.is_world_process_zero():
            return
        info = info or ModelCardInfo()
        repo_id = getattr(self, "hub_model_id", None) or self.args.hub_model_id
        update_model_card(
            Path(self.args.output_dir) / "README.md",
            info,
            training_details(self),
            repo_id,
            self._model_tags(),
        )

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        from .attention.patch import get_quantum_attention_config

        model = self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model
        if getattr(model, "peft_config", None) is None:
            return  # a full model: config.json already carries the quantum configuration
        folder = Path(output_dir if output_dir is not None else self.args.output_dir)
        config = get_quantum_attention_config(_base_model(model))
        if config is not None:
            (folder / QUANTUM_ADAPTER_CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        _relative_base_path(folder)


def _relative_base_path(folder: Path) -> None:
    # A base model saved inside the run's folder (a LoRA run on a model built from a config) is recorded by
    # its absolute path while training; the saved adapter gets a path relative to itself, so the folder stays
    # loadable once moved or pushed (load_trained_model resolves it against the adapter folder).
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        return
    data = json.loads(config_file.read_text())
    base = data.get("base_model_name_or_path")
    if not base or not Path(base).is_absolute() or not Path(base).is_dir():
        return
    relative = Path(os.path.relpath(base, folder.resolve()))
    if not relative.as_posix().startswith("../../"):
        data["base_model_name_or_path"] = relative.as_posix()
        config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def files_to_upload(
    folder: str | Path,
    ignore_patterns: tuple[str, ...] | list[str] | None = TRAINER_PUSH_IGNORE_PATTERNS,
    allow_patterns: list[str] | None = None,
) -> list[str]:
    """The files (relative POSIX paths, sorted) that ``HfApi.upload_folder`` would upload from ``folder``.

    Uses huggingface_hub's own filter (``filter_repo_objects``) and default ignore patterns (``.git``,
    ``.cache/huggingface``) plus ``ignore_patterns``; the default is what ``Trainer.push_to_hub`` passes, so
    this lists exactly what a push of the Trainer's ``output_dir`` sends.

    Example:
        >>> files_to_upload("outputs/gsm8k_tiny")  # doctest: +SKIP
        ['README.md', 'config.json', 'model.safetensors', ...]
    """
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"folder to upload not found: {root}")
    relpaths = [p.relative_to(root).as_posix() for p in sorted(root.glob("**/*")) if p.is_file()]
    ignore = list(ignore_patterns or []) + list(DEFAULT_IGNORE_PATTERNS)
    return sorted(filter_repo_objects(relpaths, allow_patterns=allow_patterns, ignore_patterns=ignore))


def stage_upload_folder(
    folder: str | Path,
    destination: str | Path,
    ignore_patterns: tuple[str, ...] | list[str] | None = TRAINER_PUSH_IGNORE_PATTERNS,
) -> Path:
    """Copy the files :func:`files_to_upload` lists into ``destination``: the repository a push would create.

    ``destination`` must not exist yet (so nothing stale mixes in). Loading from it with
    :func:`load_trained_model` checks what a user would download, offline.

    Returns:
        ``destination``.
    """
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"destination already exists: {destination}")
    root = Path(folder).expanduser().resolve()
    for relpath in files_to_upload(root, ignore_patterns):
        target = destination / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relpath, target)
    return destination


def load_trained_model(path: str | Path, **from_pretrained_kwargs: Any):
    """Load a model this package trained, full or PEFT adapter, with its quantum attention.

    - A full model (``config.json``): ``AutoModelForCausalLM.from_pretrained``; the quantum configuration in
      ``config.json`` restores the circuits (``import hf_superpositional`` installs the loading hooks).
    - A PEFT adapter (``adapter_config.json``): the base model named in the adapter config (a path relative to
      the adapter folder is resolved against it), patched with :data:`QUANTUM_ADAPTER_CONFIG_NAME` when
      present, then the adapter (with its trained circuits) on top.

    Args:
        path: a local folder, or a Hub repository id (downloaded with ``snapshot_download``).
        **from_pretrained_kwargs: passed to ``from_pretrained`` of the (base) model (e.g. ``dtype``).

    Returns:
        The model in eval mode.

    Example:
        >>> model = load_trained_model("outputs/gsm8k_tiny")  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM

    folder = Path(path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(path)))
    if not (folder / "adapter_config.json").is_file():
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder} holds neither a model (config.json) nor an adapter (adapter_config.json)"
            )
        return AutoModelForCausalLM.from_pretrained(folder, **from_pretrained_kwargs).eval()

    from peft import PeftConfig, PeftModel

    from .attention.config import QuantumAttentionConfig
    from .attention.patch import apply_quantum_attention

    peft_config = PeftConfig.from_pretrained(folder)
    base_ref = peft_config.base_model_name_or_path
    if not base_ref:
        raise ValueError(
            f"{folder}/adapter_config.json names no base_model_name_or_path; cannot load the base model"
        )
    base_path = folder / base_ref if (folder / base_ref).is_dir() else base_ref
    base = AutoModelForCausalLM.from_pretrained(base_path, **from_pretrained_kwargs)
    quantum_file = folder / QUANTUM_ADAPTER_CONFIG_NAME
    if quantum_file.is_file():
        # Same config as the base was patched with in training: a no-op if the saved base already carries it.
        apply_quantum_attention(base, QuantumAttentionConfig.from_dict(json.loads(quantum_file.read_text())))
    return PeftModel.from_pretrained(base, folder).eval()
