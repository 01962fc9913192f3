"""Attention masks: the one causal rule and how a mask is applied to attention logits.

The causal rule is SDPA's ``is_causal``: upper-left aligned, a key takes part when its index is at most
the query's (``kv_idx <= q_idx``). :func:`causal_mask_mod` states it once, in FlexAttention's ``mask_mod``
form; :func:`causal_mask` evaluates it as a boolean tensor. Every Python path uses one of the two: the
dense attention, the circuit-term kernels, the FlexAttention call and its circuit-gradient pass (the C++
and Triton kernels test the same inequality).
"""

from __future__ import annotations

import torch

__all__ = ["apply_attention_mask", "causal_mask", "causal_mask_mod"]


def causal_mask_mod(batch_idx, head_idx, q_idx, kv_idx):
    """``True`` where key ``kv_idx`` may be attended from query ``q_idx``: ``kv_idx <= q_idx``.

    A FlexAttention ``mask_mod`` (``create_block_mask(causal_mask_mod, ...)``); the batch and head indices
    are unused.

    Example:
        >>> bool(causal_mask_mod(0, 0, torch.tensor(3), torch.tensor(2)))
        True
    """
    return kv_idx <= q_idx


def causal_mask(q_len: int, kv_len: int, *, q_start: int = 0, device: torch.device | str | None = None):
    """``[q_len, kv_len]`` boolean, ``True`` = attend, for queries ``q_start .. q_start + q_len - 1``.

    Upper-left aligned like SDPA's ``is_causal``: query ``i`` attends keys ``0 .. i``. ``q_start`` selects a
    block of query rows (a chunked pass over the queries).

    Example:
        >>> causal_mask(2, 3).int().tolist()
        [[1, 0, 0], [1, 1, 0]]
        >>> causal_mask(1, 3, q_start=2).int().tolist()
        [[1, 1, 1]]
    """
    q_idx = torch.arange(q_start, q_start + q_len, device=device)[:, None]
    kv_idx = torch.arange(kv_len, device=device)[None, :]
    return causal_mask_mod(None, None, q_idx, kv_idx)


def apply_attention_mask(
    logits: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool
) -> torch.Tensor:
    """Mask attention logits: boolean masks (``True`` = attend) via ``torch.where``, float masks by addition.

    Masked logits become ``finfo(dtype).min`` rather than ``-inf``, so a fully masked row (a padding query)
    gives a uniform softmax instead of NaN -- and, in float32, exactly the values eager attention's
    ``logits + finfo.min`` gives, which keeps a gate-0 patch bit-identical to eager.

    Args:
        logits: ``[batch, heads, q_len, kv_len]``.
        attention_mask: ``None``, a boolean mask or an additive float mask broadcastable to ``logits``
            (extra key columns are ignored).
        causal: with ``attention_mask=None``, apply the causal mask (:func:`causal_mask`).

    Example:
        >>> apply_attention_mask(torch.zeros(1, 1, 2, 2), None, causal=True)[0, 0, 0, 1] == torch.finfo().min
        tensor(True)
    """
    if attention_mask is None:
        if not causal:
            return logits
        attention_mask = causal_mask(logits.shape[-2], logits.shape[-1], device=logits.device)
    attention_mask = attention_mask[..., : logits.shape[-1]]
    if attention_mask.dtype == torch.bool:
        return torch.where(attention_mask, logits, torch.finfo(logits.dtype).min)
    return logits + attention_mask.to(logits.dtype)
