"""Names shared across the tiers: the circuit-module prefix, the config key, the Qiskit simulators.

Every trainable circuit parameter lives in a small ``nn.Module`` attached to an attention module under
the attribute :data:`QUANTUM_MODULE_NAME`, so its full name looks like
``model.layers.0.self_attn.quantum_circuit.ry``. The prefix is how the optimizer grouping, PEFT's
``modules_to_save`` and checkpoint checks find them without importing the attention code.
"""

QUANTUM_MODULE_NAME = "quantum_circuit"
"""Attribute name of the circuit-parameter module on each patched attention module."""

QUANTUM_CONFIG_KEY = "quantum_attention"
"""Key under which a patched model's ``config.json`` stores its ``QuantumAttentionConfig``."""

QUANTUM_ATTENTION = "quantum"
"""``attn_implementation`` name of the dense (eager-maths) quantum attention."""

QUANTUM_FLEX_ATTENTION = "quantum_flex"
"""``attn_implementation`` name of the FlexAttention quantum attention."""

QISKIT_SIMULATORS = ("qiskit", "aer")
"""Which Qiskit simulator runs a circuit: ``"qiskit"``, Qiskit's own reference statevector
(``qiskit.quantum_info.Statevector`` / ``StatevectorEstimator``), or ``"aer"``, Qiskit Aer (statevector
method, exact). The optimizer's ``perturbation_backend`` and :func:`~hf_superpositional.quantum.qiskit.qiskit_readout`
use these words."""


def is_quantum_parameter_name(name: str) -> bool:
    """Whether a parameter name (from ``named_parameters()``) belongs to a quantum circuit.

    Example:
        >>> is_quantum_parameter_name("model.layers.0.self_attn.quantum_circuit.gate")
        True
        >>> is_quantum_parameter_name("model.layers.0.self_attn.q_proj.weight")
        False
    """
    return f"{QUANTUM_MODULE_NAME}." in name or name.startswith(f"{QUANTUM_MODULE_NAME}.")
