"""The ``Example:`` blocks of the package's docstrings run and print what they show (doctest).

Public API docstrings carry a short example; this keeps them true as the code changes.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hf_superpositional

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(hf_superpositional.__path__, "hf_superpositional.")
)


def test_every_module_is_listed_and_examples_are_found():
    assert "hf_superpositional.quantum.fourier" in MODULES and "hf_superpositional.optim.adamw" in MODULES
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for t in finder.find(importlib.import_module("hf_superpositional.optim.adamw")))
    assert examples > 0


# Modules of optional integrations: skipped where their library is not installed.
OPTIONAL_DEPENDENCY = {"hf_superpositional.integrations.trl": "trl"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name in OPTIONAL_DEPENDENCY:
        pytest.importorskip(OPTIONAL_DEPENDENCY[name])
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=True, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
