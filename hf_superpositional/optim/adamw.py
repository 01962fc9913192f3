"""``SuperpositionalAdamW``: AdamW plus the paper's quantum-inspired perturbation (SPEC section 1).

The maths lives in :mod:`hf_superpositional.optim.functional` and :mod:`hf_superpositional.optim.masks`;
this class owns the torch ``Optimizer``
plumbing: param groups, state (torch AdamW's keys, so checkpoints cross-load), path selection, the lazily
computed global-index mask (FSDP2 swaps parameters after the optimizer is built), the optional Qiskit
backend and diagnostics.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import (
    Optimizer,
    ParamsT,
    _device_dtype_check_for_fused,
    _to_scalar,
    _use_grad_for_differentiable,
)

from ..naming import QISKIT_SIMULATORS
from .functional import adam_update_sq_norm, global_sq_norm, superpositional_adamw
from .masks import (
    QuantumMask,
    QuantumSelection,
    build_quantum_mask,
    gather_masked,
    quantum_mask_from_flat_indices,
)
from .options import (
    check_capturable_devices,
    fused_layout_problem,
    loaded_step,
    new_step,
    real_view,
    resolve_implementation,
    validate_hyperparameters,
)
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


class SuperpositionalAdamW(Optimizer):
    r"""AdamW with the quantum-inspired perturbation of Superpositional Gradient Descent (IEEE QAI 2025).

    For each parameter tensor ``p`` with gradient ``g``, ``Q = mask * sin(pi * p0) * g`` with ``p0`` the
    parameter at the start of the step, and

    - ``mode="update"`` (paper eq. 1): ``p <- AdamW_step(p0, g) - lr * quantum_weight * Q``;
    - ``mode="moment"``: the perturbed gradient ``g + quantum_weight * Q`` feeds both Adam moments.

    ``scope="first_n"`` perturbs the first ``n_qubits`` elements of each tensor by global row-major index
    (the paper's ``i < n_qubits``; the same elements under FSDP2 sharding), ``scope="all"`` every element.
    A complex parameter is stepped and perturbed on its ``torch.view_as_real`` view, as torch's AdamW steps
    it: there ``first_n`` counts REAL components, ``re(z0), im(z0), re(z1), ...``, so ``n_qubits=4``
    perturbs the first two complex elements.

    It accepts every argument of ``torch.optim.AdamW`` with torch's meaning, and with ``quantum_weight=0``
    it is ``torch.optim.AdamW`` (SPEC 1.11). With ``quantum_weight > 0``: ``maximize`` negates ``g`` before
    ``Q`` is formed; ``amsgrad`` changes only the denominator (``max_exp_avg_sq``); ``capturable`` and
    ``differentiable`` keep the quantum term on the device and inside autograd. State keys are AdamW's
    (``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) so checkpoints load both ways; a ``step``
    saved as a Python number is converted on load, as torch does.

    Args:
        params: iterable of parameters (or ``(name, parameter)`` pairs) or of param-group dicts. Every
            hyper-parameter below except ``perturbation_backend`` and ``track_diagnostics`` may be
            overridden per group.
        lr: learning rate (float or 1-element tensor), finite and >= 0.
        betas: ``(beta1, beta2)``, each in [0, 1) (floats or 1-element tensors).
        eps: added to ``sqrt(v_hat)`` (outside the root, as torch's Adam), finite and >= 0.
        weight_decay: decoupled weight decay, finite and >= 0 (default 0, SPEC 1.6; torch's AdamW: 0.01).
        amsgrad: the AMSGrad variant (the denominator uses the running maximum of ``v``).
        quantum_weight: lambda of the paper, finite and >= 0.
        n_qubits: number of leading elements perturbed per tensor with ``scope="first_n"``, int >= 1.
        mode: ``"update"`` or ``"moment"``.
        scope: ``"first_n"`` or ``"all"``.
        maximize: maximize the objective instead of minimizing it.
        foreach: use torch's multi-tensor AdamW kernel plus a batched correction.
        capturable: keep the step count on the device and never read it on the host (CUDA graphs,
            ``torch.compile``); as in torch, its per-tensor and foreach paths need a CUDA-like device.
        differentiable: autograd through ``step()`` (the per-tensor path; not with ``foreach``/``fused``).
        fused: use torch's fused AdamW kernel plus a batched correction (cpu, cuda; real floating
            parameters only, as torch's). With both ``foreach`` and ``fused`` None the fastest available is
            chosen per step: fused when every parameter is a real floating tensor on cpu/cuda, else foreach
            where torch supports it, else the per-tensor loop.
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
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | Tensor = 0.0,
        amsgrad: bool = False,
        *,
        quantum_weight: float = 0.1,
        n_qubits: int = 4,
        mode: str = "update",
        scope: str = "first_n",
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        perturbation_backend: str = "analytic",
        track_diagnostics: bool = False,
    ) -> None:
        if perturbation_backend not in PERTURBATION_BACKENDS:
            raise ValueError(
                f"perturbation_backend must be one of {PERTURBATION_BACKENDS}, got {perturbation_backend!r}"
            )
        if isinstance(betas, (tuple, list)):
            betas = tuple(_to_scalar(b) for b in betas)  # 1-element tensors become 0-D, as in torch
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "quantum_weight": quantum_weight,
            "n_qubits": n_qubits,
            "mode": mode,
            "scope": scope,
            # torch AdamW's group keys, so AdamW state dicts load into this optimizer and the reverse.
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": True,
        }
        validate_hyperparameters(defaults)
        self.perturbation_backend = perturbation_backend
        self.track_diagnostics = bool(track_diagnostics)
        self._init_runtime()
        # Kept across load_state_dict (unlike the caches): the tensors given as parameters, and the element
        # masks declared with set_element_mask, both by id with a weak reference to tell a recycled id apart.
        self._given: dict[int, weakref.ref] = {}
        self._declared_masks: dict[int, tuple[weakref.ref, QuantumMask]] = {}
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
        self.__dict__.setdefault("_declared_masks", {})
        if "_given" not in self.__dict__:  # unpickled (deepcopy): the parameters are the copies in the groups
            self._given = {id(p): weakref.ref(p) for group in self.param_groups for p in group["params"]}
        # Groups loaded from a torch AdamW checkpoint lack the quantum keys: take this optimizer's defaults.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            group["decoupled_weight_decay"] = True
            # A `step` saved as a Python number (older torch, hand-written state) becomes the tensor torch
            # keeps, where torch keeps it (Adam.__setstate__): every path then steps it like any other.
            on_device = bool(group["capturable"] or group["fused"])
            for p in group["params"]:
                p_state = self.state.get(p)
                if p_state and "step" in p_state and not torch.is_tensor(p_state["step"]):
                    p_state["step"] = loaded_step(
                        p_state["step"], p, on_device=on_device, fused=bool(group["fused"])
                    )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; its hyper-parameter overrides are validated like the constructor's."""
        if isinstance(param_group.get("betas"), (tuple, list)):
            param_group["betas"] = tuple(_to_scalar(b) for b in param_group["betas"])
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        validate_hyperparameters(merged)
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
        self._given.update((id(p), weakref.ref(p)) for p in self.param_groups[-1]["params"])

    def set_element_mask(self, tensor: Tensor, flat_indices: Tensor | list[int] | None) -> None:
        """Make ``scope="first_n"`` perturb exactly the elements ``flat_indices`` of ``tensor`` (local row-major).

        The hook for a tensor that packs pieces of several original parameters, such as the flat partitions
        DeepSpeed ZeRO hands the optimizer: "the first ``n_qubits`` elements of each original parameter"
        (SPEC 1.5, 1.12) are then scattered positions that only the partitioner knows.
        :mod:`hf_superpositional.integrations.deepspeed` computes them from DeepSpeed's maps and declares them
        here. ``scope="all"`` is elementwise and ignores the declaration; ``None`` removes it. A tensor in a
        ``first_n`` group that was neither given as a parameter nor declared here raises at ``step()``.

        Example:
            >>> flat = torch.zeros(10, requires_grad=True)
            >>> opt = SuperpositionalAdamW([flat], lr=0.1, quantum_weight=1.0, n_qubits=2)
            >>> opt.set_element_mask(flat, [0, 1, 6, 7])  # two 2-element "parameters" start at 0 and 6
        """
        self._selection_cache.clear()
        self._mask_cache.pop(id(tensor), None)
        if flat_indices is None:
            self._declared_masks.pop(id(tensor), None)
            return
        local = torch.view_as_real(tensor) if torch.is_complex(tensor) else tensor
        mask = quantum_mask_from_flat_indices(flat_indices, local.shape, device=local.device)
        self._declared_masks[id(tensor)] = (weakref.ref(tensor), mask)

    def _mask(self, p: Tensor, local: Tensor, group: dict[str, Any]) -> QuantumMask:
        """The mask of ``local``: the (real view of the) local shard of parameter ``p``."""
        scope, n = group["scope"], group["n_qubits"]
        dtensor = _is_dtensor(p)
        signature = (scope, n, p.shape, local.shape, tuple(p.placements) if dtensor else None)
        # Keyed by id(p) with a weak reference to tell a recycled id apart; a plain dict lookup keeps
        # this per-tensor, per-step check well under a microsecond.
        cached = self._mask_cache.get(id(p))
        if cached is not None and cached[0]() is p and cached[1] == signature:
            return cached[2]
        declared = self._declared_masks.get(id(p))
        if scope == "first_n" and declared is not None and declared[0]() is p:
            return declared[1]
        if scope == "first_n" and not dtensor and (self._given.get(id(p)) or (lambda: None))() is not p:
            raise RuntimeError(
                f"SuperpositionalAdamW(scope='first_n') was asked to step a tensor of shape {tuple(p.shape)} "
                "that it was never given as a parameter, so it cannot tell which of its elements are the "
                "first n_qubits of each original parameter (DeepSpeed ZeRO hands the optimizer such flat "
                "partitions). Train with SuperpositionalTrainer, which maps them through DeepSpeed's "
                "partition maps (hf_superpositional.integrations.deepspeed), declare them with "
                "set_element_mask(), or use scope='all', which is elementwise and needs no map."
            )
        if dtensor and scope == "first_n":
            _, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
            global_shape, offset = tuple(p.shape), tuple(offset)
            if torch.is_complex(p):  # the real view's last dimension holds (re, im)
                global_shape, offset = (*global_shape, 2), (*offset, 0)
            mask = build_quantum_mask(
                scope, n, local.shape, global_shape=global_shape, global_offset=offset, device=local.device
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

    def _check_fused_layouts(
        self, group: dict[str, Any], params: list[Tensor], local_params: list[Tensor], sharded: bool
    ) -> str:
        """``"fused"``, or, when a tensor's layouts would make torch's fused kernel mis-step it (see
        :func:`fused_layout_problem`), the path torch would take without it (leaving ``fused`` None) or an
        error (``fused=True``). One stride comparison per tensor per step."""
        state = self.state
        for p, local in zip(params, local_params, strict=True):
            grad = _local(p.grad) if sharded else p.grad
            if grad.stride() == local.stride() and state.get(p):  # the usual case, inline: it runs every step
                continue
            problem = fused_layout_problem(local, grad, new_state=not state.get(p))
            if problem is None:
                continue
            if group["fused"]:
                raise RuntimeError(
                    f"fused=True cannot step the parameter of shape {tuple(p.shape)}: {problem}. torch's fused "
                    "AdamW kernel steps parameter, gradient and moments as flat memory (it refuses this on "
                    "CUDA and pairs the wrong elements on CPU): use foreach=True, leave fused=None, or give "
                    "the parameter and its gradient one memory layout."
                )
            return resolve_implementation(group, local_params, allow_fused=False)
        return "fused"

    def _prepare_group(self, group: dict[str, Any]) -> dict[str, Any] | None:
        params_with_grad = [p for p in group["params"] if p.grad is not None]
        if not params_with_grad:
            return None
        # Unwrap DTensors (FSDP2) only when the group has some: this loop runs every step.
        sharded = DTensor is not None and any(isinstance(p, DTensor) for p in params_with_grad)
        local_params = [_local(p) for p in params_with_grad] if sharded else params_with_grad
        impl = resolve_implementation(group, local_params)
        if impl == "fused":
            impl = self._check_fused_layouts(group, params_with_grad, local_params, sharded)
        fused = impl == "fused"
        # Like torch: the step counter lives on CPU unless a fused kernel or capturable needs it on the device.
        on_device = fused or group["capturable"]
        amsgrad, differentiable = group["amsgrad"], group["differentiable"]
        has_complex = False
        grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], []
        for p, local in zip(params_with_grad, local_params, strict=True):
            grad = p.grad
            if grad.is_sparse:
                raise RuntimeError(
                    "SuperpositionalAdamW does not support sparse gradients (like torch AdamW); "
                    "use dense gradients, e.g. nn.Embedding(sparse=False)"
                )
            state = self.state[p]
            if len(state) == 0:
                if group["fused"]:
                    _device_dtype_check_for_fused(local)  # torch's error for complex / integer parameters
                state["step"] = new_step(local, on_device=on_device, fused=fused)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif on_device and state["step"].device != local.device:
                # A checkpoint (or an earlier non-fused step) left the counter on CPU.
                state["step"] = loaded_step(state["step"], local, on_device=True, fused=fused)
            if amsgrad and "max_exp_avg_sq" not in state:
                # torch creates it with the state; a group switched to amsgrad later starts from zeros,
                # where max(0, v) = v is exactly amsgrad's first step.
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if differentiable and state["step"].requires_grad:
                raise RuntimeError("`requires_grad` is not supported for `step` in differentiable mode")
            steps.append(state["step"])
            if not (sharded or amsgrad or local.is_complex()):  # the usual case, without temporaries
                grads.append(grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                continue
            tensors = [grad, state["exp_avg"], state["exp_avg_sq"]]
            if amsgrad:
                tensors.append(state["max_exp_avg_sq"])
            if sharded:
                tensors = [_local(t) for t in tensors]
            if local.is_complex():
                has_complex = True
                tensors = [real_view(t) for t in tensors]
            grads.append(tensors[0])
            exp_avgs.append(tensors[1])
            exp_avg_sqs.append(tensors[2])
            if amsgrad:
                max_exp_avg_sqs.append(tensors[3])
        if group["capturable"] and not fused:  # torch's fused kernel ignores capturable
            check_capturable_devices(local_params, steps)
        if has_complex:  # stepped and perturbed on the real view (first_n counts real components)
            local_params = [real_view(p) for p in local_params]
        quantum = group["quantum_weight"] != 0
        masks, selection = self._masks_and_selection(group, params_with_grad, local_params, quantum, impl)
        return {
            "group": group,
            "params": local_params,
            "grads": grads,
            "exp_avgs": exp_avgs,
            "exp_avg_sqs": exp_avg_sqs,
            "max_exp_avg_sqs": max_exp_avg_sqs,
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
    @_use_grad_for_differentiable  # torch's: no_grad unless differentiable=True
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or None.
        """
        self._accelerator_graph_capture_health_check()  # torch's: capturing a graph needs capturable=True
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
                amsgrad=group["amsgrad"],
                max_exp_avg_sqs=plan["max_exp_avg_sqs"],
                maximize=group["maximize"],
                capturable=group["capturable"],
                differentiable=group["differentiable"],
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
                    plan["max_exp_avg_sqs"] if group["amsgrad"] else plan["exp_avg_sqs"],
                    plan["steps"],
                    lr=group["lr"],
                    beta1=float(beta1),
                    beta2=float(beta2),
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
