"""The kernel registry (quantum/kernels/__init__.py): names, defaults, the context manager, device rules."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.quantum import kernels
from hf_superpositional.quantum.ops import add_circuit_term, circuit_softmax


def test_kernel_names_and_devices():
    assert kernels.KERNEL_CHOICES == ("auto", "cpp", "compiled", "eager")
    previous = kernels.set_circuit_kernel("eager")
    try:
        assert kernels.set_circuit_kernel("auto") == "eager"
        with kernels.circuit_kernel("eager"):
            assert kernels.get_circuit_kernel() == "eager"
        assert kernels.get_circuit_kernel() == "auto"
    finally:
        kernels.set_circuit_kernel(previous)
    with pytest.raises(ValueError, match="CPU"):
        add_circuit_term(
            torch.zeros(1, 1, 2, 2, device="meta"), torch.zeros(2, 3), torch.ones(1), omega=1.0, kernel="cpp"
        )
    with pytest.raises(ValueError, match="causal"):
        add_circuit_term(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(1), omega=1.0, causal=True)
    with pytest.raises(ValueError, match="logit_scale"):
        circuit_softmax(
            torch.zeros(1, 1, 2, 2), torch.zeros(2, 3), torch.ones(1), omega=1.0, logit_scale=float("inf")
        )
    empty = circuit_softmax(torch.zeros(1, 2, 0, 3), torch.zeros(2, 3), torch.ones(1), omega=1.0)
    assert empty.shape == (1, 2, 0, 3)
