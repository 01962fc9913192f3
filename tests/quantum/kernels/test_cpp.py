"""The C++ kernel (quantum/kernels/cpp.py, csrc/): determinism, its sampler against the torch simulation, and the fallback when it cannot be built."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hf_superpositional.quantum.fourier import fourier_coefficients
from hf_superpositional.quantum.ops import add_circuit_term
from tests.quantum.circuit_cases import READOUTS, random_term_case, value_and_grads
from tests.subprocess_env import repo_env


@pytest.mark.parametrize("kernel", ["cpp"], indirect=True)
def test_cpp_kernel_is_deterministic_across_thread_counts(kernel):
    # Moments are summed per fixed tile, then tile by tile in order: the thread count cannot change a bit.
    logits, coefficients, gate, grad = random_term_case(21, torch.float32, per_head=True, shape=(2, 3, 96, 128))
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(
                value_and_grads(add_circuit_term, logits, coefficients, gate, grad, omega=1.0, kernel=kernel)
            )
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kernel", ["cpp"], indirect=True)
@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("shape", [(2, 4), (3, 2, 4), (2, 1, 3)])
def test_cpp_sampler_matches_the_torch_simulation(kernel, readout, shape):
    generator = torch.Generator().manual_seed(22)
    ry = (torch.rand(shape, generator=generator, dtype=torch.float64) * 6 - 3).requires_grad_()
    rz = (torch.rand(shape, generator=generator, dtype=torch.float64) * 6 - 3).requires_grad_()
    fast = fourier_coefficients(ry, rz, readout, kernel="cpp")
    reference = fourier_coefficients(ry, rz, readout, kernel="eager")  # circuit_readout, torch autograd
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-13)
    weights = torch.randn(fast.shape, generator=generator, dtype=torch.float64)
    for a, b in zip(
        torch.autograd.grad(fast, (ry, rz), weights),
        torch.autograd.grad(reference, (ry, rz), weights),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert fourier_coefficients(ry.float(), rz.float(), readout, kernel="cpp").dtype == torch.float32


FAILED_BUILD_CHECK = """
import warnings
import torch
from hf_superpositional.quantum.fourier import fourier_coefficients
from hf_superpositional.quantum.ops import add_circuit_term
from tests.quantum.circuit_cases import random_term_case

logits, coefficients, gate, _ = random_term_case(23, torch.float32, per_head=True, shape=(1, 3, 4, 4))
with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    out = add_circuit_term(logits, coefficients, gate, omega=1.0, kernel="cpp")
    again = add_circuit_term(logits, coefficients, gate, omega=1.0)  # "auto"
    coefficients_again = fourier_coefficients(torch.zeros(2, 2), torch.zeros(2, 2), kernel="cpp")
messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
assert len(messages) == 1 and "could not build the C++ circuit kernel" in messages[0], messages
expected = add_circuit_term(logits, coefficients, gate, omega=1.0, kernel="eager")
assert torch.equal(out, expected) and torch.equal(again, expected)
assert coefficients_again.shape == (2, 5)
# The fused attention kernel lives in the same extension: quantum attention takes its dense path instead.
from hf_superpositional.quantum.kernels.flash import flash_attention_runs_on
assert not flash_attention_runs_on(torch.device("cpu"))
print("fell back")
"""


def test_failed_build_warns_once_and_falls_back_to_eager(tmp_path):
    # A real failed build: a compiler that always fails, in an empty extension cache, in a fresh process.
    env = repo_env(CXX="false", TORCH_EXTENSIONS_DIR=str(tmp_path / "extensions"))
    result = subprocess.run(
        [sys.executable, "-c", FAILED_BUILD_CHECK], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "fell back" in result.stdout, result.stderr[-3000:]
