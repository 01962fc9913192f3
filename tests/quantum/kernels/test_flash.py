"""The fused flash-style CPU kernel (quantum/kernels/flash.py, csrc/flash_attention.cpp) against dense
attention written here in float64: outputs and the gradients of query, key, value, coefficients and gate;
gradcheck; masks (causal, key padding, queries that see no key), grouped-query attention, sequence lengths
that are not multiples of the tiles, bfloat16, determinism across thread counts, linear memory."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.profiling import cpu_peak_bytes
from hf_superpositional.quantum.kernels import flash_attention, flash_attention_enabled, set_flash_attention
from hf_superpositional.quantum.kernels.flash import circuit_flash_attention, flash_attention_runs_on

pytestmark = pytest.mark.skipif(
    not flash_attention_runs_on(torch.device("cpu")),
    reason="the C++ kernel could not be built on this machine (see its RuntimeWarning)",
)


def dense_attention(q, k, v, coefficients, gate, omega, logit_scale, input_scale, causal, key_padding):
    """softmax(z + gate * Phi(input_scale * z) + mask) v with every score materialised, Phi summed term by term.

    Masked scores become the lowest finite value before the softmax (what ``apply_attention_mask`` does), so a
    query that sees no key gets a uniform row over all keys.
    """
    heads, group = q.shape[1], q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    z = logit_scale * q @ k.transpose(-1, -2)
    degree = coefficients.shape[-1] - 1
    coefficients = coefficients.reshape(-1, 2, degree + 1).expand(heads, 2, degree + 1)
    angles = (omega * input_scale * z).unsqueeze(-1) * torch.arange(degree + 1, dtype=z.dtype)
    cosine = coefficients[:, 0].view(1, heads, 1, 1, -1)
    sine = coefficients[:, 1].view(1, heads, 1, 1, -1)
    phi = (torch.cos(angles) * cosine + torch.sin(angles) * sine).sum(-1)
    scores = z + gate.expand(heads).view(1, heads, 1, 1) * phi
    keep = torch.ones(scores.shape[-2:], dtype=torch.bool)
    if causal:
        keep = torch.tril(keep)
    keep = keep.view(1, 1, *keep.shape)
    if key_padding is not None:
        keep = keep & key_padding[:, None, None, :]
    scores = torch.where(keep, scores, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, -1) @ v


def make_case(batch, heads, kv_heads, q_len, kv_len, dim, degree, *, per_head, padding, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_len, dim, generator=g, dtype=torch.float64)
    k = torch.randn(batch, kv_heads, kv_len, dim, generator=g, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, kv_len, dim, generator=g, dtype=torch.float64)
    coefficients = torch.randn(heads if per_head else 1, 2, degree + 1, generator=g, dtype=torch.float64) * 0.5
    coefficients[:, 1, 0] = 0.0  # sin(0 t) = 0: the Fourier compilation's b_0
    if not per_head:
        coefficients = coefficients[0]
    gate = torch.rand(heads if per_head else 1, generator=g, dtype=torch.float64) + 0.5
    key_padding = None
    if padding:
        key_padding = torch.ones(batch, kv_len, dtype=torch.bool)
        key_padding[0, : kv_len // 3] = False  # left padding: batch 0's first queries see no key when causal
        if batch > 1:
            key_padding[-1, -2:] = False
    return [q, k, v, coefficients, gate], key_padding


# (batch, heads, kv_heads, q_len, kv_len, head_dim, degree, per_head, causal, padding); tiles are 64 queries x
# 512 keys, so 70 / 130 / 600 cut partial tiles and 600 keys cross a key block.
CASES = {
    "causal": (2, 4, 4, 70, 70, 16, 8, True, True, False),
    "causal_padded_gqa": (2, 4, 2, 70, 70, 16, 8, False, True, True),
    "unmasked_two_key_blocks_mqa": (1, 2, 1, 37, 600, 8, 8, True, False, False),
    "causal_more_keys": (1, 2, 2, 70, 130, 8, 8, False, True, False),
    "causal_fewer_keys_padded": (2, 2, 1, 130, 70, 8, 3, True, True, True),
    "padded_not_causal": (2, 2, 2, 9, 12, 8, 8, True, False, True),
    "degree_20_runtime_loop": (1, 2, 2, 70, 70, 8, 20, True, True, True),
}


def run_both(case, dtype, omega=0.7, input_scale=1.3):
    batch, heads, kv_heads, q_len, kv_len, dim, degree, per_head, causal, padding = case
    inputs, key_padding = make_case(batch, heads, kv_heads, q_len, kv_len, dim, degree, per_head=per_head,
                                    padding=padding)  # fmt: skip
    grad = torch.randn(batch, heads, q_len, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    settings = dict(omega=omega, logit_scale=dim**-0.5, input_scale=input_scale, causal=causal)
    fast_inputs = [t.to(dtype).requires_grad_() for t in inputs]
    fast = circuit_flash_attention(*fast_inputs, key_padding=key_padding, **settings)
    fast_grads = torch.autograd.grad(fast, fast_inputs, grad.to(dtype))
    # The reference sees exactly the kernel's (rounded) inputs, in float64.
    dense_inputs = [t.detach().to(torch.float64).requires_grad_() for t in fast_inputs]
    dense = dense_attention(*dense_inputs, settings["omega"], settings["logit_scale"], input_scale, causal,
                            key_padding)  # fmt: skip
    dense_grads = torch.autograd.grad(dense, dense_inputs, grad.to(dtype).to(torch.float64))
    return [fast, *fast_grads], [dense, *dense_grads]


def relative_errors(fast, dense) -> dict[str, float]:
    names = ("out", "query", "key", "value", "coefficients", "gate")
    return {
        name: float((a.detach().double() - b.detach()).abs().max() / b.detach().abs().max())
        for name, a, b in zip(names, fast, dense, strict=True)
    }


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_float64_output_and_every_gradient_equal_dense_attention(case):
    fast, dense = run_both(case, torch.float64)
    errors = relative_errors(fast, dense)
    assert max(errors.values()) <= 1e-10, errors
    assert all(t.dtype == torch.float64 for t in fast)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_float32_output_and_every_gradient_within_1e_5_of_dense_attention(case):
    fast, dense = run_both(case, torch.float32)
    errors = relative_errors(fast, dense)
    assert max(errors.values()) <= 1e-5, errors
    assert all(t.dtype == torch.float32 for t in fast)


def test_queries_that_see_no_key_get_the_uniform_row_and_no_gradient():
    inputs, key_padding = make_case(2, 2, 2, 12, 12, 8, 8, per_head=True, padding=True)
    q, k, v, coefficients, gate = (t.requires_grad_() for t in inputs)
    out = circuit_flash_attention(q, k, v, coefficients, gate, omega=1.0, logit_scale=0.3, causal=True,
                                  key_padding=key_padding)  # fmt: skip
    # Batch 0 pads its first 4 keys: its first 4 queries see nothing and average all 12 values.
    torch.testing.assert_close(out[0, :, :4], v[0].mean(1, keepdim=True).expand(2, 4, 8), rtol=0, atol=1e-14)
    grad_q, grad_k = torch.autograd.grad(out[0, :, :4].sum(), (q, k))
    assert grad_q.abs().max() == 0 and grad_k.abs().max() == 0


def test_gradcheck_causal_gqa_across_query_blocks():
    # 67 queries: a full 64-query tile and a partial one; GQA with shared coefficients.
    inputs, _ = make_case(1, 2, 1, 67, 67, 3, 4, per_head=False, padding=False, seed=3)
    inputs = [t.requires_grad_() for t in inputs]

    def attention(q, k, v, coefficients, gate):
        return circuit_flash_attention(q, k, v, coefficients, gate, omega=1.0, logit_scale=0.8, causal=True)

    assert torch.autograd.gradcheck(attention, inputs, fast_mode=True)


@pytest.mark.parametrize(
    "causal, shape", [(True, (6, 6)), (False, (5, 7))], ids=["causal_padded", "unmasked_padded_cross"]
)
def test_gradcheck_padded_with_queries_that_see_no_key(causal, shape):
    q_len, kv_len = shape
    inputs, key_padding = make_case(2, 2, 1, q_len, kv_len, 3, 3, per_head=True, padding=True, seed=4)
    if not causal:
        key_padding[1] = False  # batch 1 sees no key at all
    inputs = [t.requires_grad_() for t in inputs]

    def attention(q, k, v, coefficients, gate):
        return circuit_flash_attention(
            q, k, v, coefficients, gate, omega=0.5, logit_scale=0.9, input_scale=1.1, causal=causal,
            key_padding=key_padding,
        )  # fmt: skip

    assert torch.autograd.gradcheck(attention, inputs)


def test_bfloat16_is_computed_in_float32_and_rounded_once():
    fast, dense = run_both(CASES["causal_padded_gqa"], torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for t in fast[:4])
    errors = relative_errors(fast, dense)
    # bf16 keeps 8 bits: one rounding of each result is ~4e-3 relative (computed in bf16 it would be 10x more).
    assert max(errors.values()) <= 8e-3, errors


def test_same_bits_for_any_thread_count():
    inputs, key_padding = make_case(2, 4, 2, 70, 70, 16, 8, per_head=True, padding=True, seed=5)
    inputs = [t.float() for t in inputs]
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            leaves = [t.clone().requires_grad_() for t in inputs]
            out = circuit_flash_attention(*leaves, omega=1.0, logit_scale=0.25, causal=True, key_padding=key_padding)
            results.append([out, *torch.autograd.grad(out.square().sum(), leaves)])
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))


def test_memory_grows_linearly_no_score_matrix_is_allocated():
    def peak_bytes(length: int, dim: int = 16) -> int:
        g = torch.Generator().manual_seed(6)
        q, k, v = (torch.randn(1, 1, length, dim, generator=g).requires_grad_() for _ in range(3))
        coefficients, gate = torch.randn(2, 9, generator=g).requires_grad_(), torch.ones(1, requires_grad=True)

        def step():
            out = circuit_flash_attention(q, k, v, coefficients, gate, omega=1.0, logit_scale=0.25, causal=True)
            out.backward(torch.ones_like(out))

        return cpu_peak_bytes(step)

    short, long = peak_bytes(2048), peak_bytes(4096)
    # Twice the sequence: at most twice the memory (the per-thread tiles do not grow at all); dense attention
    # would hold a [4096, 4096] float32 matrix (64 MiB), 16 times more than this whole step.
    assert 0 < long <= 2 * short, (short, long)
    assert long < 4096 * 4096 * 4 / 16, long


def test_flash_switch_and_bad_arguments():
    assert flash_attention_enabled()
    with flash_attention(False):
        assert not flash_attention_enabled()
    assert flash_attention_enabled()
    with pytest.raises(ValueError, match="enabled must be a bool"):
        set_flash_attention("no")
    inputs, _ = make_case(1, 2, 1, 4, 4, 8, 2, per_head=False, padding=False)
    with pytest.raises(ValueError, match="key_padding must be a boolean"):
        circuit_flash_attention(*inputs, omega=1.0, logit_scale=0.5, key_padding=torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="CPU tensors"):
        meta = [t.to("meta") for t in inputs]
        circuit_flash_attention(*meta, omega=1.0, logit_scale=0.5)
