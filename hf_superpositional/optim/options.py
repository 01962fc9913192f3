"""SuperpositionalAdamW's arguments: validation, torch AdamW's flags, and the state conversions torch makes.

``SuperpositionalAdamW`` takes every argument ``torch.optim.AdamW`` takes (SPEC section 1, rule 11). This
module holds what the optimizer class needs to accept them exactly as torch does:

- :func:`validate_hyperparameters` checks one param group's settings and names the bad argument with its
  allowed range (``lr``, ``eps``, ``weight_decay`` and ``quantum_weight`` must be finite and >= 0);
- :func:`resolve_implementation` picks the per-tensor, foreach or fused path as torch would, and
  :func:`fused_layout_problem` keeps tensors whose memory layouts differ off torch's fused kernel;
- :func:`new_step` and :func:`loaded_step` create or convert the ``step`` counter where torch keeps it
  (on CPU, or on the parameter's device for ``capturable`` / ``fused``), including a ``step`` saved as a
  Python number, which torch converts in ``Adam.__setstate__``;
- :func:`real_view` is how complex parameters are stepped: on their ``torch.view_as_real`` view.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import (
    _default_to_fused_or_foreach,
    _get_capturable_supported_devices,
    _get_scalar_dtype,
)

from .functional import MODES
from .masks import SCOPES

__all__ = [
    "TORCH_FLAGS",
    "IncompatibleOptionsError",
    "check_capturable_devices",
    "fused_layout_problem",
    "loaded_step",
    "new_step",
    "real_view",
    "resolve_implementation",
    "validate_hyperparameters",
]

TORCH_FLAGS = ("amsgrad", "maximize", "capturable", "differentiable")
"""torch AdamW's boolean options, each with torch's meaning (and default False)."""


class IncompatibleOptionsError(ValueError, RuntimeError):
    """Two options that cannot be used together (e.g. ``fused=True`` with ``differentiable=True``).

    A ``ValueError`` like every bad argument of this package, and a ``RuntimeError`` like the error
    ``torch.optim.AdamW`` raises for the same combination, so code written for either catches it.
    """


def _check_rate(name: str, value: Any, tensor_ok: bool) -> None:
    """``value`` must be a finite float >= 0 (or, where torch allows it, a 1-element tensor holding one)."""
    if isinstance(value, Tensor) and tensor_ok:  # like torch: a tensor lr (schedulers, capture, autograd)
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a non-negative float or a 1-element tensor, got shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0.0:
        raise ValueError(f"{name} must be a non-negative float (allowed range: {name} >= 0), got {value!r}")
    if not math.isfinite(value):
        raise ValueError(
            f"{name} must be a finite non-negative float (allowed range: 0 <= {name} < inf), got {value!r}"
        )


def validate_hyperparameters(group: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the offending argument and its allowed values.

    Args:
        group: a param group's settings (the optimizer's defaults merged with the group's overrides).

    Raises:
        ValueError: a value out of range or of the wrong type; :class:`IncompatibleOptionsError` (also a
            ``RuntimeError``) for ``foreach``/``fused``/``differentiable`` combinations no path supports.

    Example:
        >>> validate_hyperparameters({"lr": float("inf")})
        Traceback (most recent call last):
        ...
        ValueError: lr must be a finite non-negative float (allowed range: 0 <= lr < inf), got inf
    """
    for name, tensor_ok in (("lr", True), ("eps", False), ("weight_decay", True), ("quantum_weight", False)):
        if name in group:
            _check_rate(name, group[name], tensor_ok)
    if "betas" in group:
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2) with each in [0, 1), got {betas!r}")
        for i, b in enumerate(betas):
            if isinstance(b, Tensor) and b.numel() != 1:
                raise ValueError(
                    f"betas[{i}] must be a float in [0, 1) or a 1-element tensor, got shape {tuple(b.shape)}"
                )
            value = b.item() if isinstance(b, Tensor) else b
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}")
    if "n_qubits" in group:
        n = group["n_qubits"]
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n_qubits must be an int >= 1, got {n!r}")
    if "mode" in group and group["mode"] not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {group['mode']!r}")
    if "scope" in group and group["scope"] not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {group['scope']!r}")
    for flag in TORCH_FLAGS:
        if not isinstance(group.get(flag, False), bool):
            raise ValueError(f"{flag} must be True or False, got {group[flag]!r}")
    for flag in ("foreach", "fused"):
        if group.get(flag) is not None and not isinstance(group[flag], bool):
            raise ValueError(f"{flag} must be True, False or None (let torch choose), got {group[flag]!r}")
    if group.get("foreach") and group.get("fused"):
        raise IncompatibleOptionsError(
            "foreach=True and fused=True cannot be used together: choose one (or leave both None)"
        )
    if group.get("differentiable") and (group.get("foreach") or group.get("fused")):
        flag = "fused" if group.get("fused") else "foreach"
        raise IncompatibleOptionsError(
            f"{flag}=True does not support differentiable=True (torch's {flag} kernels have no autograd): "
            f"differentiable steps run the per-tensor path, so leave {flag} None or False"
        )


def resolve_implementation(group: dict[str, Any], params: list[Tensor], allow_fused: bool = True) -> str:
    """The path a group steps with: ``"fused"``, ``"foreach"`` or ``"single_tensor"`` (the reference).

    An explicit ``fused`` / ``foreach`` flag wins. With both ``None`` the fastest path torch supports for
    these tensors is taken: fused when every parameter is a floating tensor on a fused-capable device
    (torch's own AdamW default is foreach: ours differs because the fused kernel plus our small correction
    is the fastest, SPEC 1.10), else foreach, else the loop. ``differentiable`` always runs the loop, as in
    torch, and so does a tensor ``lr`` whose foreach kernel would need ``capturable``. ``allow_fused=False``
    (a tensor the fused kernel would mis-step, see :func:`fused_layout_problem`) picks between the others.

    Example:
        >>> resolve_implementation({"foreach": None, "fused": None, "differentiable": False}, [torch.zeros(2)])
        'fused'
    """
    if group.get("differentiable"):
        return "single_tensor"
    if group.get("fused"):
        return "fused"
    if group.get("foreach"):
        return "foreach"
    if group.get("fused") is None and group.get("foreach") is None:
        fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=allow_fused)
        if fused:
            return "fused"
        if foreach and not (isinstance(group.get("lr"), Tensor) and not group.get("capturable")):
            return "foreach"
    return "single_tensor"


def _strides_agree(a: Tensor, b: Tensor) -> bool:
    # torch's rule for its multi-tensor fast paths: equal strides, except along dimensions of size 1
    return a.stride() == b.stride() or all(
        sa == sb for sa, sb, n in zip(a.stride(), b.stride(), a.shape, strict=True) if n > 1
    )


def fused_layout_problem(param: Tensor, grad: Tensor, new_state: bool) -> str | None:
    """Why torch's fused AdamW kernel would mis-step ``param``, or None.

    The fused kernels step a parameter, its gradient and its moments as flat blocks of memory, element i
    of each together. When their strides differ, torch refuses on CUDA ("params, grads, exp_avgs, and
    exp_avg_sqs must have same dtype, device, and layout", pytorch#106951) and, on CPU (torch 2.13),
    silently pairs the wrong elements. Moments are created with the parameter's strides, which a
    non-dense parameter (a strided view) cannot give them.

    Args:
        param: the parameter (a local shard under FSDP2).
        grad: its gradient.
        new_state: its moments are about to be created (checks the parameter is dense).

    Example:
        >>> weight = torch.zeros(3, 2).t()  # a transposed parameter
        >>> fused_layout_problem(weight, torch.zeros(2, 3), new_state=False)
        "its gradient's strides (3, 1) differ from its own (1, 2)"
    """
    if not _strides_agree(param, grad):
        return f"its gradient's strides {tuple(grad.stride())} differ from its own {tuple(param.stride())}"
    if new_state and not param.is_contiguous() and torch.empty_like(param).stride() != param.stride():
        return f"it is not dense (strides {tuple(param.stride())} for shape {tuple(param.shape)})"
    return None


def new_step(param: Tensor, *, on_device: bool, fused: bool) -> Tensor:
    """A zero ``step`` counter where torch keeps it: on the parameter's device for ``capturable`` or fused
    (float32 for fused), else a CPU tensor of torch's scalar dtype (kernel launches cost more than the
    host read on accelerators).

    Example:
        >>> new_step(torch.zeros(3), on_device=False, fused=False)
        tensor(0.)
    """
    if on_device:
        return torch.zeros((), dtype=_get_scalar_dtype(is_fused=fused), device=param.device)
    return torch.tensor(0.0, dtype=_get_scalar_dtype())


def loaded_step(step: Any, param: Tensor, *, on_device: bool, fused: bool) -> Tensor:
    """A loaded ``step`` as the tensor torch would keep: a Python number (older checkpoints, hand-written
    state) becomes a tensor as in ``torch.optim.Adam.__setstate__``; a tensor stays as it is unless a
    fused or capturable step needs it on the parameter's device.

    Example:
        >>> loaded_step(7, torch.zeros(3), on_device=False, fused=False)
        tensor(7.)
    """
    if not torch.is_tensor(step):
        value = float(step)
        if on_device:
            return torch.tensor(value, dtype=_get_scalar_dtype(is_fused=fused), device=param.device)
        return torch.tensor(value, dtype=_get_scalar_dtype())
    if on_device and step.device != param.device:
        return step.to(device=param.device, dtype=_get_scalar_dtype(is_fused=True))
    return step


def check_capturable_devices(params: list[Tensor], steps: list[Tensor]) -> None:
    """torch's check for ``capturable=True`` outside ``torch.compile``: parameters and step counters on a
    device CUDA/XPU graphs can capture (not CPU), raised before anything moves.

    Example:
        >>> check_capturable_devices([torch.zeros(1)], [torch.zeros(())])
        Traceback (most recent call last):
        ...
        hf_superpositional.optim.options.IncompatibleOptionsError: capturable=True needs parameters and step counters on one of ['cuda', 'xpu', 'hpu', 'privateuseone', 'xla'], got cpu; use capturable=False on this device (torch.compile may still set it)
    """
    if torch.compiler.is_compiling():
        return  # the compiler decides whether graphs can be used (torch: note [torch.compile x capturable])
    supported = _get_capturable_supported_devices()
    for p, step in zip(params, steps, strict=True):
        if p.device.type != step.device.type or p.device.type not in supported:
            raise IncompatibleOptionsError(
                f"capturable=True needs parameters and step counters on one of {supported}, got "
                f"{p.device.type if p.device.type not in supported else step.device.type}; use capturable=False "
                "on this device (torch.compile may still set it)"
            )


def real_view(t: Tensor) -> Tensor:
    """``torch.view_as_real(t)`` for a complex tensor, else ``t``: complex parameters are stepped, and
    perturbed, on this view (as torch's AdamW steps them), so ``first_n`` counts real components
    (``re(z0), im(z0), re(z1), ...``).

    Example:
        >>> real_view(torch.tensor([1 + 2j])).tolist()
        [[1.0, 2.0]]
    """
    return torch.view_as_real(t) if torch.is_complex(t) else t
