"""The environment for tests that start Python subprocesses (recipes, ``accelerate launch``, torchrun)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def repo_env(**overrides: str) -> dict[str, str]:
    """``os.environ`` with the repository prepended to ``PYTHONPATH``, then ``overrides``.

    Prepending (not replacing) keeps what the caller's ``PYTHONPATH`` already holds (e.g. packages installed
    with ``pip --target``), and the repository entry makes ``hf_superpositional`` importable in the child
    whether or not the package was installed with ``pip install -e .``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env
