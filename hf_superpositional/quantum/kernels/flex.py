"""The circuit term as a FlexAttention ``score_mod`` (``attn_implementation="quantum_flex"``).

FlexAttention fuses the ``score_mod`` into its attention kernel, so the ``[B, H, L, L]`` logits are never
stored. The ``score_mod`` evaluates :func:`~hf_superpositional.quantum.series.fourier_series`, the same
polynomial the dense kernels evaluate, from the coefficients it captures. Their gradients come from
:mod:`.flex_gradient` (FlexAttention would differentiate captured buffers with one atomic add per score).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..series import fourier_series

__all__ = ["circuit_score_mod"]


def circuit_score_mod(
    cos_coefficients: torch.Tensor,
    sin_coefficients: torch.Tensor,
    gate: torch.Tensor,
    omega: float,
    score_mask: torch.Tensor | None = None,
) -> Callable:
    """A FlexAttention ``score_mod`` adding ``gate[h] * Phi(score)`` to each score.

    Args:
        cos_coefficients, sin_coefficients: ``[heads, K+1]`` (float32), the ``a_j`` and ``b_j``.
        gate: ``[heads]`` (at least 1-D: FlexAttention cannot capture a learnable 0-D tensor).
        omega: angular frequency times the score-to-input scale (``1/scaling`` for ``score_input="raw"``).
        score_mask: optional 4-D boolean/float mask ``[batch, 1, q_len, kv_len]`` applied inside.

    Example:
        >>> mod = circuit_score_mod(torch.ones(1, 2), torch.zeros(1, 2), torch.ones(1), omega=1.0)
        >>> float(mod(torch.tensor(0.0), 0, torch.tensor(0), 0, 0))  # 0 + 1 * (1 + cos 0)
        2.0
    """
    num_terms = cos_coefficients.shape[-1]

    def score_mod(score, batch_idx, head_idx, q_idx, kv_idx):
        cosine = [cos_coefficients[head_idx, j] for j in range(num_terms)]
        sine = [sin_coefficients[head_idx, j] for j in range(num_terms)]
        out = score + gate[head_idx] * fourier_series(score.to(torch.float32) * omega, cosine, sine)
        if score_mask is not None:
            mask_value = score_mask[batch_idx, 0, q_idx, kv_idx]
            if score_mask.dtype == torch.bool:
                out = torch.where(mask_value, out, -float("inf"))
            else:
                out = out + mask_value
        return out

    return score_mod
