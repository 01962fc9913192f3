"""Forward+backward time and peak memory of quantum attention against eager and SDPA (SPEC section 3/4).

Calls the attention functions registered in transformers' ``AttentionInterface`` directly, on random
``q/k/v`` with a minimal attention-module stub, at the shapes below (causal), side by side in one run:

- ``eager``: transformers' ``eager_attention_forward`` with its float causal mask (what ``"eager"`` gets);
- ``sdpa``: ``sdpa_attention_forward`` with ``mask=None`` (``is_causal``), what an unpadded batch gets;
- ``quantum``: our dense function with ``mask=None`` (the ``"quantum"`` mask builder returns ``None`` for an
  unpadded batch too), a per-layer circuit with 4 qubits, depth 2 and gate 1, with the default circuit
  kernel (``"auto"``: the fused C++ kernel on CPU); ``quantum [<kernel>]`` rows repeat it with the kernels
  of ``--circuit-kernels`` (e.g. ``eager``, the torch-ops reference) for comparison;
- ``quantum_flex`` (CUDA only): the FlexAttention path with its causal block mask.

Time: median (and min) over ``--repeats`` runs of forward + backward, after ``--warmup`` runs; the
implementations take turns run by run, so that a load change on a shared machine hits them alike. On a
machine shared with other jobs, 2-thread timings can be dominated by waiting for a descheduled thread at
every parallel region: compare the min column, or run with ``--threads 1``.
Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` minus the memory allocated before the step; on
CPU, the running peak of torch.profiler's memory events (every allocation and free, in order) over one
forward + backward, relative to its start -- i.e. the largest amount of memory the step itself held at any
moment (saved activations, temporaries and gradients; the pre-existing ``q/k/v`` are not counted).

Ratios are against ``eager`` measured in the same run (targets: time <= 1.3x, memory <= 1.5x); on CUDA,
``quantum_flex`` is also compared with ``sdpa``.

Usage:
    python recipes/benchmarks/bench_attention.py [--repeats 10] [--warmup 2] [--device cpu|cuda] [--threads N]
        [--circuit-kernels eager compiled]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

SHAPES = ((4, 4, 256, 16), (1, 8, 1024, 64))
"""(batch, heads, sequence length, head_dim)."""


class AttentionStub(nn.Module):
    """The attributes transformers' attention functions read from an attention module."""

    def __init__(self, circuit: nn.Module | None = None):
        super().__init__()
        self.num_key_value_groups = 1
        self.is_causal = True
        self.layer_idx = 0
        if circuit is not None:
            self.quantum_circuit = circuit


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(fn: Callable, module, q, k, v, mask, grad_out, scaling) -> None:
    out, _ = fn(module, q, k, v, mask, scaling=scaling, dropout=0.0)
    out.backward(grad_out)


def _times_ms(runs: dict[str, Callable], device: torch.device, repeats: int, warmup: int) -> dict:
    """Milliseconds per run of each callable, taking turns run by run."""
    times = {name: [] for name in runs}
    for step in range(warmup + repeats):
        for name, run in runs.items():
            _synchronize(device)
            start = time.perf_counter()
            run()
            _synchronize(device)
            if step >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _peak_bytes(run: Callable, device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from hf_superpositional.profiling import cpu_peak_bytes

    return cpu_peak_bytes(run)


def bench(
    device: torch.device, dtype: torch.dtype, repeats: int, warmup: int, circuit_kernels: list[str]
) -> list[dict]:
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import eager_mask
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
    from hf_superpositional.attention.config import QuantumAttentionConfig
    from hf_superpositional.attention.interface import (
        QUANTUM_ATTENTION,
        QUANTUM_FLEX_ATTENTION,
        register_quantum_attention,
    )
    from hf_superpositional.quantum.kernels import set_circuit_kernel

    register_quantum_attention()
    interface = AttentionInterface()
    rows = []
    for batch, heads, length, head_dim in SHAPES:
        generator = torch.Generator().manual_seed(0)
        q, k, v = (
            torch.randn(batch, heads, length, head_dim, generator=generator).to(device=device, dtype=dtype)
            for _ in range(3)
        )
        grad_out = torch.randn(batch, length, heads, head_dim, generator=generator).to(
            device=device, dtype=dtype
        )
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        scaling = head_dim**-0.5
        circuit = QuantumCircuitParameters(QuantumAttentionConfig(gate_init=1.0), num_heads=heads).to(device)
        float_mask = eager_mask(
            batch_size=batch, q_length=length, kv_length=length, dtype=dtype, device=device
        )

        candidates = [
            ("eager", eager_attention_forward, AttentionStub(), float_mask, None),
            ("sdpa", sdpa_attention_forward, AttentionStub(), None, None),
            (QUANTUM_ATTENTION, interface[QUANTUM_ATTENTION], AttentionStub(circuit), None, None),
        ]
        for kernel in circuit_kernels:
            name = f"{QUANTUM_ATTENTION} [{kernel}]"
            candidates.append((name, interface[QUANTUM_ATTENTION], AttentionStub(circuit), None, kernel))
        if device.type == "cuda":
            candidates.append(
                (
                    QUANTUM_FLEX_ATTENTION,
                    interface[QUANTUM_FLEX_ATTENTION],
                    AttentionStub(circuit),
                    None,
                    None,
                )
            )
        runs = {}
        for name, fn, module, mask, kernel in candidates:
            module.train()

            def run(
                fn=fn,
                module=module,
                mask=mask,
                kernel=kernel,
                qkv=(q, k, v),
                grad_out=grad_out,
                scaling=scaling,
            ):
                for tensor in (*qkv, *module.parameters()):
                    tensor.grad = None
                previous = set_circuit_kernel(kernel) if kernel is not None else None
                try:
                    _step(fn, module, *qkv, mask, grad_out, scaling)
                finally:
                    if previous is not None:
                        set_circuit_kernel(previous)

            runs[name] = run
        times = _times_ms(runs, device, repeats, warmup)
        results = {
            name: (statistics.median(times[name]), min(times[name]), _peak_bytes(run, device))
            for name, run in runs.items()
        }
        for name, (median, best, peak) in results.items():
            row = dict(
                shape=f"{batch}x{heads}x{length}x{head_dim}",
                impl=name,
                ms=median,
                min_ms=best,
                mib=peak / 2**20,
                time_vs_eager=median / results["eager"][0],
                min_vs_eager=best / results["eager"][1],
                mem_vs_eager=peak / results["eager"][2],
                time_vs_sdpa=median / results["sdpa"][0],
                mem_vs_sdpa=peak / results["sdpa"][2],
            )
            rows.append(row)
    return rows


def format_table(rows: list[dict], show_sdpa: bool) -> str:
    header = (
        "| B x H x L x D | impl | fwd+bwd ms (median) | time / eager | min ms | min / eager | peak MiB "
        "| mem / eager |"
    )
    rule = "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    if show_sdpa:
        header += " time / sdpa | mem / sdpa |"
        rule += " ---: | ---: |"
    lines = [header, rule]
    for row in rows:
        line = (
            f"| {row['shape']} | {row['impl']} | {row['ms']:.2f} | {row['time_vs_eager']:.2f}x | "
            f"{row['min_ms']:.2f} | {row['min_vs_eager']:.2f}x | {row['mib']:.1f} | {row['mem_vs_eager']:.2f}x |"
        )
        if show_sdpa:
            line += f" {row['time_vs_sdpa']:.2f}x | {row['mem_vs_sdpa']:.2f}x |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--circuit-kernels",
        nargs="*",
        default=[],
        choices=["auto", "cpp", "compiled", "eager"],
        help="extra quantum rows, one per circuit kernel (the plain quantum row uses the default kernel)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    rows = bench(device, dtype, args.repeats, args.warmup, args.circuit_kernels)
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    memory = (
        "torch.cuda.max_memory_allocated" if device.type == "cuda" else "profiler memory events, running peak"
    )
    print(f"Attention forward+backward, causal, {args.dtype}, {where}; peak memory: {memory}.")
    print("Targets for quantum: time <= 1.3x eager, memory <= 1.5x eager.\n")
    print(format_table(rows, show_sdpa=device.type == "cuda"))


if __name__ == "__main__":
    main()
