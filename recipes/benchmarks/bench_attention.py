"""Forward+backward time and peak memory of quantum attention against SDPA and eager, by sequence length.

Calls the attention functions registered in transformers' ``AttentionInterface`` directly, on random
``q/k/v`` with a minimal attention-module stub, causal, side by side in one run:

- ``sdpa``: transformers' ``sdpa_attention_forward`` with ``mask=None`` (``is_causal``), what an unpadded batch
  gets; every ratio is against this row of the same shape;
- ``eager``: ``eager_attention_forward`` with its float causal mask (what ``"eager"`` gets);
- ``quantum``: ``attn_implementation="quantum"`` as it runs by default (``mask=None``: the ``"quantum"`` mask
  builder returns ``None`` for an unpadded batch too), a per-layer circuit with 4 qubits, depth 2, gate 1.
  On CPU that is the fused flash-style kernel (``quantum/kernels/flash.py``);
- ``quantum dense``: the same call with the fused kernel switched off (``set_flash_attention(False)``): the
  dense reference path, which holds ``[B, H, S, S]`` probabilities like eager attention;
- ``quantum dense [<kernel>]``: the dense path with another circuit kernel (``--circuit-kernels``);
- ``quantum_flex`` (CUDA only): the FlexAttention path with its causal block mask.

The dense rows (eager and ``quantum dense``) run only up to ``--max-dense-seq`` (their memory grows with
S^2: 2 GiB of probabilities alone at S = 8192).

Time: median (and min) over ``--repeats`` runs of forward + backward, after ``--warmup`` runs; the
implementations take turns run by run, so that a load change on a shared machine hits them alike. On a
machine shared with other jobs, 2-thread timings can be dominated by waiting for a descheduled thread at
every parallel region: compare the min column, or run with ``--threads 1``.
Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` minus the memory allocated before the step; on
CPU, the running peak of torch.profiler's memory events (every allocation and free, in order) over one
forward + backward, relative to its start -- i.e. the largest amount of memory the step itself held at any
moment (saved activations, temporaries, scratch buffers and gradients; the pre-existing ``q/k/v`` and the
output gradient are not counted).

Targets (issue 16) for ``quantum`` on CPU at every S >= 1024: time <= 1.15x SDPA's and peak memory <= 1.2x
SDPA's, memory growing linearly with S (the scaling table: peak memory per 1024 tokens of each S).

Usage:
    python recipes/benchmarks/bench_attention.py [--seqs 256 1024 2048 4096 8192] [--repeats 5] [--warmup 1]
        [--device cpu|cuda] [--threads N] [--circuit-kernels eager] [--max-dense-seq 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

SMALL_SHAPE = (4, 4, 256, 16)
"""(batch, heads, sequence length, head_dim) of the small shape (the first row block)."""
BATCH, HEADS, HEAD_DIM = 1, 8, 64
"""The long-sequence shapes: B1 H8 D64 at each --seqs length."""
SEQS = (256, 1024, 2048, 4096, 8192)
TIME_TARGET, MEMORY_TARGET, TARGET_FROM_SEQ = 1.15, 1.2, 1024


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


def _times_ms(runs: dict[str, tuple[Callable, Callable]], device: torch.device, repeats: int, warmup: int) -> dict:
    """Milliseconds per run of each ``(reset, run)`` pair (``reset`` untimed), taking turns run by run."""
    times = {name: [] for name in runs}
    for step in range(warmup + repeats):
        for name, (reset, run) in runs.items():
            reset()
            _synchronize(device)
            start = time.perf_counter()
            run()
            _synchronize(device)
            if step >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _peak_bytes(reset: Callable, run: Callable, device: torch.device) -> int:
    # The previous run's gradients are freed before the measurement: freeing them inside it would count as
    # negative memory.
    reset()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from hf_superpositional.profiling import cpu_peak_bytes

    return cpu_peak_bytes(run)


def _candidates(device, length, circuit, circuit_kernels, max_dense_seq):
    """(name, attention function, module, mask, circuit kernel or None, fused kernel allowed)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from hf_superpositional.attention.interface import QUANTUM_ATTENTION, QUANTUM_FLEX_ATTENTION

    quantum = AttentionInterface()[QUANTUM_ATTENTION]
    rows = [("sdpa", sdpa_attention_forward, AttentionStub(), None, None, True)]
    dense = length <= max_dense_seq
    if dense:
        rows.append(("eager", eager_attention_forward, AttentionStub(), "float_mask", None, True))
    rows.append((QUANTUM_ATTENTION, quantum, AttentionStub(circuit), None, None, True))
    if dense and device.type == "cpu":
        rows.append((f"{QUANTUM_ATTENTION} dense", quantum, AttentionStub(circuit), None, None, False))
    if dense:
        for kernel in circuit_kernels:
            rows.append((f"{QUANTUM_ATTENTION} dense [{kernel}]", quantum, AttentionStub(circuit), None, kernel, False))
    if device.type == "cuda":
        flex = AttentionInterface()[QUANTUM_FLEX_ATTENTION]
        rows.append((QUANTUM_FLEX_ATTENTION, flex, AttentionStub(circuit), None, None, True))
    return rows


def bench_shape(device, dtype, shape, repeats, warmup, circuit_kernels, max_dense_seq) -> list[dict]:
    from transformers.masking_utils import eager_mask

    from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
    from hf_superpositional.attention.config import QuantumAttentionConfig
    from hf_superpositional.quantum.kernels import set_circuit_kernel, set_flash_attention

    batch, heads, length, head_dim = shape
    generator = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(batch, heads, length, head_dim, generator=generator).to(device=device, dtype=dtype)
        for _ in range(3)
    )
    grad_out = torch.randn(batch, length, heads, head_dim, generator=generator).to(device=device, dtype=dtype)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    scaling = head_dim**-0.5
    circuit = QuantumCircuitParameters(QuantumAttentionConfig(gate_init=1.0), num_heads=heads).to(device)
    runs = {}
    for name, fn, module, mask, kernel, fused in _candidates(device, length, circuit, circuit_kernels, max_dense_seq):
        module.train()
        if mask == "float_mask":
            mask = eager_mask(batch_size=batch, q_length=length, kv_length=length, dtype=dtype, device=device)

        def reset(module=module):
            for tensor in (q, k, v, *module.parameters()):
                tensor.grad = None

        def run(fn=fn, module=module, mask=mask, kernel=kernel, fused=fused):
            previous_kernel = set_circuit_kernel(kernel) if kernel is not None else None
            previous_fused = set_flash_attention(fused)
            try:
                out, _ = fn(module, q, k, v, mask, scaling=scaling, dropout=0.0)
                out.backward(grad_out)
            finally:
                set_flash_attention(previous_fused)
                if previous_kernel is not None:
                    set_circuit_kernel(previous_kernel)

        runs[name] = (reset, run)
    times = _times_ms(runs, device, repeats, warmup)
    results = {
        name: (statistics.median(times[name]), min(times[name]), _peak_bytes(reset, run, device))
        for name, (reset, run) in runs.items()
    }
    sdpa = results["sdpa"]
    eager = results.get("eager")
    rows = []
    for name, (median, best, peak) in results.items():
        rows.append(
            dict(
                shape=f"{batch}x{heads}x{length}x{head_dim}",
                seq=length,
                impl=name,
                ms=median,
                min_ms=best,
                mib=peak / 2**20,
                time_vs_sdpa=median / sdpa[0],
                min_vs_sdpa=best / sdpa[1],
                mem_vs_sdpa=peak / sdpa[2],
                time_vs_eager=None if eager is None else median / eager[0],
                mem_vs_eager=None if eager is None else peak / eager[2],
            )
        )
    return rows


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def format_table(rows: list[dict]) -> str:
    lines = [
        "| B x H x S x D | S | impl | fwd+bwd ms (median) | min ms | time / sdpa | min / sdpa | peak MiB "
        "| mem / sdpa | time / eager | mem / eager |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['shape']} | {row['seq']} | {row['impl']} | {row['ms']:.2f} | {row['min_ms']:.2f} | "
            f"{row['time_vs_sdpa']:.2f}x | {row['min_vs_sdpa']:.2f}x | {row['mib']:.1f} | {row['mem_vs_sdpa']:.2f}x | "
            f"{_ratio(row['time_vs_eager'])} | {_ratio(row['mem_vs_eager'])} |"
        )
    return "\n".join(lines)


def format_scaling(rows: list[dict], impls: tuple[str, ...]) -> str:
    """Peak memory per 1024 tokens at each S of the B1 H8 D64 rows: constant when memory grows linearly."""
    long_rows = [row for row in rows if row["shape"].startswith(f"{BATCH}x{HEADS}x")]
    seqs = sorted({row["seq"] for row in long_rows})
    peaks = {(row["impl"], row["seq"]): row["mib"] for row in long_rows}
    header = "| S | " + " | ".join(f"{impl} MiB | {impl} MiB per 1K tokens" for impl in impls) + " |"
    lines = [header, "| ---: |" + " ---: | ---: |" * len(impls)]
    for seq in seqs:
        cells = []
        for impl in impls:
            mib = peaks.get((impl, seq))
            cells += ["", ""] if mib is None else [f"{mib:.1f}", f"{mib / seq * 1024:.2f}"]
        lines.append(f"| {seq} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_targets(rows: list[dict]) -> str:
    lines = ["| S | quantum time / sdpa | quantum min / sdpa | quantum mem / sdpa | verdict |", "| ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        if row["impl"] != "quantum" or row["seq"] < TARGET_FROM_SEQ or not row["shape"].startswith(f"{BATCH}x{HEADS}x"):
            continue
        ok = row["time_vs_sdpa"] <= TIME_TARGET and row["mem_vs_sdpa"] <= MEMORY_TARGET
        lines.append(
            f"| {row['seq']} | {row['time_vs_sdpa']:.2f}x | {row['min_vs_sdpa']:.2f}x | {row['mem_vs_sdpa']:.2f}x "
            f"| {'OK' if ok else 'MISSED'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seqs", type=int, nargs="*", default=list(SEQS), help="sequence lengths at B1 H8 D64")
    parser.add_argument("--no-small-shape", action="store_true", help=f"skip the small shape {SMALL_SHAPE}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max-dense-seq", type=int, default=2048, help="longest S for eager and quantum dense")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--circuit-kernels",
        nargs="*",
        default=[],
        choices=["auto", "cpp", "compiled", "eager"],
        help="extra 'quantum dense' rows, one per circuit kernel",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from hf_superpositional.attention.interface import register_quantum_attention

    register_quantum_attention()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    shapes = ([] if args.no_small_shape else [SMALL_SHAPE]) + [(BATCH, HEADS, s, HEAD_DIM) for s in args.seqs]
    rows = []
    for shape in shapes:
        rows += bench_shape(device, dtype, shape, args.repeats, args.warmup, args.circuit_kernels, args.max_dense_seq)
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    memory = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "profiler memory events, running peak"
    print(f"Attention forward+backward, causal, {args.dtype}, {where}; peak memory: {memory}.")
    print(f"median of {args.repeats} runs after {args.warmup} warm-up, implementations taking turns run by run.\n")
    print(format_table(rows))
    print("\nMemory scaling (B1 H8 D64): peak MiB, and per 1024 tokens (constant = linear in S)\n")
    print(format_scaling(rows, ("sdpa", "quantum")))
    print(
        f"\nTargets at S >= {TARGET_FROM_SEQ} (B1 H8 D64): quantum time <= {TIME_TARGET}x sdpa, "
        f"peak memory <= {MEMORY_TARGET}x sdpa\n"
    )
    print(format_targets(rows))


if __name__ == "__main__":
    main()
