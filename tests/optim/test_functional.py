"""The functional step (optim/functional.py): a sharded step on plain tensors equals the unsharded one."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.optim.functional import superpositional_adamw
from hf_superpositional.optim.masks import build_quantum_mask
from tests.optim.optim_cases import MODES


@pytest.mark.parametrize("implementation", ["single_tensor", "foreach", "fused"])
@pytest.mark.parametrize("mode", MODES)
def test_sharded_step_equals_unsharded_step(implementation, mode):
    """Column shards of a matrix, each with its global-offset mask, stepped separately == the full step."""
    gen = torch.Generator().manual_seed(0)
    full = torch.randn(4, 6, generator=gen)
    grads = [torch.randn(4, 6, generator=gen) for _ in range(5)]

    def run_blocks(blocks, quantum_weight=0.8):  # blocks: (column start, stop)
        ps = [full[:, a:b].clone() for a, b in blocks]  # clone: never step `full` itself
        masks = [
            build_quantum_mask("first_n", 8, p.shape, global_shape=full.shape, global_offset=(0, a))
            for p, (a, _) in zip(ps, blocks, strict=True)
        ]
        ms, vs = [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]
        steps = [torch.tensor(0.0) for _ in ps]
        for g in grads:
            gs = [g[:, a:b].contiguous() for a, b in blocks]
            superpositional_adamw(
                ps, gs, ms, vs, steps, masks, lr=0.05, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1,
                quantum_weight=quantum_weight, mode=mode, implementation=implementation,
            )  # fmt: skip
        return torch.cat(ps, dim=1)

    whole = run_blocks([(0, 6)])
    torch.testing.assert_close(run_blocks([(0, 3), (3, 6)]), whole, rtol=0, atol=1e-7)
    assert not torch.allclose(whole, run_blocks([(0, 6)], quantum_weight=0.0))  # the mask mattered
