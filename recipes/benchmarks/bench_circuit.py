"""Seconds per attention score of the circuit term: our Fourier kernels against running the circuit in Qiskit.

One circuit (4 qubits, depth 2, so K = 8; per-head angles; ``readout="expval_z"`` by default), evaluated at
attention scores by:

- ``fourier <kernel>``: :func:`add_circuit_term` over a ``[4, 4, 256, 256]`` score tensor (1M scores),
  forward only and forward + backward (gradients for the scores, the coefficients and the gate), for each
  kernel of ``--kernels``: ``cpp`` (the fused C++ kernel, built on first use, the CPU default), ``compiled``
  (``torch.compile``; compiled once before timing, compile time printed separately) and ``eager`` (chunked
  torch ops, the reference); ``fourier cpp, causal`` adds the causal mask in the same pass (half the
  scores computed, what causal attention uses);
- ``qiskit Statevector``: one bound circuit and ``Statevector(...).expectation_value(sum_k Z_k)`` per score,
  on ``--qiskit-scores`` scores;
- ``qiskit Aer``: ``AerSimulator(method="statevector")``, all ``--aer-scores`` scores bound in one run.

A second table gives the per-call time of the Fourier coefficients themselves (the circuit sampled at the
2K+1 points and its angle gradients: once per attention layer and step), by the C++ sampler, the torch
simulation by whole-layer matrices (eager and, with ``compiled`` in ``--kernels``, through ``torch.compile``)
and the gate-by-gate simulation, with the number of torch operators each runs forward and backward: on CUDA,
where these tiny calls are bound by kernel launches, the operator count is the cost.

Each time is the best of ``--repeats`` runs (the machine may be shared), divided by the number of scores;
``--clock process`` measures CPU time instead of elapsed time (steadier under contention with ``--threads 1``).
The ratio column is each path's time per score over the first kernel's forward, measured in the same run.
Before timing, the Fourier values are checked against the Qiskit values at the same scores.

Usage:
    python recipes/benchmarks/bench_circuit.py [--repeats 5] [--readout expval_z] [--kernels cpp compiled eager]
        [--threads N] [--clock wall|process]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from hf_superpositional.quantum.fourier import fourier_coefficients, sampling_tensors
from hf_superpositional.quantum.kernels.cpp import load_cpu_extension
from hf_superpositional.quantum.ops import add_circuit_term
from hf_superpositional.quantum.qiskit import qiskit_readout
from hf_superpositional.quantum.series import readout_frequency
from hf_superpositional.quantum.simulation import circuit_readout

CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def best_time(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


# Operators that launch no kernel (views, metadata, allocation): left out of the operator counts.
_NO_KERNEL_OPS = {
    "aten::" + name
    for name in (
        "view", "as_strided", "_reshape_alias", "reshape", "unsqueeze", "squeeze", "expand", "select", "slice",
        "unflatten", "flatten", "transpose", "t", "permute", "detach", "detach_", "alias", "_unsafe_view",
        "result_type", "promote_types", "lift_fresh", "resolve_conj", "resolve_neg", "empty", "empty_strided",
        "view_as_real", "real", "imag", "is_same_size", "unbind", "to", "_to_copy", "contiguous",
    )
}  # fmt: skip


def count_ops(call, inputs) -> tuple[int, int]:
    """Top-level torch operators that do work in one forward ``call()`` and in its backward.

    On CUDA each is at least one kernel launch, which is what costs at these tiny shapes (a no-op ``.to``
    counts as none). Compiled calls count their compiled graphs' launches as the ops they dispatch.
    """
    from torch.profiler import ProfilerActivity, profile

    def top_level(prof) -> int:
        events = [e for e in prof.events() if e.name.startswith("aten::")]
        tops = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
        return sum(1 for e in tops if e.name not in _NO_KERNEL_OPS)

    with profile(activities=[ProfilerActivity.CPU]) as forward_profile:
        out = call()
    with profile(activities=[ProfilerActivity.CPU]) as backward_profile:
        torch.autograd.grad(out.sum(), inputs)
    return top_level(forward_profile), top_level(backward_profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--readout", default="expval_z", choices=["expval_z", "amplitude"])
    parser.add_argument("--n-qubits", type=int, default=4)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument(
        "--shape", type=int, nargs=4, default=[4, 4, 256, 256], metavar=("B", "H", "LQ", "LK")
    )
    parser.add_argument("--qiskit-scores", type=int, default=200)
    parser.add_argument("--aer-scores", type=int, default=1000)
    parser.add_argument(
        "--kernels",
        nargs="+",
        default=["cpp", "compiled", "eager"],
        choices=["cpp", "compiled", "eager"],
        help="circuit-term kernels to time (the first is the ratio baseline)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=sorted(CLOCKS),
        help="wall: elapsed time; process: this process's CPU time (sums threads; steadier on a shared "
        "machine with --threads 1)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    kernels = list(dict.fromkeys(args.kernels))
    if "cpp" in kernels and load_cpu_extension() is None:
        kernels.remove("cpp")  # load_cpu_extension warned why
    if not kernels:
        raise SystemExit("no kernel left to time")

    clock = CLOCKS[args.clock]
    torch.manual_seed(0)
    heads = args.shape[1]
    generator = torch.Generator().manual_seed(0)
    ry = (torch.rand(heads, args.depth, args.n_qubits, generator=generator) * 2 - 1) * math.pi
    rz = (torch.rand(heads, args.depth, args.n_qubits, generator=generator) * 2 - 1) * math.pi
    coefficients = fourier_coefficients(ry, rz, args.readout).requires_grad_()
    gate = torch.ones(heads, requires_grad=True)
    omega = readout_frequency(args.readout)
    logits = (torch.randn(*args.shape, generator=generator) * 3).requires_grad_()
    grad = torch.randn(*args.shape, generator=generator)
    n_scores = logits.numel()

    # Correctness first: Fourier values against Qiskit Statevector at a few scores of head 0.
    sample = logits.detach()[0, 0].flatten()[: args.qiskit_scores]
    reference = qiskit_readout(sample.double().numpy(), ry[0].double(), rz[0].double(), args.readout)
    max_error = {}
    for kernel in kernels:
        with torch.no_grad():
            out = add_circuit_term(logits, coefficients, gate, omega=omega, kernel=kernel)
        ours = (out - logits.detach())[0, 0].flatten()[: args.qiskit_scores]
        max_error[kernel] = float(np.abs(ours.double().numpy() - reference).max())

    rows: list[tuple[str, float]] = []
    compile_seconds = None
    variants = [(kernel, False) for kernel in kernels] + ([("cpp", True)] if "cpp" in kernels else [])
    for kernel, causal in variants:
        options = dict(omega=omega, kernel=kernel, causal=causal)
        if kernel == "compiled":
            start = time.perf_counter()
            out = add_circuit_term(logits, coefficients, gate, **options)
            out.backward(grad)
            compile_seconds = time.perf_counter() - start

        def forward(options=options):
            with torch.no_grad():
                add_circuit_term(logits, coefficients, gate, **options)

        def forward_backward(options=options):
            out = add_circuit_term(logits, coefficients, gate, **options)
            torch.autograd.grad(out, (logits, coefficients, gate), grad)

        name = f"fourier {kernel}" + (", causal" if causal else "")
        rows.append((f"{name}, forward", best_time(forward, args.repeats, clock) / n_scores))
        rows.append(
            (f"{name}, forward + backward", best_time(forward_backward, args.repeats, clock) / n_scores)
        )

    xs = sample.double().numpy()
    ry0, rz0 = ry[0].double(), rz[0].double()
    statevector = best_time(
        lambda: qiskit_readout(xs, ry0, rz0, args.readout, simulator="qiskit"),
        max(1, args.repeats // 2),
        clock,
    )
    rows.append(("qiskit Statevector (one bound circuit per score)", statevector / len(xs)))
    aer_xs = logits.detach()[0, 0].flatten()[: args.aer_scores].double().numpy()
    aer = best_time(
        lambda: qiskit_readout(aer_xs, ry0, rz0, args.readout, simulator="aer"),
        max(1, args.repeats // 2),
        clock,
    )
    rows.append(("qiskit Aer (batched binds, one run)", aer / len(aer_xs)))

    # The coefficients: per call, forward + backward to the angles, per-head angles [H, depth, n].
    angles = (ry.clone().requires_grad_(), rz.clone().requires_grad_())
    points, transform = sampling_tensors(args.n_qubits * args.depth, omega, torch.float32, ry.device)

    def gate_by_gate(ry_, rz_, readout):  # what fourier_coefficients ran off the C++ path before
        return circuit_readout(points.float(), ry_, rz_, readout) @ transform

    samplers = [("cpp", "C++ sampler, adjoint gradients")] if "cpp" in kernels else []
    samplers.append(("eager", "torch, whole-layer matrices (CUDA without compile)"))
    if "compiled" in kernels:
        samplers.append(("compiled", "torch.compile of the layer maths (CUDA default)"))
    samplers.append((gate_by_gate, "torch, gate by gate (circuit_statevector; the previous CUDA path)"))
    coefficient_rows = []
    for sampler, label in samplers:

        def coefficients_call(sampler=sampler):
            if callable(sampler):
                return sampler(*angles, args.readout)
            return fourier_coefficients(*angles, args.readout, kernel=sampler)

        def coefficients_step(call=coefficients_call):
            torch.autograd.grad(call().sum(), angles)

        seconds = best_time(coefficients_step, max(args.repeats, 20), clock)
        # A compiled graph's fused kernels are not torch operators: its counts would mean nothing here.
        forward_ops, backward_ops = (
            ("fused", "fused") if sampler == "compiled" else count_ops(coefficients_call, angles)
        )
        coefficient_rows.append((f"fourier_coefficients, {label}", seconds, forward_ops, backward_ops))

    baseline_name = f"fourier {kernels[0]}, forward"
    baseline = dict(rows)[baseline_name]
    print(
        f"circuit: {args.n_qubits} qubits, depth {args.depth} (K = {args.n_qubits * args.depth}), readout "
        f"{args.readout}; scores {tuple(args.shape)} = {n_scores}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.clock} clock"
    )
    errors = ", ".join(f"{kernel} {error:.2e}" for kernel, error in max_error.items())
    print(f"max |Phi_fourier - Phi_qiskit| over {len(xs)} scores: {errors}")
    if compile_seconds is not None:
        print(f"first compiled call (compilation, forward + backward): {compile_seconds:.1f} s")
    print()
    print(f"| path | seconds per score | ratio to {baseline_name} |")
    print("| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3e} | {seconds / baseline:,.1f}x |")
    print()
    print(
        f"| coefficients ({heads} heads, forward + backward) | seconds per call | torch ops forward | "
        "torch ops backward |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name, seconds, forward_ops, backward_ops in coefficient_rows:
        print(f"| {name} | {seconds:.3e} | {forward_ops} | {backward_ops} |")


if __name__ == "__main__":
    main()
