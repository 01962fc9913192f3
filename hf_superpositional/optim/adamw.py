"""``SuperpositionalAdamW``: AdamW plus the paper's quantum-inspired perturbation (SPEC section 1).

The maths lives in :mod:`hf_superpositional.optim.functional` and :mod:`hf_superpositional.optim.masks`;
this class owns the torch ``Optimizer``
plumbing: param groups, state (torch AdamW's keys, so checkpoints cross-load), path selection, the lazily
computed global-index mask (FSDP2 swaps parameters after the optimizer is built), the optional Qiskit
backend and diagnostics.
"""

from __future__ import annotations

import math
import numbers
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import (
    Optimizer,
    ParamsT,
    _default_to_fused_or_foreach,
    _device_dtype_check_for_fused,
    _get_scalar_dtype,
)

from ..naming import QISKIT_SIMULATORS
from .functional import MODES, adam_update_sq_norm, global_sq_norm, superpositional_adamw
from .masks import SCOPES, QuantumMask, QuantumSelection, build_quantum_mask, gather_masked
from .qiskit_backend import QiskitSinPi

__all__ = ["PERTURBATION_BACKENDS", "SuperpositionalAdamW"]

PERTURBATION_BACKENDS = ("analytic", *QISKIT_SIMULATORS)
"""Who evaluates the ``sin(pi * theta)`` factor: ``"analytic"`` (torch, the default and the fast one) or a
Qiskit simulator running the product-state circuit (``"qiskit"``, ``"aer"``; see :mod:`.qiskit_backend`)."""
_NO_MASK = QuantumMask(is_all=False, count=0, index=None)

try:  # DTensor (FSDP2) support; absent on torch builds without torch.distributed.
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
except ImportError:  # pragma: no cover
    DTensor = None
    compute_local_shape_and_global_offset = None


def _is_dtensor(t: Tensor) -> bool:
    return DTensor is not None and isinstance(t, DTensor)


def _local(t: Tensor) -> Tensor:
    """The local shard of a DTensor (shares storage), or the tensor itself.

    Adam and the perturbation are elementwise, so running them on the local shards of parameter,
    gradient and moments is exactly the global step.
    """
    return t.to_local() if _is_dtensor(t) else t


def _check_non_negative(name: str, value: Any) -> None:
    if isinstance(value, Tensor) and name == "lr":  # like torch: a tensor lr (schedulers, capture)
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a non-negative float or a 1-element tensor, got shape {value.shape}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0.0:
        raise ValueError(f"{name} must be a non-negative float (allowed range: {name} >= 0), got {value!r}")


def _validate_hyperparameters(group: dict[str, Any]) -> None:
    """Raise ValueError naming the offending argument and its allowed range."""
    for name in ("lr", "eps", "weight_decay", "quantum_weight"):
        _check_non_negative(name, group[name])
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2) with each in [0, 1), got {betas!r}")
    for i, b in enumerate(betas):
        b_value = b.item() if isinstance(b, Tensor) and b.numel() == 1 else b
        if isinstance(b_value, bool) or not isinstance(b_value, numbers.Real) or not 0.0 <= b_value < 1.0:
            raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}")
    n = group["n_qubits"]
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n_qubits must be an int >= 1, got {n!r}")
    if group["mode"] not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {group['mode']!r}")
    if group["scope"] not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {group['scope']!r}")
    if group.get("foreach") and group.get("fused"):
        raise ValueError(
            "foreach=True and fused=True cannot be used together: choose one (or leave both None)"
        )
    for flag in ("amsgrad", "maximize", "capturable", "differentiable"):
        if group.get(flag):
            raise ValueError(f"{flag}=True is not supported by SuperpositionalAdamW (allowed: False)")


class SuperpositionalAdamW(Optimizer):
    r"""AdamW with the quantum-inspired perturbation of Superpositional Gradient Descent (IEEE QAI 2025).

    For each parameter tensor ``p`` with gradient ``g``, ``Q = mask * sin(pi * p0) * g`` with ``p0`` the
    parameter at the start of the step, and

    - ``mode="update"`` (paper eq. 1): ``p <- AdamW_step(p0, g) - lr * quantum_weight * Q``;
    - ``mode="moment"``: the perturbed gradient ``g + quantum_weight * Q`` feeds both Adam moments.

    ``scope="first_n"`` perturbs the first ``n_qubits`` elements of each tensor by global row-major index
    (the paper's ``i < n_qubits``; the same elements under FSDP2 sharding), ``scope="all"`` every element.
    With ``quantum_weight=0`` this is ``torch.optim.AdamW``. State keys are AdamW's (``step``,
    ``exp_avg``, ``exp_avg_sq``) so checkpoints load both ways.

    Args:
        params: iterable of parameters or of param-group dicts. Every hyper-parameter below except
            ``perturbation_backend`` and ``track_diagnostics`` may be overridden per group.
        lr: learning rate (float or 1-element tensor), >= 0.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: added to ``sqrt(v_hat)`` (outside the root, as torch's Adam), >= 0.
        weight_decay: decoupled weight decay, >= 0.
        quantum_weight: lambda of the paper, >= 0.
        n_qubits: number of leading elements perturbed per tensor with ``scope="first_n"``, int >= 1.
        mode: ``"update"`` or ``"moment"``.
        scope: ``"first_n"`` or ``"all"``.
        foreach: use torch's multi-tensor AdamW kernel plus a batched correction.
        fused: use torch's fused AdamW kernel plus a batched correction (cpu, cuda).
            With both None the fastest available is chosen per step: fused when every parameter is a
            floating tensor on cpu/cuda, else foreach where torch supports it, else the per-tensor loop.
        perturbation_backend: how ``sin(pi * p0)`` is computed: ``"analytic"`` (torch, default and fast),
            ``"qiskit"`` (``StatevectorEstimator``) or ``"aer"`` (Qiskit Aer ``EstimatorV2``); the Qiskit
            backends make one batched estimator call per step and agree with ``"analytic"`` to 1e-6.
        track_diagnostics: compute the norms returned by :meth:`last_step_diagnostics` (one extra pass
            over the moments per step). May also be switched on later by setting the attribute.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = SuperpositionalAdamW(model.parameters(), lr=1e-3, quantum_weight=0.5, n_qubits=4)
        >>> model(torch.randn(3, 4)).sum().backward()
        >>> opt.step()
        >>> sorted(opt.state[model.weight])
        ['exp_avg', 'exp_avg_sq', 'step']
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        quantum_weight: float = 0.1,
        n_qubits: int = 4,
        mode: str = "update",
        scope: str = "first_n",
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        perturbation_backend: str = "analytic",
        track_diagnostics: bool = False,
    ) -> None:
        if perturbation_backend not in PERTURBATION_BACKENDS:
            raise ValueError(
                f"perturbation_backend must be one of {PERTURBATION_BACKENDS}, got {perturbation_backend!r}"
            )
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, (tuple, list)) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "quantum_weight": quantum_weight,
            "n_qubits": n_qubits,
            "mode": mode,
            "scope": scope,
            # torch AdamW's group keys, so AdamW state dicts load into this optimizer and the reverse.
            "amsgrad": False,
            "maximize": False,
            "foreach": foreach,
            "capturable": False,
            "differentiable": False,
            "fused": fused,
            "decoupled_weight_decay": True,
        }
        _validate_hyperparameters(defaults)
        self.perturbation_backend = perturbation_backend
        self.track_diagnostics = bool(track_diagnostics)
        self._init_runtime()
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ plumbing
    def _init_runtime(self) -> None:
        """Attributes that are not part of the state dict (recreated after unpickling)."""
        # Masks are cached per parameter object (not in `state`, whose keys must stay AdamW's), and
        # re-validated against shapes each step since FSDP2 / .data assignment can change them.
        self._mask_cache: dict[int, tuple[weakref.ref, tuple, QuantumMask]] = {}
        # Per group: (group, key, masks, QuantumSelection) so a step re-derives neither.
        self._selection_cache: dict[int, tuple[dict, tuple, list[QuantumMask], QuantumSelection | None]] = {}
        self._qiskit = None
        self._diagnostics: tuple[Tensor, Tensor] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["perturbation_backend"] = self.perturbation_backend
        state["track_diagnostics"] = self.track_diagnostics
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # unpickling, or load_state_dict (new group dicts): drop caches that refer to the old groups
        self._init_runtime()
        self.__dict__.setdefault("perturbation_backend", "analytic")
        self.__dict__.setdefault("track_diagnostics", False)
        # Groups loaded from a torch AdamW checkpoint lack the quantum keys: take this optimizer's defaults.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            group["decoupled_weight_decay"] = True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; its hyper-parameter overrides are validated like the constructor's."""
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        if isinstance(merged.get("betas"), list):
            merged["betas"] = tuple(merged["betas"])
        _validate_hyperparameters(merged)
        if (
            self.perturbation_backend != "analytic"
            and merged["scope"] == "all"
            and merged["quantum_weight"] != 0
        ):
            warnings.warn(
                f"perturbation_backend={self.perturbation_backend!r} with scope='all' evaluates one "
                "single-qubit circuit per parameter element each step: very slow beyond toy models.",
                stacklevel=3,
            )
        super().add_param_group(param_group)

    def _implementation(self, group: dict[str, Any], local_params: list[Tensor]) -> str:
        if group["fused"]:
            return "fused"
        if group["foreach"]:
            return "foreach"
        if group["fused"] is None and group["foreach"] is None:
            fused, foreach = _default_to_fused_or_foreach(local_params, differentiable=False, use_fused=True)
            if fused:
                return "fused"
            if foreach:
                return "foreach"
        return "single_tensor"

    def _mask(self, p: Tensor, local: Tensor, group: dict[str, Any]) -> QuantumMask:
        scope, n = group["scope"], group["n_qubits"]
        dtensor = local is not p
        signature = (scope, n, p.shape, local.shape, tuple(p.placements)) if dtensor else (scope, n, p.shape)
        # Keyed by id(p) with a weak reference to tell a recycled id apart; a plain dict lookup keeps
        # this per-tensor, per-step check well under a microsecond.
        cached = self._mask_cache.get(id(p))
        if cached is not None and cached[0]() is p and cached[1] == signature:
            return cached[2]
        if dtensor and scope == "first_n":
            _, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
            mask = build_quantum_mask(
                scope, n, local.shape, global_shape=p.shape, global_offset=offset, device=local.device
            )
        else:
            mask = build_quantum_mask(scope, n, local.shape, device=local.device)
        key = id(p)
        cache = self._mask_cache
        ref = weakref.ref(
            p, lambda _ref, key=key: cache.pop(key, None) if cache.get(key, (None,))[0] is _ref else None
        )
        cache[key] = (ref, signature, mask)
        return mask

    def _masks_and_selection(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        local_params: list[Tensor],
        quantum: bool,
        impl: str,
    ) -> tuple[list[QuantumMask], QuantumSelection | None]:
        """Masks of the stepped params and, for the fast paths, their QuantumSelection, cached per group.

        The cache key is cheap to rebuild every step: masks depend only on scope, n_qubits and shapes. A
        storage swap under the same parameter (``p.data = ...``) is caught by the selection itself
        (``QuantumSelection.bind``), which rebuilds in place.
        """
        if not quantum:
            return [_NO_MASK] * len(params), None
        key = (group["scope"], group["n_qubits"], tuple(map(id, params)), tuple(p.shape for p in params))
        cached = self._selection_cache.get(id(group))
        if cached is not None and cached[0] is group and cached[1] == key:
            masks, selection = cached[2], cached[3]
        else:
            masks = [self._mask(p, local, group) for p, local in zip(params, local_params, strict=True)]
            selection = None
        if selection is None and impl != "single_tensor":
            selection = QuantumSelection(local_params, masks)
        self._selection_cache[id(group)] = (group, key, masks, selection)
        return masks, selection

    def _prepare_group(self, group: dict[str, Any]) -> dict[str, Any] | None:
        params_with_grad = [p for p in group["params"] if p.grad is not None]
        if not params_with_grad:
            return None
        # Unwrap DTensors (FSDP2) only when the group has some: this loop runs every step.
        sharded = DTensor is not None and any(isinstance(p, DTensor) for p in params_with_grad)
        local_params = [_local(p) for p in params_with_grad] if sharded else params_with_grad
        impl = self._implementation(group, local_params)
        fused = impl == "fused"
        quantum = group["quantum_weight"] != 0
        grads, exp_avgs, exp_avg_sqs, steps = [], [], [], []
        for p, local in zip(params_with_grad, local_params, strict=True):
            grad = p.grad
            if grad.is_sparse:
                raise RuntimeError(
                    "SuperpositionalAdamW does not support sparse gradients (like torch AdamW); "
                    "use dense gradients, e.g. nn.Embedding(sparse=False)"
                )
            if torch.is_complex(p):
                raise RuntimeError("SuperpositionalAdamW does not support complex parameters")
            state = self.state[p]
            if len(state) == 0:
                if group["fused"]:
                    _device_dtype_check_for_fused(local)
                # Like torch: the step counter lives on CPU unless a fused kernel needs it on the device.
                state["step"] = (
                    torch.zeros((), dtype=_get_scalar_dtype(is_fused=True), device=local.device)
                    if fused
                    else torch.tensor(0.0, dtype=_get_scalar_dtype())
                )
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif fused and state["step"].is_cpu and not local.is_cpu:
                # A checkpoint (or an earlier non-fused step) left the counter on CPU.
                state["step"] = state["step"].to(device=local.device, dtype=_get_scalar_dtype(is_fused=True))
            if sharded:
                grads.append(_local(grad))
                exp_avgs.append(_local(state["exp_avg"]))
                exp_avg_sqs.append(_local(state["exp_avg_sq"]))
            else:
                grads.append(grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        masks, selection = self._masks_and_selection(group, params_with_grad, local_params, quantum, impl)
        return {
            "group": group,
            "params": local_params,
            "grads": grads,
            "exp_avgs": exp_avgs,
            "exp_avg_sqs": exp_avg_sqs,
            "steps": steps,
            "masks": masks,
            "implementation": impl,
            "selection": selection,
            "sin_factors": None,
        }

    def _qiskit_sin_factors(self, plans: list[dict[str, Any]]) -> None:
        """Fill each plan's ``sin_factors`` with ONE batched estimator call for the whole step."""
        requests, where = [], []
        for k, plan in enumerate(plans):
            group = plan["group"]
            if group["quantum_weight"] == 0:
                continue
            width = int(group["n_qubits"]) if group["scope"] == "first_n" else 1
            plan["sin_factors"] = [None] * len(plan["params"])
            for i, (p, m) in enumerate(zip(plan["params"], plan["masks"], strict=True)):
                if m.count > 0:
                    requests.append((gather_masked(p, m).reshape(-1), width))
                    where.append((k, i))
        if not requests:
            return
        if self._qiskit is None:
            self._qiskit = QiskitSinPi(self.perturbation_backend)
        values = self._qiskit(requests)
        for (k, i), v in zip(where, values, strict=True):
            p, m = plans[k]["params"][i], plans[k]["masks"][i]
            plans[k]["sin_factors"][i] = v.reshape(p.shape) if m.is_all else v

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        if len(self._selection_cache) > len(self.param_groups):
            # groups were replaced: forget their cached views, which keep old parameter storage alive
            live = {id(g) for g in self.param_groups}
            self._selection_cache = {k: v for k, v in self._selection_cache.items() if k in live}
        plans = [plan for group in self.param_groups if (plan := self._prepare_group(group)) is not None]
        if self.perturbation_backend != "analytic":
            self._qiskit_sin_factors(plans)

        track = self.track_diagnostics
        pert_sq = torch.zeros((), dtype=torch.float32) if track else None
        upd_sq = torch.zeros((), dtype=torch.float32) if track else None
        for plan in plans:
            group = plan["group"]
            beta1, beta2 = group["betas"]
            perturbations: list[Tensor] | None = [] if track else None
            superpositional_adamw(
                plan["params"],
                plan["grads"],
                plan["exp_avgs"],
                plan["exp_avg_sqs"],
                plan["steps"],
                plan["masks"],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                quantum_weight=group["quantum_weight"],
                mode=group["mode"],
                implementation=plan["implementation"],
                sin_factors=plan["sin_factors"],
                perturbations=perturbations,
                selection=plan["selection"],
            )
            if track:
                scale = float(group["lr"]) * float(group["quantum_weight"])
                if perturbations:
                    pert_sq += global_sq_norm(perturbations) * scale**2
                upd_sq += adam_update_sq_norm(
                    plan["exp_avgs"],
                    plan["exp_avg_sqs"],
                    plan["steps"],
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                )
        # diagnostics describe the latest step only: None when it was not tracked
        self._diagnostics = (pert_sq, upd_sq) if track else None
        return loss

    def last_step_diagnostics(self) -> dict[str, float] | None:
        """Norms of the last step, for logging (requires ``track_diagnostics=True``).

        Returns:
            None if the latest step was not tracked (or before the first step), else a dict of floats:
            ``quantum/perturbation_norm`` (global L2 norm of ``lr * quantum_weight * Q``),
            ``quantum/update_norm`` (of the Adam update ``lr * m_hat / (sqrt(v_hat) + eps)``) and
            ``quantum/perturbation_to_update_ratio`` (their ratio; 0 when both are 0).

        Under FSDP2 the norms are those of this rank's shards.

        Example:
            >>> p = torch.nn.Parameter(torch.full((3,), 0.5))
            >>> opt = SuperpositionalAdamW([p], lr=0.1, quantum_weight=1.0, track_diagnostics=True)
            >>> p.grad = torch.ones(3)
            >>> opt.step()
            >>> d = opt.last_step_diagnostics()
            >>> round(d["quantum/perturbation_norm"], 4)  # 0.1 * 1.0 * ||sin(pi/2) * 1|| over 3 elements
            0.1732
        """
        if self._diagnostics is None:
            return None
        pert = math.sqrt(float(self._diagnostics[0]))
        upd = math.sqrt(float(self._diagnostics[1]))
        if upd > 0:
            ratio = pert / upd
        else:
            ratio = 0.0 if pert == 0 else math.inf
        return {
            "quantum/perturbation_norm": pert,
            "quantum/update_norm": upd,
            "quantum/perturbation_to_update_ratio": ratio,
        }
