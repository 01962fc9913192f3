"""Run every recipe's command line, small, one after another in this process (for the determinism test).

    python tests/e2e/scripts/recipe_runs.py --out OUT --scramble 123 [--only gsm8k_finetune ...]

Each recipe runs exactly as from its command line (``runpy`` with ``sys.argv`` set, ``__name__ ==
"__main__"``), writing to ``OUT/<recipe>``; a non-zero exit stops the script with that status. One process
for all recipes saves a Python + transformers start-up per recipe (seconds each on a small CPU).

Before each recipe the global RNGs (``random``, NumPy, torch) are set from ``--scramble``: the test runs this
script twice with different ``--scramble`` values and different ``PYTHONHASHSEED``, so a recipe that draws
from an RNG it did not seed itself, or depends on set/dict-of-hash ordering, produces different files. (A
fresh Python process always starts torch's RNG from the same default seed, so two plain separate runs would
not catch an unseeded draw.)
"""

from __future__ import annotations

import argparse
import random
import runpy
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
TINY_GSM8K = ["--config", "recipes/configs/gsm8k_tiny_offline.yaml", "--max_train_samples", "8",
              "--max_eval_samples", "4", "--generation_eval_samples", "2", "--max_new_tokens", "8",
              "--logging_steps", "1", "--save_strategy", "no"]  # fmt: skip


def recipes(out: Path) -> dict[str, tuple[str, list[str]]]:
    """Recipe name -> (script, argv): every recipe, each as small as its options allow (the TRL one when trl
    is installed)."""
    import importlib.util

    trl = {}
    if importlib.util.find_spec("trl") is not None:
        trl["gsm8k_sft_trl"] = (
            "recipes/gsm8k_sft_trl.py",
            ["--config", "recipes/configs/gsm8k_sft_trl_tiny.yaml", *TINY_GSM8K[2:],
             "--output_dir", str(out / "gsm8k_sft_trl")],
        )  # fmt: skip
    return {
        "gsm8k_finetune": (
            "recipes/gsm8k_finetune.py",
            [*TINY_GSM8K, "--output_dir", str(out / "gsm8k_finetune")],
        ),
        "gsm8k_evaluate": (
            "recipes/gsm8k_evaluate.py",
            [
                "--model_path",
                str(out / "gsm8k_finetune"),
                "--config",
                "recipes/configs/gsm8k_tiny_offline.yaml",
                "--max_eval_samples",
                "4",
                "--generation_eval_samples",
                "2",
                "--max_new_tokens",
                "8",
                "--output_file",
                str(out / "gsm8k_evaluate" / "report.json"),
            ],
        ),  # fmt: skip
        "gsm8k_compare": (
            "recipes/gsm8k_compare.py",
            [
                *TINY_GSM8K,
                "--output_dir",
                str(out / "gsm8k_compare"),
                "--generation_eval_samples",
                "0",
                "--arms",
                "adamw_torch",
                "superpositional_adamw:quantum_weight=0.5,n_qubits=4",
            ],
        ),  # fmt: skip
        "compare_optimizers_tiny": (
            "recipes/compare_optimizers_tiny.py",
            [
                "--output_dir",
                str(out / "compare_optimizers_tiny"),
                "--max_steps",
                "3",
                "--logging_steps",
                "1",
                "--max_length",
                "96",
                "--batch_size",
                "4",
                "--arms",
                "adamw_torch,superpositional_adamw:quantum_weight=0.5",
            ],
        ),  # fmt: skip
        "text_classification": (
            "recipes/text_classification.py",
            [
                "--output_dir",
                str(out / "text_classification"),
                "--arms",
                "adamw",
                "sgd_lambda_0.5",
                "--num_seeds",
                "1",
                "--num_epochs",
                "2",
                "--num_train",
                "64",
                "--num_test",
                "32",
                "--batch_size",
                "16",
                "--num_workers",
                "1",
            ],
        ),  # fmt: skip
    } | trl


def scramble(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(script: str, argv: list[str]) -> int:
    saved = sys.argv, list(sys.path)
    sys.argv = [script, *argv]
    sys.path.insert(0, str((REPO / script).parent))
    try:
        runpy.run_path(str(REPO / script), run_name="__main__")
    except SystemExit as done:
        return 0 if done.code in (None, 0) else (done.code if isinstance(done.code, int) else 1)
    finally:
        sys.argv, sys.path[:] = saved[0], saved[1]
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--scramble", type=int, required=True, help="seed of the global RNGs before each recipe"
    )
    parser.add_argument("--only", nargs="*", default=None, help="recipe names (default: all)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    table = recipes(out)
    for offset, name in enumerate(args.only or list(table)):
        script, argv = table[name]
        scramble(args.scramble * 1000 + offset)
        start = time.perf_counter()
        status = run(script, argv)
        print(f"recipe_runs: {name} took {time.perf_counter() - start:.1f} s", file=sys.stderr)
        if status != 0:
            print(f"recipe_runs: {name} exited with status {status}", file=sys.stderr)
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
