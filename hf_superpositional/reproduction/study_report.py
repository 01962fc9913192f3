"""The study's files: ``verdicts.json``, ``study.md``, ``dose_response.png``, learning and loss curves.

Everything here reads the raw runs and the analysis of :mod:`.study` and writes them out; nothing is
computed that :mod:`.statistics` and :mod:`.verdicts` do not compute. ``verdicts.json`` holds, per claim,
the claim, the paper's value, our mean per arm, the interval, the seed count, the verdict and every per-seed
value the figures came from, so a reader can recompute the statistics with scipy alone.

Example:
    >>> point = {"label": "λ=1000 all update", "ratio": 3.1, "delta": -0.30, "ci": [-0.35, -0.25],
    ...          "quantum_weight": 1000.0, "scope": "all", "mode": "update", "diverged_seeds": []}
    >>> describe_dose_response([point], seeds=6).split(":")[0]
    'The effect begins at a perturbation-to-update ratio of 3.1 (λ=1000 all update)'
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .reporting import finite_or_none, plot_curves, plot_loss_curves
from .verdicts import VERDICT_RULE, format_effect, format_interval

__all__ = [
    "FULL_SCALE_COMMAND",
    "ablation_table",
    "describe_dose_response",
    "dose_table",
    "format_value",
    "machine_description",
    "plot_dose_response",
    "verdict_table",
    "write_study",
]

FULL_SCALE_COMMAND = (
    "for seed in 0 1 2 3 4; do accelerate launch --config_file recipes/accelerate/single_gpu.yaml "
    "recipes/gsm8k_compare.py --config recipes/configs/gsm8k_llama32_1b.yaml --seed $seed "
    "--output_dir outputs/gsm8k_compare_1b/seed$seed; done"
)
"""The paper's GSM8K comparison at full scale (Llama-3.2-1B-Instruct, one CUDA GPU, Hub access), per seed."""


def format_value(value: float | None, value_unit: str) -> str:
    """One arm's value as printed: an accuracy as %, epochs, seconds, a difference of accuracies or a loss.

    Example:
        >>> format_value(0.9153, "accuracy"), format_value(7.4, "epochs"), format_value(0.0213, "s"), format_value(5.5642, "loss")
        ('91.5%', '7.4', '0.0213 s', '5.5642')
    """
    if value is None or not math.isfinite(value):
        return "—"
    if value_unit == "accuracy":
        return f"{100 * value:.1f}%"
    if value_unit == "epochs":
        return f"{value:.1f}"
    if value_unit == "s":
        return f"{value:.3g} s"
    if value_unit == "points":
        return f"{100 * value:+.1f} pts"
    return f"{value:.4f}"


def verdict_table(claims: list[dict[str, Any]]) -> str:
    """The claims as one Markdown table: paper, ours per arm, paired and Welch intervals, seeds, verdict."""
    header = ["claim", "paper: effect (AdamW → method)", "ours: AdamW", "ours: method", "ours: effect (paired 95% CI)",
              "Welch 95% CI", "seeds", "verdict"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in claims:
        unit, scale = c["unit"], c["scale"]
        paper, kind = c.get("paper") or {}, c.get("value_unit", "")
        paper_cell = format_effect(c["paper_effect"], unit, scale) if c["paper_effect"] is not None else "—"
        if paper:
            paper_cell += f" ({format_value(paper.get('baseline'), kind)} → {format_value(paper.get('treatment'), kind)})"
        lines.append("| " + " | ".join([
            c["key"], paper_cell, format_value(c["baseline_mean"], kind), format_value(c["treatment_mean"], kind),
            f"{format_effect(c['mean'], unit, scale)} {format_interval(c['ci'], unit, scale)}", format_interval(c["welch_ci"], unit, scale),
            str(c["num_seeds"]), "**" + (c["verdict"] or "—") + "**"
            + (f" ({c['seeds_to_decide']} seeds would decide)" if c.get("seeds_to_decide") else ""),
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def dose_table(points: list[dict[str, Any]]) -> str:
    """The dose-response arms, by measured ratio: lambda, scope, mode, ratio, Δ accuracy with its interval."""
    header = ["λ", "scope", "mode", "perturbation / update (mean over training)", "Δ final acc vs AdamW (pts)",
              "paired 95% CI", "p", "diverged seeds"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in sorted(points, key=lambda p: p["ratio"]):
        lines.append("| " + " | ".join([
            f"{p['quantum_weight']:g}", p["scope"], p["mode"], f"{p['ratio']:.2e}", format_effect(p["delta"], "pts", 100.0),
            format_interval(p["ci"], "pts", 100.0), "—" if p["p"] is None or not math.isfinite(p["p"]) else f"{p['p']:.3f}",
            str(len(p["diverged_seeds"])),
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def _excludes_zero(interval: list[float]) -> bool:
    low, high = interval
    return low is not None and math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0)


def _onset(ordered: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((p for p in ordered if _excludes_zero(p["ci"])), None)


def describe_dose_response(points: list[dict[str, Any]], seeds: int) -> str:
    """Where the effect begins and which sign it has, in words (by increasing measured ratio), overall and
    per mode (the ratio measures ``lr * lambda * Q`` against the step, which a moment-mode perturbation
    reaches through Adam's normalisation rather than directly, so the two modes need not share an onset)."""
    if not points:
        return "No dose-response arms were run."
    ordered = sorted(points, key=lambda p: p["ratio"])
    widths = [(p["ci"][1] - p["ci"][0]) / 2 for p in ordered if math.isfinite(p["ci"][0])]
    width = f"half-widths around {100 * float(np.median(widths)):.1f} pts" if widths else "no intervals"
    first = _onset(ordered)
    if first is None:
        return (
            f"No arm's interval excludes zero, from a perturbation-to-update ratio of {ordered[0]['ratio']:.2g} to "
            f"{ordered[-1]['ratio']:.2g}: no effect on final accuracy is detectable at any strength tested "
            f"({seeds} seeds, {width})."
        )
    below = [p for p in ordered if p["ratio"] < first["ratio"]]
    sign = "lower" if first["delta"] < 0 else "higher"
    text = (
        f"The effect begins at a perturbation-to-update ratio of {first['ratio']:.2g} ({first['label']}): "
        f"Δ {format_effect(first['delta'], 'pts', 100.0)} {format_interval(first['ci'], 'pts', 100.0)}, {sign} accuracy than AdamW. "
    )
    if below:
        text += (
            f"Every arm below it ({len(below)} arms, ratios {below[0]['ratio']:.2g} to {below[-1]['ratio']:.2g}) has an "
            f"interval containing zero ({seeds} seeds, {width}). "
        )
    else:
        text += "It is there already at the smallest ratio tested. "
    above = [p for p in ordered if p["ratio"] > first["ratio"]]
    if above:
        hurt = [p["label"] for p in above if _excludes_zero(p["ci"]) and p["delta"] < 0]
        helped = [p["label"] for p in above if _excludes_zero(p["ci"]) and p["delta"] > 0]
        null = [p["label"] for p in above if not _excludes_zero(p["ci"])]
        text += f"Above it, {len(hurt)} of {len(above)} arms are significantly worse than AdamW and {len(helped)} better"
        text += f" (no detectable effect: {', '.join(null)})" if null else ""
        diverged = [p["label"] for p in above if p["diverged_seeds"]]
        text += f"; runs with a non-finite loss: {', '.join(diverged)}." if diverged else "."
    modes = sorted({p["mode"] for p in points})
    if len(modes) > 1:
        parts = []
        for mode in modes:
            series = [p for p in ordered if p["mode"] == mode]
            onset = _onset(series)
            parts.append(
                f"mode={mode}: no detectable effect up to ratio {series[-1]['ratio']:.2g}"
                if onset is None
                else f"mode={mode}: from ratio {onset['ratio']:.2g} ({onset['label']}, "
                f"Δ {format_effect(onset['delta'], 'pts', 100.0)})"
            )
        text += " By mode -- " + "; ".join(parts) + "."
    if len(points) >= 10:
        text += f" (Of {len(points)} intervals at 95%, about {len(points) / 20:.1f} would exclude zero by chance alone.)"
    return text


def plot_dose_response(points: list[dict[str, Any]], path: str | Path, paper_effect: float | None = None) -> Path:
    """Δ final accuracy (with its interval) against the measured perturbation-to-update ratio, log x-axis:
    the whole range above, a zoom on ±4 points (where the paper's claim lies) below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (full, zoom) = plt.subplots(2, 1, figsize=(8.5, 8), sharex=True, height_ratios=(1, 1))
    markers = {("first_n", "update"): "o", ("all", "update"): "s", ("first_n", "moment"): "^", ("all", "moment"): "D"}
    for (scope, mode), marker in markers.items():
        series = sorted((p for p in points if (p["scope"], p["mode"]) == (scope, mode)), key=lambda p: p["ratio"])
        if not series:
            continue
        x = np.array([max(p["ratio"], 1e-12) for p in series])
        y = 100 * np.array([p["delta"] for p in series])
        low = np.array([100 * p["ci"][0] if math.isfinite(p["ci"][0]) else 100 * p["delta"] for p in series])
        high = np.array([100 * p["ci"][1] if math.isfinite(p["ci"][1]) else 100 * p["delta"] for p in series])
        for ax in (full, zoom):
            ax.errorbar(x, y, yerr=[y - low, high - y], marker=marker, capsize=3, linewidth=1,
                        label=f"scope={scope}, mode={mode}")  # fmt: skip
        for p, xi, yi in zip(series, x, y, strict=True):
            ax = zoom if abs(yi) < 4 else full
            ax.annotate(f"λ={p['quantum_weight']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for ax in (full, zoom):
        ax.axhline(0.0, color="black", linewidth=0.8)
        if paper_effect is not None:
            ax.axhline(100 * paper_effect, color="tab:red", linestyle="--", linewidth=0.9,
                       label=f"paper's claim ({format_effect(paper_effect, 'pts', 100.0)}, λ=0.5 first_n update)")  # fmt: skip
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.set_ylabel("Δ final accuracy (points)")
    zoom.set_ylim(-4, 4)
    zoom.set_title("zoom: ±4 points", fontsize=9)
    full.set_title("Dose-response: Superpositional AdamW against AdamW (same seeds, paired 95% CI)")
    zoom.set_xlabel("perturbation-to-update ratio ‖λ·lr·Q‖ / ‖Adam step‖, mean over training (log)")
    full.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ablation_table(effects: list[dict[str, Any]]) -> str:
    """The 2x2 factorial's effects: which comparison, both means, the paired interval and what it says."""
    header = ["effect", "baseline", "treatment", "Δ (pts, paired 95% CI)", "Welch 95% CI", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in effects:
        lines.append("| " + " | ".join([
            e["claim"], f"{e['baseline']}: {format_value(e['baseline_mean'], e['value_unit'])}",
            f"{e['treatment']}: {format_value(e['treatment_mean'], e['value_unit'])}",
            f"{format_effect(e['mean'], 'pts', 100.0)} {format_interval(e['ci'], 'pts', 100.0)}", format_interval(e["welch_ci"], "pts", 100.0),
            str(e["num_seeds"]),
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def machine_description() -> str:
    """The CPU model (from ``/proc/cpuinfo`` where there is one) and the core count."""
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores visible"


def _learning_curves(raw: dict[str, Any], path: Path) -> Path:
    names = ["adamw", "sgd_lambda_0.5"] + (["eager_adamw", "eager_sgd_lambda_0.5"] if raw["study"].ablation else [])
    labels = {"adamw": "AdamW (quantum attention)", "sgd_lambda_0.5": "λ=0.5 (quantum attention)",
              "eager_adamw": "AdamW (eager attention)", "eager_sgd_lambda_0.5": "λ=0.5 (eager attention)"}  # fmt: skip
    seeds = set(raw["seeds"])
    arms = [
        {"name": name, "label": labels[name], "runs": [r for r in raw["tc_runs"] if r["arm"] == name and r["seed"] in seeds]}
        for name in names
    ]
    results = {"threshold": raw["setup"].threshold, "num_epochs": raw["setup"].num_epochs, "baseline": "adamw", "arms": arms}
    return plot_curves(results, path)


def _gsm8k_curves(raw: dict[str, Any], path: Path) -> Path:
    curves = {}
    for arm in sorted({r["arm"] for r in raw["gsm8k_runs"]}):
        runs = [r for r in raw["gsm8k_runs"] if r["arm"] == arm]
        steps = [step for step, _ in runs[0]["train_losses"]]
        means = np.mean([[loss for _, loss in r["train_losses"]] for r in runs], axis=0)
        curves[f"{arm} (mean of {len(runs)} seeds)"] = list(zip(steps, means.tolist(), strict=True))
    return plot_loss_curves(curves, path, "GSM8K analogue: tiny Llama, one epoch, training loss", "training loss (answer tokens)")


def _serialisable(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "setup": dataclasses.asdict(raw["setup"]),
        "study": dataclasses.asdict(raw["study"]),
        "gsm8k_setup": dataclasses.asdict(raw["study"].gsm8k_setup()),
        "seeds": raw["seeds"],
        "gsm8k_seeds": raw["gsm8k_seeds"],
        "dose_seeds": raw["dose_seeds"],
        "dose_arms": [arm.to_dict() for arm in raw["dose_arms"]],
    }


def _mechanism(results: dict[str, Any]) -> str:
    points = results["dose_response"]
    paper_point = next((p for p in points if (p["quantum_weight"], p["scope"], p["mode"]) == (0.5, "first_n", "update")), None)
    accuracy = next((c for c in results["claims"] if c["key"] == "tc_final_accuracy"), None)
    if paper_point is None or accuracy is None or accuracy["num_seeds"] < 2:
        return ""
    between_seeds = float(np.std(accuracy["baseline_values"], ddof=1))
    onset = _onset(sorted(points, key=lambda p: p["ratio"]))
    where = (
        "no strength tested moved accuracy"
        if onset is None
        else f"accuracy first moves when the perturbation reaches {onset['ratio']:.2g} of the step ({onset['label']}), "
        + ("and then it falls" if onset["delta"] < 0 else "and then it rises")
    )
    return (
        "Mechanism: the paper's update (λ=0.5, first_n, update mode) adds λ·sin(πθ)·g to the first 4 elements of each "
        f"weight tensor only, {paper_point['ratio']:.1e} of the Adam step by norm averaged over training, so a seed's "
        f"two runs end {100 * accuracy['std']:.1f} points apart (standard deviation of the paired difference) against "
        f"{100 * between_seeds:.1f} points between seeds: it nudges the trajectory and cannot move accuracy by points; "
        f"{where}."
    )


def write_study(
    raw: dict[str, Any],
    results: dict[str, Any],
    output_dir: str | Path,
    wall_seconds: float,
    cpu_seconds: float,
    environment_record: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write ``verdicts.json``, ``study.md`` and the plots; return ``{file name: path}``.

    Args:
        raw, results: :func:`~.study.run_study`'s output and its :func:`~.study.analyse`.
        output_dir: created if missing.
        wall_seconds, cpu_seconds: what the study took.
        environment_record: the date, machine and versions to report instead of this process's (a study
            re-reported from its ``verdicts.json`` keeps those of the run that trained).
    """
    from .classification import environment

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    study = raw["study"]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = environment_record or {
        **environment(wall_seconds, cpu_seconds), "date": date, "machine_description": machine_description()
    }
    paths = {"verdicts.json": out / "verdicts.json", "study.md": out / "study.md"}
    paper_accuracy = next((c["paper_effect"] for c in results["claims"] if c["key"] == "tc_final_accuracy"), None)
    if results["dose_response"]:
        paths["dose_response.png"] = plot_dose_response(results["dose_response"], out / "dose_response.png", paper_accuracy)
    paths["learning_curves.png"] = _learning_curves(raw, out / "learning_curves.png")
    if raw["gsm8k_runs"]:
        paths["gsm8k_loss_curves.png"] = _gsm8k_curves(raw, out / "gsm8k_loss_curves.png")
    payload = {
        "title": "The definitive study of Superpositional Gradient Descent's claims",
        "verdict_rule": VERDICT_RULE,
        "confidence": study.confidence,
        **results,
        "dose_response_text": describe_dose_response(results["dose_response"], len(raw["dose_seeds"])),
        "mechanism": _mechanism(results),
        "calibration": raw["calibration"],
        "power": raw["power"],
        "settings": _serialisable(raw),
        "gsm8k_full_scale_command": FULL_SCALE_COMMAND,
        "environment": env,
        "runs": {"text_classification": raw["tc_runs"], "gsm8k": raw["gsm8k_runs"]},
    }
    paths["verdicts.json"].write_text(json.dumps(finite_or_none(payload), indent=1, allow_nan=False) + "\n")
    paths["study.md"].write_text(render_markdown(raw, results, payload, paths))
    return {name: str(path) for name, path in paths.items()}


def render_markdown(raw: dict[str, Any], results: dict[str, Any], payload: dict[str, Any], paths: dict[str, Path]) -> str:
    """``study.md``: verdict table, one paragraph per claim, power, calibration, dose-response, ablation, GSM8K."""
    setup, env = raw["setup"], payload["environment"]
    lines = [
        f"# {payload['title']}",
        "",
        f"{env['date']}; {env['machine_description']}; {setup.num_workers} worker process(es) x {setup.torch_threads} "
        f"thread(s); wall time {env['wall_seconds'] / 60:.1f} min ({env['cpu_seconds'] / 60:.1f} CPU-min); "
        f"torch {env['torch']}, transformers {env['transformers']}.",
        "",
        "## Verdicts",
        "",
        VERDICT_RULE,
        "",
        verdict_table(results["claims"]),
        "",
    ]
    for claim in results["claims"]:
        lines += [f"**{claim['key']}** — {claim['claim']}. Measured: {claim['metric']}, {claim['treatment']} against "
                  f"{claim['baseline']}, seeds {claim['seeds'][0]}–{claim['seeds'][-1]}. {claim['sentence']}"
                  + (f" ({claim['notes']}.)" if claim["notes"] else ""), ""]  # fmt: skip
    if payload["mechanism"]:
        lines += [payload["mechanism"], ""]
    lines += ["## Seeds: the power calculation", ""]
    for key, plan in raw["power"].items():
        if plan is None:
            continue
        lines += [f"{key}:", ""] + [f"- {row['text']}" for row in plan["claims"]] + [f"- {plan['text']}", ""]
    calibration = raw["calibration"]
    lines += ["## The task's difficulty", ""]
    if calibration:
        lines += [
            f"AdamW alone, seeds {calibration['rows'][0]['seeds'][0]}–{calibration['rows'][0]['seeds'][-1]} (none of "
            f"them used elsewhere), at each training-set size; the size whose mean is nearest {100 * calibration['target']:.1f}% "
            "(the paper's Adam) is used for the study. The held-out set and so the Bayes-optimal accuracy do not depend on it.",
            "",
            "| training sequences | AdamW final acc (mean ± std) | Bayes-optimal |",
            "|---|---|---|",
        ]
        for row in calibration["rows"]:
            chosen = " (chosen)" if row["num_train"] == calibration["chosen_num_train"] else ""
            lines.append(f"| {row['num_train']}{chosen} | {100 * row['mean']:.1f} ± {100 * row['std']:.1f}% | "
                         f"{100 * calibration['bayes_accuracy']:.1f}% |")  # fmt: skip
        lines.append("")
    lines += [
        f"In the study itself ({len(raw['seeds'])} seeds, {setup.num_train} training sequences, {setup.num_epochs} epochs) "
        f"AdamW ends at {100 * results['adamw_accuracy']:.1f}%, against a Bayes-optimal {100 * results['bayes_accuracy']:.1f}% "
        f"on the same held-out texts: {100 * (results['bayes_accuracy'] - results['adamw_accuracy']):.1f} points of headroom.",
        "",
    ]
    if results["dose_response"]:
        lines += [
            "## Dose-response: where the effect begins",
            "",
            f"Superpositional AdamW at λ ∈ {sorted({p['quantum_weight'] for p in results['dose_response']})} x scope x mode "
            f"against an AdamW reference trained the same way (held-out accuracy measured once, after the last epoch), "
            f"seeds {raw['dose_seeds'][0]}–{raw['dose_seeds'][-1]}. The x-axis is the optimizer's own diagnostic "
            "‖lr·λ·Q‖ / ‖Adam step‖, averaged over the logged steps of training (for mode=moment the same quantity: "
            "there Q enters the moments, and Adam's normalisation turns a relative change λ·sin(πθ) of the gradient "
            "into the step).",
            "",
            dose_table(results["dose_response"]),
            "",
            payload["dose_response_text"],
            "",
            f"![dose-response]({Path(paths['dose_response.png']).name})",
            "",
        ]
    if results["ablation"]:
        lines += ["## Attention ablation: {eager, quantum} x {AdamW, λ=0.5}", "",
                  "The circuit term's effect (quantum vs eager attention, same optimizer) apart from the optimizer's "
                  "(λ=0.5 vs AdamW, same attention), on the same seeds.", "", ablation_table(results["ablation"]), ""]  # fmt: skip
        lines += [f"- {e['claim']}: {e['sentence']}" for e in results["ablation"]] + [""]
        lines += [f"![learning curves]({Path(paths['learning_curves.png']).name})", ""]
    gsm8k_claims = [c for c in results["claims"] if c["key"].startswith("gsm8k_")]
    if gsm8k_claims:
        gsetup = raw["study"].gsm8k_setup()
        lines += [
            "## GSM8K analogue",
            "",
            f"This is a tiny model, not Llama-3.2-1B-Instruct: a {gsetup.num_layers}-layer, {gsetup.hidden_size}-d Llama "
            f"built from a config (random init) with quantum attention ({gsetup.n_qubits} qubits, depth {gsetup.depth}), "
            f"trained from scratch for one epoch on {gsetup.num_rows} bundled GSM8K problems (context {gsetup.max_length}, "
            f"batch {gsetup.batch_size}, lr {gsetup.learning_rate:g}), seeds {raw['gsm8k_seeds'][0]}–{raw['gsm8k_seeds'][-1]}. "
            "Its losses are those of a model learning language from nothing (~5), not of a fine-tune (~0.2): only "
            "the relative change is compared with the paper's.",
            "",
            "| arm | mean training loss (mean ± std over seeds) | relative change vs AdamW (paired 95% CI) | paper | verdict |",
            "|---|---|---|---|---|",
        ]
        base = gsm8k_claims[0]
        sd = np.std(base["baseline_values"], ddof=1) if len(base["baseline_values"]) > 1 else math.nan
        lines.append(f"| AdamW | {base['baseline_mean']:.4f} ± {sd:.4f} | — | 0.2188 | — |")
        for c in gsm8k_claims:
            sd = np.std(c["treatment_values"], ddof=1) if len(c["treatment_values"]) > 1 else math.nan
            lines.append(f"| {c['treatment']} | {c['treatment_mean']:.4f} ± {sd:.4f} | {format_effect(c['mean'], '%', 100.0, 2)} "
                         f"{format_interval(c['ci'], '%', 100.0)} | {c['paper'].get('treatment', '—')} ({format_effect(c['paper_effect'], '%', 100.0)}) "
                         f"| **{c['verdict']}** |")  # fmt: skip
        lines += ["", f"The full-scale run (one CUDA GPU with ~24 GB, Hub access to the gated model), per seed: `{FULL_SCALE_COMMAND}`", ""]
        if "gsm8k_loss_curves.png" in paths:
            lines += [f"![GSM8K loss curves]({Path(paths['gsm8k_loss_curves.png']).name})", ""]
    lines += ["Every per-seed value behind these figures is in `verdicts.json` (claims[*].baseline_values / "
              "treatment_values, dose_response[*], runs)."]  # fmt: skip
    return "\n".join(lines) + "\n"
