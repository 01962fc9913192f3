"""Pushing a trained model to the Hugging Face Hub, exactly, and loading it back.

- :func:`files_to_upload` / :func:`stage_upload_folder`: the files ``Trainer.push_to_hub`` uploads from its
  ``output_dir`` (same ignore patterns, same filter as ``huggingface_hub.HfApi.upload_folder``), listed or
  copied to a folder: a dry run of the push, offline;
- :func:`load_trained_model`: load a pushed (or local) full model or adapter with its quantum attention.

The model card that goes with the push is :mod:`.model_card`'s.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .peft import load_quantum_adapter

__all__ = ["TRAINER_PUSH_IGNORE_PATTERNS", "files_to_upload", "load_trained_model", "stage_upload_folder"]

TRAINER_PUSH_IGNORE_PATTERNS = ("_*", "checkpoint-*")
"""What ``Trainer.push_to_hub`` leaves out of ``output_dir`` (``["_*", "checkpoint-*"]`` in the tested transformers,
``TESTED_TRANSFORMERS_VERSION``)."""


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
    - A PEFT adapter (``adapter_config.json``): :func:`~hf_superpositional.integrations.peft.load_quantum_adapter`,
      the base model patched as in training with the adapter (and its trained circuits) on top.

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
        with _naming_the_registration():
            return AutoModelForCausalLM.from_pretrained(folder, **from_pretrained_kwargs).eval()

    with _naming_the_registration():
        return load_quantum_adapter(folder, **from_pretrained_kwargs).eval()


class _naming_the_registration:
    """transformers' "attn_implementation='quantum' is not supported" means the registration was undone: say so."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        text = str(error) if error is not None else ""
        if isinstance(error, ValueError) and "quantum" in text and "not supported" in text:
            raise ValueError(
                f"{text.splitlines()[0]} -- the quantum attention is not registered in this process: "
                "`import hf_superpositional` registers it (after unregister_quantum_attention(), call "
                "hf_superpositional.register_quantum_attention() and install_loading_hooks())."
            ) from error
        return False
