#!/usr/bin/env python
"""The definitive study (``make study``): settle each of the paper's claims, and show where the effect begins.

Runs, on the text-classification task of ``recipes/text_classification.py`` and a tiny-Llama analogue of
the paper's GSM8K run, one pool of single-threaded worker processes through:

1. a calibration of the task's training-set size so that AdamW lands near the paper's Adam (91.5%), far
   below the task's Bayes-optimal accuracy (AdamW only, seeds of its own);
2. a pilot whose spread sizes the study: seeds for 80% power against each of the paper's effects;
3. the main comparison (AdamW vs Superpositional GD λ=0.5) at that many seeds, the {eager, quantum} x
   {AdamW, λ=0.5} attention ablation, the dose-response sweep (λ x scope x mode against AdamW, x-axis the
   optimizer's measured perturbation-to-update ratio) and the GSM8K analogue (AdamW vs λ=0.1 / 0.5);

then writes ``verdicts.json`` (every claim's verdict with the per-seed values behind it), ``study.md``,
``dose_response.png``, ``learning_curves.png`` and ``gsm8k_loss_curves.png`` to ``--output_dir`` and prints
the verdict table. The machinery lives in :mod:`hf_superpositional.reproduction` (``study``,
``study_report``, ``verdicts``, ``statistics``, ``classification``, ``gsm8k_analogue``, ``runs``).

    python recipes/study.py                        # the default study: recipes/configs/study.yaml, ~20 min on 2 cores
    python recipes/study.py --quick                # the tests' preset: recipes/configs/study_quick.yaml, seconds
    python recipes/study.py --max_seeds 40 --output_dir outputs/study40   # flags override the YAML
    python recipes/study.py --reanalyse outputs/study/verdicts.json --output_dir outputs/study   # re-report, no training
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hf_superpositional.reproduction.classification import ClassificationSetup
from hf_superpositional.reproduction.study import StudyArguments

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIGS / "study.yaml"
QUICK_CONFIG = CONFIGS / "study_quick.yaml"


def parse_arguments(argv: list[str] | None = None, prog: str = "study.py") -> tuple[ClassificationSetup, StudyArguments]:
    """The YAML (``--config``; ``--quick`` for the small preset), then command-line flags on top.

    Raises:
        ValueError: (an ``ArgumentsError``) a bad config file, key or value, or ``--quick`` with ``--config``.
    """
    from hf_superpositional.cli import ArgumentsError, parse_args_and_config

    argv = list(sys.argv[1:] if argv is None else argv)
    default = DEFAULT_CONFIG
    if "--quick" in argv:
        if any(arg == "--config" or arg.startswith("--config=") for arg in argv):
            raise ArgumentsError("--quick selects its own config file; give either --quick or --config, not both.")
        argv.remove("--quick")
        default = QUICK_CONFIG
    return parse_args_and_config((ClassificationSetup, StudyArguments), argv, prog=prog, default_config=default)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input)."""
    import warnings

    prog = "study.py"
    try:
        setup, study = parse_arguments(argv, prog=prog)
    except ValueError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    from hf_superpositional.reproduction.runs import RunPool, cpu_seconds
    from hf_superpositional.reproduction.study import analyse, load_study, run_study
    from hf_superpositional.reproduction.study_report import verdict_table, write_study

    warnings.filterwarnings("ignore", category=UserWarning)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    if study.reanalyse:
        try:
            raw, recorded = load_study(study.reanalyse)
        except (ValueError, FileNotFoundError) as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2
        results = analyse(raw)
        paths = write_study(raw, results, study.output_dir, recorded["wall_seconds"], recorded["cpu_seconds"], recorded)
    else:
        with RunPool(setup.num_workers, setup.torch_threads) as pool:
            raw = run_study(setup, study, pool, log=lambda line: print(line, flush=True))
        results = analyse(raw)
        paths = write_study(raw, results, study.output_dir, time.perf_counter() - start, cpu_seconds() - cpu_start)
    print("\n" + verdict_table(results["claims"]) + "\n")
    for claim in results["claims"]:
        print(f"{claim['key']}: {claim['sentence']}")
    print(f"\nwrote {', '.join(paths.values())}")
    if study.reanalyse:
        print(f"re-analysed {study.reanalyse} (its study took {recorded['wall_seconds'] / 60:.1f} min of wall time)")
    else:
        print(f"wall time {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
