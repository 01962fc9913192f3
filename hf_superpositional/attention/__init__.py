"""The attention tier: quantum attention for transformers models (paper eq. 3-5, SPEC section 4).

- :mod:`.config`: ``QuantumAttentionConfig``, what the patch builds;
- :mod:`.circuit_module`: ``QuantumCircuitParameters``, the trainable circuit of one attention layer;
- :mod:`.interface`: the ``"quantum"`` / ``"quantum_flex"`` functions for transformers' ``AttentionInterface``
  and their registration (and its undo);
- :mod:`.patch`: ``apply_quantum_attention`` / ``remove_quantum_attention`` on a model instance;
- :mod:`.loading`: the hooks that restore circuits on ``from_pretrained`` (and their undo).
"""

from .circuit_module import QuantumCircuitParameters
from .config import ATTN_IMPLEMENTATIONS, QuantumAttentionConfig
from .interface import register_quantum_attention, unregister_quantum_attention
from .loading import install_loading_hooks, uninstall_loading_hooks
from .patch import (
    SUPPORTED_MODEL_TYPES,
    apply_quantum_attention,
    get_quantum_attention_config,
    quantum_circuit_modules,
    remove_quantum_attention,
)

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "SUPPORTED_MODEL_TYPES",
    "QuantumAttentionConfig",
    "QuantumCircuitParameters",
    "apply_quantum_attention",
    "get_quantum_attention_config",
    "install_loading_hooks",
    "quantum_circuit_modules",
    "register_quantum_attention",
    "remove_quantum_attention",
    "uninstall_loading_hooks",
    "unregister_quantum_attention",
]
