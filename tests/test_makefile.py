"""The Makefile's choice of Python environment (README "Set-up on a fresh machine"), read from ``make -n``.

Without an active virtualenv or conda environment (other than ``base``) the two README commands must create a
project-local ``.venv`` from the ``python3`` on PATH and install into it, since a stock Debian/Ubuntu ``python3``
refuses ``pip install`` (PEP 668); inside an active environment they install there. Either way torch stays
pinned, so a CPU machine never downloads the CUDA build. (That the whole install and suite then work with the
system ``python3`` on a fresh clone was measured by hand; the README gives the times.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.subprocess_env import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(target: str, **env_vars: str) -> list[str]:
    # Nothing of an enclosing make (the suite itself may run under `make test`) or of the caller's environment
    # choice may leak in: make reads its variables from the environment.
    ignored = {"VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHON", "VENV", "TORCH_VERSION"}
    ignored |= {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS"}
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env.update(env_vars)
    command = ["make", "--no-print-directory", "-n", "-B", target]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def pip_installs(lines: list[str]) -> list[str]:
    return [line for line in lines if " -m pip install " in line]


@pytest.mark.parametrize(
    "env_vars",
    [{}, {"CONDA_PREFIX": "/opt/conda", "CONDA_DEFAULT_ENV": "base"}],
    ids=["no-environment", "conda-base"],
)
def test_without_an_active_environment_a_project_venv_is_created_and_used(env_vars):
    lines = dry_run("install", **env_vars)
    assert any(re.search(r"python3? -m venv \.venv\b", line) for line in lines), lines
    installs = pip_installs(lines)
    assert installs and all(line.startswith(str(REPO / ".venv" / "bin" / "python")) for line in installs), installs
    assert all('"torch==2.13.0"' in line for line in installs)


@pytest.mark.parametrize(
    "env_vars",
    [{"VIRTUAL_ENV": "/opt/some-venv"}, {"CONDA_PREFIX": "/opt/conda/envs/work", "CONDA_DEFAULT_ENV": "work"}],
    ids=["virtualenv", "conda-env"],
)
def test_an_active_environment_is_used_as_it_is(env_vars):
    lines = dry_run("install", **env_vars)
    assert not any(" -m venv " in line for line in lines), lines
    installs = pip_installs(lines)
    assert installs and all(line.startswith("python3 -m pip install") for line in installs), installs
    assert all('"torch==2.13.0"' in line for line in installs)


def test_the_readme_commands_install_first_and_test_runs_pytest():
    for target in ("test", "demo"):
        lines = dry_run(target)
        first_run = next(i for i, line in enumerate(lines) if "pytest" in line or "text_classification.py" in line)
        assert pip_installs(lines[:first_run]), lines  # install comes before the job
    assert any(re.search(r"\.venv/bin/python -m pytest", line) for line in dry_run("test"))
