#!/usr/bin/env python
"""The paper's text-classification experiment (Table II, Fig. 1): four optimizers x seeds, offline, on a CPU.

A Llama-architecture classifier of the paper's size (64-d embeddings, 4 heads, feed-forward 128, 2 layers,
dropout 0.1) with quantum attention (4 qubits, depth 2, gate 1.0, trained from scratch) learns the seeded
synthetic task of :mod:`hf_superpositional.tasks.direction` (which way a text is written: unsolvable from token
counts). Each arm trains through the plugin's own path -- ``SuperpositionalTrainer`` with
``TrainingArguments(optim=...)`` from the paper preset -- once per seed, with the same data, data order and
initial weights per seed across arms; held-out accuracy is measured after every epoch. The machinery lives in
:mod:`hf_superpositional.reproduction.classification` (one run), ``.runs`` (many, over worker processes) and
``.reporting`` (statistics, table, plot); ``recipes/study.py`` builds the full study on the same pieces.

    python recipes/text_classification.py                                 # defaults: the YAML beside this file
    python recipes/text_classification.py --num_seeds 3 --num_epochs 20   # CLI flags override the YAML
    python recipes/text_classification.py --attention eager              # classical-attention ablation
    python recipes/text_classification.py --config my.yaml --output_dir outputs/tc2

Writes ``results.json`` (every curve, the statistics and the verdict), ``table.md`` and ``curves.png`` to
``--output_dir`` and prints the table and a one-line verdict. Runs (arm, seed) are spread over
``--num_workers`` processes of ``--torch_threads`` threads each: for a model this small, one thread per
process and one process per core is the fastest use of a CPU; every arm then runs under the same load, so
the time ratios stay fair.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from hf_superpositional.reproduction.classification import (
    DEMO_ARMS,
    TextClassificationArguments,
    comparison_results,
    train_classifier,
)

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "text_classification.yaml"


def parse_arguments(
    argv: list[str] | None = None, prog: str = "text_classification.py"
) -> TextClassificationArguments:
    """YAML defaults (``--config``, default: the file beside this script), then CLI flags on top.

    Raises:
        ValueError: (a ``ArgumentsError``) a missing or malformed YAML file, an unknown key in it (named,
            with close matches), or an invalid value. Unknown or abbreviated flags exit with status 2.
    """
    from hf_superpositional.cli import parse_args_and_config

    (arguments,) = parse_args_and_config(
        (TextClassificationArguments,), argv, prog=prog, default_config=DEFAULT_CONFIG
    )
    return arguments


def run_all(arguments: TextClassificationArguments) -> list[dict]:
    """Every (arm, seed), seed-major so that parallel workers run different arms side by side."""
    from hf_superpositional.reproduction.runs import Job, RunPool

    jobs = [
        Job(train_classifier, (arguments, DEMO_ARMS[arm], seed), epochs=arguments.num_epochs)
        for seed in arguments.seeds
        for arm in arguments.arms
    ]
    with RunPool(arguments.num_workers, arguments.torch_threads) as pool:
        return pool.run(jobs, desc="runs (arm x seed)")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input, 1 if a run gave no accuracy)."""
    import warnings

    prog = "text_classification.py"
    try:
        arguments = parse_arguments(argv, prog=prog)
    except ValueError as error:
        # Bad flags, config file or values: one clear line, not a traceback.
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    from hf_superpositional.reproduction.reporting import write_report
    from hf_superpositional.reproduction.runs import cpu_seconds

    warnings.filterwarnings("ignore", category=UserWarning)  # the fp16-needs-CUDA preset note, once per run
    start, cpu_start = time.perf_counter(), cpu_seconds()
    runs = run_all(arguments)
    results = comparison_results(arguments, runs, time.perf_counter() - start, cpu_seconds() - cpu_start)
    report = write_report(results, arguments.output_dir)
    print("\n" + report["table"] + "\n")
    print(results["notes"] + "\n")
    print(report["verdict"])
    print(f"\nwrote {', '.join(report['paths'].values())}")
    finals = [acc for run in runs for acc in run["eval_accuracy"][-1:]]
    if not finals or any(not math.isfinite(acc) for acc in finals):
        print("a run produced no finite held-out accuracy", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
