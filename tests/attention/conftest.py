"""Fixtures shared by the tests of this folder."""

from __future__ import annotations

import pytest

from hf_superpositional.attention.interface import (
    register_quantum_attention,
)


@pytest.fixture(autouse=True, scope="module")
def _registered():
    register_quantum_attention()


@pytest.fixture(autouse=True, scope="module")
def _registered():
    register_quantum_attention()
