"""Triton kernel for :func:`~.flex_gradient.circuit_gradient_sums` (causal and/or key-padding masks).

One program per (query block, batch * head): it loads its ``q``, ``dO``, ``lse`` and ``Delta`` rows once, walks
the key blocks (only those at or left of the diagonal when causal), recomputes each tile of scores with two
``tl.dot`` products, and reduces ``dS' cos(j x)`` and ``dS' sin(j x)`` over the tile's keys into a
``[BLOCK_M, K+1]`` accumulator -- no score-sized tensor is written. Each program stores its ``2 (K+1)``
partial sums in its own slot and torch adds the slots, so the result is deterministic (no atomics).

Import is lazy: the package works without Triton; :func:`available` says whether this kernel can run
(CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``, Triton's interpreter, which the tests use).
"""

from __future__ import annotations

import functools
import os

import torch

__all__ = ["available", "circuit_gradient_sums_triton"]


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install (no driver): the torch path takes over
        return False
    return True


def available(tensor: torch.Tensor) -> bool:
    """Whether the kernel can run on ``tensor``'s device (CUDA, or CPU under Triton's interpreter)."""
    if not _triton_importable():
        return False
    return tensor.is_cuda or (_interpreting() and tensor.device.type == "cpu")


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def circuit_gradient_sums_kernel(
        Q, K, V, DO, LSE, DELTA, COS, SIN, GATE, KEEP, PARTIAL, stride_keep_b,
        stride_qb, stride_qh, stride_qm, stride_qd,
        stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd,
        stride_ob, stride_oh, stride_om, stride_od,
        heads, group, q_len, kv_len, scaling, omega,
        N_TERMS: tl.constexpr, TERMS_PAD: tl.constexpr, CAUSAL: tl.constexpr, PADDING: tl.constexpr,
        IEEE: tl.constexpr,
        HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = pid_bh // heads
        h = pid_bh % heads
        hk = h // group
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, D_PAD)
        m_valid = offs_m < q_len
        d_valid = offs_d < HEAD_DIM
        row_mask = m_valid[:, None] & d_valid[None, :]
        q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                    mask=row_mask, other=0.0)  # fmt: skip
        do = tl.load(DO + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
                     mask=row_mask, other=0.0)  # fmt: skip
        # LSE and DELTA are contiguous float32 [batch, heads, q_len].
        lse = tl.load(LSE + pid_bh * q_len + offs_m, mask=m_valid, other=float("inf"))
        lse = tl.where(lse == float("-inf"), float("inf"), lse)  # a fully masked row keeps no score
        delta = tl.load(DELTA + pid_bh * q_len + offs_m, mask=m_valid, other=0.0)
        gate = tl.load(GATE + h)
        terms = tl.arange(0, TERMS_PAD)
        acc_cos = tl.zeros([BLOCK_M, TERMS_PAD], dtype=tl.float32)
        acc_sin = tl.zeros([BLOCK_M, TERMS_PAD], dtype=tl.float32)

        hi = kv_len
        if CAUSAL:
            hi = tl.minimum(kv_len, (pid_m + 1) * BLOCK_M)
        k_base = K + b * stride_kb + hk * stride_kh
        v_base = V + b * stride_vb + hk * stride_vh
        for start_n in range(0, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            n_valid = offs_n < kv_len
            col_mask = n_valid[:, None] & d_valid[None, :]
            k = tl.load(
                k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd, mask=col_mask, other=0.0
            )
            v = tl.load(
                v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd, mask=col_mask, other=0.0
            )
            if IEEE:
                scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scaling
                grad_probs = tl.dot(do, tl.trans(v), input_precision="ieee")
            else:
                scores = tl.dot(q, tl.trans(k)) * scaling
                grad_probs = tl.dot(do, tl.trans(v))
            x = scores * omega
            c1 = tl.cos(x)
            s1 = tl.sin(x)
            # Phi(x) = a_0 + sum_j a_j cos(j x) + b_j sin(j x), by the angle-addition recurrence.
            phi = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32) + tl.load(COS + h * N_TERMS)
            cj = c1
            sj = s1
            for j in tl.static_range(1, N_TERMS):
                phi += tl.load(COS + h * N_TERMS + j) * cj + tl.load(SIN + h * N_TERMS + j) * sj
                cj, sj = cj * c1 - sj * s1, sj * c1 + cj * s1
            keep = m_valid[:, None] & n_valid[None, :]
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= offs_m[:, None])
            if PADDING:  # KEEP: uint8 [batch, >= kv_len], 1 for the keys that take part
                key_keep = tl.load(KEEP + b * stride_keep_b + offs_n, mask=n_valid, other=0)
                keep = keep & (key_keep != 0)[None, :]
            probs = tl.where(keep, tl.exp(scores + gate * phi - lse[:, None]), 0.0)
            grad_scores = probs * (grad_probs - delta[:, None])
            acc_cos += tl.sum(grad_scores, 1)[:, None] * (terms == 0)[None, :]
            cj = c1
            sj = s1
            for j in tl.static_range(1, N_TERMS):
                acc_cos += tl.sum(grad_scores * cj, 1)[:, None] * (terms == j)[None, :]
                acc_sin += tl.sum(grad_scores * sj, 1)[:, None] * (terms == j)[None, :]
                cj, sj = cj * c1 - sj * s1, sj * c1 + cj * s1

        n_blocks = tl.num_programs(0)
        slot = PARTIAL + ((pid_bh * n_blocks + pid_m) * 2) * TERMS_PAD
        tl.store(slot + terms, tl.sum(acc_cos, 0))
        tl.store(slot + TERMS_PAD + terms, tl.sum(acc_sin, 0))

    return circuit_gradient_sums_kernel


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def circuit_gradient_sums_triton(
    query, key, value, out, grad_out, lse, cos_coefficients, sin_coefficients, gate, *, omega, scaling, causal,
    key_padding=None,
):  # fmt: skip
    """The Triton version of ``circuit_gradient_sums`` for ``FlexScoreMask(causal, key_padding)``."""
    import triton

    batch, heads, q_len, head_dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    num_terms = cos_coefficients.shape[-1]
    if heads % kv_heads:
        raise ValueError(f"query heads ({heads}) must be a multiple of key/value heads ({kv_heads})")
    if head_dim > 256:
        raise ValueError(f"the Triton circuit-gradient kernel supports head_dim <= 256, got {head_dim}")
    grad_out = grad_out.to(query.dtype)
    delta = (grad_out.float() * out.float()).sum(-1).contiguous()
    lse = lse.float().contiguous()
    cos_c = cos_coefficients.float().contiguous()
    sin_c = sin_coefficients.float().contiguous()
    gate = gate.float().contiguous()
    d_pad = max(16, _next_power_of_2(head_dim))
    terms_pad = max(2, _next_power_of_2(num_terms))
    # Untuned (written without a GPU at hand): 64 x 32 tiles keep the ~8 live float32 score tiles of the
    # inner loop within the register file at 4 warps (8 for wide heads).
    block_m = 64 if q_len >= 64 else max(16, _next_power_of_2(q_len))
    block_n = 32
    num_warps = 4 if d_pad <= 64 else 8
    n_blocks = triton.cdiv(q_len, block_m)
    partial = torch.zeros(batch * heads, n_blocks, 2, terms_pad, dtype=torch.float32, device=query.device)
    grid = (n_blocks, batch * heads)
    if key_padding is not None:
        if key_padding.shape[0] != batch or key_padding.shape[-1] < kv_len:
            raise ValueError(
                f"key_padding must be [batch={batch}, >= {kv_len}], got {tuple(key_padding.shape)}"
            )
        keep = key_padding.to(device=query.device, dtype=torch.uint8).contiguous()
    else:
        keep = torch.ones(1, 1, dtype=torch.uint8, device=query.device)  # not read (PADDING=False)
    _kernel()[grid](
        query, key, value, grad_out, lse, delta, cos_c, sin_c, gate, keep, partial, keep.stride(0),
        *query.stride(), *key.stride(), *value.stride(), *grad_out.stride(),
        heads, heads // kv_heads, q_len, kv_len, float(scaling), float(omega),
        N_TERMS=num_terms, TERMS_PAD=terms_pad, CAUSAL=bool(causal), PADDING=key_padding is not None,
        IEEE=query.dtype == torch.float32,
        HEAD_DIM=head_dim, D_PAD=d_pad, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
    )  # fmt: skip
    sums = partial.view(batch, heads, n_blocks, 2, terms_pad).sum((0, 2))[..., :num_terms]
    return sums[:, 0], sums[:, 1]
