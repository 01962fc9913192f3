"""The optim_args string (optim/args.py): typed parsing, errors that name the bad piece, round trips, every allowed choice accepted by the optimizer."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.optim.args import (
    VALID_OPTIM_ARG_KEYS,
    format_optim_args,
    parse_optim_args,
    validate_optim_kwargs,
)


def test_parse_optim_args_types_each_key():
    parsed = parse_optim_args(
        " quantum_weight = 0.5 ,n_qubits=4, mode=moment,scope=all ,perturbation_backend=qiskit,"
        "foreach=False,fused=none,track_diagnostics=TRUE"
    )
    assert parsed == {
        "quantum_weight": 0.5,
        "n_qubits": 4,
        "mode": "moment",
        "scope": "all",
        "perturbation_backend": "qiskit",
        "foreach": False,
        "fused": None,
        "track_diagnostics": True,
    }
    assert type(parsed["quantum_weight"]) is float and type(parsed["n_qubits"]) is int
    assert parse_optim_args(None) == {} and parse_optim_args("  ") == {}
    # An integer-looking lambda is still a float (a bare isdigit() check would make it an int).
    assert type(parse_optim_args("quantum_weight=1")["quantum_weight"]) is float


@pytest.mark.parametrize(
    ("optim_args", "bad_piece"),
    [
        ("n_qubits=four", "n_qubits=four"),
        ("quantum_weight", "quantum_weight"),
        ("a=b=c", "a=b=c"),
        ("quantum_weight=0.5,learning_rate=1e-3", "learning_rate"),
        ("quantum_weight=0.5,weight_decay=0.1", "weight_decay"),
        ("mode=sideways", "mode=sideways"),
        ("scope=last_n", "scope=last_n"),
        ("track_diagnostics=maybe", "track_diagnostics=maybe"),
        ("quantum_weight=nan", "quantum_weight=nan"),
        ("n_qubits=4.0", "n_qubits=4.0"),
        ("quantum_weight=0.5,", ""),
    ],
)
def test_parse_optim_args_errors_name_bad_piece_and_list_valid_keys(optim_args, bad_piece):
    with pytest.raises(ValueError) as info:
        parse_optim_args(optim_args)
    message = str(info.value)
    assert repr(bad_piece) in message or f"'{bad_piece}" in message
    for key in VALID_OPTIM_ARG_KEYS:
        assert key in message


def test_parse_optim_args_rejects_repeated_key():
    with pytest.raises(ValueError, match="twice"):
        parse_optim_args("n_qubits=2,n_qubits=3")


def test_format_and_validate_round_trip():
    kwargs = {
        "quantum_weight": 0.25,
        "n_qubits": 3,
        "mode": "update",
        "fused": None,
        "track_diagnostics": True,
    }
    assert parse_optim_args(format_optim_args(kwargs)) == kwargs
    assert validate_optim_kwargs({"n_qubits": "4", "quantum_weight": 2}) == {
        "n_qubits": 4,
        "quantum_weight": 2.0,
    }
    with pytest.raises(ValueError, match="n_qubits"):
        validate_optim_kwargs({"n_qubits": 2.5})
    with pytest.raises(ValueError, match="unknown key 'lr'"):
        validate_optim_kwargs({"lr": 1e-3})


def test_every_allowed_choice_is_accepted_by_the_optimizer():
    from hf_superpositional.optim import SuperpositionalAdamW
    from hf_superpositional.optim.args import OPTIM_ARG_SPECS

    param = torch.nn.Parameter(torch.zeros(3))
    for key, spec in OPTIM_ARG_SPECS.items():
        for choice in spec.choices or ():
            SuperpositionalAdamW([param], **{key: choice})
        if spec.choices is not None:
            with pytest.raises(ValueError):
                SuperpositionalAdamW([param], **{key: "not_a_choice"})
