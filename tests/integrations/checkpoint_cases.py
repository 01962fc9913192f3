"""A small training script's checkpoints and ways to damage files, shared by the checkpoint tests."""

from __future__ import annotations

from pathlib import Path

from tests.subprocess_env import REPO

SCRIPTS = REPO / "tests" / "e2e" / "scripts"


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
