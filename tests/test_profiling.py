"""The CPU peak-memory helper of the benchmarks (profiling.py), against allocations of known size."""

from __future__ import annotations

import torch

from hf_superpositional.profiling import cpu_peak_bytes


def test_peak_counts_what_is_alive_at_once_not_the_total_allocated():
    n = 1 << 20  # 4 MiB of float32

    def one_after_another():
        for _ in range(3):
            torch.ones(n, dtype=torch.float32)  # freed before the next

    def all_together():
        kept = [torch.ones(n, dtype=torch.float32) for _ in range(3)]
        return len(kept)

    sequential, together = cpu_peak_bytes(one_after_another), cpu_peak_bytes(all_together)
    assert 4 * n <= sequential < 2 * 4 * n
    assert 3 * 4 * n <= together < 4 * 4 * n


def test_memory_held_before_the_call_is_not_counted():
    held = torch.ones(1 << 22)  # 16 MiB alive throughout
    assert cpu_peak_bytes(lambda: torch.ones(1024)) < 1 << 20
    assert held.numel() == 1 << 22
