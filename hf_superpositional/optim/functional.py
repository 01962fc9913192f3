"""Superpositional AdamW maths (SPEC section 1) on plain tensors.

Per parameter tensor ``p`` with gradient ``g`` and ``p0`` the parameter at the start of the step::

    Q = mask * sin(pi * p0) * g
    mode="update":  p_new = AdamW_step(p0, g) - lr * quantum_weight * Q
    mode="moment":  p_new = AdamW_step(p0, g + quantum_weight * Q)

Three implementations, mirroring ``torch.optim.AdamW``:

- ``"single_tensor"``: a readable per-tensor loop that follows the operation order of torch's
  ``_single_tensor_adam``, so that ``quantum_weight=0`` reproduces torch's loop bit for bit. It is the
  reference the fast paths are tested against.
- ``"foreach"`` / ``"fused"``: torch's own multi-tensor or fused AdamW kernel does the Adam part and a small
  batched correction adds the quantum term. For ``scope="first_n"`` the correction touches ``n_qubits``
  elements per tensor: a handful of ops per step whatever the model size (see ``QuantumSelection``).

Everything here works on plain (local) tensors: the optimizer class unwraps DTensors and computes which
local elements the global first-n mask selects (:mod:`.masks`).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.optim.adam import adam as _torch_adam
from torch.optim.optimizer import _get_value, _to_scalar, _view_as_real

from .masks import (
    QuantumMask,
    QuantumSelection,
    gather_masked,
    masked_add_,
    masked_addcmul_,
    masked_copy_,
)

__all__ = [
    "IMPLEMENTATIONS",
    "MODES",
    "adam_update_sq_norm",
    "global_sq_norm",
    "sin_pi",
    "superpositional_adamw",
]

IMPLEMENTATIONS = ("single_tensor", "foreach", "fused")
MODES = ("update", "moment")


# Below this size a CPU sin(pi*x) avoids MKL's VML (see sin_pi).
_SMALL_CPU_NUMEL = 1 << 15


def sin_pi(x: Tensor) -> Tensor:
    """``sin(pi * x)`` as a new tensor (the factor of ``Q``).

    On CPU, ``torch.sin`` runs MKL's VML, which on a busy machine often stalls for milliseconds even
    for the handful of elements ``scope="first_n"`` selects (measured: median 5 us, mean 4 ms under
    load on 2 cores), more than the whole correction costs. Small CPU tensors therefore use
    ``torch.special.sinc`` (a plain ATen loop, ``sinc(x) = sin(pi x) / (pi x)``) times ``pi * x``: the same
    float32 argument rounding as ``sin(pi * x)`` plus two roundings, a few ulp.

    Example:
        >>> sin_pi(torch.tensor([0.5, 1.0, -0.5, 0.0])).round(decimals=6).tolist()
        [1.0, -0.0, -1.0, 0.0]
    """
    if x.device.type != "cpu" or x.numel() >= _SMALL_CPU_NUMEL:
        return torch.sin(x * math.pi)
    return torch.special.sinc(x).mul_(x).mul_(math.pi)


# --------------------------------------------------------------------------------------------------
# The readable reference: one tensor at a time
# --------------------------------------------------------------------------------------------------
def _selected_sin_pi(
    params: list[Tensor], masks: list[QuantumMask], sin_factors: list[Tensor | None] | None
) -> list[Tensor | None]:
    """``sin(pi * p0)`` on the selected elements of every tensor (None where nothing is selected).

    The few first-n elements of all contiguous tensors are evaluated together (one concatenation and a
    handful of ops per dtype instead of several ops per tensor: at this size the per-op overhead is
    the whole cost); ``scope="all"`` and non-contiguous tensors one at a time.
    """
    out: list[Tensor | None] = [None] * len(params)
    batches: dict[tuple, list[int]] = {}
    for i, (p, m) in enumerate(zip(params, masks, strict=True)):
        if m.count == 0:
            continue
        if sin_factors is not None and sin_factors[i] is not None:
            out[i] = sin_factors[i]
        elif not m.is_all and p.is_contiguous():
            batches.setdefault((p.device, p.dtype), []).append(i)
        else:
            selected = gather_masked(p, m)  # the parameter itself for scope="all"
            # under autograd (differentiable) the parameter is about to change in place: sin's backward
            # must keep p0, not the tensor that moves
            out[i] = sin_pi(selected.clone() if m.is_all and torch.is_grad_enabled() else selected)
    for index in batches.values():
        values = sin_pi(torch.cat([gather_masked(params[i], masks[i]) for i in index]))
        for i, v in zip(index, values.split_with_sizes([masks[i].count for i in index]), strict=True):
            out[i] = v
    return out


def _single_tensor_superpositional_adamw(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    masks: list[QuantumMask],
    sin_factors: list[Tensor | None] | None,
    *,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float,
    weight_decay: float | Tensor,
    quantum_weight: float,
    mode: str,
    amsgrad: bool,
    maximize: bool,
    capturable: bool,
    differentiable: bool,
    perturbations: list[Tensor] | None,
) -> None:
    # torch's _single_tensor_adam (decoupled weight decay) line for line, so that quantum_weight=0 is torch's
    # loop bit for bit for every option; the quantum term enters where SPEC 1 puts it.
    lr, beta1, beta2 = _to_scalar(lr), _to_scalar(beta1), _to_scalar(beta2)
    # capturable / differentiable: the step count stays a tensor (no host read; autograd sees every op)
    tensor_math = capturable or differentiable
    # sin(pi * p0) for the selected elements of every tensor, before any parameter moves.
    sins = _selected_sin_pi(params, masks, sin_factors) if quantum_weight != 0 else [None] * len(params)
    for i, param in enumerate(params):
        # maximize: the gradient is negated BEFORE Q is formed (SPEC 1.11); -grads[i] is a new tensor
        grad = -grads[i] if maximize else grads[i]
        owns_grad = maximize
        exp_avg = exp_avgs[i]
        exp_avg_sq = exp_avg_sqs[i]
        step_t = state_steps[i]
        mask = masks[i]

        # Q = sin(pi * p0) * g on the selected elements (kept as the two factors: one fused op below).
        sin_p0 = sins[i]
        g_sel = None
        if sin_p0 is not None:
            g_sel = gather_masked(grad, mask)  # a view when grad is contiguous, else a copy
            if perturbations is not None:
                perturbations.append(sin_p0 * g_sel)

        step_t += 1

        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)

        # mode="moment": g' = g + quantum_weight * Q replaces g in both moments. The user's .grad must be
        # unchanged afterwards: a few elements are perturbed in place and restored (a full clone would cost
        # a whole extra pass); scope="all" needs a new tensor anyway, and so does autograd (differentiable).
        g0 = None
        if mode == "moment" and sin_p0 is not None:
            if mask.is_all:
                grad = torch.addcmul(grad, sin_p0, grad, value=quantum_weight)
            else:
                if differentiable and not owns_grad:
                    grad, owns_grad = grad.clone(), True
                g0 = g_sel.clone()
                masked_addcmul_(grad, mask, sin_p0, g0, value=quantum_weight)
        try:
            device_beta1 = beta1.to(param.device, param.dtype) if isinstance(beta1, Tensor) else beta1
            exp_avg.lerp_(grad, 1 - device_beta1)
            if differentiable and isinstance(beta2, Tensor) and beta2.requires_grad:
                exp_avg_sq.lerp_(torch.square(grad), weight=1 - beta2)  # torch's autograd-friendly form
            else:
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        finally:
            if g0 is not None and not owns_grad:
                masked_copy_(grad, mask, g0)

        if amsgrad:  # the only change amsgrad makes: the denominator uses the running maximum of v
            if differentiable:
                max_exp_avg_sqs[i].copy_(torch.maximum(max_exp_avg_sqs[i].clone(), exp_avg_sq))
            else:
                torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
            second_moment = max_exp_avg_sqs[i]
        else:
            second_moment = exp_avg_sq

        # eps outside the square root, as torch's Adam (SPEC 1.3).
        if tensor_math:
            step = step_t
            if differentiable and isinstance(beta1, Tensor) and beta1.requires_grad:
                bias_correction1 = 1 - beta1 ** step.clone()
            else:
                bias_correction1 = 1 - beta1**step
            if differentiable and isinstance(beta2, Tensor) and beta2.requires_grad:
                bias_correction2 = 1 - beta2 ** step.clone()
            else:
                bias_correction2 = 1 - beta2**step
            step_size_neg = (lr / bias_correction1).neg()
            denom = (second_moment.sqrt() / (bias_correction2.sqrt() * step_size_neg)).add_(
                eps / step_size_neg
            )
            param.addcdiv_(exp_avg.clone() if differentiable else exp_avg, denom)
        else:
            step = _get_value(step_t)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            denom = (second_moment.sqrt() / bias_correction2**0.5).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)

        if mode == "update" and sin_p0 is not None:
            # p -= lr * quantum_weight * Q  (paper eq. 1; Q from p0 and g)
            if tensor_math:  # lr may be a device or autograd tensor: no host read
                masked_add_(param, mask, sin_p0 * g_sel * (lr * quantum_weight), alpha=-1.0)
            else:
                masked_addcmul_(param, mask, sin_p0, g_sel, value=-float(lr) * quantum_weight)


def _given_or_sin_pi(sin_factors: list[Tensor | None] | None, i: int, selected: Tensor) -> Tensor:
    s = sin_factors[i] if sin_factors is not None else None
    return sin_pi(selected) if s is None else s


def _kernel_superpositional_adamw(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    masks: list[QuantumMask],
    sin_factors: list[Tensor | None] | None,
    *,
    fused: bool,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float,
    weight_decay: float | Tensor,
    quantum_weight: float,
    mode: str,
    amsgrad: bool,
    maximize: bool,
    capturable: bool,
    perturbations: list[Tensor] | None,
    selection: QuantumSelection | None,
) -> None:
    if not fused and torch.compiler.is_compiling():
        # As torch.compile does for torch's own optimizers (note [torch.compile x capturable]): a traced
        # foreach step keeps its step counts as tensors (same values; the compiler checks the devices).
        capturable = True
    if not capturable:
        # torch's foreach kernel rejects tensor hyper-parameters unless capturable (its fused kernel takes a
        # tensor lr); the values are all they need here.
        beta1, beta2, weight_decay = (
            x.item() if isinstance(x, Tensor) else x for x in (beta1, beta2, weight_decay)
        )
        if not fused and isinstance(lr, Tensor):
            lr = lr.item()
    adam = functools.partial(
        _run_torch_adamw,
        exp_avgs=exp_avgs,
        exp_avg_sqs=exp_avg_sqs,
        max_exp_avg_sqs=max_exp_avg_sqs,
        state_steps=state_steps,
        fused=fused,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        capturable=capturable,
    )
    quantum = quantum_weight != 0 and any(m.count for m in masks)
    if not quantum:
        adam(params, grads)
        return

    sel = selection if selection is not None else QuantumSelection(params, masks)
    g_views = sel.bind(params, masks, grads)  # (rebuilds a stale cached selection in place)
    if g_views is None:  # a non-contiguous gradient: a one-off selection that addresses it by index
        sel = QuantumSelection(params, masks, grads)
        g_views = sel.bind(params, masks, grads)

    # maximize: the kernel negates the gradient it is given, and Q is formed from that negated gradient
    # (SPEC 1.11). q = sin(pi p0) * g below, so Q = sign * q. mode="moment" needs no change: the kernel
    # receives g + qw*q and its moments see -(g + qw*q) = (-g) + qw * sin(pi p0) * (-g).
    sign = -1.0 if maximize else 1.0
    # mode="update" applies -lr*qw*Q BEFORE the kernel, divided by (1 - lr*wd) so that the kernel's
    # decoupled weight decay scales it back:  (p0 - c/(1-lr*wd) * Q) * (1-lr*wd) - adam
    #                                        = p0 * (1-lr*wd) - adam - c * Q,   c = lr * qw.
    # The p elements just read for Q are still in cache then (after the kernel has streamed every
    # parameter they are not), and scope="all" never holds a full-size Q for all tensors at once.
    # lr*wd == 1 (the kernel zeroes p) and capturable (no host read of a tensor lr) apply the correction
    # after the kernel instead.
    if capturable:
        update_before = False
        update_alpha = lr * (-quantum_weight * sign)  # a 0-D tensor when lr is one
    else:
        decay = 1 - float(lr) * weight_decay
        update_before = mode == "update" and decay != 0
        update_alpha = -float(lr) * quantum_weight * sign / (decay if update_before else 1.0)

    # 1. q = sin(pi * p0) * g from the parameters BEFORE the kernel moves them. For prefix batches the
    # persistent buffer b["q"] receives q / q_scale (q_scale = pi on CPU, where sin goes through sinc;
    # 1 otherwise) and q_scale is folded into the alpha that applies it: about six ops per step for
    # all tensors together, whatever the model size.
    q_scales: list[float] = []
    for batch, gv in zip(sel.batches, g_views, strict=True):
        torch.cat(batch["p"] + gv, out=batch["buf"])  # [p0 | g0]
        given = None if sin_factors is None else [sin_factors[i] for i in batch["index"]]
        q = batch["q"]
        if given is not None and all(t is not None for t in given):
            torch.cat(given, out=q)
            q_scales.append(1.0)
        else:
            # sin(pi x) = pi * x * sinc(x); see sin_pi for why not torch.sin on CPU
            if q.device.type == "cpu":
                torch.special.sinc(batch["p0"], out=q).mul_(batch["p0"])
                q_scales.append(math.pi)
            else:
                torch.sin(batch["p0"] * math.pi, out=q)
                q_scales.append(1.0)
        q.mul_(batch["g0"])
        if perturbations is not None:
            perturbations.append(q * (q_scales[-1] * sign))
    scattered_q = [
        _given_or_sin_pi(sin_factors, i, gather_masked(params[i], masks[i]))
        * gather_masked(grads[i], masks[i])
        for i in sel.scattered
    ]
    full_q: list[Tensor] = []
    if update_before:
        # whole tensors: one at a time, so only one tensor-sized temporary is alive
        for i in sel.full:
            p, g = params[i], grads[i]
            s = _given_or_sin_pi(sin_factors, i, p)
            if perturbations is not None:
                q = s * g
                perturbations.append(q * sign)
                p.add_(q, alpha=update_alpha)
            else:
                p.addcmul_(s, g, value=update_alpha)
    else:
        full_q = [_given_or_sin_pi(sin_factors, i, params[i]) * grads[i] for i in sel.full]
    if perturbations is not None:  # (prefix and pre-applied full Q: added above)
        perturbations.extend(q * sign for q in (*full_q, *scattered_q))

    kernel_grads = grads
    scattered_g0: list[Tensor] = []
    if mode == "update" and update_before:
        for batch, scale in zip(sel.batches, q_scales, strict=True):
            # new values in the flat buffer, then one foreach copy (cheaper than a foreach add)
            batch["p0"].add_(batch["q"], alpha=update_alpha * scale)
            torch._foreach_copy_(batch["p"], batch["p0_views"])
        for i, q in zip(sel.scattered, scattered_q, strict=True):
            masked_add_(params[i], masks[i], q, alpha=update_alpha)
    elif mode == "moment":
        # The kernel must see g' = g + qw * q. A few elements: perturb the user's .grad in place and
        # restore it exactly afterwards (users may read .grad after step()); whole tensors: new tensors.
        for batch, gv, scale in zip(sel.batches, g_views, q_scales, strict=True):
            torch.add(batch["g0"], batch["q"], alpha=quantum_weight * scale, out=batch["q"])  # g'
            torch._foreach_copy_(gv, batch["q_views"])
        for i, q in zip(sel.scattered, scattered_q, strict=True):
            scattered_g0.append(gather_masked(grads[i], masks[i]).clone())
            masked_add_(grads[i], masks[i], q, alpha=quantum_weight)
        if sel.full:
            kernel_grads = list(grads)
            perturbed = torch._foreach_add([grads[i] for i in sel.full], full_q, alpha=quantum_weight)
            for i, g in zip(sel.full, perturbed, strict=True):
                kernel_grads[i] = g

    # 2. torch's AdamW kernel does the Adam part.
    try:
        adam(params, kernel_grads, uniform=sel.uniform)
    finally:
        if mode == "moment":
            for batch, gv in zip(sel.batches, g_views, strict=True):
                torch._foreach_copy_(gv, batch["g0_views"])
            for i, g0 in zip(sel.scattered, scattered_g0, strict=True):
                masked_copy_(grads[i], masks[i], g0)

    # 3. mode="update" with lr*wd == 1 or capturable: the correction after the kernel.
    if mode == "update" and not update_before:
        if isinstance(update_alpha, Tensor):
            for batch, scale in zip(sel.batches, q_scales, strict=True):
                batch["q"].mul_(update_alpha * scale)
                torch._foreach_add_(batch["p"], batch["q_views"])
            if sel.full:
                torch._foreach_add_([params[i] for i in sel.full], torch._foreach_mul(full_q, update_alpha))
            for i, q in zip(sel.scattered, scattered_q, strict=True):
                masked_add_(params[i], masks[i], q * update_alpha, alpha=1.0)
            return
        for batch, scale in zip(sel.batches, q_scales, strict=True):
            torch._foreach_add_(batch["p"], batch["q_views"], alpha=update_alpha * scale)
        if sel.full:
            torch._foreach_add_([params[i] for i in sel.full], full_q, alpha=update_alpha)
        for i, q in zip(sel.scattered, scattered_q, strict=True):
            masked_add_(params[i], masks[i], q, alpha=update_alpha)


def _run_torch_adamw(
    params: list[Tensor],
    grads: list[Tensor],
    *,
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    fused: bool,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float,
    weight_decay: float | Tensor,
    amsgrad: bool,
    maximize: bool,
    capturable: bool,
    uniform: tuple | None = None,
) -> None:
    """torch's own multi-tensor (foreach) or fused AdamW kernel, as ``torch.optim.AdamW`` calls it.

    With ``uniform`` (every tensor on one device, one dtype, known from a cached QuantumSelection) and a
    float lr, the fused kernel is called the way ``torch.optim.adam._fused_adam`` calls it for one
    group, minus its per-step regrouping and dispatch checks: that saves about what the quantum
    correction costs on a CPU step (a few hundred microseconds with cold caches).
    """
    if fused and uniform is not None and not isinstance(lr, Tensor) and not torch.compiler.is_compiling():
        torch._foreach_add_(state_steps, 1)
        torch._fused_adamw_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            max_exp_avg_sqs,
            state_steps,
            amsgrad=amsgrad,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=weight_decay,
            eps=eps,
            maximize=maximize,
            grad_scale=None,
            found_inf=None,
        )
        return
    _torch_adam(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        state_steps,
        foreach=not fused,
        fused=fused,
        capturable=capturable,
        differentiable=False,
        grad_scale=None,
        found_inf=None,
        has_complex=False,
        decoupled_weight_decay=True,
        amsgrad=amsgrad,
        beta1=beta1,
        beta2=beta2,
        lr=lr,
        weight_decay=weight_decay,
        eps=eps,
        maximize=maximize,
    )


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------
def superpositional_adamw(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    masks: list[QuantumMask],
    *,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float,
    weight_decay: float | Tensor,
    quantum_weight: float,
    mode: str = "update",
    implementation: str = "single_tensor",
    amsgrad: bool = False,
    max_exp_avg_sqs: list[Tensor] | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    has_complex: bool = False,
    sin_factors: list[Tensor | None] | None = None,
    perturbations: list[Tensor] | None = None,
    selection: QuantumSelection | None = None,
) -> None:
    """One Superpositional AdamW step on lists of plain tensors (functional API, in place).

    The options ``amsgrad``, ``maximize``, ``capturable`` and ``differentiable`` mean what they mean in
    ``torch.optim.AdamW`` (with ``quantum_weight=0`` this is torch's step): ``maximize`` negates the
    gradient before ``Q`` is formed; ``amsgrad`` changes only the denominator (the running maximum of the
    second moment); ``capturable`` keeps the step count and ``lr`` on the device (no host reads, for CUDA
    graphs); ``differentiable`` runs the per-tensor path with autograd-friendly ops.

    Args:
        params: parameters (updated in place).
        grads: their gradients (left unchanged on return).
        exp_avgs: first moments (updated in place).
        exp_avg_sqs: second moments (updated in place).
        state_steps: 0-D float step counters (incremented).
        masks: one :class:`QuantumMask` per parameter (see :func:`build_quantum_mask`); for a complex
            parameter, the mask of its ``torch.view_as_real`` view.
        lr: learning rate (float or 0-D tensor).
        beta1: first-moment decay, in [0, 1) (float or 0-D tensor).
        beta2: second-moment decay, in [0, 1) (float or 0-D tensor).
        eps: added to ``sqrt(v_hat)`` (outside the square root, as torch's Adam).
        weight_decay: decoupled weight decay (``p *= 1 - lr * weight_decay``).
        quantum_weight: lambda of the paper; 0 makes the step exactly AdamW.
        mode: ``"update"`` (add ``-lr * quantum_weight * Q`` to the update, paper eq. 1) or ``"moment"``
            (feed ``g + quantum_weight * Q`` to both moments).
        implementation: ``"single_tensor"`` (readable reference), ``"foreach"`` or ``"fused"`` (torch's
            kernels plus a batched correction).
        amsgrad: use the running maximum of the second moments (``max_exp_avg_sqs``, updated in place).
        max_exp_avg_sqs: required with ``amsgrad``: one tensor per parameter, zeros before the first step.
        maximize: maximize the objective (the gradient is negated, then ``Q`` is formed from it).
        capturable: tensor arithmetic on the step counters and ``lr`` (as torch's capturable path).
        differentiable: autograd through the step (``"single_tensor"`` only).
        has_complex: some tensors are complex: every list is viewed with ``torch.view_as_real`` first.
        sin_factors: optional precomputed ``sin(pi * p0[mask])`` per parameter (e.g. from a Qiskit
            estimator, see :mod:`hf_superpositional.optim.qiskit_backend`); None entries are computed here.
        perturbations: if a list is given, tensors holding the ``Q`` values (selected elements only) are
            appended to it, for diagnostics.
        selection: a :class:`QuantumSelection` built from the same ``params`` and ``masks`` at an earlier
            step, to reuse (foreach/fused paths); rebuilt in place when the parameters' storage changed.

    Example:
        >>> p, g = torch.zeros(3), torch.ones(3)
        >>> m, v, s = torch.zeros(3), torch.zeros(3), torch.tensor(0.0)
        >>> from hf_superpositional.optim.masks import build_quantum_mask
        >>> mask = build_quantum_mask("first_n", 2, p.shape)
        >>> superpositional_adamw([p], [g], [m], [v], [s], [mask], lr=0.1, beta1=0.9, beta2=0.999,
        ...                       eps=1e-8, weight_decay=0.0, quantum_weight=0.5)
        >>> [round(x, 4) for x in p.tolist()]  # sin(0) = 0: no perturbation at p0 = 0
        [-0.1, -0.1, -0.1]
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if differentiable and implementation != "single_tensor":
        raise ValueError(f"differentiable=True needs implementation='single_tensor', got {implementation!r}")
    if amsgrad and (max_exp_avg_sqs is None or len(max_exp_avg_sqs) != len(params)):
        raise ValueError("amsgrad=True needs max_exp_avg_sqs: one tensor per parameter")
    if not params:
        return
    max_exp_avg_sqs = list(max_exp_avg_sqs) if amsgrad else []
    if has_complex:  # torch's handling: step the real view (copies of the lists: the caller's stay complex)
        params, grads, exp_avgs, exp_avg_sqs = list(params), list(grads), list(exp_avgs), list(exp_avg_sqs)
        _view_as_real(params, grads, exp_avgs, exp_avg_sqs, *([max_exp_avg_sqs] if amsgrad else []))
    if isinstance(lr, Tensor) and lr.dim() != 0:
        lr = lr.squeeze()  # a 1-element tensor lr, as torch's _to_scalar does
    kwargs = dict(
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        quantum_weight=quantum_weight,
        mode=mode,
        amsgrad=amsgrad,
        maximize=maximize,
        capturable=capturable,
        perturbations=perturbations,
    )
    args = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, masks, sin_factors)
    if implementation == "single_tensor":
        _single_tensor_superpositional_adamw(*args, differentiable=differentiable, **kwargs)
    else:
        _kernel_superpositional_adamw(*args, fused=implementation == "fused", selection=selection, **kwargs)


def adam_update_sq_norm(
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
) -> Tensor:
    """Squared L2 norm, over all tensors, of the Adam update ``lr * m_hat / (sqrt(v_hat) + eps)``.

    Computed from the moments after a step (one extra pass; used only when diagnostics are requested).

    Example:
        >>> m, v = [torch.full((4,), 0.1)], [torch.full((4,), 0.001)]
        >>> # step 1: m_hat = 0.1 / 0.1 = 1 and v_hat = 0.001 / 0.001 = 1, so each element moves by lr
        >>> sq = adam_update_sq_norm(m, v, [torch.tensor(1.0)], lr=1.0, beta1=0.9, beta2=0.999, eps=0.0)
        >>> round(float(sq), 4)
        4.0
    """
    if not exp_avgs:
        return torch.zeros(())
    lr_value = float(lr)
    steps = [float(s) for s in state_steps]
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, [(1 - beta2**s) ** 0.5 for s in steps])
    torch._foreach_add_(denom, eps)
    upd = torch._foreach_div(exp_avgs, denom)
    torch._foreach_mul_(upd, [lr_value / (1 - beta1**s) for s in steps])
    return global_sq_norm(upd)


def global_sq_norm(tensors: list[Tensor]) -> Tensor:
    """Sum of the squared L2 norms of ``tensors`` (float32, on CPU; tensors may sit on different devices).

    Example:
        >>> float(global_sq_norm([torch.tensor([3.0]), torch.tensor([4.0])]))
        25.0
    """
    norms = torch._foreach_norm(tensors)
    return torch.stack([n.float().cpu() for n in norms]).square().sum()
