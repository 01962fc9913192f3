"""Random circuit cases and references shared by the quantum tests (Qiskit values, plain torch terms)."""

from __future__ import annotations

import math

import pytest
import torch

READOUTS = ["expval_z", "amplitude"]


# "compiled" compiles for tens of seconds per dtype and degree: only with the slow tests.
KERNELS = ["eager", "cpp", pytest.param("compiled", marks=pytest.mark.slow)]


FAST_KERNELS = ["eager", "cpp"]


def random_angles(shape, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator, dtype=dtype) * 4 - 2) * math.pi


def random_term_case(seed, dtype, per_head, shape=(2, 3, 7, 37)):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=generator, dtype=dtype) * 4
    coefficient_shape = (shape[1], 2, 9) if per_head else (2, 9)
    coefficients = torch.randn(coefficient_shape, generator=generator, dtype=dtype) * 0.4
    gate = torch.randn(shape[1] if per_head else 1, generator=generator, dtype=dtype)
    grad = torch.randn(*shape, generator=generator, dtype=dtype)
    return logits, coefficients, gate, grad


def value_and_grads(function, logits, coefficients, gate, grad, **kwargs):
    leaves = [t.detach().requires_grad_() for t in (logits, coefficients, gate)]
    out = function(*leaves, **kwargs)
    return (out, *torch.autograd.grad(out, leaves, grad))
