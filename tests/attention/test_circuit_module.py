"""QuantumCircuitParameters (attention/circuit_module.py): the term's magnitude, the Aer backend against torch, the fused and separate paths."""

from __future__ import annotations

import math

import pytest
import torch

from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.quantum.masks import apply_attention_mask
from tests.attention.attention_cases import random_qkv


def test_circuit_term_magnitude_sanity():
    # Phi of expval_z is a sum of n_qubits expectation values: |Phi| <= n_qubits for every score.
    circuit = QuantumCircuitParameters(QuantumAttentionConfig(gate_init=1.0), num_heads=1)
    logits = torch.linspace(-50, 50, 401).view(1, 1, 1, -1)
    term = circuit(logits, scaling=1.0) - logits
    assert term.abs().max() <= 4 + 1e-5
    assert term.abs().max() > 0.1
    assert math.isclose(circuit.omega, 1.0)


def test_aer_backend_matches_torch_backend():
    circuits = pytest.importorskip("hf_superpositional.quantum.qiskit")
    if not hasattr(circuits, "aer_fourier_coefficients"):
        pytest.skip("hf_superpositional.quantum.qiskit has no aer_fourier_coefficients yet")
    pytest.importorskip("qiskit_aer")
    cfg = QuantumAttentionConfig(n_qubits=2, depth=1, gate_init=0.5, per_head=True)
    torch_circuit = QuantumCircuitParameters(cfg, num_heads=2)
    aer_circuit = QuantumCircuitParameters(
        QuantumAttentionConfig(**{**cfg.to_dict(), "circuit_backend": "aer"}), num_heads=2
    )
    torch.testing.assert_close(aer_circuit.coefficients(), torch_circuit.coefficients(), rtol=1e-4, atol=1e-5)
    logits = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    for circuit in (torch_circuit, aer_circuit):
        circuit(logits, scaling=1.0).square().sum().backward()
    torch.testing.assert_close(aer_circuit.ry.grad, torch_circuit.ry.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(aer_circuit.gate.grad, torch_circuit.gate.grad, rtol=1e-4, atol=1e-4)


def test_circuit_module_with_key_and_mask_falls_back_to_separate_ops_for_float64_circuits():
    """float64 circuit parameters with a float32 query: no fused node; the module computes QK^T, the term,
    apply_attention_mask and the softmax itself (in float64), with the same values as doing so by hand."""
    circuit = QuantumCircuitParameters(
        QuantumAttentionConfig(gate_init=0.8, per_head=True), num_heads=2
    ).double()
    q, k, _ = random_qkv(batch=2, heads=2, kv_heads=2, length=6, head_dim=4, seed=21)
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    # Right-padded keys. (A query with no key left gives NaN here, as in transformers' eager attention: the
    # float64 mask value becomes -inf in the float32 softmax.)
    mask[1, ..., 4:] = False
    probs = circuit(q, 0.5, unscaled=True, softmax=True, key=k, mask=mask)
    assert probs.dtype == torch.float32  # softmax(dtype=float32), as eager attention
    term = circuit(torch.matmul(q, k.transpose(-2, -1)).double() * 0.5, 0.5)
    expected = torch.softmax(apply_attention_mask(term, mask, causal=False), -1, dtype=torch.float32)
    torch.testing.assert_close(probs, expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="mask is applied before the softmax: it needs softmax=True"):
        circuit(q, 0.5, key=k, mask=mask)
