"""Smoke tests of the benchmark scripts in ``recipes/benchmarks``: each runs with tiny shapes or 1-2 steps.

They check that every script runs end to end and prints its table with the expected rows (and, where a
script checks correctness before timing, that the check passes), never a timing: speed figures belong in the
scripts' own output (BENCHMARKS.md), measured against a baseline of the same run. The scripts run in this
process through ``runpy`` with a patched ``sys.argv`` (no second interpreter importing torch and
transformers again); ``bench_train_step.py`` also gets a direct check that each arm builds the model and
optimizer its label names.
"""

from __future__ import annotations

import math
import os
import re
import runpy
import sys

import pytest
import torch

from tests.subprocess_env import REPO

BENCHMARKS = REPO / "recipes" / "benchmarks"


@pytest.fixture
def run_script(monkeypatch, capsys):
    """Run ``recipes/benchmarks/<name>`` as ``__main__`` with ``args``; return its stdout."""

    def run(name: str, *args: str) -> str:
        monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / name), *args])
        runpy.run_path(str(BENCHMARKS / name), run_name="__main__")
        return capsys.readouterr().out

    # bench_train_step sets OMP_WAIT_POLICY when unset (for its own process); keep this process's value.
    saved = os.environ.get("OMP_WAIT_POLICY")
    yield run
    if saved is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = saved


def table_rows(output: str) -> list[list[str]]:
    """The cells of every markdown table row (header and rule lines included)."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in output.splitlines()
        if line.startswith("|")
    ]


def test_bench_train_step_smoke_prints_every_arm_target_and_scaling_row(run_script):
    out = run_script("bench_train_step.py", "--smoke")
    rows = {cells[0]: cells[1:] for cells in table_rows(out)}
    arms = [
        "(a) adamw + sdpa",
        "(a') adamw + sdpa",
        "(b) adamw + eager",
        "(c) superpositional_adamw + sdpa",
        "(d) superpositional_adamw + quantum",
    ]
    for arm in arms:
        assert arm in rows, f"missing row {arm!r} in:\n{out}"
        ms, time_ratio, cpu_ratio, mib, mem_ratio = rows[arm]
        values = [float(ms), float(time_ratio.rstrip("x")), float(mib), float(mem_ratio.rstrip("x"))]
        assert all(math.isfinite(v) and v > 0 for v in values), rows[arm]
    # (a) is the baseline of its own ratios; (e) needs CUDA.
    assert rows["(a) adamw + sdpa"][1:2] == ["1.000x"] and rows["(a) adamw + sdpa"][4] == "1.000x"
    assert not any(key.startswith("(e)") for key in rows)
    for target in ("(c)/(a) time <= 1.02", "(d)/(a) time <= 1.02", "(d)/(b) time <= 1.15"):
        assert target in rows and rows[target][-1] in ("OK", "MISSED"), out
    # Scaling table: one row per --scaling-seqs length of the smoke preset, (a), (b), (d) and both ratios.
    assert "8" in rows and "16" in rows
    assert all(float(cell.rstrip("x")) > 0 for cell in rows["16"]), rows["16"]


def test_bench_train_step_arms_build_what_their_labels_say():
    from hf_superpositional import SuperpositionalAdamW

    bench = runpy.run_path(str(BENCHMARKS / "bench_train_step.py"))
    base = bench["build_base_model"](bench["SMOKE_MODEL"], seed=0)
    device = torch.device("cpu")
    expected = {
        "a": (torch.optim.AdamW, "sdpa"),
        "b": (torch.optim.AdamW, "eager"),
        "c": (SuperpositionalAdamW, "sdpa"),
        "d": (SuperpositionalAdamW, "quantum"),
    }
    arms = {arm.key: arm for arm in bench["ARMS"]}
    for key, (optimizer_cls, attention) in expected.items():
        step = bench["TrainStep"](base, arms[key], device, "fp32", seq=8, batch=2, seed=0)
        assert type(step.optimizer) is optimizer_cls
        assert step.model.config._attn_implementation == attention
        # Circuit parameters exist exactly for the quantum arm and sit in the group without weight decay.
        circuit = [n for n, _ in step.model.named_parameters() if "quantum_circuit" in n]
        assert bool(circuit) == (attention == "quantum")
        assert step.optimizer.param_groups[1]["weight_decay"] == 0.0
        assert step.optimizer.param_groups[0]["weight_decay"] == bench["HYPER"]["weight_decay"]
        before = [p.detach().clone() for p in step.model.parameters()]
        step()
        after = list(step.model.parameters())
        assert all(p.grad is None for p in after)  # zero_grad(set_to_none=True) ends the step
        assert sum(not torch.equal(b, a) for b, a in zip(before, after, strict=True)) > len(after) // 2
    # The base model is copied, never modified, so every arm starts from the same weights.
    assert base.config._attn_implementation in ("eager", "sdpa")
    assert not any("quantum_circuit" in n for n, _ in base.named_parameters())


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_bench_train_step_sequential_mixed_precision_path_runs_on_cpu(precision):
    # The CUDA run uses the sequential schedule with autocast (and a GradScaler for fp16); no GPU here, so
    # run that code path on CPU with the smoke model to check that it executes and fills every field.
    bench = runpy.run_path(str(BENCHMARKS / "bench_train_step.py"))
    base = bench["build_base_model"](bench["SMOKE_MODEL"], seed=0)
    arms = [arm for arm in bench["ARMS"] if arm.key in ("a", "d")]
    results = bench["bench_sequential"](base, arms, torch.device("cpu"), precision, 8, 2, 1, 2, 0)
    assert set(results) == {"a", "d"}
    for result in results.values():
        assert len(result["wall"]) == 2 and all(t > 0 for t in result["wall"])
        assert result["peak"] > 0
    table = bench["format_main_table"](results, arms, interleaved=False)
    assert "(d) superpositional_adamw + quantum" in table


def test_bench_circuit_small_shape_matches_qiskit_and_prints_every_path(run_script):
    out = run_script(
        "bench_circuit.py",
        "--shape",
        "1",
        "2",
        "8",
        "8",
        "--repeats",
        "1",
        "--qiskit-scores",
        "4",
        "--aer-scores",
        "4",
        "--kernels",
        "eager",
    )
    match = re.search(r"max \|Phi_fourier - Phi_qiskit\| over 4 scores: eager ([\d.e+-]+)", out)
    assert match, out
    assert float(match.group(1)) < 1e-5
    paths = [cells[0] for cells in table_rows(out)]
    for path in (
        "fourier eager, forward",
        "fourier eager, forward + backward",
        "qiskit Statevector (one bound circuit per score)",
        "qiskit Aer (batched binds, one run)",
    ):
        assert path in paths, out
    # The coefficient table: the whole-layer simulation runs fewer torch operators than the gate-by-gate one.
    rows = {cells[0]: cells[1:] for cells in table_rows(out)}
    layers = rows["fourier_coefficients, torch, whole-layer matrices (CUDA without compile)"]
    gates = rows["fourier_coefficients, torch, gate by gate (circuit_statevector; the previous CUDA path)"]
    assert float(layers[0]) > 0 and float(gates[0]) > 0
    assert int(layers[1]) + int(layers[2]) < int(gates[1]) + int(gates[2]), out


def test_bench_attention_one_repeat_prints_each_shape_implementation_and_table(run_script):
    # One short length and the small shape, one run each (a few seconds on 2 cores).
    out = run_script("bench_attention.py", "--seqs", "256", "--repeats", "1", "--warmup", "0", "--device", "cpu")
    rows = [cells for cells in table_rows(out) if "x" in cells[0] and cells[0][0].isdigit()]
    found = {(cells[0], cells[2]) for cells in rows}
    for shape in ("4x4x256x16", "1x8x256x64"):
        for impl in ("sdpa", "eager", "quantum", "quantum dense"):
            assert (shape, impl) in found, out
    assert all(cells[5] == "1.00x" and cells[8] == "1.00x" for cells in rows if cells[2] == "sdpa")
    assert all(cells[9] == "1.00x" for cells in rows if cells[2] == "eager")
    # The memory-scaling table: one row per B1 H8 D64 length, MiB and MiB per 1024 tokens for both.
    scaling = [cells for cells in table_rows(out) if cells[0] == "256" and len(cells) == 5]
    assert len(scaling) == 1 and all(float(cell) > 0 for cell in scaling[0][1:]), out
    assert "Targets at S >= 1024" in out


def test_bench_optimizer_one_step_prints_control_and_each_configuration(run_script):
    # No size flag: the fixed 23M-parameter set, one step per row, fused path only (1-3 s).
    out = run_script(
        "bench_optimizer.py", "--steps", "1", "--slow-steps", "1", "--warmup", "0", "--paths", "fused"
    )
    rows = [cells[:3] for cells in table_rows(out)]
    assert ["update", "first_n", "control: quantum_weight=0, fused"] in rows, out
    for mode, scope in (("update", "first_n"), ("moment", "first_n"), ("update", "all")):
        assert [mode, scope, "fused"] in rows, out


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bench_train_step_flex_arm_trains_on_cpu_through_unfused_flex(monkeypatch, precision):
    """Arm (e), superpositional_adamw + quantum_flex, runs only on CUDA in the benchmark. Its whole step (the
    flex forward with the lse, the circuit-gradient pass, autocast, the optimizer) is run here through
    FlexAttention's unfused implementation, which differentiates on CPU once its device check is lifted."""
    import torch.nn.attention.flex_attention as flex_module
    import transformers.integrations.flex_attention as hf_flex

    monkeypatch.setattr(flex_module, "_validate_device", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        hf_flex,
        "compile_friendly_flex_attention",
        lambda query, key, value, training=False, **kwargs: flex_module.flex_attention(
            query, key, value, **kwargs
        ),
    )
    bench = runpy.run_path(str(BENCHMARKS / "bench_train_step.py"))
    base = bench["build_base_model"](bench["SMOKE_MODEL"], seed=0)
    arm = {arm.key: arm for arm in bench["ARMS"]}["e"]
    step = bench["TrainStep"](base, arm, torch.device("cpu"), precision, seq=8, batch=2, seed=0)
    assert step.model.config._attn_implementation == "quantum_flex"
    circuits = {n: p.detach().clone() for n, p in step.model.named_parameters() if "quantum_circuit" in n}
    assert circuits
    step()
    moved = [n for n, p in step.model.named_parameters() if n in circuits and not torch.equal(p, circuits[n])]
    assert len(moved) == len(circuits)  # every circuit parameter got a gradient and was updated
