"""SuperpositionalAdamW's options (optim/options.py): validation, path choice, step conversions, layouts."""

from __future__ import annotations

import math

import pytest
import torch

from hf_superpositional.optim.options import (
    IncompatibleOptionsError,
    check_capturable_devices,
    fused_layout_problem,
    loaded_step,
    new_step,
    real_view,
    resolve_implementation,
    validate_hyperparameters,
)

DEFAULT_GROUP = {"foreach": None, "fused": None, "differentiable": False, "capturable": False, "lr": 1e-3}


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ({"lr": math.inf}, r"lr must be a finite non-negative float \(allowed range: 0 <= lr < inf\), got inf"),
        ({"weight_decay": math.inf}, r"weight_decay must be a finite .* 0 <= weight_decay < inf"),
        ({"quantum_weight": math.inf}, r"quantum_weight must be a finite .* 0 <= quantum_weight < inf"),
        ({"eps": math.nan}, r"eps must be a non-negative float \(allowed range: eps >= 0\), got nan"),
        ({"eps": torch.tensor(1e-8)}, r"eps must be a non-negative float"),  # torch: eps is a float only
        ({"quantum_weight": torch.tensor(0.5)}, r"quantum_weight must be a non-negative float"),
        ({"lr": torch.tensor([1e-3, 1e-3])}, r"lr must be a non-negative float or a 1-element tensor, got shape \(2,\)"),
        ({"betas": (0.9, torch.tensor([0.9, 0.9]))}, r"betas\[1\] must be a float in \[0, 1\) or a 1-element tensor"),
        ({"betas": (0.9, torch.tensor(1.0))}, r"betas\[1\] must be in \[0, 1\)"),
        ({"differentiable": None}, "differentiable must be True or False, got None"),
        ({"foreach": 0}, r"foreach must be True, False or None \(let torch choose\), got 0"),
    ],
)  # fmt: skip
def test_bad_values_name_the_argument_and_the_allowed_range(group, message):
    with pytest.raises(ValueError, match=message):
        validate_hyperparameters(group)


@pytest.mark.parametrize(
    "group",
    [
        {"lr": torch.tensor([[1e-3]]), "weight_decay": torch.tensor(0.1)},  # torch's tensor lr / weight decay
        {"betas": (torch.tensor([[[0.9]]]), torch.tensor([[0.99]]))},  # torch's "Tensor betas" row
        {"betas": (0.9, torch.tensor(0.99))},  # torch refuses mixing; the values are all we need
        {"lr": 0.0, "eps": 0.0, "weight_decay": 0.0, "quantum_weight": 0.0},
        {"foreach": True, "capturable": True, "amsgrad": True, "maximize": True},
    ],
)
def test_what_torch_accepts_is_accepted(group):
    validate_hyperparameters(group)  # raises on failure; the trajectories are tested in test_adamw.py


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ({"foreach": True, "fused": True}, "foreach=True and fused=True cannot be used together"),
        ({"fused": True, "differentiable": True}, "fused=True does not support differentiable=True"),
        ({"foreach": True, "differentiable": True}, "foreach=True does not support differentiable=True"),
    ],
)
def test_incompatible_options_are_both_value_and_runtime_errors(group, message):
    """torch raises RuntimeError for these, the package's convention is ValueError: the error is both."""
    for error in (ValueError, RuntimeError):
        with pytest.raises(error, match=message):
            validate_hyperparameters(group)
    assert issubclass(IncompatibleOptionsError, ValueError) and issubclass(
        IncompatibleOptionsError, RuntimeError
    )


@pytest.mark.parametrize(
    ("overrides", "params", "expected"),
    [
        ({}, [torch.zeros(2)], "fused"),  # our default on CPU: torch's fused kernel + the correction
        (
            {},
            [torch.zeros(2, dtype=torch.complex64)],
            "single_tensor",
        ),  # no fused for complex; no CPU foreach
        ({}, [torch.zeros(2, dtype=torch.int64)], "single_tensor"),
        (
            {"fused": True},
            [torch.zeros(2, dtype=torch.complex64)],
            "fused",
        ),  # torch's error comes at the step
        ({"foreach": True}, [torch.zeros(2)], "foreach"),
        ({"foreach": False}, [torch.zeros(2)], "single_tensor"),  # fused=None, foreach=False: torch's loop
        ({"differentiable": True}, [torch.zeros(2)], "single_tensor"),
    ],
)
def test_resolve_implementation(overrides, params, expected):
    assert resolve_implementation({**DEFAULT_GROUP, **overrides}, params) == expected


def test_resolve_implementation_without_fused_takes_torchs_other_choice():
    assert (
        resolve_implementation(DEFAULT_GROUP, [torch.zeros(2)], allow_fused=False) == "single_tensor"
    )  # CPU


@pytest.mark.parametrize("value", [7, 7.0, torch.tensor(7.0), torch.tensor(7.0, dtype=torch.float64)])
def test_loaded_step_is_the_tensor_torch_keeps(value):
    """Adam.__setstate__: a number becomes a CPU tensor of torch's scalar dtype, or a float32 tensor on
    the parameter's device for fused / capturable; a tensor is kept as it is, or moved for those."""
    param = torch.zeros(3)
    on_cpu = loaded_step(value, param, on_device=False, fused=False)
    assert torch.is_tensor(on_cpu) and on_cpu.item() == 7.0 and on_cpu.device.type == "cpu"
    assert on_cpu.dtype == (value.dtype if torch.is_tensor(value) else torch.float32)
    on_device = loaded_step(value, param, on_device=True, fused=True)
    assert on_device.dtype == (value.dtype if torch.is_tensor(value) else torch.float32)
    assert on_device.item() == 7.0


def test_new_step_follows_the_default_dtype_like_torch():
    param = torch.zeros(3)
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert new_step(param, on_device=False, fused=False).dtype == torch.float64
        assert new_step(param, on_device=True, fused=True).dtype == torch.float32  # fused kernels: float32
        assert new_step(param, on_device=True, fused=False).dtype == torch.float64
    finally:
        torch.set_default_dtype(old)


def test_fused_layout_problem():
    contiguous = torch.zeros(3, 4)
    assert fused_layout_problem(contiguous, torch.zeros(3, 4), new_state=True) is None
    transposed = torch.zeros(4, 3).t()
    assert fused_layout_problem(transposed, torch.zeros(4, 3).t(), new_state=True) is None  # same strides
    assert "(4, 1) differ from its own (1, 3)" in fused_layout_problem(transposed, torch.zeros(3, 4), False)
    strided = torch.zeros(3, 4, 2)[..., 0]  # not dense: moments could not share its layout
    assert "it is not dense" in fused_layout_problem(strided, torch.zeros(3, 4, 2)[..., 0], new_state=True)
    assert fused_layout_problem(strided, torch.zeros(3, 4, 2)[..., 0], new_state=False) is None
    # a dimension of size 1 may have any stride (torch's rule, pytorch#107984)
    assert fused_layout_problem(torch.zeros(2, 1, 5), torch.zeros(2, 5, 1).transpose(1, 2), False) is None


def test_check_capturable_devices_refuses_cpu():
    with pytest.raises(IncompatibleOptionsError, match="capturable=True needs parameters and step counters"):
        check_capturable_devices([torch.zeros(2)], [torch.zeros(())])


def test_real_view():
    z = torch.tensor([[1 + 2j, 3 - 4j]])
    view = real_view(z)
    assert view.shape == (1, 2, 2) and view.reshape(-1).tolist() == [1.0, 2.0, 3.0, -4.0]
    view[0, 0, 1] = 9.0  # a view: writes reach the complex tensor
    assert z[0, 0] == 1 + 9j
    real = torch.zeros(2)
    assert real_view(real) is real
