"""Names shared across the tiers (naming.py): the circuit-module prefix is what the patch attaches and what
the optimizer grouping, checkpoints and PEFT look for; the attention names are transformers' keys."""

from __future__ import annotations

import pytest
from transformers import AttentionInterface

from hf_superpositional import apply_quantum_attention
from hf_superpositional.naming import (
    QISKIT_SIMULATORS,
    QUANTUM_ATTENTION,
    QUANTUM_CONFIG_KEY,
    QUANTUM_FLEX_ATTENTION,
    QUANTUM_MODULE_NAME,
    is_quantum_parameter_name,
)
from hf_superpositional.optim import PERTURBATION_BACKENDS
from tests.tiny_models import tiny_llama


@pytest.mark.parametrize(
    "name, expected",
    [
        ("model.layers.0.self_attn.quantum_circuit.gate", True),
        ("quantum_circuit.ry", True),
        ("base_model.model.model.layers.1.self_attn.quantum_circuit.modules_to_save.default.rz", True),
        ("model.layers.0.self_attn.q_proj.weight", False),
        ("model.quantum_circuitry.weight", False),
        ("quantum_circuit", False),
    ],
)
def test_quantum_parameter_names(name, expected):
    assert is_quantum_parameter_name(name) is expected


def test_the_names_are_what_the_patch_writes():
    model = apply_quantum_attention(tiny_llama(), n_qubits=2, depth=1)
    circuit_parameters = [n for n, _ in model.named_parameters() if is_quantum_parameter_name(n)]
    assert len(circuit_parameters) == 3 * model.config.num_hidden_layers
    assert all(f".{QUANTUM_MODULE_NAME}." in n for n in circuit_parameters)
    assert getattr(model.config, QUANTUM_CONFIG_KEY)["n_qubits"] == 2
    assert model.config._attn_implementation == QUANTUM_ATTENTION
    assert {QUANTUM_ATTENTION, QUANTUM_FLEX_ATTENTION} <= set(AttentionInterface())


def test_one_simulator_vocabulary():
    assert PERTURBATION_BACKENDS == ("analytic", *QISKIT_SIMULATORS)
