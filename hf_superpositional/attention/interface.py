"""Quantum attention functions for transformers' ``AttentionInterface`` (SPEC section 4, paper eq. 3-4).

    Attention(Q, K, V) = softmax( Q K^T * scaling + gate * Phi(x) + mask ) V

Two implementations, registered by :func:`register_quantum_attention` (called when the package is imported):

- ``"quantum"``: :func:`quantum_attention_forward`. On CPU (float32, float64, bfloat16; causal, key-padded or
  unmasked; GQA) it runs the fused flash-style kernel
  (:func:`~hf_superpositional.quantum.kernels.flash.circuit_flash_attention`: the circuit term
  inside an online softmax, no ``[B, H, L, L]`` tensor, memory linear in the sequence length). Everywhere
  else -- other devices and dtypes, other masks, dropout in training, ``output_attentions``, every gate 0 --
  the dense reference: transformers' eager attention with the circuit term added to the logits in float32.
- ``"quantum_flex"``: :func:`quantum_flex_attention_forward`, the same maths as a FlexAttention ``score_mod``
  (fused, never materialises the ``[B, H, L, L]`` logits). Training needs CUDA: torch 2.13 has no
  FlexAttention backward on CPU.

Why the mask functions are registered too (SPEC section 8): ``create_causal_mask`` looks the mask builder up
in ``AttentionMaskInterface`` under the *attention* name and, for a name it does not know, returns ``None``
-- the model silently loses its causal mask. ``"quantum"`` uses the SDPA mask semantics: a boolean mask
(``True`` = attend) applied with ``torch.where`` (fp16-safe, SPEC section 8), or ``None`` for an unpadded
batch, which :func:`quantum_attention_forward` treats exactly as SDPA's ``is_causal`` does (causal when the
module is causal and there is more than one query). ``"quantum_flex"`` uses transformers' block mask.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import (
    AttentionMaskInterface,
    causal_mask_function,
    flex_attention_mask,
    prepare_padding_mask,
    sdpa_mask,
)

from ..naming import QUANTUM_ATTENTION, QUANTUM_CONFIG_KEY, QUANTUM_FLEX_ATTENTION, QUANTUM_MODULE_NAME
from ..quantum.kernels import flash_attention_enabled
from ..quantum.kernels.flash import FLASH_DTYPES, circuit_flash_attention, flash_attention_runs_on
from ..quantum.kernels.flex import circuit_score_mod
from ..quantum.kernels.flex_gradient import FlexScoreMask, flex_circuit_gradient
from ..quantum.masks import apply_attention_mask, causal_mask_mod

__all__ = [
    "QUANTUM_ATTENTION",
    "QUANTUM_FLEX_ATTENTION",
    "kept_scores",
    "quantum_attention_forward",
    "quantum_attention_mask",
    "quantum_flex_attention_mask",
    "quantum_flex_attention_forward",
    "register_quantum_attention",
    "unregister_quantum_attention",
]

# Set on a mask built by quantum_flex_attention_mask (a BlockMask) or quantum_attention_mask (a boolean
# tensor) when it is the causal mask, with or without key padding (no offsets): the FlexScoreMask describing
# it, so that the fused kernels (the flex circuit-gradient pass, the CPU flash kernel) apply it from the key
# padding instead of evaluating the BlockMask's mask_mod or reading the [B, 1, L, L] tensor.
_KEPT_SCORES_MARK = "_hf_superpositional_kept_scores"


def kept_scores(mask) -> FlexScoreMask | None:
    """The :class:`~hf_superpositional.quantum.kernels.flex_gradient.FlexScoreMask` that
    :func:`quantum_flex_attention_mask` or :func:`quantum_attention_mask` recorded on ``mask`` (causal, with
    or without key padding), or ``None`` for any other mask (which the dense path or the flex gradient
    pass's ``mask_mod`` evaluation then applies).

    Example:
        >>> kept_scores(object()) is None
        True
    """
    return getattr(mask, _KEPT_SCORES_MARK, None)


def _resolve_is_causal(module: nn.Module, q_len: int, attention_mask, is_causal: bool | None) -> bool:
    # Same rule as transformers' sdpa_attention_forward: a missing mask means "causal" for a causal module
    # with more than one query (prefill); a single decoding query attends to the whole cache.
    if attention_mask is not None or q_len <= 1:
        return False
    return bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))


def _refuse_unpatched(module: nn.Module) -> None:
    # A layer without a circuit runs plain attention only when the model's quantum config leaves it out
    # (`layers`); with no config at all (e.g. set_attn_implementation("quantum") on an unpatched model) the
    # model would report quantum attention while running classical attention (SPEC section 8).
    config = getattr(module, "config", None)
    if config is not None and getattr(config, QUANTUM_CONFIG_KEY, None) is None:
        raise ValueError(
            "attn_implementation='quantum' on a model without quantum-attention circuits: patch it first with "
            "hf_superpositional.apply_quantum_attention(model, QuantumAttentionConfig(...))."
        )


def _fused_cpu_attention(module, query, key, value, attention_mask, scaling, dropout, is_causal, kwargs):
    """The output of the fused CPU kernel (``circuit_flash_attention``) where it applies, else ``None``.

    It applies on a CPU with the C++ kernel built, for float32/float64/bfloat16 attention of a module with a
    circuit whose gate is not all zero, with no dropout in training, no attention weights asked for, and a
    mask it can read: ``None`` (causal by SDPA's rule) or one :func:`quantum_attention_mask` marked as causal,
    with or without key padding. With every gate exactly 0 the circuit adds nothing and the dense path runs,
    so that a freshly patched model computes bit for bit what eager attention computed.
    """
    circuit = getattr(module, QUANTUM_MODULE_NAME, None)
    if circuit is None or not flash_attention_enabled() or not flash_attention_runs_on(query.device):
        return None
    if query.dtype not in FLASH_DTYPES or key.dtype != query.dtype or value.dtype != query.dtype:
        return None
    if (dropout > 0 and module.training) or kwargs.get("output_attentions"):
        return None
    if getattr(getattr(module, "config", None), "output_attentions", False):
        return None
    key_padding = None
    if attention_mask is None:
        causal = _resolve_is_causal(module, query.shape[2], attention_mask, is_causal)
    else:
        kept = kept_scores(attention_mask) if isinstance(attention_mask, torch.Tensor) else None
        if kept is None or not kept.fused or not kept.causal or attention_mask.dtype != torch.bool:
            return None
        causal, key_padding = True, kept.key_padding
        if key_padding is not None:
            if key_padding.shape[0] != query.shape[0] or key_padding.shape[-1] < key.shape[2]:
                return None
            key_padding = key_padding[:, : key.shape[2]]
    gate = circuit.gate
    if not bool(gate.detach().ne(0).any()):
        return None
    dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    out = circuit_flash_attention(
        query, key, value, circuit.coefficients(dtype), gate.to(dtype), omega=circuit.omega,
        logit_scale=scaling, input_scale=circuit.input_scale(scaling), causal=causal, key_padding=key_padding,
    )  # fmt: skip
    return out.transpose(1, 2).contiguous()


def quantum_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention plus the circuit term; signature and outputs of transformers' ``eager_attention_forward``.

    If ``module`` has a :data:`~hf_superpositional.naming.QUANTUM_MODULE_NAME` child (a
    :class:`~hf_superpositional.attention.circuit_module.QuantumCircuitParameters`), ``gate * Phi(x)`` is added to the logits
    in float32; a module without one (a layer left out by ``QuantumAttentionConfig.layers``) computes plain
    eager attention. The softmax runs in float32, dropout only in training mode. On CPU, where its masks
    apply, the fused flash-style kernel computes the same attention without the ``[B, H, L, L]`` scores and
    returns no weights (``None``, as SDPA); see :func:`_fused_cpu_attention` for when it runs.

    Args:
        module: the attention module (reads ``num_key_value_groups``, ``training``, ``is_causal``).
        query: ``[batch, heads, q_len, head_dim]``.
        key, value: ``[batch, kv_heads, kv_len, head_dim]`` (GQA: repeated to ``heads``).
        attention_mask: ``None`` (causal for a causal module with ``q_len > 1``, as SDPA), a boolean mask
            (``True`` = attend) or an additive float mask, broadcastable to ``[batch, heads, q_len, kv_len]``.
        scaling: softmax scale; ``head_dim ** -0.5`` if ``None``.
        dropout: attention-probability dropout, applied only when ``module.training``.
        is_causal: overrides ``module.is_causal`` for a ``None`` mask.

    Returns:
        ``(attn_output [batch, q_len, heads, head_dim], attn_weights [batch, heads, q_len, kv_len] or None)``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> module = nn.Module(); module.num_key_value_groups = 1; module.is_causal = True
        >>> q = k = v = torch.randn(1, 2, 5, 8)
        >>> out, weights = quantum_attention_forward(module, q, k, v, None, scaling=8**-0.5)
        >>> out.shape, bool(weights[0, 0, 0, 1:].eq(0).all())  # no circuit attached: causal eager attention
        (torch.Size([1, 5, 2, 8]), True)
    """
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    fused = _fused_cpu_attention(module, query, key, value, attention_mask, scaling, dropout, is_causal, kwargs)
    if fused is not None:
        return fused, None
    n_rep = getattr(module, "num_key_value_groups", 1)
    key_states = repeat_kv(key, n_rep)
    value_states = repeat_kv(value, n_rep)

    causal = _resolve_is_causal(module, query.shape[2], attention_mask, is_causal)
    circuit = getattr(module, QUANTUM_MODULE_NAME, None)
    if circuit is None:
        _refuse_unpatched(module)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3))
        attn_weights = apply_attention_mask(attn_weights * scaling, attention_mask, causal)
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32)
    elif (attention_mask is None or attention_mask.dtype == torch.bool) and query.dtype in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ):
        # QK^T, the softmax scale, the causal or boolean (padding) mask, the circuit term and the softmax in
        # one autograd node that keeps only the probabilities for the backward (QK^T is recomputed there), as
        # eager attention does; the values are those of the separate ops. Called as a module (not via
        # .coefficients()) so that hooks and PEFT's ModulesToSaveWrapper dispatch.
        attn_weights = circuit(
            query, scaling, causal=causal, unscaled=True, softmax=True, key=key_states, mask=attention_mask
        )
    else:
        # The same fusion from the logits, for an additive float mask or float64 attention: the scale, the
        # causal mask (when there is no mask tensor) and the softmax are applied with the circuit term in its
        # own buffer (the masked half of the scores is not computed at all). fp16/bf16 logits are scaled in
        # their own dtype first, as eager attention does, so that a gate-0 circuit stays bit-identical to it.
        attn_weights = torch.matmul(query, key_states.transpose(2, 3))
        fuse_scale = attn_weights.dtype in (torch.float32, torch.float64)
        if not fuse_scale:
            attn_weights = attn_weights * scaling
        if attention_mask is None:
            attn_weights = circuit(attn_weights, scaling, causal=causal, unscaled=fuse_scale, softmax=True)
        else:
            attn_weights = circuit(attn_weights, scaling, unscaled=fuse_scale)
            attn_weights = apply_attention_mask(attn_weights, attention_mask, causal)
            attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32)
    attn_weights = attn_weights.to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


@functools.cache
def _lse_request() -> dict:
    """FlexAttention keyword asking for the log-sum-exp: ``return_aux`` where it exists (``return_lse`` is deprecated)."""
    try:
        from torch.nn.attention.flex_attention import AuxRequest
    except ImportError:
        return {"return_lse": True}
    return {"return_aux": AuxRequest(lse=True)}


def quantum_flex_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask,
    scaling: float | None = None,
    dropout: float = 0.0,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Quantum attention through FlexAttention (``attn_implementation="quantum_flex"``).

    Same maths as :func:`quantum_attention_forward` (the circuit coefficients are computed once per call and
    captured by the ``score_mod``), but fused: the ``[B, H, L, L]`` logits are never stored. Training needs
    CUDA (torch 2.13 has no FlexAttention backward on CPU). No attention dropout, no attention weights.

    Args:
        module, query, key, value, scaling, is_causal: as :func:`quantum_attention_forward`.
        attention_mask: a ``BlockMask`` (what the registered ``"quantum_flex"`` mask builder returns), a 4-D
            tensor mask, or ``None`` (causal for a causal module with ``q_len > 1``).
        dropout: must be 0 (FlexAttention has no dropout).

    Returns:
        ``(attn_output [batch, q_len, heads, head_dim], None)``.

    Raises:
        ValueError: for ``dropout > 0`` in training mode.
    """
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask
    from transformers.integrations.flex_attention import compile_friendly_flex_attention

    if dropout > 0 and module.training:
        raise ValueError(
            "`quantum_flex` attention has no dropout (FlexAttention); set the model's attention_dropout to 0 "
            "or use attn_implementation='quantum'."
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    batch, num_heads, q_len, _ = query.shape
    kv_len = key.shape[-2]

    block_mask = attention_mask if isinstance(attention_mask, BlockMask) else None
    score_mask = attention_mask if isinstance(attention_mask, torch.Tensor) else None
    kept = FlexScoreMask()
    if block_mask is None and _resolve_is_causal(module, q_len, attention_mask, is_causal):
        block_mask = create_block_mask(causal_mask_mod, None, None, q_len, kv_len, device=query.device)
        kept = FlexScoreMask(causal=True)
    elif block_mask is not None:
        kept = kept_scores(block_mask) or FlexScoreMask(mask_mod=block_mask.mask_mod)
    if score_mask is not None:
        score_mask = score_mask[..., :kv_len]
        kept = FlexScoreMask(score_mask=score_mask)

    circuit = getattr(module, QUANTUM_MODULE_NAME, None)
    if circuit is None:
        _refuse_unpatched(module)
    circuit_terms = None
    if circuit is not None:
        coefficients = circuit.coefficients(torch.float32)
        if coefficients.dim() == 2:
            coefficients = coefficients.unsqueeze(0).expand(num_heads, *coefficients.shape)
        # Contiguous copies: Inductor's CPU FlexAttention template rejects captured stride-0 (expanded) views.
        cos_coefficients = coefficients[:, 0].contiguous()
        sin_coefficients = coefficients[:, 1].contiguous()
        gate = circuit.gate.to(torch.float32).expand(num_heads).contiguous()
        omega = circuit.omega * circuit.input_scale(scaling)
        # The score_mod captures detached copies: FlexAttention's own backward then gives dQ, dK, dV only,
        # and flex_circuit_gradient adds the circuit's gradients in one extra pass (see its module for why).
        score_mod = circuit_score_mod(
            cos_coefficients.detach(), sin_coefficients.detach(), gate.detach(), omega, score_mask
        )
        if torch.is_grad_enabled() and any(
            t.requires_grad for t in (cos_coefficients, sin_coefficients, gate)
        ):
            circuit_terms = (cos_coefficients, sin_coefficients, gate, omega)
    elif score_mask is not None:
        zeros = query.new_zeros(num_heads, 1, dtype=torch.float32)
        score_mod = circuit_score_mod(zeros, zeros, zeros[:, 0], 1.0, score_mask)
    else:
        score_mod = None

    # FlexAttention's GQA needs a power-of-two head count (as in transformers' flex integration).
    enable_gqa = key.shape[1] != num_heads
    if enable_gqa and (num_heads & (num_heads - 1)) != 0:
        key = repeat_kv(key, num_heads // key.shape[1])
        value = repeat_kv(value, num_heads // value.shape[1])
        enable_gqa = False

    try:
        attn_output = compile_friendly_flex_attention(
            query,
            key,
            value,
            score_mod=score_mod,
            block_mask=block_mask,
            enable_gqa=enable_gqa,
            scale=scaling,
            kernel_options=kwargs.get("kernel_options"),
            training=module.training,
            **(_lse_request() if circuit_terms is not None else {}),
        )
    except NotImplementedError as error:
        if query.device.type != "cuda" and "backward" in str(error):
            raise NotImplementedError(
                f"attn_implementation='quantum_flex' cannot train on {query.device.type}: FlexAttention has no "
                "backward there. Train with attn_implementation='quantum' (same maths; switch back with "
                "model.set_attn_implementation('quantum_flex') on a GPU), or run without gradients."
            ) from error
        raise
    if circuit_terms is not None:
        attn_output, lse = attn_output
        lse = getattr(lse, "lse", lse)  # AuxOutput (torch >= 2.9) or the tensor (return_lse)
        cos_coefficients, sin_coefficients, gate, omega = circuit_terms
        attn_output = flex_circuit_gradient(
            attn_output, lse, query, key, value, cos_coefficients, sin_coefficients, gate,
            omega=omega, scaling=scaling, mask=kept,
        )  # fmt: skip
    return attn_output.transpose(1, 2).contiguous(), None


def _causal_kept_scores(mask_function, q_offset, kv_offset, attention_mask, kv_length) -> FlexScoreMask | None:
    """What a mask built from ``mask_function`` keeps when it is the plain causal mask (zero offsets), with or
    without padded keys; ``None`` for any other mask."""
    plain_causal = (
        mask_function is causal_mask_function
        and isinstance(q_offset, int) and q_offset == 0
        and isinstance(kv_offset, int) and kv_offset == 0
    )  # fmt: skip
    if not plain_causal:
        return None
    padded = attention_mask is not None and not bool(attention_mask.all())
    key_padding = prepare_padding_mask(attention_mask.to(torch.bool), kv_length, 0) if padded else None
    return FlexScoreMask(causal=True, key_padding=key_padding)


def quantum_attention_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset=0,
    kv_offset=0,
    mask_function: Callable = causal_mask_function,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
):
    """Mask builder registered under ``"quantum"``: transformers' ``sdpa_mask`` (boolean, or ``None``).

    ``None`` comes back for an unpadded causal batch (and for a single decoding query);
    :func:`quantum_attention_forward` then applies the causal rule itself, exactly as SDPA's ``is_causal``.
    Skipping the mask saves building an ``[B, 1, L, L]`` tensor on every forward. A boolean mask that is the
    causal mask of a padded batch (causal mask function, zero offsets) is marked with its key padding
    (:func:`kept_scores`), so that the fused CPU kernel can apply it without reading the ``[B, 1, L, L]``
    tensor; any other mask runs the dense path.
    """
    mask = sdpa_mask(batch_size, q_length, kv_length, q_offset, kv_offset, mask_function, attention_mask, **kwargs)
    kept = _causal_kept_scores(mask_function, q_offset, kv_offset, attention_mask, kv_length)
    if mask is not None and mask.dtype == torch.bool and kept is not None:
        setattr(mask, _KEPT_SCORES_MARK, kept)
    return mask


def quantum_flex_attention_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset=0,
    kv_offset=0,
    mask_function: Callable = causal_mask_function,
    attention_mask: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    **kwargs,
):
    """Mask builder registered under ``"quantum_flex"``: transformers' ``flex_attention_mask`` (a ``BlockMask``).

    The result is also marked when it is the causal mask, with or without padded keys (causal mask function,
    zero offsets): training then computes the circuit's gradients with the fused kernel.
    """
    block_mask = flex_attention_mask(
        batch_size, q_length, kv_length, q_offset, kv_offset, mask_function, attention_mask, device, **kwargs
    )
    kept = _causal_kept_scores(mask_function, q_offset, kv_offset, attention_mask, kv_length)
    if kept is not None:
        setattr(block_mask, _KEPT_SCORES_MARK, kept)
    return block_mask


_REGISTRATIONS = (
    (AttentionInterface, QUANTUM_ATTENTION, quantum_attention_forward),
    (AttentionMaskInterface, QUANTUM_ATTENTION, quantum_attention_mask),
    (AttentionInterface, QUANTUM_FLEX_ATTENTION, quantum_flex_attention_forward),
    (AttentionMaskInterface, QUANTUM_FLEX_ATTENTION, quantum_flex_attention_mask),
)
# What each name held before register_quantum_attention took it (transformers ships none of them), so that
# unregister_quantum_attention puts back exactly that.
_replaced: dict[tuple[type, str], Callable] = {}


def register_quantum_attention() -> None:
    """Register ``"quantum"`` and ``"quantum_flex"`` (attention and mask functions) in transformers.

    Idempotent; called by ``import hf_superpositional`` and undone by :func:`unregister_quantum_attention`.
    Afterwards ``model.set_attn_implementation("quantum")`` and ``from_pretrained(...,
    attn_implementation="quantum")`` are valid. Restoring circuits on ``from_pretrained`` is the loading
    hooks' job (:func:`~hf_superpositional.attention.loading.install_loading_hooks`).

    Example:
        >>> from transformers import AttentionInterface
        >>> register_quantum_attention()
        >>> "quantum" in AttentionInterface() and "quantum_flex" in AttentionInterface()
        True
    """
    for interface, name, function in _REGISTRATIONS:
        current = interface._global_mapping.get(name)
        if current is not function and current is not None:
            _replaced.setdefault((interface, name), current)
        interface.register(name, function)


def unregister_quantum_attention() -> None:
    """Undo :func:`register_quantum_attention`: transformers' attention and mask registries as they were.

    Only entries that still hold this package's functions are touched. Models already switched to
    ``"quantum"`` fail on their next forward (transformers no longer knows the name).

    Example:
        >>> from transformers import AttentionInterface
        >>> unregister_quantum_attention()
        >>> "quantum" in AttentionInterface()
        False
        >>> register_quantum_attention()
    """
    for interface, name, function in _REGISTRATIONS:
        # GeneralInterface.register writes the class-wide mapping; transformers has no public removal.
        if interface._global_mapping.get(name) is function:
            previous = _replaced.pop((interface, name), None)
            if previous is None:
                del interface._global_mapping[name]
            else:
                interface._global_mapping[name] = previous
