"""Which elements of a parameter receive the quantum term (SPEC section 1, rules 5 and 12).

``scope="first_n"`` selects the first ``n_qubits`` elements of each parameter in row-major order, by GLOBAL
index: under sharding (FSDP2 / DTensor) the same elements are perturbed as on one device.
:func:`build_quantum_mask` computes which LOCAL elements those are (:class:`QuantumMask`), the helpers
read and write them, and :class:`QuantumSelection` groups the selected elements of many tensors so that a
step touches them with a handful of batched ops.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SCOPES",
    "QuantumMask",
    "QuantumSelection",
    "build_quantum_mask",
    "first_n_local_flat_indices",
    "quantum_mask_from_flat_indices",
    "gather_masked",
    "masked_add_",
    "masked_addcmul_",
    "masked_copy_",
]

SCOPES = ("first_n", "all")
"""Which elements are perturbed: the first ``n_qubits`` of each tensor, or all of them."""


def first_n_local_flat_indices(
    global_shape: Sequence[int],
    local_shape: Sequence[int],
    global_offset: Sequence[int],
    n: int,
) -> list[int]:
    """Local row-major flat indices of the elements whose GLOBAL row-major flat index is below ``n``.

    A shard (FSDP2 / DTensor) holds the box ``[global_offset, global_offset + local_shape)`` of the global
    tensor. The global first ``n`` elements are enumerated, unravelled to multi-indices, kept if they fall
    inside the box, and mapped to the local flat index. For an unsharded tensor ``global_offset`` is all
    zeros and ``local_shape == global_shape``, which gives ``range(min(n, numel))``.

    The result is always a prefix ``0 .. k-1`` of the local flat order: the box's row-major order is a
    subsequence of the global row-major order, so the elements with global index below ``n`` come first.
    The fast paths rely on this (prefix views instead of gathers).

    Args:
        global_shape: shape of the full (unsharded) parameter.
        local_shape: shape of the local block.
        global_offset: global multi-index of the local block's first element.
        n: number of leading global elements to select (``n_qubits``).

    Returns:
        Sorted list of local flat indices (possibly empty).

    Example:
        >>> # rows 2..3 of a 4x3 matrix: global elements 0..6 are rows 0, 1 and element (2, 0)
        >>> first_n_local_flat_indices((4, 3), (2, 3), (2, 0), 7)
        [0]
    """
    global_shape = tuple(int(s) for s in global_shape)
    local_shape = tuple(int(s) for s in local_shape)
    global_offset = tuple(int(o) for o in global_offset)
    if not (len(global_shape) == len(local_shape) == len(global_offset)):
        raise ValueError(
            f"global_shape {global_shape}, local_shape {local_shape} and global_offset {global_offset} "
            "must have the same number of dimensions"
        )
    numel = math.prod(global_shape)
    if numel == 0 or math.prod(local_shape) == 0:
        return []
    out = []
    for flat in range(min(n, numel)):
        # unravel the global flat index (row-major, last dimension fastest)
        rem = flat
        multi = [0] * len(global_shape)
        for d in range(len(global_shape) - 1, -1, -1):
            rem, multi[d] = divmod(rem, global_shape[d])
        local = [m - o for m, o in zip(multi, global_offset, strict=True)]
        if all(0 <= li < ls for li, ls in zip(local, local_shape, strict=True)):
            local_flat = 0
            for li, ls in zip(local, local_shape, strict=True):
                local_flat = local_flat * ls + li
            out.append(local_flat)
    return out


@dataclass(frozen=True)
class QuantumMask:
    """The elements of one local tensor that receive the quantum term.

    Attributes:
        is_all: every element (``scope="all"``).
        count: number of selected elements (``numel`` when ``is_all``). For ``"first_n"`` they are always
            the local flat indices ``0 .. count-1`` (see :func:`first_n_local_flat_indices`), so a contiguous
            tensor is addressed with the view ``t.view(-1)[:count]``: no gather, no index_put.
        index: multi-index (one LongTensor per dimension) of the selected elements, in row-major order;
            used for non-contiguous tensors.
        prefix: the selected elements are the local flat indices ``0 .. count-1`` (always, for masks from
            :func:`build_quantum_mask`). ``False`` for a declared set of positions
            (:func:`quantum_mask_from_flat_indices`): then every access goes through ``index``.
    """

    is_all: bool
    count: int
    index: tuple[Tensor, ...] | None
    prefix: bool = True


def build_quantum_mask(
    scope: str,
    n_qubits: int,
    local_shape: Sequence[int],
    *,
    global_shape: Sequence[int] | None = None,
    global_offset: Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> QuantumMask:
    """Build the :class:`QuantumMask` of a (possibly sharded) local tensor.

    Args:
        scope: ``"first_n"`` (the first ``n_qubits`` elements by global row-major index) or ``"all"``.
        n_qubits: number of leading elements for ``"first_n"``.
        local_shape: shape of the local tensor.
        global_shape: shape of the full tensor; defaults to ``local_shape`` (unsharded).
        global_offset: global multi-index of the local block's first element; defaults to zeros.
        device: device of the index tensors (the parameter's device).

    Returns:
        The mask.

    Example:
        >>> m = build_quantum_mask("first_n", 4, (3, 5))
        >>> m.count
        4
    """
    local_shape = tuple(int(s) for s in local_shape)
    if scope == "all":
        return QuantumMask(is_all=True, count=math.prod(local_shape), index=None)
    if scope != "first_n":
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    global_shape = local_shape if global_shape is None else tuple(int(s) for s in global_shape)
    global_offset = (0,) * len(local_shape) if global_offset is None else tuple(global_offset)
    flat = first_n_local_flat_indices(global_shape, local_shape, global_offset, n_qubits)
    if not flat:
        return QuantumMask(is_all=False, count=0, index=None)
    flat_t = torch.tensor(flat, dtype=torch.long, device=device)
    # 0-D tensors have an empty shape: unravel_index then gives no index tensors; index with () instead.
    index = torch.unravel_index(flat_t, local_shape) if local_shape else ()
    if flat != list(range(len(flat))):  # impossible for a box (see first_n_local_flat_indices)
        raise AssertionError(f"first-n elements of a block are not a prefix: {flat}")
    return QuantumMask(is_all=False, count=len(flat), index=tuple(index))


def quantum_mask_from_flat_indices(
    flat_indices: Sequence[int] | Tensor, local_shape: Sequence[int], device: torch.device | str | None = None
) -> QuantumMask:
    """The :class:`QuantumMask` of exactly these local row-major flat indices (e.g. the first ``n_qubits`` of
    each original parameter inside a DeepSpeed ZeRO flat partition, which are no prefix).

    Example:
        >>> m = quantum_mask_from_flat_indices([0, 1, 7, 8], (10,))
        >>> m.count, m.prefix, m.index[0].tolist()
        (4, False, [0, 1, 7, 8])
    """
    local_shape = tuple(int(s) for s in local_shape)
    flat = torch.as_tensor(flat_indices, dtype=torch.long, device=device).reshape(-1).unique(sorted=True)
    numel = math.prod(local_shape)
    if flat.numel() and not (0 <= int(flat[0]) and int(flat[-1]) < numel):
        raise ValueError(f"flat_indices must lie in [0, {numel}) for a tensor of shape {local_shape}")
    if flat.numel() == 0:
        return QuantumMask(is_all=False, count=0, index=None)
    index = tuple(torch.unravel_index(flat, local_shape)) if local_shape else ()
    prefix = bool(int(flat[-1]) == flat.numel() - 1)  # sorted and unique: 0..k-1 exactly
    return QuantumMask(is_all=False, count=int(flat.numel()), index=index, prefix=prefix)


def _as_prefix_view(t: Tensor, mask: QuantumMask) -> Tensor | None:
    """A view of the selected (prefix) elements of a contiguous tensor, else None."""
    if mask.prefix and t.is_contiguous():
        # as_strided: one dispatch instead of view(-1)[:k]'s two (this runs per tensor per step)
        return t.as_strided((mask.count,), (1,))
    return None


def gather_masked(t: Tensor, mask: QuantumMask) -> Tensor:
    """The selected elements of ``t`` as a 1-D tensor (the tensor itself for ``is_all``).

    For a prefix of a contiguous tensor this is a VIEW (it changes when ``t`` changes); otherwise a copy.

    Example:
        >>> t = torch.arange(6.0).reshape(2, 3)
        >>> gather_masked(t, build_quantum_mask("first_n", 4, t.shape)).tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    if mask.is_all:
        return t
    view = _as_prefix_view(t, mask)
    if view is not None:
        return view
    return t[mask.index].reshape(-1)


def masked_add_(t: Tensor, mask: QuantumMask, values: Tensor, alpha: float) -> None:
    """``t[mask] += alpha * values`` in place."""
    view = t if mask.is_all else _as_prefix_view(t, mask)
    if view is not None:
        view.add_(values, alpha=alpha)
    else:  # non-contiguous tensor: index_put_ instead of a view
        t.index_put_(mask.index, values * alpha, accumulate=True)


def masked_addcmul_(t: Tensor, mask: QuantumMask, a: Tensor, b: Tensor, value: float) -> None:
    """``t[mask] += value * a * b`` in place."""
    view = t if mask.is_all else _as_prefix_view(t, mask)
    if view is not None:
        view.addcmul_(a, b, value=value)
    else:
        t.index_put_(mask.index, a * b * value, accumulate=True)


def masked_copy_(t: Tensor, mask: QuantumMask, values: Tensor) -> None:
    """``t[mask] = values`` in place (used to restore gradients exactly)."""
    view = t if mask.is_all else _as_prefix_view(t, mask)
    if view is not None:
        view.copy_(values)
    else:
        t.index_put_(mask.index, values)


class QuantumSelection:
    """Where the quantum elements of a list of parameters live, grouped so the correction is cheap.

    - prefix batches, keyed by (device, dtype): ``scope="first_n"`` on contiguous tensors (the selected
      elements are always a prefix of the local flat order, sharded or not). Each step gathers them with
      ONE ``torch.cat`` into a persistent buffer and writes back with ONE ``torch._foreach_copy_``.
    - ``full``: ``scope="all"``; ``torch._foreach_*`` over whole tensors.
    - ``scattered``: non-contiguous tensors: advanced indexing, one tensor at a time.

    It depends only on the parameters and masks, so the optimizer builds it once and reuses it;
    :meth:`bind` checks every step that the prefix views still point into the parameters' storage.

    Args:
        params: the (local) parameters.
        masks: one :class:`QuantumMask` per parameter.
        grads: if given, tensors whose gradient is not contiguous are addressed by index too.

    Example:
        >>> ps = [torch.zeros(3, 3), torch.zeros(2)]
        >>> sel = QuantumSelection(ps, [build_quantum_mask("first_n", 4, p.shape) for p in ps])
        >>> [b["counts"] for b in sel.batches]
        [[4, 2]]
    """

    def __init__(
        self, params: list[Tensor], masks: list[QuantumMask], grads: list[Tensor] | None = None
    ) -> None:
        self.rebuild(params, masks, grads)

    def rebuild(
        self, params: list[Tensor], masks: list[QuantumMask], grads: list[Tensor] | None = None
    ) -> None:
        """Recompute in place (a parameter's storage moved), so every holder sees the new views."""
        by_key: dict[tuple, dict[str, list]] = {}
        self.full: list[int] = []
        self.scattered: list[int] = []
        self._ptrs: list[tuple[int, int, bool]] = []
        self._n = len(params)
        # (device, dtype) shared by every parameter, else None: lets the fused path skip torch's
        # per-step regrouping (see _run_torch_adamw). Re-derived whenever the storage check fails.
        kinds = {(p.device, p.dtype) for p in params}
        self.uniform = next(iter(kinds)) if len(kinds) == 1 else None
        for i, (p, m) in enumerate(zip(params, masks, strict=True)):
            # every parameter's storage is checked by bind(): prefix views and `uniform` depend on it
            self._ptrs.append((i, p.data_ptr(), p.is_contiguous()))
            if m.count == 0:
                continue
            if m.is_all:
                self.full.append(i)
            elif m.prefix and p.is_contiguous() and (grads is None or grads[i].is_contiguous()):
                batch = by_key.setdefault((p.device, p.dtype), {"index": [], "p": [], "counts": []})
                batch["index"].append(i)
                batch["p"].append(p.as_strided((m.count,), (1,)))
                batch["counts"].append(m.count)
            else:
                self.scattered.append(i)
        self.batches = list(by_key.values())
        for (device, dtype), b in by_key.items():
            # Persistent work buffers and their per-tensor views, so a step creates no Python tensor
            # objects beyond the gradient views: [p0 | g0] filled by one torch.cat, and q.
            n = sum(b["counts"])
            buf = torch.empty(2 * n, device=device, dtype=dtype)
            b["buf"], b["p0"], b["g0"] = buf, buf[:n], buf[n:]
            b["p0_views"] = list(b["p0"].split_with_sizes(b["counts"]))
            b["g0_views"] = list(b["g0"].split_with_sizes(b["counts"]))
            b["q"] = torch.empty(n, device=device, dtype=dtype)
            b["q_views"] = list(b["q"].split_with_sizes(b["counts"]))
        # (index, count, data_ptr) of every prefix entry, batch after batch: the per-step loop of
        # bind(); the other parameters' storage is checked separately (usually there are none).
        ptrs = {i: ptr for i, ptr, _ in self._ptrs}
        self._entries = [
            (i, k, ptrs[i]) for b in self.batches for i, k in zip(b["index"], b["counts"], strict=True)
        ]
        in_batches = {i for i, _, _ in self._entries}
        self._others = [entry for entry in self._ptrs if entry[0] not in in_batches]
        self._splits = [0]
        for b in self.batches:
            self._splits.append(self._splits[-1] + len(b["index"]))

    def bind(
        self, params: list[Tensor], masks: list[QuantumMask], grads: list[Tensor]
    ) -> list[list[Tensor]] | None:
        """Per step: prefix views of the gradients, per batch, after checking the parameters' storage.

        Rebuilds in place if a parameter's storage moved (``p.data = ...``), so every holder of this
        selection sees the new views. Returns None if a selected gradient is not contiguous (the caller
        then addresses it by index). One loop over the tensors: this runs every step.
        """
        if len(params) != self._n or not all(
            params[i].data_ptr() == ptr and params[i].is_contiguous() == contiguous
            for i, ptr, contiguous in self._others
        ):
            self.rebuild(params, masks)
        views = []
        for i, k, ptr in self._entries:
            p, g = params[i], grads[i]
            if p.data_ptr() != ptr or not p.is_contiguous():
                self.rebuild(params, masks)
                return self.bind(params, masks, grads)
            if not g.is_contiguous():
                return None
            views.append(g.as_strided((k,), (1,)))
        if len(self.batches) == 1:
            return [views]
        return [views[a:b] for a, b in itertools.pairwise(self._splits)]
