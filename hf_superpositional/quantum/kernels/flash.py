"""Quantum attention in one fused CPU kernel, flash-style: ``softmax(z + gate * Phi(frequency z) + mask) V``.

:func:`circuit_flash_attention` computes the attention output from ``query``, ``key`` and ``value`` without
ever holding the ``[B, H, S, S]`` scores: the C++ kernel (``csrc/flash_attention.cpp``, part of the
extension :mod:`.cpp` builds on first use) walks tiles of queries x keys with an online softmax, as PyTorch's
own CPU flash attention does, adding the circuit term to each tile's logits on the way. The forward keeps
the output and one log-sum-exp per query; the backward recomputes each tile from ``Q``, ``K``, ``V`` and that
log-sum-exp and gives the exact gradients of the query, key, value, circuit coefficients and gate (the
coefficient and gate gradients from per-tile sums, without atomics). Memory is linear in the sequence
length.

Masks: causal (SDPA's upper-left rule), a key-padding mask ``[B, S_kv]``, both, or none. Grouped-query
attention: ``key``/``value`` may have fewer heads than ``query`` (Llama's ``num_key_value_groups``).
Precision: float32 and float64 natively; bfloat16 inputs are widened to float32 (products, softmax and
accumulation in float32) and the output rounded back to bfloat16. A query that sees no key at all (a
padding query) gets what the dense reference gives it: the uniform average of every value, and no gradient
for the query, keys or circuit.

The reference it is tested against is dense attention (:func:`~hf_superpositional.quantum.ops.circuit_attention_probs`
and a float64 re-derivation in the tests). Whether ``attn_implementation="quantum"`` uses this kernel is a
setting of the kernel registry (:func:`~hf_superpositional.quantum.kernels.set_flash_attention` /
:func:`~hf_superpositional.quantum.kernels.flash_attention`; on by default; it needs the ``"cpp"`` circuit
kernel).
"""

from __future__ import annotations

import torch

from ..series import check_coefficients, check_positive_finite, derivative_rows, gated_series_gradients
from . import resolve_circuit_kernel
from .cpp import load_cpu_extension

__all__ = ["FLASH_DTYPES", "circuit_flash_attention", "flash_attention_runs_on"]

FLASH_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
"""Query/key/value dtypes the fused kernel takes (bfloat16 is computed in float32)."""

def flash_attention_runs_on(device: torch.device) -> bool:
    """Whether the fused kernel can run for tensors on ``device`` now: a CPU, the ``"cpp"`` circuit kernel
    selected (``"auto"`` picks it there) and built.

    Example:
        >>> flash_attention_runs_on(torch.device("meta"))
        False
    """
    if device.type != "cpu" or resolve_circuit_kernel(None, device).name != "cpp":
        return False
    return hasattr(load_cpu_extension(), "flash_forward")


def _tables(coefficients, gate, heads: int, frequency: float, dtype, need_derivative: bool):
    """The per-head coefficient table ``gate * [a_0..a_K, b_0..b_K]`` and, if asked, its derivative table."""
    degree = coefficients.shape[-1] - 1
    width = 2 * degree + 2
    coef = coefficients.to(dtype).reshape(-1, width)
    gate = gate.to(dtype).view(-1, 1)
    table = (gate * coef).expand(heads, width).contiguous()
    if not need_derivative:
        return table, None
    # d/dt sum_j a_j cos(j t) + b_j sin(j t) = sum_j j (b_j cos(j t) - a_j sin(j t)); times dt/dz = frequency.
    derivative = (gate * derivative_rows(coef) * frequency).expand(heads, width).contiguous()
    return table, derivative


def _compute(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` in the compute dtype with its last dimension contiguous (a view when it already is)."""
    tensor = tensor.to(dtype)
    return tensor if tensor.stride(-1) == 1 else tensor.contiguous()


class _FlashCircuitAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, coefficients, gate, frequency, scale, causal, key_padding):
        dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
        q, k, v = (_compute(t, dtype) for t in (query, key, value))
        table, _ = _tables(coefficients, gate, query.shape[1], frequency, dtype, False)
        out, lse = load_cpu_extension().flash_forward(q, k, v, table, scale, frequency, causal, key_padding)
        ctx.save_for_backward(query, key, value, out, lse, coefficients, gate)
        ctx.settings = (frequency, scale, causal, key_padding)
        return out if out.dtype == query.dtype else out.to(query.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        query, key, value, out, lse, coefficients, gate = ctx.saved_tensors
        frequency, scale, causal, key_padding = ctx.settings
        need_coefficients, need_gate = ctx.needs_input_grad[3:5]
        dtype = out.dtype
        q, k, v, grad = (_compute(t, dtype) for t in (query, key, value, grad_out))
        table, derivative = _tables(coefficients, gate, query.shape[1], frequency, dtype, True)
        grad_q, grad_k, grad_v, moments = load_cpu_extension().flash_backward(
            grad, q, k, v, out, lse, table, derivative, scale, frequency, causal, key_padding,
            need_coefficients or need_gate,
        )  # fmt: skip
        # moments[h] = sum over the head's scores of dS * [cos(j t) .., sin(j t) ..], dS the gradient of the score.
        grad_coefficients, grad_gate = gated_series_gradients(
            moments, coefficients, gate, dtype, need_coefficients, need_gate
        )
        grads = (g.to(t.dtype) for g, t in ((grad_q, query), (grad_k, key), (grad_v, value)))
        return (*grads, grad_coefficients, grad_gate, None, None, None, None)


def _check(query, key, value, coefficients, gate, input_scale, logit_scale, causal, key_padding) -> None:
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4 or tensor.dtype not in FLASH_DTYPES:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            dtype = getattr(tensor, "dtype", None)
            raise ValueError(
                f"{name} must be a 4-D [B, H, S, D] tensor of dtype {FLASH_DTYPES}, got {shape} ({dtype})"
            )
    if key.dtype != query.dtype or value.dtype != query.dtype:
        raise ValueError(f"query, key and value must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}")
    batch, heads, q_len, dim = query.shape
    if key.shape != value.shape or key.shape[0] != batch or key.shape[3] != dim or heads % key.shape[1]:
        raise ValueError(
            f"key and value must be [B, H_kv, S_kv, D] with query's B and D and H_kv dividing query's heads "
            f"{heads}; got query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    if q_len == 0 or key.shape[2] == 0 or dim == 0:
        raise ValueError(f"empty attention: query {tuple(query.shape)}, key {tuple(key.shape)}")
    check_coefficients(coefficients)
    if coefficients.ndim not in (2, 3) or (coefficients.ndim == 3 and coefficients.shape[0] not in (1, heads)):
        raise ValueError(
            f"coefficients must have shape [2, K+1] or [{heads}, 2, K+1], got {tuple(coefficients.shape)}"
        )
    if not isinstance(gate, torch.Tensor) or gate.ndim != 1 or gate.shape[0] not in (1, heads):
        shape = tuple(gate.shape) if isinstance(gate, torch.Tensor) else type(gate).__name__
        raise ValueError(f"gate must be a 1-D tensor of shape [1] or [{heads}], got {shape}")
    check_positive_finite("logit_scale", logit_scale)
    check_positive_finite("input_scale", input_scale)
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be a bool, got {causal!r}")
    if key_padding is not None and (
        not isinstance(key_padding, torch.Tensor)
        or key_padding.dtype != torch.bool
        or tuple(key_padding.shape) != (batch, key.shape[2])
    ):
        shape = tuple(key_padding.shape) if isinstance(key_padding, torch.Tensor) else type(key_padding).__name__
        raise ValueError(f"key_padding must be a boolean [B, S_kv] = [{batch}, {key.shape[2]}] tensor, got {shape}")


def circuit_flash_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    coefficients: torch.Tensor,
    gate: torch.Tensor,
    *,
    omega: float,
    logit_scale: float,
    input_scale: float = 1.0,
    causal: bool = False,
    key_padding: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax(z + gate * Phi(input_scale * z) + mask) @ value`` with ``z = logit_scale * query @ key^T``, fused.

    The fused CPU kernel of this module: no ``[B, H, Sq, Skv]`` tensor is ever allocated, in the forward or
    the backward (which recomputes each tile), and all five inputs get exact gradients. ``Phi`` is the
    trigonometric polynomial of ``coefficients`` (:func:`~hf_superpositional.quantum.fourier.fourier_coefficients`)
    at base frequency ``omega``, as in :func:`~hf_superpositional.quantum.ops.add_circuit_term`.

    Args:
        query: ``[B, H, Sq, D]``, float32, float64 or bfloat16 (computed in float32).
        key, value: ``[B, H_kv, Skv, D]``, ``H_kv`` dividing ``H`` (grouped-query attention: query head ``h``
            reads key/value head ``h // (H // H_kv)``, as ``repeat_kv`` arranges them).
        coefficients: ``[2, K+1]`` shared by all heads or ``[H, 2, K+1]`` per head; gate: ``[1]`` or ``[H]``.
        omega: the series' base frequency (:func:`~hf_superpositional.quantum.series.readout_frequency`).
        logit_scale: the softmax scale (``head_dim ** -0.5``); input_scale: ``Phi`` is evaluated at
            ``input_scale * z`` (``1 / logit_scale`` for the paper's raw scores).
        causal: key ``j`` is seen by query ``i`` only if ``j <= i`` (upper-left, as SDPA's ``is_causal``).
        key_padding: optional boolean ``[B, Skv]``, ``True`` for keys that take part (a padded batch's mask).

    Returns:
        ``[B, H, Sq, D]`` in the query's dtype (a transposed view of ``[B, Sq, H, D]`` memory, which is how
        attention modules read it back).

    Raises:
        ValueError: for shapes, dtypes or arguments outside the above.
        RuntimeError: when the C++ extension is not available (see :func:`flash_attention_runs_on`).

    Example:
        >>> import torch
        >>> q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8)
        >>> coefficients, gate = torch.tensor([[0.5, 1.0], [0.0, -0.5]]), torch.ones(1)
        >>> if flash_attention_runs_on(q.device):
        ...     out = circuit_flash_attention(q, k, v, coefficients, gate, omega=1.0, logit_scale=8**-0.5, causal=True)
        ...     print(tuple(out.shape))
        ... else:
        ...     print((1, 2, 5, 8))
        (1, 2, 5, 8)
    """
    _check(query, key, value, coefficients, gate, input_scale, logit_scale, causal, key_padding)
    if not flash_attention_runs_on(query.device):
        raise RuntimeError(
            "circuit_flash_attention needs CPU tensors and the C++ extension (the 'cpp' circuit kernel); "
            f"got tensors on {query.device.type!r} with the kernel {resolve_circuit_kernel(None, query.device).name!r}"
        )
    frequency = check_positive_finite("omega", omega) * float(input_scale)
    if key_padding is not None:
        key_padding = key_padding.contiguous()
    return _FlashCircuitAttention.apply(
        query, key, value, coefficients, gate, frequency, float(logit_scale), causal, key_padding
    )
