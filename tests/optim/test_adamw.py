"""SuperpositionalAdamW (optim/adamw.py): torch's AdamW at quantum_weight=0, a NumPy re-derivation otherwise, every path, groups, state dicts, bad input, diagnostics, DTensor shards."""

from __future__ import annotations

import copy
import math
import os
import re

import numpy as np
import pytest
import torch

from hf_superpositional.optim import SuperpositionalAdamW
from tests.optim.optim_cases import (
    MODES,
    PATHS,
    as_real_array,
    assert_matches_numpy,
    clone_params,
    fresh,
    grad_schedule,
    make_tensors,
    max_diff,
    numpy_reference,
    run,
)

SCOPES = ("first_n", "all")


HYPER = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}


# --------------------------------------------------------------------------------------------------
# quantum_weight = 0 is AdamW
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["loop", "foreach", "fused", "default"])
def test_quantum_weight_zero_matches_torch_adamw(path):
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 200)
    ours_p, ref_p = clone_params(tensors), clone_params(tensors)
    ours_flags = {} if path == "default" else PATHS[path]
    # on CPU the default is torch's fused kernel
    ref_flags = PATHS["fused"] if path == "default" else PATHS[path]
    ours = SuperpositionalAdamW(
        [{"params": ours_p}, {"params": []}], quantum_weight=0.0, **HYPER, **ours_flags
    )
    ref = torch.optim.AdamW([{"params": ref_p}, {"params": []}], **HYPER, **ref_flags)
    run(ours, ours_p, schedule)
    run(ref, ref_p, schedule)
    assert max_diff(ours_p, ref_p) <= 1e-6
    for a, b in zip(ours_p, ref_p, strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(ours.state[a][key], ref.state[b][key], rtol=0, atol=1e-6)
        assert ours.state[a]["step"].dtype == torch.float32 and ours.state[a]["step"].dim() == 0
    assert ours.state[ours_p[-1]]["step"].item() == 100  # the param without a gradient on odd steps


# --------------------------------------------------------------------------------------------------
# quantum_weight > 0 against NumPy
# --------------------------------------------------------------------------------------------------
# float32 vs float64: |p| <= ~4, one float32 rounding of p per step is <= 2.4e-7, so 50 steps stay well
# below 1e-5; the Adam step itself is computed to float32 relative precision (~1e-7 of lr).
TOL = 1e-5


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("mode", MODES)
def test_matches_numpy_reference(mode, scope, path):
    tensors = make_tensors(seed=2)
    schedule = grad_schedule(tensors, 50, seed=3)
    params = clone_params(tensors)
    group = {**HYPER, "quantum_weight": 0.7, "n_qubits": 4, "mode": mode, "scope": scope}
    opt = SuperpositionalAdamW(params, **group, **PATHS[path])
    run(opt, params, schedule)
    expected = numpy_reference(tensors, schedule, [group] * len(tensors))
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().double().numpy(), e, rtol=0, atol=TOL)
    # the quantum term matters at this tolerance: plain AdamW is far from it
    adamw = numpy_reference(tensors, schedule, [{**group, "quantum_weight": 0.0}] * len(tensors))
    assert (
        max(np.abs(p.detach().double().numpy() - a).max() for p, a in zip(params, adamw, strict=True))
        > 100 * TOL
    )


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("mode", MODES)
def test_paths_agree(mode, scope):
    tensors = make_tensors(seed=4)
    schedule = grad_schedule(tensors, 30, seed=5)
    results = {}
    for path, flags in PATHS.items():
        params = clone_params(tensors)
        opt = SuperpositionalAdamW(params, **HYPER, quantum_weight=0.5, mode=mode, scope=scope, **flags)
        run(opt, params, schedule)
        results[path] = params
    assert max_diff(results["foreach"], results["loop"]) <= 1e-6
    assert max_diff(results["fused"], results["loop"]) <= 1e-6


@pytest.mark.parametrize("path", list(PATHS))
def test_per_group_overrides_match_numpy(path):
    tensors = make_tensors(seed=6)
    schedule = grad_schedule(tensors, 40, seed=7)
    params = clone_params(tensors)
    groups = [
        {"quantum_weight": 0.9, "n_qubits": 2, "mode": "update", "scope": "first_n"},
        {"quantum_weight": 0.3, "n_qubits": 5, "mode": "moment", "scope": "first_n", "lr": 3e-3},
        {"quantum_weight": 0.5, "mode": "moment", "scope": "all", "betas": (0.8, 0.95), "eps": 1e-6},
        {"quantum_weight": 0.0, "weight_decay": 0.0},
    ]
    layout = [0, 1, 1, 2, 2, 3]  # group of each tensor
    opt = SuperpositionalAdamW(
        [
            {"params": [p for p, k in zip(params, layout, strict=True) if k == g], **groups[g]}
            for g in range(4)
        ],
        lr=1e-2,
        betas=(0.9, 0.99),
        weight_decay=0.1,
        quantum_weight=0.1,
        n_qubits=4,
        **PATHS[path],
    )
    run(opt, params, schedule)
    defaults = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1, "n_qubits": 4}
    hypers = [{**defaults, "mode": "update", "scope": "first_n", **groups[k]} for k in layout]
    expected = numpy_reference(tensors, schedule, hypers)
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().double().numpy(), e, rtol=0, atol=TOL)


# --------------------------------------------------------------------------------------------------
# behaviour details
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("scope", SCOPES)
def test_moment_mode_leaves_grads_untouched(path, scope):
    params = clone_params(make_tensors())
    for p in params:
        p.grad = torch.randn_like(p)
    before = [p.grad.clone() for p in params]
    opt = SuperpositionalAdamW(params, quantum_weight=0.5, mode="moment", scope=scope, **PATHS[path])
    opt.step()
    for p, g in zip(params, before, strict=True):
        assert torch.equal(p.grad, g)


@pytest.mark.parametrize("path", list(PATHS))
def test_tensor_lr_equals_float_lr(path):
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 10)
    a, b = clone_params(tensors), clone_params(tensors)
    kw = {"quantum_weight": 0.5, "weight_decay": 0.1, **PATHS[path]}
    run(SuperpositionalAdamW(a, lr=torch.tensor(0.01), **kw), a, schedule)
    run(SuperpositionalAdamW(b, lr=0.01, **kw), b, schedule)
    assert max_diff(a, b) <= 1e-7


@pytest.mark.parametrize("path", list(PATHS))
def test_parameter_storage_swap_is_followed(path):
    """`p.data = ...` between steps (e.g. module.to()) must not leave the fast path writing elsewhere."""
    tensors = make_tensors()
    # every parameter gets a gradient at every step, so the set of stepped params stays the same
    schedule = grad_schedule(tensors, 6, skip_last_on_odd_steps=False)
    results = []
    for flags in (PATHS["loop"], PATHS[path]):
        params = clone_params(tensors)
        opt = SuperpositionalAdamW(params, quantum_weight=0.5, lr=0.05, **flags)
        run(opt, params, schedule[:3])
        params[0].data = params[0].data.clone() + 1.0
        run(opt, params, schedule[3:])
        results.append(params)
    assert max_diff(*results) <= 1e-6


def test_state_dict_round_trip_mid_run_continues_identically():
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 20)
    params = clone_params(tensors)
    kw = {"quantum_weight": 0.4, "mode": "moment", "weight_decay": 0.05, "lr": 0.02}
    opt = SuperpositionalAdamW(params, **kw)
    run(opt, params, schedule[:10])
    saved = copy.deepcopy(opt.state_dict())
    assert set(saved["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}

    resumed_params = clone_params([p.detach() for p in params])
    resumed = SuperpositionalAdamW(resumed_params, quantum_weight=0.0)  # overwritten by the load
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["quantum_weight"] == 0.4 and resumed.param_groups[0]["mode"] == "moment"
    run(opt, params, schedule[10:])
    run(resumed, resumed_params, schedule[10:])
    assert max_diff(params, resumed_params) == 0.0


@pytest.mark.parametrize("path", list(PATHS))
def test_adamw_checkpoint_loads_both_ways(path):
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 20)
    flags = PATHS[path]

    # torch AdamW -> ours (quantum_weight=0): continuing matches AdamW
    ref_p = clone_params(tensors)
    ref = torch.optim.AdamW(ref_p, **HYPER, **flags)
    run(ref, ref_p, schedule[:10])
    ours_p = clone_params([p.detach() for p in ref_p])
    ours = SuperpositionalAdamW(ours_p, quantum_weight=0.0, **flags)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))
    assert ours.param_groups[0]["quantum_weight"] == 0.0  # quantum keys absent from AdamW: defaults
    run(ref, ref_p, schedule[10:])
    run(ours, ours_p, schedule[10:])
    assert max_diff(ours_p, ref_p) <= 1e-7

    # ours -> torch AdamW
    ours_p = clone_params(tensors)
    ours = SuperpositionalAdamW(ours_p, quantum_weight=0.0, **HYPER, **flags)
    run(ours, ours_p, schedule[:10])
    ref_p = clone_params([p.detach() for p in ours_p])
    ref = torch.optim.AdamW(ref_p, **flags)
    ref.load_state_dict(copy.deepcopy(ours.state_dict()))
    run(ref, ref_p, schedule[10:])
    run(ours, ours_p, schedule[10:])
    assert max_diff(ours_p, ref_p) <= 1e-7


def test_deepcopy_keeps_settings():
    p = torch.nn.Parameter(torch.randn(3))
    opt = SuperpositionalAdamW([p], perturbation_backend="qiskit", track_diagnostics=True)
    clone = copy.deepcopy(opt)
    assert clone.perturbation_backend == "qiskit" and clone.track_diagnostics


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -1e-3}, "lr"),
        ({"eps": -1.0}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"quantum_weight": -0.5}, "quantum_weight"),
        ({"betas": (1.0, 0.999)}, "betas[0]"),
        ({"betas": (0.9, -0.1)}, "betas[1]"),
        ({"betas": (0.9,)}, "betas"),
        ({"n_qubits": 0}, "n_qubits"),
        ({"n_qubits": 2.5}, "n_qubits"),
        ({"n_qubits": True}, "n_qubits"),
        ({"mode": "gradient"}, "mode"),
        ({"scope": "last_n"}, "scope"),
        ({"perturbation_backend": "ibm"}, "perturbation_backend"),
        ({"foreach": True, "fused": True}, "foreach"),
        ({"lr": math.inf}, r"lr must be a finite non-negative float \(allowed range: 0 <= lr < inf\)"),
        ({"lr": torch.tensor(math.inf)}, "lr must be a finite"),
        ({"eps": math.inf}, "eps must be a finite"),
        ({"weight_decay": math.inf}, "weight_decay must be a finite"),
        ({"quantum_weight": math.inf}, "quantum_weight must be a finite"),
        ({"quantum_weight": -math.inf}, "quantum_weight must be a non-negative float"),
        (
            {"betas": (torch.tensor([0.9, 0.9]), 0.999)},
            "betas[0] must be a float in [0, 1) or a 1-element tensor",
        ),
        ({"amsgrad": "yes"}, "amsgrad must be True or False"),
        ({"maximize": 1}, "maximize must be True or False"),
        ({"fused": "auto"}, "fused must be True, False or None"),
        ({"fused": True, "differentiable": True}, "fused=True does not support differentiable=True"),
        ({"foreach": True, "differentiable": True}, "foreach=True does not support differentiable=True"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, name):
    pattern = name if "\\" in name else re.escape(name)
    with pytest.raises(ValueError, match=pattern):
        SuperpositionalAdamW([torch.nn.Parameter(torch.randn(2))], **kwargs)


@pytest.mark.parametrize(("override", "name"), [({"n_qubits": -1}, "n_qubits"), ({"mode": "x"}, "mode")])
def test_invalid_group_override_raises_value_error(override, name):
    a, b = torch.nn.Parameter(torch.randn(2)), torch.nn.Parameter(torch.randn(2))
    with pytest.raises(ValueError, match=name):
        SuperpositionalAdamW([{"params": [a]}, {"params": [b], **override}])
    opt = SuperpositionalAdamW([a])
    with pytest.raises(ValueError, match=name):
        opt.add_param_group({"params": [b], **override})


def test_sparse_gradient_raises_runtime_error():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    opt = SuperpositionalAdamW(emb.parameters())
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("mode", MODES)
def test_nan_gradient_propagates_like_adamw(path, mode):
    tensors = make_tensors()
    ours_p, ref_p = clone_params(tensors), clone_params(tensors)
    ours = SuperpositionalAdamW(ours_p, quantum_weight=0.5, mode=mode, **PATHS[path])
    ref = torch.optim.AdamW(ref_p, **PATHS[path])
    for p, q in zip(ours_p, ref_p, strict=True):
        g = torch.randn_like(p)
        g[(0,) * g.dim()] = float("nan")  # the first element: inside the first_n mask
        p.grad, q.grad = g.clone(), g.clone()
    ours.step()
    ref.step()
    for p, q in zip(ours_p, ref_p, strict=True):
        assert torch.isnan(p).any()
        assert torch.equal(torch.isnan(p), torch.isnan(q))


# --------------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("scope", SCOPES)
def test_diagnostics_match_direct_computation(path, scope):
    tensors = make_tensors()[:4]
    params = clone_params(tensors)
    lr, qw, n = 0.01, 0.3, 4
    opt = SuperpositionalAdamW(
        params, lr=lr, quantum_weight=qw, n_qubits=n, scope=scope, track_diagnostics=True, **PATHS[path]
    )
    assert opt.last_step_diagnostics() is None
    schedule = grad_schedule(tensors, 2, skip_last_on_odd_steps=False)
    run(opt, params, schedule[:1])
    p0 = [p.detach().double().numpy().copy() for p in params]
    run(opt, params, schedule[1:])
    d = opt.last_step_diagnostics()
    assert set(d) == {
        "quantum/perturbation_norm",
        "quantum/update_norm",
        "quantum/perturbation_to_update_ratio",
    }
    # Q of the second step from p0 and g, in NumPy
    sq = 0.0
    for p, g in zip(p0, schedule[1], strict=True):
        g = g.double().numpy()
        mask = np.ones(p.size) if scope == "all" else (np.arange(p.size) < n)
        sq += float(((lr * qw * mask.reshape(p.shape) * np.sin(np.pi * p) * g) ** 2).sum())
    assert d["quantum/perturbation_norm"] == pytest.approx(math.sqrt(sq), rel=1e-5)
    # Adam update at step 2 (mode="update": moments see the raw gradients)
    b1, b2, eps = 0.9, 0.999, 1e-8
    usq = 0.0
    for g1, g2 in zip(schedule[0], schedule[1], strict=True):
        g1, g2 = g1.double().numpy(), g2.double().numpy()
        m = (1 - b1) * (b1 * g1 + g2)
        v = (1 - b2) * (b2 * g1 * g1 + g2 * g2)
        usq += float(((lr * (m / (1 - b1**2)) / (np.sqrt(v / (1 - b2**2)) + eps)) ** 2).sum())
    assert d["quantum/update_norm"] == pytest.approx(math.sqrt(usq), rel=1e-5)
    assert d["quantum/perturbation_to_update_ratio"] == pytest.approx(math.sqrt(sq / usq), rel=1e-5)


def test_diagnostics_follow_the_tracking_switch():
    """Off by default; the Trainer switches the attribute on only for the steps it logs."""
    p = torch.nn.Parameter(torch.randn(3))
    opt = SuperpositionalAdamW([p])
    p.grad = torch.randn(3)
    opt.step()
    assert opt.last_step_diagnostics() is None
    opt.track_diagnostics = True
    opt.step()
    assert opt.last_step_diagnostics()["quantum/update_norm"] > 0
    opt.track_diagnostics = False
    opt.step()
    assert opt.last_step_diagnostics() is None  # never a stale value from an earlier step


# --------------------------------------------------------------------------------------------------
# real DTensors (the layout FSDP2 gives the optimizer), two gloo ranks on CPU
# --------------------------------------------------------------------------------------------------
def dtensor_worker(rank: int, world_size: int, init_file: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        mesh = init_device_mesh("cpu", (world_size,))
        gen = torch.Generator().manual_seed(0)
        fulls = [
            torch.randn(5, 3, generator=gen),
            torch.randn(4, 6, generator=gen),
            torch.randn(7, generator=gen),
        ]
        placements = [[Shard(0)], [Shard(1)], [Replicate()]]  # uneven rows, columns, replicated
        grads = [[torch.randn(f.shape, generator=gen) for f in fulls] for _ in range(4)]
        for mode in MODES:
            for flags in PATHS.values():
                kw = {
                    "lr": 0.05,
                    "weight_decay": 0.1,
                    "quantum_weight": 0.8,
                    "n_qubits": 8,
                    "mode": mode,
                    **flags,
                }
                dparams = [
                    torch.nn.Parameter(distribute_tensor(f.clone(), mesh, pl))
                    for f, pl in zip(fulls, placements, strict=True)
                ]
                plain = [torch.nn.Parameter(f.clone()) for f in fulls]
                dopt, popt = SuperpositionalAdamW(dparams, **kw), SuperpositionalAdamW(plain, **kw)
                for row in grads:
                    for dp, p, g, pl in zip(dparams, plain, row, placements, strict=True):
                        dp.grad = distribute_tensor(g.clone(), mesh, pl)
                        p.grad = g.clone()
                    dopt.step()
                    popt.step()
                for dp, p in zip(dparams, plain, strict=True):
                    torch.testing.assert_close(dp.full_tensor(), p.detach(), rtol=0, atol=1e-6)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # gloo's worker threads can still be joinable at interpreter teardown ("terminate called without an
    # active exception", SIGABRT in about 1 run in 5): every check above has passed, so leave at once.
    # A failed check raised before this point and reaches mp.spawn as an ordinary exception.
    os._exit(0)


@pytest.mark.slow
def test_dtensor_shards_step_like_the_full_tensor(tmp_path):
    import torch.multiprocessing as mp

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(dtensor_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)


@pytest.mark.parametrize("path", ["foreach", "fused"])
def test_update_all_when_weight_decay_zeroes_the_parameter(path):
    """lr * weight_decay == 1: the fast path cannot pre-scale the correction and must still match."""
    tensors = make_tensors()[:4]
    schedule = grad_schedule(tensors, 3, skip_last_on_odd_steps=False)
    group = {
        "lr": 0.5,
        "betas": (0.9, 0.99),
        "eps": 1e-8,
        "weight_decay": 2.0,
        "quantum_weight": 0.5,
        "n_qubits": 4,
        "mode": "update",
        "scope": "all",
    }
    params = clone_params(tensors)
    run(SuperpositionalAdamW(params, **group, **PATHS[path]), params, schedule)
    expected = numpy_reference(tensors, schedule, [group] * len(tensors))
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().double().numpy(), e, rtol=0, atol=TOL)


# --------------------------------------------------------------------------------------------------
# torch AdamW's options (SPEC 1.11): amsgrad, maximize, capturable, differentiable, complex, tensor lr
# --------------------------------------------------------------------------------------------------
OPTIONS = {
    "amsgrad": {"amsgrad": True},
    "maximize": {"maximize": True},
    "maximize, amsgrad": {"maximize": True, "amsgrad": True},
    "tensor lr, tensor betas": {"lr": torch.tensor(1e-2), "betas": (torch.tensor(0.9), torch.tensor(0.99))},
}


@pytest.mark.parametrize("path", ["loop", "foreach", "fused", "default"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_options_at_quantum_weight_zero_are_torch_adamw(option, path):
    """Every option on every path is torch's AdamW, bit for bit, parameters and state (200 steps)."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 200)
    kwargs = {**HYPER, **fresh(OPTIONS[option])}
    ours_p, ref_p = clone_params(tensors), clone_params(tensors)
    ours = SuperpositionalAdamW(
        ours_p, quantum_weight=0.0, **kwargs, **({} if path == "default" else PATHS[path])
    )
    ref_flags = PATHS["fused"] if path == "default" else PATHS[path]  # our default on CPU: fused
    if "tensor" in option and path == "foreach":
        ref_flags = PATHS["loop"]  # torch refuses tensor lr/betas with foreach (without capturable)
    ref = torch.optim.AdamW(ref_p, **fresh(kwargs), **ref_flags)
    run(ours, ours_p, schedule)
    run(ref, ref_p, schedule)
    exact = ref_flags == (PATHS["fused"] if path == "default" else PATHS[path])
    for a, b in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0 if exact else 1e-6)
        assert ours.state[a].keys() == ref.state[b].keys()
        for key in ref.state[b]:
            torch.testing.assert_close(
                ours.state[a][key], ref.state[b][key], rtol=0, atol=0 if exact else 1e-6
            )


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("option", list(OPTIONS))
def test_options_match_numpy_reference(option, mode, path):
    """quantum_weight > 0: maximize negates g before Q is formed, amsgrad changes only the denominator,
    tensor hyper-parameters are their values (the NumPy re-derivation, optim_cases.numpy_reference)."""
    tensors = make_tensors(seed=2)
    schedule = grad_schedule(tensors, 50, seed=3)
    group = {**HYPER, **fresh(OPTIONS[option]), "quantum_weight": 0.7, "n_qubits": 4, "mode": mode}
    params = clone_params(tensors)
    run(SuperpositionalAdamW(params, **fresh(group), **PATHS[path]), params, schedule)
    assert_matches_numpy(params, numpy_reference(tensors, schedule, [group] * len(tensors)), TOL)
    # the option matters at this tolerance (amsgrad moves these parameters by ~5e-4 over 50 steps)
    plain = {k: v for k, v in group.items() if k not in ("amsgrad", "maximize")}
    if "amsgrad" in group or "maximize" in group:
        other = numpy_reference(tensors, schedule, [plain] * len(tensors))
        assert max(np.abs(as_real_array(p) - o).max() for p, o in zip(params, other, strict=True)) > 10 * TOL


def test_maximize_forms_q_from_the_negated_gradient():
    """One step by hand: with maximize, p1 = p0 - lr * (m_hat/(sqrt(v_hat)+eps) + qw * sin(pi p0) * (-g))."""
    p0, g, lr, qw = 0.25, 0.5, 0.1, 0.5
    param = torch.nn.Parameter(torch.tensor([p0], dtype=torch.float64))
    param.grad = torch.tensor([g], dtype=torch.float64)
    SuperpositionalAdamW([param], lr=lr, eps=0.0, maximize=True, quantum_weight=qw, foreach=False).step()
    adam_direction = -1.0  # step 1: m_hat / sqrt(v_hat) = sign(-g)
    expected = p0 - lr * (adam_direction + qw * math.sin(math.pi * p0) * (-g))
    assert param.item() == pytest.approx(expected, abs=1e-15)


# -------------------------------------------------------------------------------- complex parameters
def complex_tensors(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(4, 3, dtype=torch.complex64, generator=gen),
        torch.randn(5, 2, generator=gen),  # real, beside the complex ones
        torch.randn(3, dtype=torch.complex64, generator=gen),
    ]


def complex_schedule(tensors, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(t.shape, dtype=t.dtype, generator=gen) for t in tensors] for _ in range(steps)]


@pytest.mark.parametrize("path", ["loop", "foreach", "default"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("option", ["none", "maximize, amsgrad"])
def test_complex_parameters_match_numpy_reference(option, mode, path):
    """Complex parameters are stepped and perturbed on their view_as_real view, first_n counting real
    components (the docstring's definition, re-derived in NumPy on the real view)."""
    tensors = complex_tensors()
    schedule = complex_schedule(tensors, 30)
    group = {**HYPER, "quantum_weight": 0.7, "n_qubits": 5, "mode": mode, **OPTIONS.get(option, {})}
    params = clone_params(tensors)
    run(SuperpositionalAdamW(params, **group, **({} if path == "default" else PATHS[path])), params, schedule)
    assert_matches_numpy(params, numpy_reference(tensors, schedule, [group] * len(tensors)), TOL)


@pytest.mark.parametrize("path", ["loop", "foreach", "default"])
def test_complex_parameters_at_quantum_weight_zero_are_torch_adamw(path):
    """200 steps of complex (and real) parameters with maximize and amsgrad: torch's AdamW, bit for bit
    (our default, like torch's on CPU, takes the loop for complex parameters)."""
    tensors = complex_tensors()
    schedule = complex_schedule(tensors, 200)
    kwargs = {**HYPER, "maximize": True, "amsgrad": True, **({} if path == "default" else PATHS[path])}
    ours_p, ref_p = clone_params(tensors), clone_params(tensors)
    run(SuperpositionalAdamW(ours_p, quantum_weight=0.0, **kwargs), ours_p, schedule)
    run(torch.optim.AdamW(ref_p, **kwargs), ref_p, schedule)
    for a, b in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # (complex values: real and imaginary parts)


def test_complex_first_n_counts_real_components():
    """n_qubits=3 on a complex vector perturbs re(z0), im(z0), re(z1) and nothing else."""
    z = torch.tensor([0.3 + 0.2j, 0.4 - 0.1j, 0.1 + 0.6j], dtype=torch.complex128)
    grad = torch.tensor([0.5 + 0.4j, -0.3 + 0.2j, 0.2 - 0.7j], dtype=torch.complex128)
    results = []
    for quantum_weight in (0.0, 0.5):
        p = torch.nn.Parameter(z.clone())
        p.grad = grad.clone()
        SuperpositionalAdamW([p], quantum_weight=quantum_weight, n_qubits=3, lr=0.1).step()
        results.append(torch.view_as_real(p.detach()).reshape(-1))
    changed = (results[0] != results[1]).tolist()
    assert changed == [True, True, True, False, False, False]


def test_complex_parameters_with_fused_raise_like_torch():
    """torch's fused kernels take real floating tensors only: the same RuntimeError, before any change."""
    for optimizer_class, kwargs in ((torch.optim.AdamW, {}), (SuperpositionalAdamW, {"quantum_weight": 0.5})):
        p = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
        p.grad = torch.randn_like(p)
        before = p.detach().clone()
        with pytest.raises(RuntimeError, match="`fused=True` requires all the params to be floating point"):
            optimizer_class([p], fused=True, **kwargs).step()
        assert torch.equal(p.detach(), before)


# ----------------------------------------------------------------------------------------- capturable
@pytest.mark.parametrize("quantum_weight", [0.0, 0.7])
@pytest.mark.parametrize("lr", [1e-2, "tensor"])
def test_capturable_with_fused(lr, quantum_weight):
    """capturable keeps the step counter (and a tensor lr) on the parameter's device and never reads them
    on the host; on CPU torch runs it with fused=True. Equal to torch / NumPy."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 30)
    kwargs = {**HYPER, "amsgrad": True, "capturable": True, "fused": True}
    params = clone_params(tensors)

    def make_lr():
        return torch.tensor(1e-2) if lr == "tensor" else lr

    kwargs["lr"] = make_lr()
    ours = SuperpositionalAdamW(params, **kwargs, quantum_weight=quantum_weight)
    run(ours, params, schedule)
    assert all(s["step"].dtype == torch.float32 for s in ours.state.values())
    if quantum_weight == 0:
        expected = clone_params(tensors)
        run(torch.optim.AdamW(expected, **{**kwargs, "lr": make_lr()}), expected, schedule)
        assert max_diff(params, expected) == 0.0
    else:
        group = {**kwargs, "quantum_weight": quantum_weight}
        assert_matches_numpy(params, numpy_reference(tensors, schedule, [group] * len(tensors)), TOL)


@pytest.mark.parametrize("path", ["loop", "foreach"])
def test_capturable_on_cpu_is_refused_before_anything_moves(path):
    """torch refuses capturable loop/foreach steps on CPU (AssertionError); ours names the option and the
    devices it needs (ValueError and RuntimeError), before touching a parameter or the state."""
    params = clone_params(make_tensors()[:2])
    for p in params:
        p.grad = torch.randn_like(p)
    before = [p.detach().clone() for p in params]
    optimizer = SuperpositionalAdamW(params, capturable=True, quantum_weight=0.5, **PATHS[path])
    with pytest.raises(
        ValueError, match=r"capturable=True needs parameters and step counters on one of \['cuda'"
    ):
        optimizer.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))
    assert all(s["step"].item() == 0 for s in optimizer.state.values())
    with pytest.raises(
        AssertionError, match="If capturable=True, params and state_steps must be on supported"
    ):
        torch.optim.AdamW(params, capturable=True, **PATHS[path]).step()


# ------------------------------------------------------------------ layouts torch's fused kernel mis-steps
def transposed_problem():
    """A transposed parameter whose gradient is contiguous: torch's fused kernel steps them as flat memory."""
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(3, 5, generator=gen).t(), torch.randn(4, generator=gen)]
    schedule = [[torch.randn(5, 3, generator=gen), torch.randn(4, generator=gen)] for _ in range(10)]
    return tensors, schedule


@pytest.mark.parametrize("quantum_weight", [0.0, 0.7])
def test_default_path_steps_mismatched_layouts_correctly(quantum_weight):
    """The default path does not hand torch's fused kernel a parameter whose gradient has other strides
    (on CPU that kernel silently pairs the wrong elements): it takes torch's next path and stays exact."""
    tensors, schedule = transposed_problem()
    params = clone_params(tensors)
    run(SuperpositionalAdamW(params, **HYPER, quantum_weight=quantum_weight), params, schedule)
    if quantum_weight == 0:
        expected = clone_params(tensors)
        run(torch.optim.AdamW(expected, **HYPER, foreach=False), expected, schedule)
        assert max_diff(params, expected) <= 1e-6
    else:
        group = {**HYPER, "quantum_weight": quantum_weight}
        assert_matches_numpy(params, numpy_reference(tensors, schedule, [group] * 2), TOL)


def test_fused_refuses_mismatched_layouts():
    """fused=True with such a parameter: torch's CUDA kernel refuses it, so ours refuses it everywhere,
    naming the parameter, the strides and the alternatives, before anything moves."""
    tensors, schedule = transposed_problem()
    params = clone_params(tensors)
    optimizer = SuperpositionalAdamW(params, fused=True)
    with pytest.raises(
        RuntimeError,
        match=r"fused=True cannot step the parameter of shape \(5, 3\): its gradient's strides \(3, 1\) differ from its own \(1, 5\).*use foreach=True",
    ):
        run(optimizer, params, schedule[:1])
    assert all(torch.equal(p, t) for p, t in zip(params, tensors, strict=True)) and not optimizer.state


# --------------------------------------------------------------------------- signature, amsgrad later
def test_positional_arguments_are_torch_adamws():
    """AdamW(params, lr, betas, eps, weight_decay, amsgrad): the same positions mean the same here."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 20)
    ours_p, ref_p = clone_params(tensors), clone_params(tensors)
    args = (1e-2, (0.8, 0.99), 1e-6, 0.05, True)
    ours = SuperpositionalAdamW(ours_p, *args, quantum_weight=0.0, fused=True)
    ref = torch.optim.AdamW(ref_p, *args, fused=True)
    run(ours, ours_p, schedule)
    run(ref, ref_p, schedule)
    assert ours.param_groups[0]["amsgrad"] is True and max_diff(ours_p, ref_p) == 0.0


@pytest.mark.parametrize("path", list(PATHS))
def test_amsgrad_switched_on_mid_run_starts_from_the_current_moments(path):
    """torch would fail on the missing max_exp_avg_sq; ours starts it at zero, where max(0, v) = v: the
    first amsgrad step is an Adam step and the running maximum starts at v."""
    tensors = make_tensors()[:4]
    schedule = grad_schedule(tensors, 6, skip_last_on_odd_steps=False)
    with_switch, without = clone_params(tensors), clone_params(tensors)
    opt_a = SuperpositionalAdamW(with_switch, quantum_weight=0.5, **PATHS[path])
    opt_b = SuperpositionalAdamW(without, quantum_weight=0.5, **PATHS[path])
    run(opt_a, with_switch, schedule[:5])
    run(opt_b, without, schedule[:5])
    opt_a.param_groups[0]["amsgrad"] = True
    run(opt_a, with_switch, schedule[5:])
    run(opt_b, without, schedule[5:])
    assert max_diff(with_switch, without) == 0.0
    for p in with_switch:
        assert torch.equal(opt_a.state[p]["max_exp_avg_sq"], opt_a.state[p]["exp_avg_sq"])


# --------------------------------------------------------------------------------------------------
# Declared element masks: a flat tensor packing several parameters (DeepSpeed ZeRO's flat partitions)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["loop", "foreach", "fused"])
@pytest.mark.parametrize("mode", MODES)
def test_declared_element_mask_on_a_flat_tensor_matches_numpy_per_parameter(mode, path):
    # Three "original parameters" packed back to back in one flat tensor, as ZeRO packs a param group; the
    # declared positions are the first n_qubits of each, so the flat tensor steps as the three would.
    parts = [t.contiguous() for t in make_tensors()[:3]]  # sizes 30, 7, 1: the last has fewer than n_qubits
    n = 4
    starts = np.cumsum([0] + [p.numel() for p in parts[:-1]]).tolist()
    flat = torch.nn.Parameter(torch.cat([p.reshape(-1) for p in parts]))
    declared = [s + k for s, p in zip(starts, parts, strict=True) for k in range(min(n, p.numel()))]
    assert declared != list(range(len(declared)))  # not a prefix: the case the default mask gets wrong
    hypers = dict(HYPER, quantum_weight=0.5, n_qubits=n, mode=mode)
    optimizer = SuperpositionalAdamW([flat], **hypers, **PATHS[path])
    optimizer.set_element_mask(flat, declared)
    schedule = grad_schedule(parts, steps=5, skip_last_on_odd_steps=False)
    flat_rows = [[torch.cat([g.reshape(-1) for g in row])] for row in schedule]
    run(optimizer, [flat], flat_rows[:3])
    # The declaration survives a state-dict round trip (a resumed DeepSpeed run loads its state this way).
    optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    run(optimizer, [flat], flat_rows[3:])
    expected = numpy_reference(parts, schedule, [hypers] * len(parts))
    np.testing.assert_allclose(
        as_real_array(flat), np.concatenate([e.reshape(-1) for e in expected]), rtol=0, atol=1e-6
    )


def test_a_tensor_never_given_as_a_parameter_is_refused_under_first_n_only():
    # What DeepSpeed ZeRO does: it swaps the group's parameters for a flat partition behind the optimizer's back.
    params = clone_params(make_tensors()[:2])
    optimizer = SuperpositionalAdamW(params, lr=1e-2, quantum_weight=0.5)
    flat = torch.cat([p.detach().reshape(-1) for p in params]).requires_grad_()
    flat.grad = torch.ones_like(flat)
    optimizer.param_groups[0]["params"] = [flat]
    with pytest.raises(RuntimeError, match=r"never given as a parameter.*scope='all'"):
        optimizer.step()
    optimizer.param_groups[0]["scope"] = "all"  # elementwise: no map needed
    before = flat.detach().clone()
    optimizer.step()
    assert not torch.equal(flat.detach(), before)
    # Unpickled copies (deepcopy) know their own copied parameters.
    twin = copy.deepcopy(SuperpositionalAdamW(clone_params(make_tensors()[:2]), lr=1e-2))
    for p in twin.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    twin.step()
