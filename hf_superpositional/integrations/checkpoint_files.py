"""Reading a checkpoint's files without trusting them: complete headers, checksums, finite values.

:mod:`.checkpoint` decides whether a folder can be resumed; this module holds the file-level checks it (and
``SuperpositionalTrainer`` when it writes a checkpoint) relies on:

- :func:`safetensors_shapes`, :func:`check_zip`, :func:`read_json`: a file cut short or corrupt raises
  :class:`CheckpointError` naming it, instead of failing deep inside ``safetensors`` / ``torch.load``;
- :func:`write_checksums` / :func:`verify_checksums`: the SHA-256 of every weight and state file, recorded in
  :data:`CHECKSUMS_FILE` when the checkpoint is written and compared on resume (a size-preserving corruption
  of ``model.safetensors`` passes every header check; ``optimizer.pt``'s zip CRC covers only that file);
- :func:`non_finite_tensors`: NaN/inf in saved weights or optimizer state (a diverged run must not resume as
  if nothing happened).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKSUMS_FILE",
    "CheckpointError",
    "check_zip",
    "checksummed_files",
    "non_finite_tensors",
    "read_json",
    "safetensors_shapes",
    "verify_checksums",
    "write_checksums",
]

CHECKSUMS_FILE = "checksums.sha256"
"""Written into each checkpoint by ``SuperpositionalTrainer``, in ``sha256sum`` format (``sha256sum -c`` checks it)."""

# Weights and training state; JSON files (trainer_state.json, configs) are left out: people and tools edit them.
_CHECKSUMMED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed without losing or silently changing something.

    The message names the offending file and what is wrong with it.
    """


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a ``.safetensors`` header, after checking the file is complete.

    Format: an 8-byte little-endian header length, a JSON header mapping names to dtype, shape and
    ``data_offsets``, then the data buffer, which must be exactly as long as the offsets say.

    Raises:
        CheckpointError: the file is shorter or longer than its header says, or the header is not JSON.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw_length = handle.read(8)
        if len(raw_length) < 8:
            raise CheckpointError(f"{path}: truncated ({size} bytes, shorter than a safetensors header).")
        header_length = int.from_bytes(raw_length, "little")
        if 8 + header_length > size:
            raise CheckpointError(
                f"{path}: truncated: the safetensors header announces {header_length} bytes but the file holds "
                f"{size} bytes in all."
            )
        try:
            header = json.loads(handle.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path}: corrupt safetensors header ({error}).") from None
    header.pop("__metadata__", None)
    data_end = max((int(entry["data_offsets"][1]) for entry in header.values()), default=0)
    if 8 + header_length + data_end != size:
        raise CheckpointError(
            f"{path}: truncated or corrupt: its header describes {8 + header_length + data_end} bytes, the file "
            f"holds {size}."
        )
    return {name: tuple(int(s) for s in entry["shape"]) for name, entry in header.items()}


def check_zip(path: Path) -> None:
    """``torch.save`` files are zip archives: a file cut short loses its central directory, a corrupt one fails CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CheckpointError(f"{path}: cannot be read ({error}); the file is truncated or corrupt.") from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt (CRC mismatch in member {bad!r}).")


def read_json(path: Path) -> Any:
    """Parse a JSON file, or raise :class:`CheckpointError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); the file is truncated or corrupt.") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def checksummed_files(folder: Path) -> list[str]:
    """The files of ``folder`` (recursively, relative POSIX paths) whose checksums :func:`write_checksums` records."""
    folder = Path(folder)
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in _CHECKSUMMED_SUFFIXES and p.name != CHECKSUMS_FILE
    )


def write_checksums(folder: Path) -> Path:
    """Record the SHA-256 of the weight and state files of a just-written checkpoint in :data:`CHECKSUMS_FILE`.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "optimizer.pt").write_bytes(b"state")
        >>> print(write_checksums(folder).read_text(), end="")
        4ba69735ca53765ed6a709edb56c6ea236b7193a3b29a6b390c346f0f4340e4e  optimizer.pt
    """
    folder = Path(folder)
    lines = [f"{_sha256(folder / name)}  {name}\n" for name in checksummed_files(folder)]
    path = folder / CHECKSUMS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)  # never a half-written checksum file
    return path


def verify_checksums(folder: Path) -> list[str] | None:
    """Compare the files of a checkpoint with the checksums recorded when it was written.

    Returns:
        The files checked, or ``None`` when the folder has no :data:`CHECKSUMS_FILE` (a checkpoint written by
        the stock ``Trainer``).

    Raises:
        CheckpointError: a recorded file is missing or its content changed since (naming it).
    """
    folder = Path(folder)
    record = folder / CHECKSUMS_FILE
    if not record.is_file():
        return None
    checked = []
    for line_number, line in enumerate(record.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        if len(expected) != 64 or not name:
            raise CheckpointError(f"{record}:{line_number}: not a '<sha256>  <file>' line; the file is corrupt.")
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing, but {record} lists it: the checkpoint is incomplete.")
        found = _sha256(path)
        if found != expected:
            raise CheckpointError(
                f"{path}: its SHA-256 ({found[:12]}...) differs from the one recorded in {record.name} when the "
                f"checkpoint was written ({expected[:12]}...): the file changed since (disk corruption or a partial "
                "copy). Resume from another checkpoint."
            )
        checked.append(name)
    return checked


def _tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                yield key, handle.get_tensor(key)
    else:
        yield from torch.load(path, map_location="cpu", weights_only=True, mmap=True).items()


def non_finite_tensors(files: Iterable[Path] = (), state: Mapping[Any, Any] | None = None) -> list[str]:
    """Names of floating-point tensors holding NaN or inf, in weight files and/or an optimizer ``state``.

    Args:
        files: ``.safetensors`` or ``torch.save`` weight files (read one tensor at a time).
        state: an optimizer state dict's ``"state"`` (``{param_id: {"exp_avg": ..., ...}}``).

    Example:
        >>> non_finite_tensors(state={0: {"exp_avg": torch.tensor([1.0, float("nan")]), "step": torch.tensor(3.0)}})
        ['state[0].exp_avg']
    """
    bad = []
    for path in files:
        for key, tensor in _tensors(Path(path)):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad.append(f"{Path(path).name}:{key}")
    for param_id, entry in (state or {}).items():
        for key, tensor in entry.items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad.append(f"state[{param_id}].{key}")
    return bad
