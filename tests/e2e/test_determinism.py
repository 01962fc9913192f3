"""Determinism: the same seed gives bit-identical runs on CPU, for every recipe.

``test_every_recipe_is_bit_identical_across_runs[<recipe>]`` (slow): ``tests/e2e/scripts/recipe_runs.py``
runs every recipe's command line, small, in one process (``gsm8k_finetune``, ``gsm8k_evaluate`` on its
output, ``gsm8k_compare``, ``compare_optimizers_tiny``, ``text_classification``); the test runs it twice at
once, with different ``PYTHONHASHSEED`` and with the global RNGs (``random``, NumPy, torch) set to different
values before each recipe. Every weight file (``*.safetensors``) and every generation file (``*.jsonl``,
tokenizer files) must be byte-identical between the two, and every JSON result (losses, grad norms,
learning rates, evaluation losses, accuracies, curves) equal once wall-clock fields, paths and versions
are dropped. A recipe that drew from an RNG it did not seed, or depended on hash ordering, would fail.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from tests.subprocess_env import REPO, repo_env

SCRIPTS = REPO / "tests" / "e2e" / "scripts"
RECIPES = [
    "gsm8k_finetune",
    "gsm8k_evaluate",
    "gsm8k_compare",
    "compare_optimizers_tiny",
    "text_classification",
    pytest.param(
        "gsm8k_sft_trl",
        marks=pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed"),
    ),
]
BYTE_EQUAL = (".safetensors", ".jsonl")
WRITES_WEIGHTS = ("gsm8k_finetune", "gsm8k_compare", "gsm8k_sft_trl")
# Keys whose values are wall-clock measurements, locations or environment descriptions, not results.
VOLATILE_KEY = re.compile(
    r"runtime|per_second|seconds|time|date|output_dir|path|_file$|cpu|wall|platform|version|verdict", re.I
)


def _normalise(value, root: str):
    if isinstance(value, dict):
        return {k: _normalise(v, root) for k, v in value.items() if not VOLATILE_KEY.search(k)}
    if isinstance(value, list):
        return [_normalise(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<OUT>")
    return value


def _numbers(value) -> int:
    if isinstance(value, dict):
        return sum(_numbers(v) for v in value.values())
    if isinstance(value, list):
        return sum(_numbers(v) for v in value)
    return int(isinstance(value, float))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    procs = []
    for run, hash_seed in (("a", "1"), ("b", "2")):
        env = repo_env(PYTHONHASHSEED=hash_seed, HF_HUB_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")  # fmt: skip
        cmd = [
            sys.executable,
            str(SCRIPTS / "recipe_runs.py"),
            "--out",
            str(root / run),
            "--scramble",
            hash_seed,
        ]
        procs.append(
            subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-5000:]
    return root / "a", root / "b"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_is_bit_identical_across_runs(two_runs, recipe):
    a, b = (run / recipe for run in two_runs)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    compared_bytes = compared_numbers = 0
    for rel in files_a:
        name = rel.name
        if name.endswith(BYTE_EQUAL) or name.startswith("tokenizer"):
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{recipe}: {rel} differs"
            compared_bytes += (a / rel).stat().st_size
        elif name.endswith(".json"):
            left = _normalise(json.loads((a / rel).read_text()), str(two_runs[0]))
            right = _normalise(json.loads((b / rel).read_text()), str(two_runs[1]))
            assert left == right, f"{recipe}: {rel} differs"
            compared_numbers += _numbers(left)
    assert compared_numbers > 0  # losses / accuracies were really compared
    if recipe in WRITES_WEIGHTS:
        assert any(rel.name == "model.safetensors" for rel in files_a) and compared_bytes > 0
