"""torch's own generic optimizer checks, rewritten for SuperpositionalAdamW (optim/adamw.py).

Taken from ``test/test_optim.py`` (``TestOptimRenewed``) and ``test/optim/test_optim.py``
(``TestDifferentiableOptimizer``) of PyTorch, run over the AdamW entries of
``torch/testing/_internal/common_optimizers.py`` (torch 2.13; ``tests/optim/optim_cases.py`` copies its
configurations). Where torch asserts that a procedure (state-dict round trip, older state dict, hooks,
...) "can step", these tests also assert WHAT it steps to: at ``quantum_weight=0`` the same procedure run
with ``torch.optim.AdamW`` (bit for bit on the same path), at ``quantum_weight>0`` the NumPy re-derivation
of SPEC section 1 (``numpy_reference``). ``tests/README.md`` lists every torch check and whether it is here.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch.nn import Parameter
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from hf_superpositional.optim import SuperpositionalAdamW
from hf_superpositional.optim.options import IncompatibleOptionsError
from tests.optim.optim_cases import (
    TENSOR_CONFIGS,
    TORCH_CONFIGS,
    assert_matches_numpy,
    clone_params,
    fresh,
    grad_schedule,
    make_tensors,
    numpy_reference,
    run,
)

QW = 0.5  # the quantum weight of the quantum_weight > 0 runs
NUMPY_TOL = 1e-5  # float32 trajectories of ~12 steps against float64 NumPy (see test_adamw.TOL)
IMPLS = {
    "forloop": {"foreach": False, "fused": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
    "differentiable": {"differentiable": True},
}


def all_inputs(skip: tuple[str, ...] = ()) -> list:
    """torch's ``_get_optim_inputs_including_global_cliquey_kwargs`` for AdamW on CPU (each configuration
    with all implementation flags off, then with one on), plus foreach (torch leaves it out on CPU, where
    its kernel loops; ours has a foreach path), the tensor-hyper-parameter rows and capturable+fused (the
    capturable rows torch runs on CUDA only; on CPU torch's fused kernel takes capturable)."""
    out = []
    for desc, config in {**TORCH_CONFIGS, **TENSOR_CONFIGS}.items():
        for impl, flags in IMPLS.items():
            if impl not in skip:
                out.append(pytest.param({**config, **flags}, id=f"{desc}, {impl}"))
    if "fused" not in skip:
        out.append(
            pytest.param({"capturable": True, "fused": True, "weight_decay": 0.01}, id="capturable, fused")
        )
        capturable = {**TENSOR_CONFIGS["Tensor lr, Tensor betas, amsgrad"], "capturable": True, "fused": True}
        out.append(pytest.param(capturable, id="Tensor lr, Tensor betas, capturable, amsgrad, fused"))
    return out


INPUTS = all_inputs()
# torch skips differentiable wherever parameters are leaves (autograd forbids stepping them in place)
TRAJECTORY_INPUTS = all_inputs(skip=("differentiable",))
# our default path (foreach and fused left None: the fused kernel on CPU, where torch's default loops)
DEFAULT_INPUTS = [pytest.param(dict(config), id=f"{desc}, default") for desc, config in TORCH_CONFIGS.items()]


def ours(quantum_weight: float):
    return lambda params, kwargs: SuperpositionalAdamW(
        params, **fresh(kwargs), quantum_weight=quantum_weight, n_qubits=4
    )


def torch_kwargs(kwargs: dict) -> dict:
    """The same configuration for torch.optim.AdamW. Ours also takes tensor lr/betas with foreach and no
    capturable (torch refuses them there): torch's loop computes the same values."""
    kw = fresh(kwargs)
    tensors = isinstance(kw.get("lr"), torch.Tensor) or isinstance(kw.get("betas", (0.9,))[0], torch.Tensor)
    if kw.get("foreach") and tensors and not kw.get("capturable"):
        kw["foreach"] = False
    return kw


def torch_adamw(params, kwargs):
    return torch.optim.AdamW(params, **torch_kwargs(kwargs))


def same_path_as_torch(kwargs: dict) -> bool:
    if kwargs.get("foreach") is None and kwargs.get("fused") is None:
        return False  # the defaults differ: ours fused, torch's loop on CPU
    return torch_kwargs(kwargs).get("foreach") == kwargs.get("foreach")


def assert_same(a, b, path="state_dict") -> None:
    """Recursive bit-for-bit equality of state dicts (tensors: values, dtype and device)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.device == b.device, path
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def check_against_reference(procedure, kwargs, quantum_weight, tensors, schedule, same_path=True) -> None:
    """Run ``procedure`` (params, optimizer factory -> final params) with ours, and compare it with the
    same procedure run by torch's AdamW (quantum_weight=0; bit for bit when both take the same path) or
    with NumPy over the whole schedule."""
    got = procedure(ours(quantum_weight))
    if quantum_weight == 0:
        expected = procedure(torch_adamw)
        atol = 0.0 if same_path and same_path_as_torch(kwargs) else 1e-6
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=atol)
    else:
        group = {**fresh(kwargs), "quantum_weight": quantum_weight, "n_qubits": 4}
        assert_matches_numpy(got, numpy_reference(tensors, schedule, [group] * len(tensors)), NUMPY_TOL)


# --------------------------------------------------------------------------------------------------
# state_dict: round trips, determinism, older dicts, Python-number steps, weights_only, other dtypes
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quantum_weight", [0.0, QW])
@pytest.mark.parametrize("kwargs", TRAJECTORY_INPUTS + DEFAULT_INPUTS)
def test_state_dict_deterministic(kwargs, quantum_weight):
    """torch: test_state_dict_deterministic (+ the round trip of the old _test_state_dict)."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 12)

    def procedure(make):
        params = clone_params(tensors)
        optimizer = make(params, kwargs)
        run(optimizer, params, schedule[:6])
        saved = copy.deepcopy(optimizer.state_dict())
        params_c = clone_params([p.detach() for p in params])
        optimizer_c = make(params_c, kwargs)
        optimizer_c.load_state_dict(copy.deepcopy(saved))
        for row in schedule[6:]:
            run(optimizer, params, [row])
            run(optimizer_c, params_c, [row])
            for p, p_c in zip(params, params_c, strict=True):
                assert torch.equal(p, p_c)
        # deterministic with equal (not identical) parameters; repeated groups look alike
        assert_same(optimizer.state_dict(), optimizer_c.state_dict())
        optimizer_c.param_groups.extend(optimizer_c.param_groups)
        assert_same(optimizer.state_dict()["param_groups"][-1], optimizer_c.state_dict()["param_groups"][-1])
        return params_c

    check_against_reference(procedure, kwargs, quantum_weight, tensors, schedule)


@pytest.mark.parametrize("quantum_weight", [0.0, QW])
@pytest.mark.parametrize("kwargs", TRAJECTORY_INPUTS + DEFAULT_INPUTS)
def test_load_nontensor_step(kwargs, quantum_weight):
    """torch: test_load_nontensor_step. A ``step`` saved as a Python number loads, becomes the tensor torch
    keeps (Adam.__setstate__), and the run continues exactly as without the round trip, on every path."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 10)

    def procedure(make):
        params = clone_params(tensors)
        optimizer = make(params, kwargs)
        run(optimizer, params, schedule[:5])
        state_dict = copy.deepcopy(optimizer.state_dict())
        steps = {}
        for key, p_state in state_dict["state"].items():
            steps[key] = p_state["step"]
            p_state["step"] = p_state["step"].item()
        optimizer.load_state_dict(state_dict)
        for key, p_state in optimizer.state_dict()["state"].items():
            assert_same(p_state["step"], steps[key])  # the tensor torch would have kept
        run(optimizer, params, schedule[5:])
        return params

    check_against_reference(procedure, kwargs, quantum_weight, tensors, schedule)


@pytest.mark.parametrize("quantum_weight", [0.0, QW])
@pytest.mark.parametrize("kwargs", TRAJECTORY_INPUTS)
def test_can_load_older_state_dict(kwargs, quantum_weight):
    """torch: test_can_load_older_state_dict. Groups saved before torch had foreach, differentiable, fused,
    maximize or capturable load and step; the flags a group lacks take the optimizer's own values."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 8)

    def procedure(make):
        params = clone_params(tensors)
        optimizer = make(params, kwargs)
        run(optimizer, params, schedule[:4])
        old = copy.deepcopy(optimizer.state_dict())
        for group in old["param_groups"]:
            for flag in ("foreach", "differentiable", "fused", "maximize", "capturable"):
                group.pop(flag, None)
        optimizer.load_state_dict(old)
        if make is torch_adamw:  # torch resets what is missing to its defaults; ours keeps its own values
            for group in optimizer.param_groups:
                group.update({k: v for k, v in torch_kwargs(kwargs).items() if k == "maximize"})
        run(optimizer, params, schedule[4:])
        return params

    # torch gives the missing flags torch's defaults (fused=None: its loop on CPU), ours the values the
    # optimizer was built with: another path for fused / foreach rows, so equal to 1e-6, not bit for bit
    check_against_reference(procedure, kwargs, quantum_weight, tensors, schedule, same_path=False)


@pytest.mark.parametrize("names", [(True, False), (False, True), (True, True)])
def test_can_load_from_to_named_state_dict(names):
    """torch: test_can_load_from_to_named_state_dict (param_names kept when either side had them)."""
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1, stride=2), torch.nn.BatchNorm2d(2))
    x = torch.rand(1, 4, 16, 16)

    def make(named):
        params = model.named_parameters() if named else model.parameters()
        return SuperpositionalAdamW(params, quantum_weight=QW, amsgrad=True)

    first = make(names[0])
    for _ in range(3):
        first.zero_grad()
        model(x).sum().backward()
        first.step()
    second = make(names[1])
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    assert_same(second.state_dict()["state"], first.state_dict()["state"])
    second.zero_grad()
    model(x).sum().backward()
    second.step()
    assert second.state_dict()["param_groups"][0]["param_names"] == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
    ]


@pytest.mark.parametrize("kwargs", TRAJECTORY_INPUTS[::3])
def test_save_load_equality_with_weights_only(kwargs):
    """torch: test_save_load_equality_with_weights_only (our extra group keys are plain str/float/int)."""
    params = clone_params(make_tensors())
    optimizer = SuperpositionalAdamW(params, **fresh(kwargs), quantum_weight=QW)
    run(optimizer, params, grad_schedule(make_tensors(), 3))
    state_dict = optimizer.state_dict()
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    for weights_only in (False, True):
        buffer.seek(0)
        assert_same(torch.load(buffer, weights_only=weights_only), state_dict)


@pytest.mark.parametrize("quantum_weight", [0.0, QW])
@pytest.mark.parametrize("path", ["forloop", "foreach", "fused"])
def test_state_dict_loads_onto_another_dtype(path, quantum_weight):
    """torch: test_state_dict_with_cuda_params, on CPU dtypes: a float32 run's state loads into an
    optimizer over float64 parameters (moments cast, step untouched) and continues there."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 10)
    kwargs = {"weight_decay": 0.1, "amsgrad": True, **IMPLS[path]}

    def procedure(make):
        params = clone_params(tensors)
        optimizer = make(params, kwargs)
        run(optimizer, params, schedule[:5])
        params64 = clone_params([p.detach().double() for p in params])
        optimizer64 = make(params64, kwargs)
        saved = copy.deepcopy(optimizer.state_dict())
        optimizer64.load_state_dict(saved)
        assert_same(saved, optimizer.state_dict())  # loading does not modify the dict it is given
        for p_state in optimizer64.state.values():
            assert p_state["exp_avg"].dtype == p_state["max_exp_avg_sq"].dtype == torch.float64
            assert p_state["step"].dtype == torch.float32  # the counter is never cast (torch #74424)
        run(optimizer64, params64, [[None if g is None else g.double() for g in row] for row in schedule[5:]])
        return params64

    check_against_reference(procedure, kwargs, quantum_weight, tensors, schedule)


# --------------------------------------------------------------------------------------------------
# deepcopy, printing, non-empty state
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quantum_weight", [0.0, QW])
@pytest.mark.parametrize("kwargs", TRAJECTORY_INPUTS[::2])
def test_deepcopy_copies_all_public_attrs(kwargs, quantum_weight):
    """torch: test_deepcopy_copies_all_public_attrs; a deep copy taken mid-run also steps as the original."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 8)

    def procedure(make):
        params = clone_params(tensors)
        optimizer = make(params, kwargs)
        run(optimizer, params, schedule[:4])
        clone = copy.deepcopy(optimizer)
        public = {k for k in vars(optimizer) if not k.startswith("_")}
        assert public == {k for k in vars(clone) if not k.startswith("_")}
        params_c = [p for group in clone.param_groups for p in group["params"]]
        run(clone, params_c, schedule[4:])
        run(optimizer, params, schedule[4:])
        for p, p_c in zip(params, params_c, strict=True):
            assert torch.equal(p, p_c)
        return params_c

    check_against_reference(procedure, kwargs, quantum_weight, tensors, schedule)


@pytest.mark.parametrize("kwargs", INPUTS)
def test_optimizer_can_be_printed(kwargs):
    """torch: test_optimizer_can_be_printed; the text names every option, ours and torch's."""
    text = repr(SuperpositionalAdamW([Parameter(torch.randn(2, 3))], **fresh(kwargs), quantum_weight=QW))
    for key in (
        "quantum_weight: 0.5",
        "n_qubits: 4",
        "amsgrad:",
        "maximize:",
        "capturable:",
        "differentiable:",
    ):
        assert key in text


@pytest.mark.parametrize("kwargs", TRAJECTORY_INPUTS)
def test_non_empty_state(kwargs):
    """torch: test_non_empty_state; the state holds torch AdamW's keys, no more."""
    model = torch.nn.Linear(5, 5)
    optimizer = SuperpositionalAdamW(model.parameters(), **fresh(kwargs), quantum_weight=QW)
    model(torch.rand(2, 5)).sum().backward()
    optimizer.step()
    keys = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if kwargs.get("amsgrad") else set())
    assert len(optimizer.state) == 2 and all(set(s) == keys for s in optimizer.state.values())


# --------------------------------------------------------------------------------------------------
# zero_grad, parameters without gradients, zero gradients
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", INPUTS)
def test_step_is_noop_when_params_have_no_grad(kwargs):
    """torch: test_step_is_noop_when_params_have_no_grad (and zero_grad(set_to_none=True) after a step)."""
    params = [torch.randn(2, 3, requires_grad=False) for _ in range(2)]
    before = [p.clone() for p in params]
    optimizer = SuperpositionalAdamW(params, **fresh(kwargs), quantum_weight=QW)
    assert optimizer.step(lambda: torch.tensor([1.0])) == torch.tensor([1.0])
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True)) and not optimizer.state
    # a trained parameter: zero_grad() (set_to_none) makes the next step a no-op, state included
    weight = (
        Parameter(torch.randn(3, 2))
        if not kwargs.get("differentiable")
        else torch.randn(3, 2).requires_grad_()
    )
    w = weight if not kwargs.get("differentiable") else weight.clone()
    optimizer = SuperpositionalAdamW([w], **fresh(kwargs), quantum_weight=QW)
    w.grad = torch.randn(3, 2)
    optimizer.step()
    optimizer.zero_grad()
    assert w.grad is None
    after_one, state = w.detach().clone(), copy.deepcopy(optimizer.state_dict()["state"])
    optimizer.step()
    assert torch.equal(w.detach(), after_one)
    assert_same(optimizer.state_dict()["state"], state)


@pytest.mark.parametrize("kwargs", [k for k in INPUTS if k.values[0]["weight_decay"] == 0.01])
def test_step_is_noop_for_zero_grads(kwargs):
    """torch: test_step_is_noop_for_zero_grads (weight_decay 0, lr 1e-5); zero_grad(set_to_none=False)
    leaves zero gradients, and Q = sin(pi p0) * 0 = 0 too."""
    kwargs = {**fresh(kwargs), "weight_decay": 0.0}
    kwargs["lr"] = torch.tensor(1e-5) if isinstance(kwargs.get("lr"), torch.Tensor) else 1e-5
    param = torch.randn(5, 1, requires_grad=True)
    params = [param.clone()] if kwargs.get("differentiable") else [param]
    old = param.detach().clone()
    optimizer = SuperpositionalAdamW(params, **kwargs, quantum_weight=QW, scope="all")
    params[0].grad = torch.ones_like(params[0])
    optimizer.zero_grad(set_to_none=False)
    assert torch.equal(params[0].grad, torch.zeros_like(old))
    optimizer.step(lambda: torch.tensor([1.0]))
    assert torch.equal(params[0].detach(), old)


# --------------------------------------------------------------------------------------------------
# the loss moves the right way, with schedulers and per-group hyper-parameters
# --------------------------------------------------------------------------------------------------
SCHEDULERS = {
    "none": [],
    "StepLR": [lambda opt: StepLR(opt, gamma=0.9, step_size=10)],
    "ReduceLROnPlateau": [lambda opt: ReduceLROnPlateau(opt)],
}


def linear_problem(contiguous: bool = True, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    if contiguous:
        weight, bias = torch.randn(10, 5, generator=gen), torch.randn(10, generator=gen)
    else:  # torch's non-contiguous parameters: every other element of a larger tensor
        weight, bias = torch.randn(10, 5, 2, generator=gen)[..., 0], torch.randn(10, 2, generator=gen)[..., 0]
    return Parameter(weight), Parameter(bias), torch.randn(5, generator=gen)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("kwargs", [k for k in TRAJECTORY_INPUTS if "forloop" in k.id])
def test_forloop_goes_right_direction(kwargs, contiguous, scheduler):
    """torch: test_forloop_goes_right_direction (+ with_lrsched, and test_param_group_with_lrscheduler_goes_
    right_direction): 20 closure steps lower the loss (raise it with maximize); at quantum_weight=0 the
    parameters equal torch's AdamW run side by side, bit for bit."""
    results = []
    for make in (ours(QW), ours(0.0), torch_adamw):
        weight, bias, x = linear_problem(contiguous)
        optimizer = make([weight, bias], kwargs)
        schedulers = [s(optimizer) for s in SCHEDULERS[scheduler]]

        def closure(optimizer=optimizer, weight=weight, bias=bias, x=x):
            optimizer.zero_grad()
            loss = (weight.mv(x) + bias).pow(2).sum()
            loss.backward()
            return loss

        initial = closure().item()
        for _ in range(20):
            loss = optimizer.step(closure)
            for s in schedulers:
                s.step(loss) if isinstance(s, ReduceLROnPlateau) else s.step()
        final = closure().item()
        assert final > initial if kwargs.get("maximize") else final < initial
        results.append((weight.detach(), bias.detach()))
    for a, b in zip(results[1], results[2], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("kwargs", [k for k in TRAJECTORY_INPUTS if "forloop" in k.id or "fused" in k.id])
def test_param_groups_weight_decay_and_lr(kwargs, scheduler):
    """torch: test_param_groups_weight_decay, test_param_groups_lr and test_param_group_with_lrscheduler_
    goes_right_direction: the configuration in one group, a bias group without weight decay, a group at
    lr 1e-28 whose parameter must not move, under each scheduler; at quantum_weight=0 equal to torch."""
    results = []
    for make in (ours(QW), ours(0.0), torch_adamw):
        weight, bias, x = linear_problem()
        irrelevant = Parameter(torch.randn(2, generator=torch.Generator().manual_seed(1)))
        irrelevant_before = irrelevant.detach().clone()
        group = fresh(kwargs)
        group.setdefault("lr", 1e-3)  # torch: the groups under test step at >0 lr, the outer default is 1e-28
        groups = [
            {"params": [weight], **group},
            {"params": [bias], **group, "weight_decay": 0.0},
            {"params": [irrelevant], "lr": 1e-28},
        ]
        optimizer = make(groups, {} if make is torch_adamw else {"lr": 1e-28})
        schedulers = [s(optimizer) for s in SCHEDULERS[scheduler]]
        initial = (weight.mv(x) + bias).pow(2).sum().item()
        gen = torch.Generator().manual_seed(2)
        for _ in range(20):
            optimizer.zero_grad()
            loss = (weight.mv(x) + bias).pow(2).sum()
            loss.backward()
            irrelevant.grad = torch.rand(2, generator=gen)
            optimizer.step()
            for s in schedulers:
                s.step(loss) if isinstance(s, ReduceLROnPlateau) else s.step()
        final = (weight.mv(x) + bias).pow(2).sum().item()
        assert final > initial if kwargs.get("maximize") else final < initial
        assert torch.equal(irrelevant.detach(), irrelevant_before)
        results.append((weight.detach(), bias.detach()))
    for a, b in zip(results[1], results[2], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# tensor lr; foreach / fused against the loop (the reference)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quantum_weight", [0.0, QW])
@pytest.mark.parametrize("kwargs", [k for k in TRAJECTORY_INPUTS if "Tensor" not in k.id])
def test_tensor_lr(kwargs, quantum_weight):
    """torch: test_tensor_lr: lr=torch.tensor(1e-3) steps exactly as lr=1e-3 (ours also with foreach
    without capturable, which torch refuses), and as torch / NumPy."""
    tensors = make_tensors()
    schedule = grad_schedule(tensors, 8)
    float_lr = {**fresh(kwargs), "lr": 1e-3}
    params = clone_params(tensors)
    run(ours(quantum_weight)(params, float_lr), params, schedule)

    def procedure(make):
        params_t = clone_params(tensors)
        run(make(params_t, {**fresh(kwargs), "lr": torch.tensor(1e-3)}), params_t, schedule)
        return params_t

    got = procedure(ours(quantum_weight))
    for a, b in zip(got, params, strict=True):
        # float32 arithmetic on a tensor lr, float64 on a Python float: a rounding apart (as in torch)
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-7)
    check_against_reference(
        procedure, {**kwargs, "lr": torch.tensor(1e-3)}, quantum_weight, tensors, schedule
    )


def small_model(dtype):
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1), torch.nn.Sigmoid()
    ).to(dtype)
    # torch: "foreach/fused optimizers should be tested with a zero_size tensor as its last param" (#100701);
    # torch.empty's memory is arbitrary (and differs between the two runs): start it at a random value
    empty = torch.rand((), dtype=dtype).requires_grad_()
    empty.grad = torch.rand_like(empty)
    return model, [*model.parameters(), empty]


def compare_between(flags_a, flags_b, kwargs, dtype, atol) -> None:
    """torch's _compare_between: 7 iterations, a layer frozen at 3 and unfrozen at 5, no gradients at 2;
    parameters and every state tensor compared after each step, then set equal (no drift compounding)."""
    x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype).reshape(3, 2)
    runs = []
    for flags in (flags_a, flags_b):
        model, params = small_model(dtype)
        runs.append(
            (model, params, SuperpositionalAdamW(params, **fresh(kwargs), **flags, quantum_weight=QW))
        )
    for i in range(7):
        for model, _, optimizer in runs:
            optimizer.zero_grad()
            model[2].requires_grad_(i not in (3, 4))
            if i != 2:  # a step with every gradient None is a no-op
                model(x).sum().backward()
            optimizer.step()
        (_, ref_params, ref_opt), (_, params, opt) = runs
        for p_ref, p in zip(ref_params, params, strict=True):
            torch.testing.assert_close(p.detach(), p_ref.detach(), rtol=0, atol=atol)
            with torch.no_grad():
                p.copy_(p_ref)
            for key, value in ref_opt.state[p_ref].items():
                torch.testing.assert_close(opt.state[p][key].to(value.device), value, rtol=0, atol=atol)
                with torch.no_grad():
                    opt.state[p][key].copy_(value)


@pytest.mark.parametrize("mode", ["update", "moment"])
@pytest.mark.parametrize("config", list(TORCH_CONFIGS))
def test_foreach_matches_forloop(config, mode):
    """torch: test_foreach_matches_forloop (float64), with the quantum term on every parameter's first
    elements: our foreach path against our per-tensor reference."""
    kwargs = {**TORCH_CONFIGS[config], "mode": mode}
    compare_between({"foreach": False}, {"foreach": True}, kwargs, torch.float64, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("config", list(TORCH_CONFIGS))
def test_fused_matches_forloop(config, dtype):
    """torch: test_fused_matches_forloop, with torch's tolerances (5e-3 in half precision, where the
    fused kernel computes in float32 and the loop in the parameter's dtype)."""
    atol = {torch.float64: 1e-12, torch.float32: 1e-6}.get(dtype, 5e-3)
    kwargs = {**TORCH_CONFIGS[config], "mode": "moment" if config == "amsgrad" else "update"}
    if dtype == torch.float16:
        kwargs["eps"] = 0.1  # torch: too small an eps leaves a zero denominator in float16
    compare_between({"fused": False}, {"fused": True}, kwargs, dtype, atol=atol)


def test_set_default_dtype_works_with_foreach():
    """torch: test_set_default_dtype_works_with_foreach (#110940): the step counter is float64 under a
    float64 default dtype on the loop and foreach paths (float32 for fused, as torch), and foreach still
    matches the loop."""
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        compare_between({"foreach": False}, {"foreach": True}, TORCH_CONFIGS["amsgrad"], torch.float64, 1e-12)
        for flags, dtype in (
            ({"foreach": False}, torch.float64),
            ({"foreach": True}, torch.float64),
            ({"fused": True}, torch.float32),
        ):
            p = Parameter(torch.randn(3))
            p.grad = torch.randn(3)
            optimizer = SuperpositionalAdamW([p], **flags)
            optimizer.step()
            assert optimizer.state[p]["step"].dtype == dtype
    finally:
        torch.set_default_dtype(old)


def test_fused_error_on_params_on_meta():
    """torch: test_fused_error_on_params_on_meta: torch's own error at the step, nothing half-initialised,
    and the model materialised with to_empty() trains (to_empty makes new parameter objects, so torch's
    last step there steps nothing: here a new optimizer checks it)."""
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1))
    optimizer = SuperpositionalAdamW(model.parameters(), fused=True, quantum_weight=QW)
    with torch.device("meta"):
        for p in model.parameters():
            p.grad = torch.rand_like(p)
    with pytest.raises(
        RuntimeError, match="`fused=True` requires all the params to be floating point Tensors"
    ):
        optimizer.step()
    assert not any(optimizer.state.values())
    model.to_empty(device="cpu")
    for p in model.parameters():
        torch.nn.init.normal_(p)  # to_empty leaves arbitrary memory
        p.grad = torch.rand_like(p)
    before = [p.detach().clone() for p in model.parameters()]
    SuperpositionalAdamW(model.parameters(), fused=True, quantum_weight=QW).step()
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


# --------------------------------------------------------------------------------------------------
# complex parameters
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quantum_weight", [0.0, QW])
@pytest.mark.parametrize("kwargs", [k for k in TRAJECTORY_INPUTS if "fused" not in k.id])
def test_complex(kwargs, quantum_weight):
    """torch: test_complex (fused skipped: torch's fused kernels refuse complex). Complex parameters step
    exactly as their view_as_real copies, every intermediate step included, mixed with a real one; with
    quantum_weight > 0 this is the definition: first_n counts real components."""
    gen = torch.Generator().manual_seed(0)
    complex_params = [
        torch.randn(10, 5, dtype=torch.complex64, generator=gen, requires_grad=True),
        torch.randn(10, dtype=torch.complex64, generator=gen, requires_grad=True),
        torch.randn(10, 5, generator=gen, requires_grad=True),
    ]
    real_params = [
        (torch.view_as_real(p) if p.is_complex() else p).detach().clone().requires_grad_()
        for p in complex_params
    ]
    complex_opt = ours(quantum_weight)(complex_params, kwargs)
    real_opt = ours(quantum_weight)(real_params, kwargs)
    for _ in range(3):
        for cp, rp in zip(complex_params, real_params, strict=True):
            rp.grad = torch.randn(rp.shape, generator=gen)
            cp.grad = torch.view_as_complex(rp.grad.clone()) if cp.is_complex() else rp.grad.clone()
        complex_opt.step()
        real_opt.step()
        for cp, rp in zip(complex_params, real_params, strict=True):
            assert torch.equal(torch.view_as_real(cp) if cp.is_complex() else cp, rp)


@pytest.mark.parametrize("kwargs", [k for k in TRAJECTORY_INPUTS if "fused" not in k.id])
def test_complex_2d(kwargs):
    """torch: test_complex_2d, at quantum_weight=0 (the split parameters have other first elements): a
    complex 2-vector steps as its real and imaginary parts stepped apart, and as torch's AdamW."""

    def rosenbrock(t):
        x, y = t
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    torch.manual_seed(0)
    a1 = torch.randn(2, dtype=torch.complex64, requires_grad=True)
    a1_torch = a1.detach().clone().requires_grad_()
    a1_real, a1_imag = (t.detach().clone().requires_grad_() for t in (a1.real, a1.imag))
    optim1, optim2 = ours(0.0)([a1], kwargs), ours(0.0)([a1_real, a1_imag], kwargs)
    optim3 = torch_adamw([a1_torch], kwargs)
    for _ in range(10):
        for optimizer in (optim1, optim2, optim3):
            optimizer.zero_grad()
        rosenbrock(a1).abs().backward()
        rosenbrock(torch.complex(a1_real, a1_imag)).abs().backward()
        rosenbrock(a1_torch).abs().backward()
        for optimizer in (optim1, optim2, optim3):
            optimizer.step()
        torch.testing.assert_close(a1.real, a1_real, rtol=0, atol=1e-6)
        torch.testing.assert_close(a1.imag, a1_imag, rtol=0, atol=1e-6)
        torch.testing.assert_close(
            a1.detach(), a1_torch.detach(), rtol=0, atol=0 if same_path_as_torch(kwargs) else 1e-6
        )


# --------------------------------------------------------------------------------------------------
# hooks
# --------------------------------------------------------------------------------------------------
def test_step_hooks():
    """torch: test_step_pre_hook, test_step_post_hook, test_step_all_hooks (global and local, with an SGD
    beside ours): each hook runs once per step, in torch's order, and not after its handle is removed."""
    for kwargs in INPUTS:
        kwargs = fresh(kwargs.values[0])
        params = [torch.tensor([1.0, 1.0])]
        optimizer = SuperpositionalAdamW(params, **kwargs, quantum_weight=QW)
        sgd = torch.optim.SGD(params)
        data: list[int] = []

        def hook(value, data=data):
            return lambda *_: data.append(value)

        handles = [
            register_optimizer_step_pre_hook(hook(0)),
            register_optimizer_step_post_hook(hook(5)),
            optimizer.register_step_pre_hook(hook(1)),
            optimizer.register_step_post_hook(hook(2)),
            sgd.register_step_pre_hook(hook(1)),
            sgd.register_step_post_hook(hook(2)),
        ]
        try:
            optimizer.step()
            sgd.step()
            optimizer.step()
        finally:
            for handle in handles:
                handle.remove()
        optimizer.step()
        sgd.step()
        assert data == [0, 1, 2, 5] * 3


def test_state_dict_hooks():
    """torch: test_state_dict_pre_hook, _post_hook, _pre_post_hook, test_load_state_dict_pre_hook_and_
    prepend, _post_hook, _pre_post_hook."""

    def pre(optimizer):
        optimizer.state["test"] = 1

    def post(optimizer, state_dict):
        state_dict["ran_state_dict_pre_hook"] = state_dict["state"].pop("test", None) == 1
        return state_dict

    def load_pre1(optimizer, state_dict):
        state_dict["param_groups"][0]["lr"] = 0.002

    def load_pre2(optimizer, state_dict):
        state_dict = copy.deepcopy(state_dict)
        state_dict["param_groups"][0]["lr"] = 0.003
        return state_dict

    def load_post(optimizer):
        optimizer.state["ran_load_state_dict_pre_hook2"] = optimizer.param_groups[0]["lr"] == 0.003
        optimizer.state["ran_load_state_dict_post_hook"] = True

    for kwargs in INPUTS:

        def make(kwargs=kwargs):
            return SuperpositionalAdamW(
                [torch.rand(2, 3, requires_grad=True)], **fresh(kwargs.values[0]), quantum_weight=QW
            )

        optimizer = make()
        optimizer.register_state_dict_pre_hook(pre)
        assert optimizer.state_dict()["state"]["test"] == 1
        optimizer = make()
        optimizer.register_state_dict_post_hook(post)
        assert optimizer.state_dict()["ran_state_dict_pre_hook"] is False
        optimizer.register_state_dict_pre_hook(pre)
        state_dict = optimizer.state_dict()
        assert "test" not in state_dict["state"] and state_dict["ran_state_dict_pre_hook"] is True

        optimizer = make()
        state_dict = optimizer.state_dict()
        optimizer.register_load_state_dict_pre_hook(load_pre1)
        optimizer.load_state_dict(state_dict)
        assert optimizer.param_groups[0]["lr"] == 0.002
        optimizer.register_load_state_dict_pre_hook(load_pre2, prepend=True)
        optimizer.load_state_dict(state_dict)
        assert optimizer.param_groups[0]["lr"] == 0.002  # prepended: the other hook overrides it
        optimizer = make()
        optimizer.register_load_state_dict_post_hook(load_post)
        optimizer.load_state_dict(optimizer.state_dict())
        assert not optimizer.state["ran_load_state_dict_pre_hook2"]  # (a 0-D tensor for a tensor lr)
        assert optimizer.state["ran_load_state_dict_post_hook"] is True
        optimizer = make()
        optimizer.register_load_state_dict_pre_hook(load_pre2)
        optimizer.register_load_state_dict_post_hook(load_post)
        optimizer.load_state_dict(optimizer.state_dict())
        assert optimizer.state["ran_load_state_dict_pre_hook2"]


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def _sample():
    return Parameter(torch.randn(1, 1))


ERRORS = [
    # (id, params, kwargs, error, message): torch's CPU error inputs for AdamW, then its CUDA-only ones
    ("invalid param type", _sample, {}, TypeError, "params argument given to the optimizer should be an iterable"),
    ("duplicate parameters across groups", lambda: (lambda p: [{"params": p}, {"params": p}])(_sample()), {},
     ValueError, "some parameters appear in more than one parameter group"),
    ("Tensor lr must be 1-element", None, {"lr": torch.tensor([0.001, 0.001])}, ValueError, "lr must be a non-negative float or a 1-element tensor"),
    ("params with and without names", lambda: [("weight", _sample()), _sample()], {}, ValueError,
     "all optimizer params should be with/without names"),
    ("groups with and without names", lambda: [{"params": [_sample()], "lr": 1e-2}, {"params": [("weight", _sample())]}],
     {}, ValueError, "all optimizer param groups should be with/without names"),
    ("beta1 should be between 0 and 1", None, {"lr": 1e-2, "betas": (1.0, 0.0)}, ValueError, r"betas\[0\] must be in \[0, 1\), got 1.0"),
    ("weight_decay should > 0", None, {"lr": 1e-2, "weight_decay": -1}, ValueError, "weight_decay must be a non-negative float"),
    ("`fused` and `foreach` cannot be `True` together", None, {"foreach": True, "fused": True}, RuntimeError,
     "foreach=True and fused=True cannot be used together"),
    ("`fused` does not support `differentiable`", None, {"fused": True, "differentiable": True}, RuntimeError,
     "fused=True does not support differentiable=True"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "kwargs", "error", "match"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors(params, kwargs, error, match):
    """torch: test_errors over optim_error_inputs_func_adamw (same exception types; our messages name the
    argument and its allowed values). The duplicate-parameter warning is test_errors' UserWarning row."""
    with pytest.raises(error, match=match):
        SuperpositionalAdamW(params() if params else [_sample()], **kwargs)


def test_duplicate_parameters_warn():
    p = _sample()
    with pytest.warns(UserWarning, match="a parameter group with duplicate parameters"):
        SuperpositionalAdamW([p, p])


def test_incompatible_options_are_value_and_runtime_errors():
    """Our convention (ValueError for bad arguments) and torch's (RuntimeError) both catch them."""
    for kwargs in ({"foreach": True, "fused": True}, {"fused": True, "differentiable": True}):
        for error in (ValueError, RuntimeError, IncompatibleOptionsError):
            with pytest.raises(error):
                SuperpositionalAdamW([_sample()], **kwargs)


# --------------------------------------------------------------------------------------------------
# differentiable (test/optim/test_optim.py: TestDifferentiableOptimizer, the AdamW checks)
# --------------------------------------------------------------------------------------------------
def _diff_fn(p, grad, opt_differentiable_state, kwargs, *ignored):
    # torch's _diff_fn: one step of a fresh optimizer on a clone of p, with the state handed in
    p = p.clone()
    p.grad = grad
    state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt_differentiable_state.items()}
    optimizer = SuperpositionalAdamW([p], **kwargs)
    optimizer.state[p].update(state)
    optimizer.step()
    return (p,) + tuple(
        v for v in optimizer.state[p].values() if isinstance(v, torch.Tensor) and v.requires_grad
    )


def _state(gen):
    def rand():
        return torch.rand(10, dtype=torch.float64, generator=gen).requires_grad_()

    return {
        "step": torch.tensor(10.0, dtype=torch.float64),
        "exp_avg": rand(),
        "exp_avg_sq": rand(),
        "max_exp_avg_sq": rand(),
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quantum_weight": 0.0, "amsgrad": True},  # torch's test_adamw
        {"quantum_weight": QW, "amsgrad": True},
        {"quantum_weight": QW, "mode": "moment", "maximize": True, "weight_decay": 0.1},
        {"quantum_weight": QW, "scope": "all", "amsgrad": True},
        {"quantum_weight": QW, "scope": "all", "mode": "moment"},
    ],
    ids=str,
)
def test_differentiable_step_gradcheck(kwargs):
    """torch: TestDifferentiableOptimizer.test_adamw. autograd through one step (parameter, gradient and
    every moment) agrees with finite differences, the quantum term (and sin(pi p0)) included."""
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(10, dtype=torch.float64, generator=gen).requires_grad_()
    grad = torch.rand(10, dtype=torch.float64, generator=gen).requires_grad_()
    state = _state(gen)
    kwargs = {"lr": 0.9, "differentiable": True, **kwargs}
    assert torch.autograd.gradcheck(_diff_fn, (p, grad, state, kwargs, *state.values()))


@pytest.mark.parametrize("hyper", ["lr", "weight_decay", "betas", "all"])
def test_differentiable_hyperparameters_gradcheck(hyper):
    """torch: test_adamw_differentiable_lr / _weight_decay / _betas / _all_hyperparams: two steps, then
    the loss differentiated with respect to tensor hyper-parameters (the quantum term uses lr too)."""
    gen = torch.Generator().manual_seed(1)
    params = torch.rand(10, dtype=torch.float64, generator=gen).requires_grad_()
    grad = torch.rand(10, dtype=torch.float64, generator=gen).requires_grad_()
    state = _state(gen)
    tensors = {
        "lr": torch.tensor(0.001, dtype=torch.float64, requires_grad=True),
        "weight_decay": torch.tensor(0.999, dtype=torch.float64, requires_grad=True),
        "beta1": torch.tensor(0.9, dtype=torch.float64, requires_grad=True),
        "beta2": torch.tensor(0.999, dtype=torch.float64, requires_grad=True),
    }
    wanted = {
        "lr": ["lr"],
        "weight_decay": ["weight_decay"],
        "betas": ["beta1", "beta2"],
        "all": list(tensors),
    }[hyper]
    hypers = [tensors[name] for name in wanted]

    def fn(params, grad, *inputs):
        values = dict(zip(wanted, inputs[len(state) :], strict=True))
        kwargs = {"differentiable": True, "quantum_weight": QW, "lr": 0.001}
        kwargs.update({k: v.clone() for k, v in values.items() if k in ("lr", "weight_decay")})
        if "beta1" in values:
            kwargs["betas"] = (values["beta1"].clone(), values["beta2"].clone())
        params = params.clone()
        params.grad = grad
        optimizer = SuperpositionalAdamW([params], **kwargs)
        optimizer.state[params].update({k: v.clone() for k, v in state.items()})
        x, y = torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
        for _ in range(2):
            loss = torch.nn.functional.mse_loss(x * torch.sum(params), y)
            loss.backward(inputs=(params,), create_graph=True)
            optimizer.step()
            optimizer.zero_grad()
        return (loss,) + tuple(
            v for v in optimizer.state[params].values() if isinstance(v, torch.Tensor) and v.requires_grad
        )

    assert torch.autograd.gradcheck(fn, (params, grad, *state.values(), *hypers))


@pytest.mark.parametrize("quantum_weight", [0.0, QW])
@pytest.mark.parametrize("config", list(TORCH_CONFIGS))
def test_differentiable_trajectory(config, quantum_weight):
    """differentiable=True (non-leaf parameters, as torch requires) steps to the same values as torch's
    differentiable AdamW (quantum_weight=0, bit for bit) and as NumPy."""
    tensors = make_tensors()[:4]
    schedule = grad_schedule(tensors, 8, skip_last_on_odd_steps=False)
    kwargs = {**TORCH_CONFIGS[config], "differentiable": True}

    def procedure(make):
        leaves = [t.clone().requires_grad_() for t in tensors]
        params = [leaf.clone() for leaf in leaves]  # non-leaf: autograd records the in-place step
        optimizer = make(params, kwargs)
        for row in schedule:
            for p, g in zip(params, row, strict=True):
                p.grad = g.clone()
            optimizer.step()
        total = sum((p * p).sum() for p in params)
        total.backward()  # the graph through 8 steps is intact
        assert all(leaf.grad is not None and torch.isfinite(leaf.grad).all() for leaf in leaves)
        return params

    check_against_reference(procedure, kwargs, quantum_weight, tensors, schedule)


# --------------------------------------------------------------------------------------------------
# torch.compile(optimizer.step) on CPU
# --------------------------------------------------------------------------------------------------
COMPILED = [  # (configuration, quantum weight): torch.compile takes ~5-10 s per optimizer on 2 CPU cores
    ({"fused": True, "amsgrad": True, "weight_decay": 0.1}, 0.0),
    ({"fused": True, "amsgrad": True, "weight_decay": 0.1}, QW),
    ({"foreach": True, "maximize": True}, QW),  # traced foreach runs torch's capturable form
    ({"foreach": False, "capturable": True, "amsgrad": True}, QW),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kwargs", "quantum_weight"), COMPILED, ids=str)
def test_compiled_step(kwargs, quantum_weight):
    """torch.compile(optimizer.step) on CPU (the pattern of torch's TestSGDComplexForeach and
    test_compiled_optimizers): the compiled step equals torch's eager AdamW (quantum_weight=0) or NumPy.
    capturable on CPU is what torch.compile itself sets on accelerators; eager refuses it on CPU."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # recompilations of one `step` code object are capped per process
    counters.clear()
    tensors = make_tensors()[:4]
    schedule = grad_schedule(tensors, 4, skip_last_on_odd_steps=False)
    params = clone_params(tensors)
    optimizer = ours(quantum_weight)(params, kwargs)
    step = torch.compile(optimizer.step)
    for row in schedule:
        for p, g in zip(params, row, strict=True):
            p.grad = g.clone()
        step()
    assert counters["stats"]["unique_graphs"] >= 1  # it was traced, not left to run eagerly
    if quantum_weight == 0:
        expected = clone_params(tensors)
        eager = {"weight_decay": 0.0, **{k: v for k, v in kwargs.items() if k != "capturable"}}
        run(torch.optim.AdamW(expected, **eager), expected, schedule)
        for a, b in zip(params, expected, strict=True):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-6)
    else:
        group = {**kwargs, "quantum_weight": quantum_weight}
        assert_matches_numpy(params, numpy_reference(tensors, schedule, [group] * len(tensors)), NUMPY_TOL)
