"""The Triton kernel of the circuit gradients (quantum/kernels/flex_gradient_triton.py) against the torch pass: in Triton's interpreter on CPU, compiled on CUDA."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from hf_superpositional.quantum.kernels.flex_gradient import (
    FlexScoreMask,
    circuit_gradient_sums,
)
from tests.quantum.kernels.flex_cases import dense_reference, flex_inputs
from tests.subprocess_env import REPO, repo_env

# ----------------------------------------------------------------------------------------------------------
# The Triton kernel, in Triton's interpreter (CPU)
# ----------------------------------------------------------------------------------------------------------
TRITON_CHECK = textwrap.dedent(
    """
    import torch
    from hf_superpositional.quantum.kernels.flex_gradient import FlexScoreMask, circuit_gradient_sums
    from tests.quantum.kernels.flex_cases import dense_reference, flex_inputs

    worst = 0.0
    cases = [
        dict(dtype=torch.float32, causal=True, kv_heads=2, q_len=70, kv_len=70, head_dim=8, terms=9),
        dict(dtype=torch.float32, causal=False, kv_heads=4, q_len=33, kv_len=50, head_dim=20, terms=5),
        dict(dtype=torch.float16, causal=True, kv_heads=1, q_len=40, kv_len=40, head_dim=16, terms=9),
        dict(dtype=torch.float16, causal=True, kv_heads=2, q_len=17, kv_len=17, head_dim=8, terms=17),
        dict(dtype=torch.float32, causal=True, kv_heads=1, q_len=9, kv_len=20, head_dim=128, terms=9),
        dict(dtype=torch.float32, causal=False, kv_heads=2, q_len=70, kv_len=5, head_dim=24, terms=3),
    ]
    cases.append(dict(dtype=torch.float32, causal=True, kv_heads=2, q_len=45, kv_len=45, head_dim=8, terms=9,
                      padded=True))
    for case in cases:
        dtype, causal, padded = case.pop("dtype"), case.pop("causal"), case.pop("padded", False)
        q, k, v, c, s, g = (t.detach() for t in flex_inputs(dtype=torch.float64, **case))
        q, k, v = (t.to(dtype) for t in (q, k, v))
        wide = [t.double() for t in (q, k, v)]
        key_padding = None
        if padded:
            key_padding = torch.ones(q.shape[0], k.shape[2], dtype=torch.bool)
            key_padding[1, :7] = False
        keep = None if key_padding is None else key_padding[:, None, None, :]
        out, lse = dense_reference(*wide, c, s, g, 0.8, 0.35, causal, keep)
        grad_out = torch.randn_like(out)
        mask = FlexScoreMask(causal=causal, key_padding=key_padding)
        args = (out.to(dtype), grad_out.to(dtype), lse, c.float(), s.float(), g.float())
        ref = circuit_gradient_sums(*wide, *(t.double() for t in args[:2]), lse, c, s, g,
                                    omega=0.8, scaling=0.35, mask=mask, kernel="torch")
        got = circuit_gradient_sums(q, k, v, *args, omega=0.8, scaling=0.35, mask=mask, kernel="triton")
        for a, b in zip(got, ref):
            scale = float(b.abs().max())
            err = float((a.double() - b).abs().max()) / scale
            tol = 2e-5 if dtype == torch.float32 else 2e-2
            assert scale > 1e-3 and err < tol, (dtype, causal, err)
            worst = max(worst, err)
    print("OK", worst)
    """
)


@pytest.mark.slow
def test_triton_kernel_matches_torch_pass_in_interpreter():
    # No bfloat16 case: Triton's interpreter computes tl.dot on bfloat16 wrongly (a plain 16x16 product is off
    # by 1e10 there); the gpu test below covers bfloat16 on CUDA.
    pytest.importorskip("triton", reason="Triton not installed (pip install triton to run its interpreter)")
    proc = subprocess.run(
        [sys.executable, "-c", TRITON_CHECK], cwd=REPO, env=repo_env(TRITON_INTERPRET="1"),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.startswith("OK")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled Triton kernel needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_triton_kernel_matches_torch_pass_on_cuda(dtype, causal, padded):
    pytest.importorskip("triton")
    q, k, v, c, s, g = (
        t.detach() for t in flex_inputs(dtype=torch.float64, kv_heads=2, q_len=300, kv_len=300, head_dim=64)
    )
    q, k, v = (t.to(dtype).cuda() for t in (q, k, v))
    wide = [t.double() for t in (q, k, v)]
    key_padding = None
    if padded:
        key_padding = torch.ones(2, 300, dtype=torch.bool, device="cuda")
        key_padding[1, :37] = False
    keep = None if key_padding is None else key_padding[:, None, None, :]
    out, lse = dense_reference(*wide, c.cuda(), s.cuda(), g.cuda(), 0.8, 0.125, causal, keep)
    grad_out = torch.randn_like(out)
    mask = FlexScoreMask(causal=causal, key_padding=key_padding)
    ref = circuit_gradient_sums(
        *wide, out.to(dtype).double(), grad_out.to(dtype).double(), lse, c.cuda(), s.cuda(), g.cuda(),
        omega=0.8, scaling=0.125, mask=mask, kernel="torch",
    )  # fmt: skip
    got = circuit_gradient_sums(
        q, k, v, out.to(dtype), grad_out.to(dtype), lse.float(), c.float().cuda(), s.float().cuda(), g.float().cuda(),
        omega=0.8, scaling=0.125, mask=mask, kernel="triton",
    )  # fmt: skip
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    for a, b in zip(got, ref, strict=True):
        assert float((a.double() - b).abs().max()) <= tol * float(b.abs().max())
