"""Which elements are perturbed (optim/masks.py): the global first-n elements under any sharding, batched by dtype."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_superpositional.optim import SuperpositionalAdamW
from hf_superpositional.optim.masks import first_n_local_flat_indices
from tests.optim.optim_cases import MODES, PATHS, clone_params, grad_schedule, make_tensors, max_diff, run


# --------------------------------------------------------------------------------------------------
# first_n by GLOBAL index, ready for shards
# --------------------------------------------------------------------------------------------------
def brute_force_local_indices(global_shape, box_start, box_stop, n):
    """Label every global element with its row-major index, cut the box, keep labels < n."""
    labels = np.arange(math.prod(global_shape)).reshape(global_shape)
    block = labels[tuple(slice(a, b) for a, b in zip(box_start, box_stop, strict=True))]
    return np.flatnonzero(block.reshape(-1) < n).tolist(), block


@pytest.mark.parametrize(
    ("global_shape", "dim", "n_shards", "n"),
    [((5, 3), 0, 3, 7), ((4, 6), 1, 2, 8), ((3, 4, 2), 0, 2, 10), ((3, 4, 2), 1, 3, 5), ((7,), 0, 3, 4)],
)
def test_first_n_shards_pick_exactly_the_global_first_n(global_shape, dim, n_shards, n):
    picked = []
    size = global_shape[dim]
    chunk = -(-size // n_shards)  # torch.chunk / Shard placement sizes
    for start in range(0, size, chunk):
        stop = min(size, start + chunk)
        box_start = [0] * len(global_shape)
        box_stop = list(global_shape)
        box_start[dim], box_stop[dim] = start, stop
        local_shape = [b - a for a, b in zip(box_start, box_stop, strict=True)]
        got = first_n_local_flat_indices(global_shape, local_shape, box_start, n)
        expected, block = brute_force_local_indices(global_shape, box_start, box_stop, n)
        assert got == expected
        assert got == list(range(len(got)))  # always a local prefix: the fast paths use views
        picked += block.reshape(-1)[got].tolist()
    assert sorted(picked) == list(range(min(n, math.prod(global_shape))))


@pytest.mark.parametrize("mode", MODES)
def test_mixed_dtypes_use_one_batch_per_dtype(mode):
    """float32 and float64 parameters: several prefix batches and torch's regrouping, same result."""
    tensors = [t.double() if i % 2 else t for i, t in enumerate(make_tensors()[:4])]
    schedule = grad_schedule(tensors, 5, skip_last_on_odd_steps=False)
    schedule = [[g.to(t.dtype) for g, t in zip(row, tensors, strict=True)] for row in schedule]
    results = []
    for flags in (PATHS["loop"], PATHS["foreach"], PATHS["fused"]):
        params = clone_params(tensors)
        run(SuperpositionalAdamW(params, quantum_weight=0.5, mode=mode, lr=0.05, **flags), params, schedule)
        results.append(params)
    assert max_diff(results[1], results[0]) <= 1e-6
    assert max_diff(results[2], results[0]) <= 1e-6


def test_a_mask_from_declared_flat_indices_addresses_exactly_those_elements():
    import torch

    from hf_superpositional.optim.masks import (
        gather_masked,
        masked_add_,
        masked_copy_,
        quantum_mask_from_flat_indices,
    )

    t = torch.arange(12.0).reshape(3, 4)
    mask = quantum_mask_from_flat_indices(torch.tensor([9, 1, 2, 1]), t.shape)  # unsorted, repeated
    assert (mask.count, mask.prefix) == (3, False)
    assert gather_masked(t, mask).tolist() == [1.0, 2.0, 9.0]
    expected = t.clone()
    expected.view(-1)[[1, 2, 9]] += torch.tensor([10.0, 20.0, 30.0]) * 2
    masked_add_(t, mask, torch.tensor([10.0, 20.0, 30.0]), alpha=2.0)
    assert torch.equal(t, expected)
    masked_copy_(t, mask, torch.zeros(3))
    assert t.view(-1)[[1, 2, 9]].tolist() == [0.0, 0.0, 0.0] and t.view(-1)[0].item() == 0.0
    assert quantum_mask_from_flat_indices([0, 1, 2], (5,)).prefix  # 0..k-1 keeps the fast prefix views
    with pytest.raises(ValueError, match="flat_indices must lie in"):
        quantum_mask_from_flat_indices([12], t.shape)
