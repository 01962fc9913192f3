"""The circuit term in attention: ``logits + gate * Phi(input_scale * logits)`` as autograd operations.

:func:`add_circuit_term` evaluates the term for every attention score with one ``sin``/``cos`` and ``O(K)``
multiply-adds, in a single ``torch.autograd.Function`` whose backward recomputes the trigonometric basis
instead of saving it; it can also apply attention's softmax scale and causal mask in the same pass.
:func:`circuit_softmax` adds the softmax in the same buffer, and :func:`circuit_attention_probs` starts from
the query and key so that the logits need not be kept for the backward (eager attention's memory). The
per-score work runs in the selected circuit kernel (:mod:`hf_superpositional.quantum.kernels`).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .kernels import KERNEL_CHOICES, CircuitKernel, resolve_circuit_kernel
from .series import check_coefficients, check_positive_finite, derivative_rows, gated_series_gradients

__all__ = ["add_circuit_term", "circuit_attention_probs", "circuit_softmax"]


def _per_block(table: torch.Tensor, n_lead: int, n_heads: int) -> torch.Tensor:
    """Repeat a per-head table ``[H, W]`` (or ``[1, W]``) to one row per ``(lead, head)`` block."""
    return table.expand(n_heads, table.shape[1]).repeat(n_lead, 1)


def _as_blocks(tensor: torch.Tensor) -> torch.Tensor:
    """View ``[B, H, ...]`` as ``[B*H, rest]``: one row per (batch, head) block, whose coefficients are fixed."""
    if tensor.ndim < 2:
        return tensor.reshape(1, -1)
    return tensor.reshape(tensor.shape[0] * tensor.shape[1], -1)


def _block_heads(logits: torch.Tensor) -> tuple[int, int]:
    """``(n_lead, n_heads)`` of the block rows: ``B`` and ``H`` for ``[B, H, ...]`` logits."""
    if logits.ndim < 2:
        return 1, 1
    return logits.shape[0], logits.shape[1]


@dataclasses.dataclass(frozen=True)
class _TermSpec:
    """The non-tensor arguments of a circuit-term evaluation, fixed by :func:`_check_term_arguments`."""

    frequency: float  # omega * input_scale
    dtype: torch.dtype  # compute dtype
    kernel: CircuitKernel  # resolved for the logits' device
    causal: bool
    scale: float  # logit_scale


def _term_forward(logits, coefficients, gate, spec: _TermSpec) -> torch.Tensor:
    """``z + gate * Phi(frequency * z)``, ``z = scale * logits``, causally masked if asked; a fresh tensor."""
    dtype = spec.dtype
    width = coefficients.shape[-1] * 2
    # Shared coefficients are still laid out per (batch, head) row: more rows to parallelise over.
    scores = _as_blocks(logits)
    n_lead, n_heads = _block_heads(logits)
    # The gate is folded into the coefficients, so a chunk's whole term is one weighted basis sum.
    table = gate.to(dtype).view(-1, 1) * coefficients.to(dtype).reshape(-1, width)
    table = _per_block(table, n_lead, n_heads)
    query_len = logits.shape[-2] if spec.causal else 1
    out = spec.kernel.forward(scores, table, spec.frequency, spec.scale, query_len, spec.causal)
    return out.view(logits.shape)


def _term_backward(logits, coefficients, gate, spec: _TermSpec, grad_out, needs, grad_is_ours=False):
    """Gradients of :func:`_term_forward` for ``(logits, coefficients, gate)`` (``None`` where not needed).

    ``grad_is_ours``: ``grad_out`` is a temporary of the caller, which the logits' gradient may overwrite.
    """
    dtype = spec.dtype
    need_logits, need_coefficients, need_gate = needs
    need_moments = need_coefficients or need_gate
    degree = coefficients.shape[-1] - 1
    width = 2 * degree + 2
    scores, grads = _as_blocks(logits), _as_blocks(grad_out)
    n_lead, n_heads = _block_heads(logits)
    coef = coefficients.to(dtype).reshape(-1, width)  # [1 or H, 2K+2]
    gate_c = gate.to(dtype).view(-1, 1)
    # d/dx [gate Phi(s x)] = gate * s * omega * sum_j j (b_j cos(j t) - a_j sin(j t)),  t = s * omega * x.
    derivative = _per_block(gate_c * derivative_rows(coef) * spec.frequency, n_lead, n_heads)

    query_len = logits.shape[-2] if spec.causal else 1
    grad_scores, moments = spec.kernel.backward(
        grads, scores, derivative, spec.frequency, spec.scale, query_len, spec.causal,
        need_logits, need_moments, grad_is_ours,
    )  # fmt: skip

    grad_logits = grad_coefficients = grad_gate = None
    if need_logits:
        grad_logits = grad_scores.view(logits.shape).to(logits.dtype)
    if need_moments:
        per_head = moments.view(n_lead, n_heads, width).sum(0)  # sum over scores of grad * basis_j
        grad_coefficients, grad_gate = gated_series_gradients(
            per_head, coefficients, gate, dtype, need_coefficients, need_gate
        )
    return grad_logits, grad_coefficients, grad_gate


class _CircuitTerm(torch.autograd.Function):
    """``logits + gate * Phi(input_scale * logits)`` with a recomputing backward (see add_circuit_term)."""

    @staticmethod
    def forward(ctx, logits, coefficients, gate, spec):
        # Only the inputs are saved: the backward recomputes sin/cos and the recurrence.
        ctx.save_for_backward(logits, coefficients, gate)
        ctx.spec = spec
        return _term_forward(logits, coefficients, gate, spec)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grads = _term_backward(*ctx.saved_tensors, ctx.spec, grad_out, ctx.needs_input_grad[:3])
        return (*grads, None)


class _CircuitSoftmax(torch.autograd.Function):
    """``softmax(term, dim=-1)`` of :func:`_term_forward` in one node (see circuit_softmax)."""

    @staticmethod
    def forward(ctx, logits, coefficients, gate, spec):
        term = _term_forward(logits, coefficients, gate, spec)
        # torch's own softmax kernel: the same numbers as torch.softmax(term, -1). On CPU in place on the
        # term (our own buffer; each row is reduced before it is written, tested), one score-sized tensor
        # instead of two.
        probs = torch._softmax(term, -1, False, out=term) if term.device.type == "cpu" else term.softmax(-1)
        ctx.save_for_backward(logits, coefficients, gate, probs)
        ctx.spec = spec
        return probs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_probs):
        logits, coefficients, gate, probs = ctx.saved_tensors
        grad_term = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        # grad_term is our temporary: the logits' gradient may be written over it.
        grads = _term_backward(
            logits, coefficients, gate, ctx.spec, grad_term, ctx.needs_input_grad[:3], grad_is_ours=True
        )
        return (*grads, None)


class _CircuitAttentionProbs(torch.autograd.Function):
    """``softmax(term(query @ key^T))`` keeping only the probabilities: the logits are recomputed in backward.

    ``half_scale``: for fp16/bf16 queries the logits are scaled in their own dtype and then widened, as eager
    attention and the module path do (``spec.scale`` is then 1); ``None`` for float32, where the kernel
    applies ``spec.scale`` itself. ``mask``: boolean (``True`` = attend), applied to the term as
    ``torch.where(mask, term, finfo.min)`` is, in place; its backward zeroes the masked scores' gradient.
    """

    @staticmethod
    def _logits(query, key, half_scale, dtype):
        logits = torch.matmul(query, key.transpose(-2, -1))
        return logits if half_scale is None else (logits * half_scale).to(dtype)

    @staticmethod
    def forward(ctx, query, key, coefficients, gate, spec, half_scale, mask):
        logits = _CircuitAttentionProbs._logits(query, key, half_scale, spec.dtype)
        term = _term_forward(logits, coefficients, gate, spec)
        del logits
        if mask is not None:
            term.masked_fill_(~mask, torch.finfo(term.dtype).min)
        probs = torch._softmax(term, -1, False, out=term) if term.device.type == "cpu" else term.softmax(-1)
        ctx.save_for_backward(query, key, coefficients, gate, probs, mask)
        ctx.spec, ctx.half_scale = spec, half_scale
        return probs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_probs):
        query, key, coefficients, gate, probs, mask = ctx.saved_tensors
        need_query, need_key, need_coefficients, need_gate = ctx.needs_input_grad[:4]
        grad_term = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        if mask is not None:  # as torch.where's backward: nothing flows through a masked score
            grad_term.masked_fill_(~mask, 0.0)
        # The same product (and scaling) as the forward's, again.
        logits = _CircuitAttentionProbs._logits(query, key, ctx.half_scale, ctx.spec.dtype)
        needs = (need_query or need_key, need_coefficients, need_gate)
        grad_logits, grad_coefficients, grad_gate = _term_backward(
            logits, coefficients, gate, ctx.spec, grad_term, needs, grad_is_ours=True
        )
        del logits
        if grad_logits is not None and ctx.half_scale is not None:
            # As autograd goes back through (query @ key^T * scale).to(float32): cast, then scale.
            grad_logits = grad_logits.to(query.dtype) * ctx.half_scale
        # As autograd differentiates torch.matmul(query, key.transpose(2, 3)): the same products, same numbers.
        grad_query = grad_logits.matmul(key) if need_query else None
        grad_key = query.transpose(-2, -1).matmul(grad_logits).transpose(-2, -1) if need_key else None
        return grad_query, grad_key, grad_coefficients, grad_gate, None, None, None


def _check_term_arguments(
    logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale, device=None
):
    """Validate :func:`add_circuit_term`'s arguments; returns the :class:`_TermSpec`.

    The kernel is resolved for ``device`` (default: the logits' device).
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError(
            f"logits must be a floating-point tensor, got {getattr(logits, 'dtype', type(logits).__name__)}"
        )
    check_coefficients(coefficients)
    if coefficients.ndim not in (2, 3):
        raise ValueError(
            f"coefficients must have shape [2, K+1] or [H, 2, K+1], got {tuple(coefficients.shape)}"
        )
    if not isinstance(gate, torch.Tensor) or gate.ndim != 1 or not gate.is_floating_point():
        shape = tuple(gate.shape) if isinstance(gate, torch.Tensor) else type(gate).__name__
        raise ValueError(f"gate must be a 1-D float tensor of shape [1] or [H] (never 0-D), got {shape}")
    omega = check_positive_finite("omega", omega)
    for name, value in (("input_scale", input_scale), ("logit_scale", logit_scale)):
        if (
            isinstance(value, (bool, torch.Tensor))
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a finite Python number, got {value!r}")
    if kernel is not None and kernel not in KERNEL_CHOICES:
        raise ValueError(f"kernel must be one of {KERNEL_CHOICES} or None, got {kernel!r}")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be a bool, got {causal!r}")
    if causal and logits.ndim != 4:
        raise ValueError(f"causal=True needs logits of shape [B, H, Lq, Lk], got {tuple(logits.shape)}")

    coefficient_heads = coefficients.shape[0] if coefficients.ndim == 3 else 1
    n_heads = max(coefficient_heads, gate.shape[0])
    if coefficient_heads not in (1, n_heads) or gate.shape[0] not in (1, n_heads):
        raise ValueError(
            f"coefficients ({coefficient_heads} heads) and gate ({gate.shape[0]} heads) disagree: "
            "each must have 1 entry or one per head"
        )
    if n_heads > 1 and (logits.ndim < 2 or logits.shape[1] != n_heads):
        raise ValueError(
            f"per-head coefficients/gate ({n_heads} heads) need logits of shape [B, {n_heads}, ...], "
            f"got logits {tuple(logits.shape)}"
        )
    compute_dtype = torch.float32
    for tensor in (logits, coefficients, gate):
        compute_dtype = torch.promote_types(compute_dtype, tensor.dtype)
    frequency = omega * float(input_scale)
    kernel = resolve_circuit_kernel(kernel if logits.numel() else "eager", device or logits.device)
    return _TermSpec(frequency, compute_dtype, kernel, causal, float(logit_scale))


def add_circuit_term(
    logits: torch.Tensor,
    coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    input_scale: float = 1.0,
    kernel: str | None = None,
    causal: bool = False,
    logit_scale: float = 1.0,
) -> torch.Tensor:
    """``logits + gate * Phi(input_scale * logits)`` for every attention score, fast and memory-lean.

    ``Phi`` is the trigonometric polynomial given by ``coefficients`` (see :func:`~hf_superpositional.quantum.fourier.fourier_coefficients`).
    Per score it costs one ``sin``/``cos`` and ``O(K)`` multiply-adds (angle-addition recurrence), in
    float32 (float64 if any input is float64). Autograd saves only ``logits``, ``coefficients`` and
    ``gate``; the backward recomputes the recurrence and gives exact gradients for the logits
    (``1 + gate * input_scale * Phi'``), the coefficients (summed per head) and the gate.

    Args:
        logits: scores ``[B, H, Lq, Lk]`` (any float dtype; fp16/bf16 are computed in float32).
        coefficients: ``[2, K + 1]`` shared by all heads, or ``[H, 2, K + 1]`` per head (dim 1 of ``logits``).
        gate: shape ``[1]`` or ``[H]``. Never 0-D, because FlexAttention cannot capture 0-D tensors.
        omega: base frequency of ``Phi`` (:func:`~hf_superpositional.quantum.series.readout_frequency`).
        input_scale: ``Phi`` is evaluated at ``input_scale * logits``.
        kernel: ``"auto"``, ``"cpp"``, ``"compiled"`` or ``"eager"`` (see :mod:`hf_superpositional.quantum.kernels`);
            ``None`` uses the default set there (``"auto"`` unless changed).
        causal: also apply attention's causal mask (``logits`` must be ``[B, H, Lq, Lk]``): scores whose key
            index exceeds their query index (upper-left aligned, as SDPA's ``is_causal``) come out as the
            lowest finite value of the result dtype, with zero gradient -- exactly what
            ``hf_superpositional.quantum.masks.apply_attention_mask(out, None, causal=True)`` gives, but in the
            same pass (the ``"cpp"`` kernel also skips their circuit term entirely).
        logit_scale: ``logits`` are first multiplied by this (rounded as ``logits * logit_scale`` is), i.e.
            the result is ``z + gate * Phi(input_scale * z)`` with ``z = logit_scale * logits``. Attention
            passes the unscaled ``QK^T`` and its softmax scale here, which saves the score-sized tensor of
            the separate multiplication in forward and in backward.

    Returns:
        float32 tensor shaped like ``logits`` (float64 if ``logits``, ``coefficients`` or ``gate`` is float64).

    Example:
        >>> from hf_superpositional.quantum.fourier import fourier_coefficients
        >>> ry, rz = torch.randn(4, 2, 4), torch.randn(4, 2, 4)  # 4 heads, depth 2, 4 qubits
        >>> coefficients = fourier_coefficients(ry, rz, "expval_z")  # [4, 2, 9]
        >>> logits = torch.randn(2, 4, 8, 8, requires_grad=True)
        >>> out = add_circuit_term(logits, coefficients, torch.ones(4), omega=1.0)
        >>> out.shape
        torch.Size([2, 4, 8, 8])
    """
    spec = _check_term_arguments(logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale)
    if logits.numel() == 0:
        return logits.to(spec.dtype) * logit_scale
    return _CircuitTerm.apply(logits, coefficients, gate, spec)


def circuit_softmax(
    logits: torch.Tensor,
    coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    input_scale: float = 1.0,
    kernel: str | None = None,
    causal: bool = False,
    logit_scale: float = 1.0,
) -> torch.Tensor:
    """``softmax(add_circuit_term(logits, ...), dim=-1)``: attention probabilities with the circuit term.

    The same numbers as ``torch.softmax`` of :func:`add_circuit_term`'s result (torch's own softmax kernels
    run in place on the term), as one autograd node that holds one score-sized buffer instead of two: the
    forward turns the term into the probabilities where it lies, and the backward writes the logits'
    gradient over the softmax gradient. Saved for backward: ``logits``, ``coefficients``, ``gate`` and
    the probabilities (which a separate softmax saves as well).

    Args:
        logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale: as
            :func:`add_circuit_term` (with ``causal=True`` the masked probabilities are exactly 0).

    Returns:
        The probabilities over the last dimension, float32 (float64 if an input is float64), shaped like
        ``logits``.

    Example:
        >>> import torch
        >>> coefficients = torch.tensor([[0.5, 1.0], [0.0, -0.5]])  # one qubit's worth: K = 1
        >>> probs = circuit_softmax(torch.randn(1, 1, 3, 3), coefficients, torch.ones(1), omega=1.0, causal=True)
        >>> torch.allclose(probs.sum(-1), torch.ones(1, 1, 3)), float(probs[0, 0, 0, 1])  # causal: 0 above
        (True, 0.0)
    """
    spec = _check_term_arguments(logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale)
    if logits.numel() == 0:
        return torch.softmax(logits.to(spec.dtype) * logit_scale, -1)
    return _CircuitSoftmax.apply(logits, coefficients, gate, spec)


def circuit_attention_probs(
    query: torch.Tensor,
    key: torch.Tensor,
    coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    input_scale: float = 1.0,
    kernel: str | None = None,
    causal: bool = False,
    logit_scale: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``circuit_softmax(query @ key^T, ...)`` that saves no logits: the backward recomputes ``query @ key^T``.

    Eager attention keeps one score-sized tensor per layer for its backward (the probabilities);
    :func:`circuit_softmax` keeps two (the logits too, for ``Phi'``). Taking ``query`` and ``key`` instead of
    their product brings the circuit back to eager attention's memory, for one more ``query @ key^T`` in
    the backward. Same values and gradients as ``circuit_softmax(torch.matmul(query, key.transpose(-2, -1)),
    ...)`` (bit for bit: the same kernels in the same order). fp16/bf16 ``query``/``key``: the logits are
    scaled by ``logit_scale`` in their own dtype and widened to float32 before the term, as eager attention
    scales them, i.e. the same as ``circuit_softmax((query @ key^T * logit_scale).float(), ...)``.

    Args:
        query: ``[B, H, Lq, D]``; key: ``[B, H, Lk, D]`` (already repeated for GQA).
        coefficients, gate, omega, input_scale, kernel, causal, logit_scale: as :func:`circuit_softmax`.
        mask: optional boolean mask (``True`` = attend) broadcastable to ``[B, H, Lq, Lk]`` (a padded batch's
            mask; extra key columns are ignored), applied before the softmax exactly as
            ``hf_superpositional.quantum.masks.apply_attention_mask`` applies it (masked scores become the lowest
            float32 value: a query with no key left gets a uniform row and no gradient).

    Returns:
        The probabilities ``[B, H, Lq, Lk]``, float32 (float64 for float64 inputs).

    Example:
        >>> import torch
        >>> q, k = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
        >>> coefficients, gate = torch.tensor([[0.5, 1.0], [0.0, -0.5]]), torch.ones(1)
        >>> probs = circuit_attention_probs(q, k, coefficients, gate, omega=1.0, causal=True, logit_scale=0.5)
        >>> torch.equal(probs, circuit_softmax(q @ k.transpose(-2, -1), coefficients, gate, omega=1.0,
        ...                                    causal=True, logit_scale=0.5))
        True
    """
    for name, tensor in (("query", query), ("key", key)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4 or not tensor.is_floating_point():
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name} must be a 4-D float tensor [B, H, L, D], got {shape}")
    if key.shape[:2] != query.shape[:2] or key.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"key {tuple(key.shape)} must match query {tuple(query.shape)} in batch, heads and head_dim "
            "(repeat key/value heads for GQA first)"
        )
    logits_shape = (*query.shape[:3], key.shape[2])
    meta_logits = torch.empty(logits_shape, dtype=torch.promote_types(query.dtype, key.dtype), device="meta")
    # Checked on a meta stand-in for the logits (never allocated); the kernel is resolved for query's device.
    spec = _check_term_arguments(
        meta_logits, coefficients, gate, omega, input_scale, kernel, causal, logit_scale, device=query.device
    )
    half_scale = None
    if query.dtype in (torch.float16, torch.bfloat16):
        half_scale, spec = float(logit_scale), dataclasses.replace(spec, scale=1.0)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.ndim != 4:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"mask must be a 4-D boolean tensor broadcastable to {logits_shape}, got {shape}"
            )
        mask = mask[..., : logits_shape[-1]]
        torch.broadcast_shapes(mask.shape, logits_shape)  # raises naming both shapes
    if meta_logits.numel() == 0:
        if mask is not None:
            raise ValueError("mask with empty attention (no query or no key) is not supported")
        return circuit_softmax(
            torch.matmul(query, key.transpose(-2, -1)),
            coefficients,
            gate,
            omega=omega,
            input_scale=input_scale,
            kernel=kernel,
            causal=causal,
            logit_scale=logit_scale,
        )
    return _CircuitAttentionProbs.apply(query, key, coefficients, gate, spec, half_scale, mask)

