"""Fixtures shared by the tests of this folder."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread. On a shared CPU, torch's fused kernel otherwise waits on a
    descheduled OpenMP worker at every step (seconds per test); results are the same either way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
