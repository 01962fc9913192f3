"""``QuantumAttentionConfig``: what the attention patch builds (SPEC section 4).

A peft-style dataclass: every field carries ``metadata={"help": ...}`` so ``HfArgumentParser`` turns it into
a documented command-line flag (and reads it from YAML / dicts), and ``__post_init__`` validates, naming the
field and the allowed values. ``to_dict`` / ``from_dict`` round-trip through the ``quantum_attention`` entry
of a patched model's ``config.json``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..naming import QUANTUM_ATTENTION, QUANTUM_FLEX_ATTENTION
from ..quantum.simulation import READOUTS

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "CIRCUIT_BACKENDS",
    "LARGE_CIRCUIT_OPERATIONS",
    "MAX_QUBITS",
    "SCORE_INPUTS",
    "QuantumAttentionConfig",
]

SCORE_INPUTS = ("logit", "raw")
"""``"logit"``: the circuit reads ``QK^T / sqrt(d)``; ``"raw"``: the paper's literal ``QK^T`` (eq. 4)."""

CIRCUIT_BACKENDS = ("torch", "aer")
"""Who evaluates the circuit to get its Fourier coefficients: torch statevector or Qiskit Aer."""

MAX_QUBITS = 24
"""The most qubits a circuit may have: the CPU circuit sampler (``quantum/kernels/csrc/statevector.cpp``) holds
``2**n`` amplitudes per evaluation point and stops at 24; the torch simulation would need ~13 GB there."""

LARGE_CIRCUIT_OPERATIONS = 1e8
"""Above this many gate-amplitude operations per circuit evaluation (``(2K+1) * depth * n_qubits * 2**n_qubits``,
about 2.5 ns each on one CPU core) the config warns: every forward pass pays it once per patched layer."""

ATTN_IMPLEMENTATIONS = (QUANTUM_ATTENTION, QUANTUM_FLEX_ATTENTION)
"""The names registered in transformers' ``AttentionInterface`` by :mod:`hf_superpositional.attention.interface`."""


@dataclass
class QuantumAttentionConfig:
    """How quantum attention (paper eq. 3-5) is attached to a transformers model.

    ``softmax(QK^T/sqrt(d) + gate * Phi(x) + mask) V`` with ``Phi`` the readout of a ``n_qubits``-qubit,
    ``depth``-layer circuit whose rotations all receive the score ``x`` (SPEC sections 2-4).

    Args:
        n_qubits: qubits of the circuit (>= 1).
        depth: circuit layers (>= 1). ``Phi`` is a trigonometric polynomial of degree ``n_qubits * depth``.
        readout: ``"expval_z"`` (sum of ``<Z_k>``) or ``"amplitude"`` (sum of ``Re <k|psi>``).
        score_input: ``"logit"`` (``x = QK^T/sqrt(d)``) or ``"raw"`` (``x = QK^T``, the paper's eq. 4).
        gate_init: initial gate; ``0.0`` leaves a patched pretrained model's outputs bit-identical.
        per_head: one circuit and gate per attention head instead of one per layer.
        circuit_backend: ``"torch"`` (default, fast) or ``"aer"`` (Qiskit Aer, parameter-shift gradients).
        attn_implementation: ``"quantum"`` (dense, any device) or ``"quantum_flex"`` (FlexAttention, CUDA).
        layers: indices of the decoder layers to patch; ``None`` patches every layer.
        init_seed: seed of the deterministic angle initialisation (combined with the layer index).

    Example:
        >>> from hf_superpositional.attention.config import QuantumAttentionConfig
        >>> cfg = QuantumAttentionConfig(n_qubits=2, depth=1, layers=[0])
        >>> QuantumAttentionConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    n_qubits: int = field(default=4, metadata={"help": f"Qubits of the attention circuit (1 to {MAX_QUBITS})."})
    depth: int = field(default=2, metadata={"help": "Layers of the attention circuit (>= 1)."})
    readout: str = field(
        default="expval_z",
        metadata={"help": "Circuit readout Phi(x).", "choices": list(READOUTS)},
    )
    score_input: str = field(
        default="logit",
        metadata={
            "help": "What the circuit reads: 'logit' = QK^T/sqrt(d), 'raw' = QK^T (the paper's literal eq. 4).",
            "choices": list(SCORE_INPUTS),
        },
    )
    gate_init: float = field(
        default=0.0,
        metadata={"help": "Initial gate of the circuit term; 0 keeps a patched model's outputs unchanged."},
    )
    per_head: bool = field(
        default=False, metadata={"help": "One circuit and gate per attention head instead of per layer."}
    )
    circuit_backend: str = field(
        default="torch",
        metadata={
            "help": "Who evaluates the circuit's Fourier coefficients: 'torch' or 'aer' (Qiskit Aer).",
            "choices": list(CIRCUIT_BACKENDS),
        },
    )
    attn_implementation: str = field(
        default="quantum",
        metadata={
            "help": "Registered attention function: 'quantum' (dense, any device) or 'quantum_flex' (CUDA).",
            "choices": list(ATTN_IMPLEMENTATIONS),
        },
    )
    layers: list[int] | None = field(
        default=None, metadata={"help": "Decoder layer indices to patch (default: all layers)."}
    )
    init_seed: int = field(
        default=0, metadata={"help": "Seed of the deterministic circuit-angle initialisation."}
    )

    def __post_init__(self):
        for name in ("n_qubits", "depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        if self.n_qubits > MAX_QUBITS:
            raise ValueError(
                f"`n_qubits` must be an integer in [1, {MAX_QUBITS}] (the circuit simulators hold 2**n_qubits "
                f"amplitudes per point), got {self.n_qubits}."
            )
        for name, allowed in (
            ("readout", READOUTS),
            ("score_input", SCORE_INPUTS),
            ("circuit_backend", CIRCUIT_BACKENDS),
            ("attn_implementation", ATTN_IMPLEMENTATIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {list(allowed)}, got {getattr(self, name)!r}.")
        if isinstance(self.gate_init, bool) or not isinstance(self.gate_init, (int, float)):
            raise ValueError(f"`gate_init` must be a finite number, got {self.gate_init!r}.")
        if not math.isfinite(self.gate_init):
            raise ValueError(f"`gate_init` must be a finite number, got {self.gate_init!r}.")
        self.gate_init = float(self.gate_init)
        if not isinstance(self.per_head, bool):
            raise ValueError(f"`per_head` must be True or False, got {self.per_head!r}.")
        if isinstance(self.init_seed, bool) or not isinstance(self.init_seed, int) or self.init_seed < 0:
            raise ValueError(f"`init_seed` must be an integer >= 0, got {self.init_seed!r}.")
        if self.layers is not None:
            layers = list(self.layers)
            if not layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers):
                raise ValueError(
                    f"`layers` must be None (all layers) or a non-empty list of layer indices >= 0, "
                    f"got {self.layers!r}."
                )
            if len(set(layers)) != len(layers):
                raise ValueError(f"`layers` must not repeat an index, got {self.layers!r}.")
            self.layers = sorted(layers)
        if self.circuit_operations >= LARGE_CIRCUIT_OPERATIONS:
            warnings.warn(
                f"QuantumAttentionConfig(n_qubits={self.n_qubits}, depth={self.depth}): every forward pass "
                f"simulates the circuit at {2 * self.num_frequencies + 1} points per patched layer, about "
                f"{self.circuit_operations:.1e} operations (~{self.circuit_operations * 2.5e-9:.1f} s per layer on one "
                "CPU core): training will be slow. The paper uses 4 qubits, depth 2.",
                stacklevel=3,
            )

    def selects_layer(self, layer_idx: int) -> bool:
        """Whether decoder layer ``layer_idx`` gets a circuit."""
        return self.layers is None or layer_idx in self.layers

    def parameter_shapes(self, num_heads: int) -> dict[str, tuple[int, ...]]:
        """The shapes of one layer's circuit parameters, by name (``ry``, ``rz``, ``gate``).

        Angles are ``[depth, n_qubits]`` (``[num_heads, depth, n_qubits]`` per head); the gate is ``[1]``
        (``[num_heads]`` per head), never 0-D because FlexAttention cannot capture a learnable 0-D tensor.

        Example:
            >>> QuantumAttentionConfig(n_qubits=2, depth=3, per_head=True).parameter_shapes(num_heads=4)
            {'ry': (4, 3, 2), 'rz': (4, 3, 2), 'gate': (4,)}
        """
        angles = (self.depth, self.n_qubits)
        if self.per_head:
            return {"ry": (num_heads, *angles), "rz": (num_heads, *angles), "gate": (num_heads,)}
        return {"ry": angles, "rz": angles, "gate": (1,)}

    @property
    def circuit_operations(self) -> int:
        """Gate-amplitude operations of one circuit evaluation for the Fourier compilation (all ``2K+1`` points).

        Example:
            >>> QuantumAttentionConfig(n_qubits=4, depth=2).circuit_operations  # (2*8+1) * 2 * 4 * 2**4
            2176
        """
        return (2 * self.num_frequencies + 1) * self.depth * self.n_qubits * 2**self.n_qubits

    @property
    def num_frequencies(self) -> int:
        """``K = n_qubits * depth``: the degree of ``Phi``'s trigonometric polynomial."""
        return self.n_qubits * self.depth

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (what ``config.json`` stores)."""
        out = dataclasses.asdict(self)
        if out["layers"] is not None:
            out["layers"] = list(out["layers"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | QuantumAttentionConfig) -> QuantumAttentionConfig:
        """Build (and validate) a config from :meth:`to_dict`'s output or a user dict.

        Raises:
            ValueError: for a key that is not a field (the message lists the valid keys).
        """
        if isinstance(data, cls):
            return dataclasses.replace(data)
        if not isinstance(data, Mapping):
            raise ValueError(
                f"`data` must be a mapping or a QuantumAttentionConfig, got {type(data).__name__}."
            )
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"Unknown QuantumAttentionConfig keys {unknown}; valid keys are {valid}.")
        return cls(**dict(data))
