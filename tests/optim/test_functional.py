"""The functional step (optim/functional.py): a sharded step on plain tensors equals the unsharded one; torch's
options (complex, amsgrad, maximize) on plain tensors equal the NumPy re-derivation."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.optim.functional import superpositional_adamw
from hf_superpositional.optim.masks import build_quantum_mask
from tests.optim.optim_cases import MODES, assert_matches_numpy, numpy_reference


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


@pytest.mark.parametrize("implementation", ["single_tensor", "foreach"])
def test_complex_amsgrad_maximize_on_plain_tensors_match_numpy(implementation):
    """The functional API with has_complex=True (views taken as torch's functional adam takes them), amsgrad
    and maximize; masks of the real views, so first_n counts real components."""
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(3, 2, dtype=torch.complex64, generator=gen), torch.randn(5, generator=gen)]
    grads = [[torch.randn(t.shape, dtype=t.dtype, generator=gen) for t in tensors] for _ in range(6)]
    params = [t.clone() for t in tensors]
    ms, vs, v_maxs = ([torch.zeros_like(t) for t in tensors] for _ in range(3))
    steps = [torch.tensor(0.0) for _ in tensors]
    masks = [
        build_quantum_mask("first_n", 5, torch.view_as_real(p).shape if p.is_complex() else p.shape)
        for p in params
    ]
    hyper = {
        "lr": 0.05,
        "eps": 1e-8,
        "weight_decay": 0.1,
        "quantum_weight": 0.8,
        "amsgrad": True,
        "maximize": True,
    }
    for row in grads:
        superpositional_adamw(
            params, row, ms, vs, steps, masks, beta1=0.9, beta2=0.99, mode="moment", max_exp_avg_sqs=v_maxs,
            has_complex=True, implementation=implementation, **hyper,
        )  # fmt: skip
    group = {**hyper, "betas": (0.9, 0.99), "n_qubits": 5, "mode": "moment"}
    assert_matches_numpy(params, numpy_reference(tensors, grads, [group] * 2), atol=1e-5)
    assert params[0].is_complex() and ms[0].is_complex()  # the caller's lists keep their complex tensors


def test_bad_option_combinations_are_refused():
    p, g = torch.zeros(2), torch.ones(2)
    mask = build_quantum_mask("first_n", 2, p.shape)
    common = {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.0, "quantum_weight": 0.5}
    args = ([p], [g], [torch.zeros(2)], [torch.zeros(2)], [torch.tensor(0.0)], [mask])
    with pytest.raises(ValueError, match="amsgrad=True needs max_exp_avg_sqs: one tensor per parameter"):
        superpositional_adamw(*args, amsgrad=True, **common)
    with pytest.raises(ValueError, match="differentiable=True needs implementation='single_tensor'"):
        superpositional_adamw(*args, differentiable=True, implementation="foreach", **common)
    assert torch.equal(p, torch.zeros(2))
