"""Step time of SuperpositionalAdamW against torch.optim.AdamW, path by path, in one run.

Parameters shaped like a small transformer (~23M: embedding 8192x512, 6 blocks of q/k/v/o 512x512,
MLP 512x2048 + 2048x512, two norms of 512, final norm). Each of our paths is timed INTERLEAVED with its
torch AdamW counterpart (alternating which goes first), so machine noise hits both alike; the table gives
median milliseconds and the median of the per-step ratios (ours / AdamW, steps taken back to back).

    python recipes/benchmarks/bench_optimizer.py                 # ~1-2 min on 2 CPU cores
    python recipes/benchmarks/bench_optimizer.py --steps 50 --threads 4

On a CPU shared with other jobs, run with ``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``): torch's
OpenMP workers otherwise spin between parallel regions and compete with the other jobs, which swamps
few-percent differences (the control row, quantum_weight=0 through our plumbing, shows the noise floor).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from hf_superpositional.optim import SuperpositionalAdamW

PATHS = {
    "loop": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "fused": {"foreach": False, "fused": True},
}
CONFIGS = [("update", "first_n"), ("moment", "first_n"), ("update", "all")]


def transformer_shapes(vocab: int = 8192, d: int = 512, ff: int = 2048, layers: int = 6) -> list[tuple]:
    shapes: list[tuple] = [(vocab, d)]
    for _ in range(layers):
        shapes += [(d, d)] * 4 + [(d, ff), (ff, d), (d,), (d,)]
    shapes.append((d,))
    return shapes


def make_params(shapes: list[tuple], seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, generator=gen) * 0.02)
        p.grad = torch.randn(s, generator=gen) * 1e-3
        params.append(p)
    return params


def timed_pair(step_a, step_b, warmup: int, steps: int) -> dict[str, float]:
    """Run two step functions alternately (a b, b a, ...) and time each step.

    Returns:
        Median wall milliseconds of a and b, the median of the per-pair wall ratios a/b (steps taken back
        to back, so slow drifts in machine load cancel out) and the same ratio in process CPU time (not
        inflated while the process waits for a core on a shared machine).
    """
    for _ in range(warmup):
        step_a()
        step_b()
    wall: dict[str, list[float]] = {"a": [], "b": []}
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(steps):
        order = [("a", step_a), ("b", step_b)]
        if i % 2:
            order.reverse()
        for key, fn in order:
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
    return {
        "a_ms": statistics.median(wall["a"]) * 1e3,
        "b_ms": statistics.median(wall["b"]) * 1e3,
        "ratio": statistics.median(a / b for a, b in zip(wall["a"], wall["b"], strict=True)),
        "cpu_ratio": statistics.median(a / b for a, b in zip(cpu["a"], cpu["b"], strict=True) if b > 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps for the fused/default paths")
    parser.add_argument("--slow-steps", type=int, default=8, help="timed steps for the loop/foreach paths")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--paths",
        default="loop,foreach,fused,default",
        help="comma-separated subset of loop,foreach,fused,default (default needs the others it compares to "
        "only for choosing torch's fastest; without them it compares against torch fused)",
    )
    parser.add_argument("--quantum-weight", type=float, default=0.1)
    parser.add_argument("--n-qubits", type=int, default=4)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    shapes = transformer_shapes()
    # ONE set of parameters and gradients for both optimizers of a pair (each keeps its own moments):
    # separately allocated copies can differ by a few percent in streaming speed (page placement).
    params = make_params(shapes, seed=0)
    n_params = sum(p.numel() for p in params)
    hyper = {"lr": 1e-4, "weight_decay": 0.01}

    print(
        f"# SuperpositionalAdamW vs torch.optim.AdamW: {n_params / 1e6:.1f}M params in {len(shapes)} tensors"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, quantum_weight={args.quantum_weight}, "
        f"n_qubits={args.n_qubits}, timed steps {args.steps} (loop/foreach {args.slow_steps}), "
        f"warm-up {args.warmup}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}\n"
    )
    # Global warm-up: the first large allocations of a process page-fault and move glibc's mmap threshold;
    # run every implementation once so that no pair below pays for it.
    for flags in PATHS.values():
        for opt in (
            torch.optim.AdamW(params, **flags, **hyper),
            SuperpositionalAdamW(params, scope="all", **flags, **hyper),
        ):
            opt.step()
        del opt

    print("| mode | scope | path | ours ms | AdamW ms | ratio (wall) | ratio (CPU time) | target |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")

    def row(mode, scope, label, ours_kwargs, torch_flags, steps, target):
        ours = SuperpositionalAdamW(
            params, mode=mode, scope=scope, n_qubits=args.n_qubits, **ours_kwargs, **hyper
        )
        ref = torch.optim.AdamW(params, **torch_flags, **hyper)
        r = timed_pair(ours.step, ref.step, args.warmup, steps)
        verdict = f"<= {target} " + ("OK" if r["ratio"] <= target else "MISSED") if target else ""
        print(
            f"| {mode} | {scope} | {label} | {r['a_ms']:.2f} | {r['b_ms']:.2f} | {r['ratio']:.3f} "
            f"| {r['cpu_ratio']:.3f} | {verdict} |"
        )
        return r

    # Control: quantum_weight=0 runs torch's own kernel through our plumbing; its ratio is the
    # measurement's noise floor on this machine.
    row(
        "update",
        "first_n",
        "control: quantum_weight=0, fused",
        {"quantum_weight": 0.0, **PATHS["fused"]},
        PATHS["fused"],
        args.steps,
        None,
    )
    wanted = set(args.paths.split(","))
    for mode, scope in CONFIGS:
        torch_ms: dict[str, float] = {}
        target = 1.05 if scope == "first_n" else None
        for path, flags in PATHS.items():
            if path in wanted:
                steps = args.slow_steps if path in ("loop", "foreach") else args.steps
                r = row(
                    mode, scope, path, {"quantum_weight": args.quantum_weight, **flags}, flags, steps, target
                )
                torch_ms[path] = r["b_ms"]
        if "default" in wanted:
            # our default path against torch's fastest path measured above for this configuration
            fastest = min(torch_ms, key=torch_ms.get) if torch_ms else "fused"
            row(
                mode,
                scope,
                f"default vs AdamW {fastest}",
                {"quantum_weight": args.quantum_weight},
                PATHS[fastest],
                args.steps,
                target,
            )


if __name__ == "__main__":
    main()
