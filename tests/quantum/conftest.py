"""Fixtures shared by the tests of this folder."""

from __future__ import annotations

import pytest

from hf_superpositional.quantum.kernels import cpp


@pytest.fixture
def kernel(request):
    """The kernel named by the test's parameter, skipping "cpp" where the extension cannot be built."""
    name = request.param
    if name == "cpp" and cpp.load_cpu_extension() is None:
        pytest.skip("the C++ circuit kernel could not be built on this machine (see its RuntimeWarning)")
    return name
