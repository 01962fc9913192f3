"""``QuantumCircuitParameters``: the trainable circuit of one attention module (SPEC sections 2-4).

A thin ``nn.Module`` over :mod:`hf_superpositional.quantum`. It owns the learned angles
``ry``/``rz`` and the ``gate`` of one attention layer and adds ``gate * Phi(x)`` to attention logits. The
patch attaches one under the attribute :data:`~hf_superpositional.naming.QUANTUM_MODULE_NAME` of every
patched attention module, so its parameters are named ``...self_attn.quantum_circuit.{ry,rz,gate}`` and the
optimizer grouping, ``state_dict``, FSDP and PEFT's ``modules_to_save`` all see them.

Precision: the parameters are created in float32 whatever torch's default dtype is (``from_pretrained(...,
dtype=torch.bfloat16)`` also keeps them float32, through ``_keep_in_fp32_modules_strict``), and the circuit
term is always computed in float32 (float64 for float64 logits): ``Phi`` oscillates with the score, and a
bf16 score has an absolute error of ~0.03 at |x| ~ 8, which would scramble ``Phi``'s high frequencies.
``model.half()`` / ``model.to(torch.bfloat16)`` cast every floating parameter, these included, as torch
does for transformers' own fp32-kept modules; the term is still evaluated in float32 then.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..quantum.fourier import fourier_coefficients
from ..quantum.masks import apply_attention_mask
from ..quantum.ops import add_circuit_term, circuit_attention_probs, circuit_softmax
from ..quantum.qiskit import aer_fourier_coefficients
from ..quantum.series import readout_frequency
from .config import QuantumAttentionConfig

__all__ = ["QuantumCircuitParameters", "circuit_init_seed"]


def circuit_init_seed(init_seed: int, layer_idx: int) -> int:
    """The generator seed of layer ``layer_idx``'s angles: distinct per layer, fixed by ``init_seed``.

    Example:
        >>> circuit_init_seed(0, 3) != circuit_init_seed(0, 4)
        True
    """
    # A large odd multiplier keeps (seed, layer) pairs apart for any realistic number of layers.
    return (int(init_seed) * 1_000_003 + int(layer_idx)) % (2**63 - 1)


class QuantumCircuitParameters(nn.Module):
    """Learned angles and gate of one attention layer's circuit; adds ``gate * Phi`` to attention logits.

    Parameters (always created float32):
        ``ry``, ``rz``: ``[depth, n_qubits]``, or ``[num_heads, depth, n_qubits]`` with ``per_head=True``.
        ``gate``: ``[1]``, or ``[num_heads]`` with ``per_head=True`` (never 0-D: FlexAttention cannot capture
        a learnable 0-D tensor).

    Angles are drawn uniformly from ``[-pi, pi)`` by a ``torch.Generator`` seeded from ``config.init_seed``
    and the layer index, so two models patched with the same config start identical, and a checkpoint that
    lacks these keys is initialised the same way (transformers' init path calls :meth:`reset_parameters`).

    Args:
        config: the :class:`~hf_superpositional.attention.config.QuantumAttentionConfig`.
        num_heads: attention (query) heads of the layer; used with ``per_head=True``.
        layer_idx: the decoder layer index (seeds the initialisation).

    Example:
        >>> import torch
        >>> from hf_superpositional.attention.config import QuantumAttentionConfig
        >>> circuit = QuantumCircuitParameters(QuantumAttentionConfig(gate_init=0.5), num_heads=4, layer_idx=0)
        >>> circuit.coefficients().shape  # [2, K + 1] with K = n_qubits * depth = 8
        torch.Size([2, 9])
        >>> circuit(torch.zeros(1, 4, 3, 3), scaling=0.125).shape
        torch.Size([1, 4, 3, 3])
    """

    def __init__(self, config: QuantumAttentionConfig, num_heads: int, layer_idx: int = 0):
        super().__init__()
        if not isinstance(config, QuantumAttentionConfig):
            raise ValueError(f"`config` must be a QuantumAttentionConfig, got {type(config).__name__}.")
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"`num_heads` must be an integer >= 1, got {num_heads!r}.")
        self.quantum_config = config
        self.num_heads = num_heads
        self.layer_idx = int(layer_idx)
        shapes = config.parameter_shapes(num_heads)
        # Explicit float32: transformers builds models under a default dtype of fp16/bf16 when asked to.
        # torch.empty follows the device context, so from_pretrained creates these on "meta" like the rest.
        self.ry = nn.Parameter(torch.empty(shapes["ry"], dtype=torch.float32))
        self.rz = nn.Parameter(torch.empty(shapes["rz"], dtype=torch.float32))
        self.gate = nn.Parameter(torch.empty(shapes["gate"], dtype=torch.float32))
        self.reset_parameters()

    @property
    def omega(self) -> float:
        """Base angular frequency of ``Phi`` for the configured readout (1.0 or 0.5)."""
        return readout_frequency(self.quantum_config.readout)

    def input_scale(self, scaling: float) -> float:
        """Factor from the attention logit to the circuit input ``x`` (``1/scaling`` for ``score_input="raw"``)."""
        return 1.0 / scaling if self.quantum_config.score_input == "raw" else 1.0

    @torch.no_grad()
    def reset_parameters(self, skip_initialized: bool = False) -> None:
        """Draw the deterministic initial angles and set the gate to ``config.gate_init``.

        Args:
            skip_initialized: leave parameters that transformers flagged ``_is_hf_initialized`` (i.e. loaded
                from a checkpoint) untouched; used by the loading hook for partially present checkpoints.
        """
        if self.ry.device.type == "meta":
            return  # nothing to fill yet: transformers materialises and re-initialises missing keys later
        generator = torch.Generator(device="cpu").manual_seed(
            circuit_init_seed(self.quantum_config.init_seed, self.layer_idx)
        )
        # Angles are drawn in float64 on CPU so the values do not depend on the target device or dtype.
        ry = (torch.rand(self.ry.shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * math.pi
        rz = (torch.rand(self.rz.shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * math.pi
        gate = torch.full(self.gate.shape, self.quantum_config.gate_init, dtype=torch.float64)
        for param, value in ((self.ry, ry), (self.rz, rz), (self.gate, gate)):
            if skip_initialized and getattr(param, "_is_hf_initialized", False):
                continue
            param.copy_(value.to(device=param.device, dtype=param.dtype))

    def _compute_dtype(self, like: torch.Tensor | None = None) -> torch.dtype:
        if like is not None and like.dtype == torch.float64:
            return torch.float64
        return torch.promote_types(self.ry.dtype, torch.float32)

    def coefficients(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Fourier coefficients of ``Phi``: ``[2, K+1]`` (``[num_heads, 2, K+1]`` per head); row 0 cos, row 1 sin.

        Differentiable in ``ry``/``rz`` (exactly for ``circuit_backend="torch"``, by parameter shift for
        ``"aer"``).
        """
        dtype = dtype or self._compute_dtype()
        ry, rz = self.ry.to(dtype), self.rz.to(dtype)
        if self.quantum_config.circuit_backend == "aer":
            return aer_fourier_coefficients(ry, rz, self.quantum_config.readout)
        return fourier_coefficients(ry, rz, readout=self.quantum_config.readout)

    def forward(
        self,
        logits: torch.Tensor,
        scaling: float,
        causal: bool = False,
        unscaled: bool = False,
        softmax: bool = False,
        key: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return ``logits + gate * Phi(input_scale * logits)`` in float32 (float64 for float64 logits).

        Args:
            logits: attention logits ``QK^T * scaling``, ``[batch, heads, q_len, kv_len]``, any float dtype.
            scaling: the attention's softmax scale (``1/sqrt(head_dim)``), needed for ``score_input="raw"``.
            causal: also apply the upper-left causal mask in the same pass (masked scores become the dtype's
                lowest value, as ``apply_attention_mask``); see ``add_circuit_term``.
            unscaled: ``logits`` is the raw ``QK^T``; it is multiplied by ``scaling`` in the same pass.
            softmax: return ``softmax(result, dim=-1, dtype=torch.float32)`` instead (eager attention's
                probabilities), fused with the term when it is computed in float32 (see ``circuit_softmax``).
            key: if given, ``logits`` is the *query* ``[batch, heads, q_len, head_dim]`` and the logits are
                ``query @ key^T`` (``key`` repeated for GQA); with ``softmax`` in float32 they are not kept for
                the backward but recomputed there (``circuit_attention_probs``: eager attention's memory).
            mask: with ``key`` and ``softmax``: a boolean attention mask (``True`` = attend) applied before the
                softmax, as ``apply_attention_mask`` applies it.
        """
        if key is not None:
            if softmax and self._compute_dtype(logits) == torch.float32 and logits.dtype == key.dtype:
                return circuit_attention_probs(
                    logits, key, self.coefficients(torch.float32), self.gate.to(torch.float32),
                    omega=self.omega, input_scale=self.input_scale(scaling), causal=causal,
                    logit_scale=scaling if unscaled else 1.0, mask=mask,
                )  # fmt: skip
            logits = torch.matmul(logits, key.transpose(-2, -1))
        if mask is not None and not softmax:
            raise ValueError("mask is applied before the softmax: it needs softmax=True")
        dtype = self._compute_dtype(logits)
        arguments = dict(
            omega=self.omega,
            input_scale=self.input_scale(scaling),
            causal=causal,
            logit_scale=scaling if unscaled else 1.0,
        )
        logits, coefficients, gate = logits.to(dtype), self.coefficients(dtype), self.gate.to(dtype)
        if softmax and mask is None and dtype == torch.float32:
            return circuit_softmax(logits, coefficients, gate, **arguments)
        out = add_circuit_term(logits, coefficients, gate, **arguments)
        if mask is not None:
            out = apply_attention_mask(out, mask, causal=False)
        return nn.functional.softmax(out, dim=-1, dtype=torch.float32) if softmax else out

    def extra_repr(self) -> str:
        cfg = self.quantum_config
        return (
            f"n_qubits={cfg.n_qubits}, depth={cfg.depth}, readout={cfg.readout!r}, score_input={cfg.score_input!r}, "
            f"per_head={cfg.per_head}, num_heads={self.num_heads}, backend={cfg.circuit_backend!r}"
        )
