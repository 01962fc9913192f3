"""Tables, plots and a one-line verdict for optimizer comparisons over seeds (paper Table II, Fig. 1).

The statistics themselves (intervals, tests) are in :mod:`hf_superpositional.reproduction.statistics`.

Pure functions on a *results dict*, so a finished run can be re-reported, and tests can feed fixed numbers:

.. code-block:: python

    {
      "threshold": 0.9,              # accuracy for "epochs to threshold"
      "num_epochs": 10,
      "baseline": "adamw",           # arm every other arm is compared with
      "primary": "sgd_lambda_0.5",   # the paper's method: the arm the verdict is about
      "arms": [
        {"name": "adamw", "label": "AdamW",
         "paper": {"final_accuracy": 0.915, "epochs_to_threshold": 7.4, "time_ratio": 1.0},   # optional
         "runs": [{"seed": 0, "eval_accuracy": [0.61, ..., 0.95],   # held-out accuracy after each epoch
                   "epoch_seconds": [3.1, ..., 3.0]}, ...]},        # training seconds of each epoch
        ...
      ],
      "time_key": "epoch_seconds",   # optional: which per-run list holds the epoch times
    }

What is computed per arm (:func:`summarize`):

- final held-out accuracy (last epoch): mean, sample standard deviation (``ddof=1``) and a 95% Student-t
  interval over seeds, ``mean +- t_{0.975, n-1} * std / sqrt(n)``;
- epochs to the threshold: the first epoch (1-based) whose held-out accuracy is ``>= threshold``; the mean
  over the seeds that reach it, and how many do;
- training seconds per epoch (each run's median over its epochs, from its ``time_key`` list, then the mean
  over seeds), and its ratio to the baseline's;
- against the baseline: the difference of mean final accuracies and a Welch t-test
  (``scipy.stats.ttest_ind(equal_var=False)``) of the per-seed final accuracies; for epochs to the threshold
  a Welch t-test on per-seed epochs with seeds that never reach it counted as ``num_epochs + 1`` (a lower
  bound, which favours neither arm when both reach it equally rarely).

Example:
    >>> results = {"threshold": 0.9, "num_epochs": 2, "baseline": "a", "primary": "b", "arms": [
    ...     {"name": "a", "runs": [{"seed": s, "eval_accuracy": [0.8, 0.9 + s / 100],
    ...                              "epoch_seconds": [1.0, 1.0]} for s in range(3)]},
    ...     {"name": "b", "runs": [{"seed": s, "eval_accuracy": [0.9, 0.93 + s / 100],
    ...                              "epoch_seconds": [1.2, 1.2]} for s in range(3)]}]}
    >>> summary = summarize(results)
    >>> round(summary["arms"]["b"]["final_accuracy_mean"], 4), summary["arms"]["b"]["epochs_to_threshold_mean"]
    (0.94, 1.0)
    >>> round(summary["arms"]["b"]["time_ratio"], 2)
    1.2
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .statistics import epochs_to_threshold, mean_std, t_interval, welch_test
from .verdicts import Claim, evaluate_claim

__all__ = [
    "finite_or_none",
    "format_table",
    "plot_curves",
    "plot_loss_curves",
    "summarize",
    "verdict",
    "write_report",
]

# ---- summary ----------------------------------------------------------------------------------------------


def _check_results(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    for key in ("threshold", "baseline", "arms"):
        if key not in results:
            raise ValueError(f"`results` lacks the key {key!r}; it needs 'threshold', 'baseline' and 'arms'.")
    arms = {arm["name"]: arm for arm in results["arms"]}
    if len(arms) != len(results["arms"]):
        raise ValueError("`results['arms']` repeats an arm name.")
    for name in (results["baseline"], results.get("primary")):
        if name is not None and name not in arms:
            raise ValueError(f"arm {name!r} named in `results` is not one of the arms {sorted(arms)}.")
    for arm in arms.values():
        if not arm.get("runs"):
            raise ValueError(f"arm {arm['name']!r} has no runs.")
        lengths = {len(run["eval_accuracy"]) for run in arm["runs"]}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"arm {arm['name']!r}: every run needs the same, non-zero number of epochs.")
    return arms


def _censored_epochs(arm: dict[str, Any], threshold: float, num_epochs: int) -> list[float]:
    # A seed that never reaches the threshold counts as one epoch past the budget: a lower bound, so the
    # test cannot make a never-converging arm look fast.
    return [
        float(epochs_to_threshold(run["eval_accuracy"], threshold) or num_epochs + 1) for run in arm["runs"]
    ]


def _arm_stats(arm: dict[str, Any], threshold: float, time_key: str) -> dict[str, Any]:
    finals = [float(run["eval_accuracy"][-1]) for run in arm["runs"]]
    mean, std = mean_std(finals)
    low, high = t_interval(finals)
    reached = [e for e in (epochs_to_threshold(run["eval_accuracy"], threshold) for run in arm["runs"]) if e]
    # Per run the median epoch: robust to the first epoch's one-off start-up costs (lazy initialisation in a
    # fresh worker process falls on whichever arm it runs first) and to load spikes; then the mean over seeds.
    seconds = [float(np.median(run[time_key])) for run in arm["runs"] if run.get(time_key)]
    curves = np.asarray([run["eval_accuracy"] for run in arm["runs"]], dtype=float)
    return {
        "label": arm.get("label", arm["name"]),
        "num_seeds": len(finals),
        "seeds": [run.get("seed") for run in arm["runs"]],
        "final_accuracies": finals,
        "final_accuracy_mean": mean,
        "final_accuracy_std": std,
        "final_accuracy_ci95": [low, high],
        "epochs_to_threshold": [epochs_to_threshold(run["eval_accuracy"], threshold) for run in arm["runs"]],
        "epochs_to_threshold_mean": float(np.mean(reached)) if reached else None,
        "seeds_reaching_threshold": len(reached),
        "epoch_seconds_mean": float(np.mean(seconds)) if seconds else None,
        "mean_curve": curves.mean(axis=0).tolist(),
    }


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Per-arm statistics and comparisons with the baseline arm (see the module docstring).

    Args:
        results: the results dict described in the module docstring.

    Returns:
        ``{"threshold", "baseline", "primary", "num_epochs", "arms": {name: stats}}`` where ``stats`` has
        ``final_accuracy_mean/std/ci95``, ``epochs_to_threshold`` (per seed) and ``_mean``,
        ``seeds_reaching_threshold``, ``epoch_seconds_mean``, ``time_ratio``, ``time_to_threshold_ratio``,
        ``delta_vs_baseline``, ``welch_t``, ``welch_p``, ``epochs_welch_p`` and ``mean_curve``.

    Raises:
        ValueError: a malformed results dict (missing keys, unknown baseline, runs of unequal length).
    """
    arms = _check_results(results)
    threshold = float(results["threshold"])
    num_epochs = int(results.get("num_epochs") or len(next(iter(arms.values()))["runs"][0]["eval_accuracy"]))
    baseline_name = results["baseline"]
    time_key = results.get("time_key", "epoch_seconds")
    stats = {name: _arm_stats(arm, threshold, time_key) for name, arm in arms.items()}
    base = stats[baseline_name]
    base_censored = _censored_epochs(arms[baseline_name], threshold, num_epochs)
    for name, arm_stats in stats.items():
        t, p = welch_test(arm_stats["final_accuracies"], base["final_accuracies"])
        _, epochs_p = welch_test(_censored_epochs(arms[name], threshold, num_epochs), base_censored)
        time_ratio = None
        if arm_stats["epoch_seconds_mean"] and base["epoch_seconds_mean"]:
            time_ratio = arm_stats["epoch_seconds_mean"] / base["epoch_seconds_mean"]
        time_to_threshold_ratio = None
        if (
            time_ratio is not None
            and arm_stats["epochs_to_threshold_mean"] is not None
            and base["epochs_to_threshold_mean"] is not None
        ):
            time_to_threshold_ratio = (
                time_ratio * arm_stats["epochs_to_threshold_mean"] / base["epochs_to_threshold_mean"]
            )
        arm_stats.update(
            delta_vs_baseline=arm_stats["final_accuracy_mean"] - base["final_accuracy_mean"],
            welch_t=t,
            welch_p=p,
            epochs_welch_p=epochs_p,
            time_ratio=time_ratio,
            time_to_threshold_ratio=time_to_threshold_ratio,
            paper=arms[name].get("paper"),
        )
    return {
        "threshold": threshold,
        "num_epochs": num_epochs,
        "baseline": baseline_name,
        "primary": results.get("primary"),
        "arms": stats,
    }


# ---- text -------------------------------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100.0 * value:.{digits}f}"


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, fmt)


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _paper_cell(paper: dict[str, Any] | None, key: str, kind: str) -> str:
    if not paper or paper.get(key) is None:
        return "—"
    value = paper[key]
    if kind == "acc":
        std = paper.get("final_accuracy_std")
        return _pct(value) + (f" ± {_pct(std)}" if std is not None else "")
    if kind == "ratio":
        return f"×{value:.2f}"
    return f"{value:g}"


def format_table(summary: dict[str, Any]) -> str:
    """The comparison as a Markdown table, our numbers with the paper's beside them.

    Columns: final held-out accuracy (mean ± std, %), its 95% t-interval, the difference from the baseline
    and Welch's p, epochs to the threshold (mean over the seeds that reach it, and how many do), training
    time per epoch and total time to the threshold relative to the baseline, then the paper's figures.
    """
    threshold = _pct(summary["threshold"], 0)
    base_label = summary["arms"][summary["baseline"]]["label"]
    header = [
        "arm",
        "final acc % (mean ± std)",
        "95% CI",
        f"Δ vs {base_label} (pts)",
        "Welch p",
        f"epochs to {threshold}% (seeds reaching)",
        "time/epoch",
        f"time to {threshold}%",
        "paper: final acc %",
        f"paper: epochs to {threshold}%",
        "paper: time/epoch",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, s in summary["arms"].items():
        is_base = name == summary["baseline"]
        low, high = s["final_accuracy_ci95"]
        ci = "—" if not math.isfinite(low) else f"[{_pct(low)}, {_pct(high)}]"
        std = "" if not math.isfinite(s["final_accuracy_std"]) else f" ± {_pct(s['final_accuracy_std'])}"
        epochs = f"{_num(s['epochs_to_threshold_mean'], '.1f')} ({s['seeds_reaching_threshold']}/{s['num_seeds']})"
        row = [
            s["label"],
            _pct(s["final_accuracy_mean"]) + std,
            ci,
            "—" if is_base else f"{100.0 * s['delta_vs_baseline']:+.1f}",
            "—" if is_base else _p(s["welch_p"]),
            epochs,
            "×1.00" if is_base and s["time_ratio"] else ("—" if s["time_ratio"] is None else f"×{s['time_ratio']:.2f}"),
            "—" if s["time_to_threshold_ratio"] is None else f"×{s['time_to_threshold_ratio']:.2f}",
            _paper_cell(s["paper"], "final_accuracy", "acc"),
            _paper_cell(s["paper"], "epochs_to_threshold", "num"),
            _paper_cell(s["paper"], "time_ratio", "ratio"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _paired(summary: dict[str, Any], name: str, values_key: str) -> dict[int, float]:
    """Per-seed values of an arm, by seed (epochs to the threshold censored at one past the budget)."""
    stats = summary["arms"][name]
    values = stats[values_key]
    if values_key == "epochs_to_threshold":
        values = [float(e) if e else float(summary["num_epochs"] + 1) for e in values]
    return dict(zip(stats["seeds"], values, strict=True))


def _claim_sentence(summary, key, label, values_key, unit, scale, paper_key) -> str:
    baseline, primary = summary["baseline"], summary["primary"]
    base, treat = _paired(summary, baseline, values_key), _paired(summary, primary, values_key)
    seeds = sorted(seed for seed in treat if seed in base)
    if not seeds:
        return f"{label}: UNTESTED (no seed ran both arms)"
    paper, base_paper = summary["arms"][primary].get("paper") or {}, summary["arms"][baseline].get("paper") or {}
    effect = None
    if paper.get(paper_key) is not None and base_paper.get(paper_key) is not None:
        effect = paper[paper_key] - base_paper[paper_key]
    claim = Claim(
        key=key, claim=label, metric=label, baseline=summary["arms"][baseline]["label"],
        treatment=summary["arms"][primary]["label"], paper_effect=effect or None, unit=unit, scale=scale,
        seeds=seeds, baseline_values=[base[s] for s in seeds], treatment_values=[treat[s] for s in seeds],
    )  # fmt: skip
    return f"{label}: {evaluate_claim(claim)['sentence']}"


def verdict(summary: dict[str, Any]) -> str:
    """The paper's claims about the ``primary`` arm, judged by the rule ``make study`` applies.

    Runs with the same seed share initial weights and data order, so each claim's figure is the 95% interval of
    the *paired* per-seed difference to the baseline (Welch's unpaired interval beside it), judged against the
    paper's effect by :func:`hf_superpositional.reproduction.verdicts.judge`: *refuted* when the interval
    excludes it, *reproduced* when it excludes zero on the paper's side and contains it, otherwise
    *inconclusive* (with the seeds that would decide it). Claims: final accuracy, and epochs to the threshold
    (a seed that never reaches it counts as one epoch past the budget). The time overhead is reported, not
    judged (it is a cost the paper states, not a benefit it claims). With the paper's effect unknown, only the
    interval is described.

    Example:
        >>> verdict({"threshold": 0.9, "baseline": "a", "primary": None, "arms": {}})
        'Verdict: no primary arm named, nothing to judge.'
    """
    primary = summary.get("primary")
    if primary is None:
        return "Verdict: no primary arm named, nothing to judge."
    p_stats, b_stats = summary["arms"][primary], summary["arms"][summary["baseline"]]
    n = len(set(p_stats["seeds"]) & set(b_stats["seeds"]))
    threshold = _pct(summary["threshold"], 0)
    accuracy = _claim_sentence(summary, "final_accuracy", "final accuracy", "final_accuracies", "pts", 100.0,
                               "final_accuracy")  # fmt: skip
    epochs = _claim_sentence(summary, "epochs_to_threshold", f"epochs to {threshold}%", "epochs_to_threshold",
                             "epochs", 1.0, "epochs_to_threshold")  # fmt: skip
    ratio, paper = p_stats.get("time_ratio"), p_stats.get("paper") or {}
    time = "time/epoch " + ("not measured" if ratio is None else f"×{ratio:.2f}")
    if paper.get("time_ratio") is not None:
        time += f" (paper ×{paper['time_ratio']:.2f})"
    return (
        f"Verdict ({p_stats['label']} against {b_stats['label']}, {n} paired seed{'s' if n != 1 else ''}; the rule "
        f"of `make study`, which powers its seed count): {accuracy} {epochs} {time}."
    )


# ---- files ------------------------------------------------------------------------------------------------


def plot_curves(results: dict[str, Any], path: str | Path, summary: dict[str, Any] | None = None) -> Path:
    """Held-out accuracy per epoch: one panel per arm (thin line per seed, thick mean) and one with every
    arm's mean, all panels sharing the y-axis (as the paper's Fig. 1), the threshold dashed.

    Returns:
        The path written (PNG).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summary or summarize(results)
    arms = results["arms"]
    threshold = summary["threshold"]
    fig, axes = plt.subplots(
        1, len(arms) + 1, figsize=(3.2 * (len(arms) + 1), 3.6), sharey=True, constrained_layout=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lowest = min(min(run["eval_accuracy"]) for arm in arms for run in arm["runs"])
    for index, arm in enumerate(arms):
        color = colors[index % len(colors)]
        stats = summary["arms"][arm["name"]]
        epochs = np.arange(1, len(stats["mean_curve"]) + 1)
        ax = axes[index]
        for run in arm["runs"]:
            ax.plot(epochs, 100 * np.asarray(run["eval_accuracy"]), color=color, alpha=0.35, linewidth=0.9)
        ax.plot(epochs, 100 * np.asarray(stats["mean_curve"]), color=color, linewidth=2.2, label="mean")
        ax.set_title(stats["label"], fontsize=9)
        axes[-1].plot(epochs, 100 * np.asarray(stats["mean_curve"]), color=color, linewidth=2, label=stats["label"])
    for ax in axes:
        ax.axhline(100 * threshold, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.set_ylim(max(0.0, 100 * lowest - 5), 100.5)
    axes[0].set_ylabel("held-out accuracy (%)")
    axes[-1].set_title("mean of seeds", fontsize=9)
    axes[-1].legend(fontsize=7, loc="lower right")
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_loss_curves(
    curves: dict[str, Sequence[tuple[int, float]]], path: str | Path, title: str, ylabel: str = "training loss"
) -> Path:
    """Training loss against optimizer step, one line per arm (the paper's Fig. 2 analogue).

    Args:
        curves: arm label -> ``(step, loss)`` pairs (an arm with none is left out).
        path: the PNG to write.
        title, ylabel: the axes' title and y label.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in curves.items():
        if points:
            steps, losses = zip(*points, strict=True)
            ax.plot(steps, losses, marker="o", markersize=2.5, linewidth=1.2, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (in nested dicts, lists, tuples) replaced by ``None``.

    Strict JSON has no NaN/Infinity: undefined statistics (one seed, no spread) are written as null.

    Example:
        >>> finite_or_none({"p": float("nan"), "ci": (0.1, float("inf"))})
        {'p': None, 'ci': [0.1, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def write_report(results: dict[str, Any], output_dir: str | Path) -> dict[str, Any]:
    """Write ``results.json`` (the results plus their summary and verdict), ``table.md`` and ``curves.png``.

    Args:
        results: the results dict (module docstring); extra keys (config, environment) are kept as they are.
        output_dir: created if missing.

    Returns:
        ``{"summary", "table", "verdict", "paths"}``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    table = format_table(summary)
    line = verdict(summary)
    payload = finite_or_none({**results, "summary": summary, "verdict": line})
    (out / "results.json").write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    title = results.get("title", "Optimizer comparison")
    notes = results.get("notes", "")
    (out / "table.md").write_text(f"# {title}\n\n{table}\n\n{line}\n" + (f"\n{notes}\n" if notes else ""))
    plot_curves(results, out / "curves.png", summary)
    return {
        "summary": summary,
        "table": table,
        "verdict": line,
        "paths": {name: str(out / name) for name in ("results.json", "table.md", "curves.png")},
    }
