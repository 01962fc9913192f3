"""Measurement helpers shared by the benchmark scripts in ``recipes/benchmarks/``."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["cpu_peak_bytes"]


def cpu_peak_bytes(call: Callable[[], object]) -> int:
    """Peak bytes allocated during one ``call()`` on CPU, above what was allocated before it.

    The running peak of torch.profiler's memory events (allocations minus frees, in time order): CPU tensors
    have no ``max_memory_allocated`` counter, and the process's RSS also counts what the allocator caches.

    Example:
        >>> import torch
        >>> cpu_peak_bytes(lambda: torch.ones(1024, dtype=torch.float32)) >= 4096
        True
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak
