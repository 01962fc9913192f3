"""The leaf helpers (_utils.py): the package's one key=value grammar, its one "did you mean", optional
imports, and unwrapping accelerate's optimizer wrapper."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional._utils import did_you_mean, parse_key_value_pairs, require, unwrap_optimizer


def test_key_value_grammar_keeps_order_and_strips_spaces():
    assert parse_key_value_pairs(" a = 1 ,b=x y ,c=", "what") == {"a": "1", "b": "x y", "c": ""}
    assert parse_key_value_pairs("", "what") == {} and parse_key_value_pairs("  ", "what") == {}


@pytest.mark.parametrize(
    "text, piece", [("a", "a"), ("=3", "=3"), ("a=1=2", "a=1=2"), ("a=1,", ""), ("a=1,,b=2", "")]
)
def test_key_value_grammar_names_the_malformed_piece(text, piece):
    with pytest.raises(ValueError, match=rf"^what: malformed piece {piece!r} in {text!r}"):
        parse_key_value_pairs(text, "what")


def test_key_value_grammar_rejects_a_repeated_key():
    with pytest.raises(ValueError, match="key 'a' is given twice"):
        parse_key_value_pairs("a=1,b=2,a=3", "what")


def test_did_you_mean():
    assert did_you_mean("lerning_rate", ["learning_rate", "weight_decay"]) == "did you mean 'learning_rate'?"
    two = did_you_mean("n_qubit", ["n_qubits", "n_qubitz", "depth"])
    assert two.startswith("did you mean ") and " or " in two and "'n_qubits'" in two and "'n_qubitz'" in two
    assert did_you_mean("colour", ["learning_rate"]) == ""
    assert did_you_mean("--max_lenght", ["--max_length"], cutoff=0.99) == ""


def test_require_names_what_needs_the_missing_module():
    assert require("math", "test", "math").sqrt(4.0) == 2.0
    with pytest.raises(ImportError, match=r"The thing needs no_such_module_xyz: `pip install xyz-pkg`"):
        require("no_such_module_xyz", "The thing", "xyz-pkg")


def test_unwrap_optimizer_finds_the_optimizer_inside_accelerates_wrapper():
    from accelerate import Accelerator

    inner = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    wrapped = Accelerator(cpu=True).prepare_optimizer(inner)
    assert wrapped is not inner
    assert unwrap_optimizer(wrapped) is inner
    assert unwrap_optimizer(inner) is inner and unwrap_optimizer(None) is None
