"""SuperpositionalAdamW (optim/adamw.py): torch's AdamW at quantum_weight=0, a NumPy re-derivation otherwise, every path, groups, state dicts, bad input, diagnostics, DTensor shards."""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch

from hf_superpositional.optim import SuperpositionalAdamW
from tests.optim.optim_cases import MODES, PATHS, clone_params, grad_schedule, make_tensors, max_diff, run

SCOPES = ("first_n", "all")


# --------------------------------------------------------------------------------------------------
# Independent NumPy float64 re-derivation of SPEC section 1
# --------------------------------------------------------------------------------------------------
def numpy_reference(tensors, schedule, hypers_per_param):
    """SPEC 1 in float64, one parameter at a time. ``hypers_per_param[i]`` holds that param's group."""
    params = [t.double().numpy().copy() for t in tensors]  # logical (row-major) copies
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t_count = [0] * len(params)
    for row in schedule:
        for i, g_t in enumerate(row):
            if g_t is None:
                continue
            h = hypers_per_param[i]
            g = g_t.double().numpy()
            p0 = params[i].copy()
            if h["scope"] == "all":
                mask = np.ones(p0.size)
            else:
                mask = (np.arange(p0.size) < h["n_qubits"]).astype(float)  # row-major flat index < n
            mask = mask.reshape(p0.shape)
            q = mask * np.sin(np.pi * p0) * g
            t_count[i] += 1
            t = t_count[i]
            b1, b2 = h["betas"]
            p = p0 * (1 - h["lr"] * h["weight_decay"])
            g_moments = g + h["quantum_weight"] * q if h["mode"] == "moment" else g
            m[i] = b1 * m[i] + (1 - b1) * g_moments
            v[i] = b2 * v[i] + (1 - b2) * g_moments * g_moments
            m_hat = m[i] / (1 - b1**t)
            v_hat = v[i] / (1 - b2**t)
            step = m_hat / (np.sqrt(v_hat) + h["eps"])
            if h["mode"] == "update":
                step = step + h["quantum_weight"] * q
            params[i] = p - h["lr"] * step
    return params


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
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
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
