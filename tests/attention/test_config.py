"""QuantumAttentionConfig (attention/config.py): round trips, HfArgumentParser, validation naming the field."""

from __future__ import annotations

import json

import pytest
from transformers import HfArgumentParser

from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.patch import (
    apply_quantum_attention,
)
from tests.tiny_models import tiny_llama


def test_config_round_trip_and_hf_argument_parser():
    cfg = QuantumAttentionConfig(n_qubits=3, depth=1, readout="amplitude", layers=[2, 0], per_head=True)
    assert cfg.layers == [0, 2]
    assert QuantumAttentionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    parser = HfArgumentParser(QuantumAttentionConfig)
    (parsed,) = parser.parse_args_into_dataclasses(
        [
            "--n_qubits",
            "3",
            "--depth",
            "1",
            "--readout",
            "amplitude",
            "--layers",
            "0",
            "2",
            "--per_head",
            "true",
        ]
    )
    assert parsed == cfg
    (from_dict,) = parser.parse_dict({"gate_init": 1, "score_input": "raw"})
    assert from_dict.gate_init == 1.0 and from_dict.score_input == "raw" and from_dict.layers is None


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_qubits=0), "n_qubits"),
        (dict(depth=-1), "depth"),
        (dict(readout="x"), "readout"),
        (dict(score_input="scaled"), "score_input"),
        (dict(circuit_backend="cuda"), "circuit_backend"),
        (dict(attn_implementation="sdpa"), "attn_implementation"),
        (dict(gate_init=float("nan")), "gate_init"),
        (dict(layers=[]), "layers"),
        (dict(layers=[0, 0]), "layers"),
        (dict(layers=[-1]), "layers"),
        (dict(init_seed=-3), "init_seed"),
        (dict(per_head="yes"), "per_head"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        QuantumAttentionConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="valid keys"):
        QuantumAttentionConfig.from_dict({"n_qubit": 4})


def test_per_head_parameters_have_head_dimension():
    model = apply_quantum_attention(tiny_llama(num_key_value_heads=2), per_head=True, depth=3, n_qubits=2)
    circuit = model.model.layers[0].self_attn.quantum_circuit
    assert circuit.ry.shape == (4, 3, 2) and circuit.rz.shape == (4, 3, 2) and circuit.gate.shape == (4,)
    assert circuit.coefficients().shape == (4, 2, 7)


def test_n_qubits_above_the_simulators_limit_is_refused_at_construction():
    from hf_superpositional.attention.config import MAX_QUBITS

    with pytest.warns(UserWarning, match="training will be slow"):  # the limit itself is allowed, and costly
        assert QuantumAttentionConfig(n_qubits=MAX_QUBITS, depth=1).n_qubits == MAX_QUBITS
    with pytest.raises(ValueError, match=r"`n_qubits` must be an integer in \[1, 24\] .* got 25"):
        QuantumAttentionConfig(n_qubits=25)


def test_a_costly_circuit_warns_with_its_size():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        QuantumAttentionConfig(n_qubits=8, depth=2)  # cheap: no warning
    with pytest.warns(UserWarning, match=r"n_qubits=16, depth=2\): every forward pass simulates the circuit at 65 "):
        cfg = QuantumAttentionConfig(n_qubits=16, depth=2)
    # the operation count, re-derived: 2K+1 points x depth layers x n qubits x 2^n amplitudes
    assert cfg.circuit_operations == (2 * 16 * 2 + 1) * 2 * 16 * 2**16
