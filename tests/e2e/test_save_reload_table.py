"""The save x reload table of tests/README.md, one test per cell (issue 13 part B).

Each row's folder is built once (module fixture, tests/e2e/save_reload_cases.py); each column loads every row
in one fresh process. A cell passes when the reloaded model's logits equal the saved model's within 1e-5
(float32), or when it raises the error the table names (what is missing, and how to load it). A load that
succeeds with other logits fails, and so does an error where the model should have come back.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.save_reload_cases import COLUMNS, ROWS, build_saved_models, expected_outcome, run_columns

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("save_reload")
    manifest = build_saved_models(root)
    return manifest, run_columns(root)


@pytest.mark.parametrize("column", list(COLUMNS))
@pytest.mark.parametrize("row", list(ROWS))
def test_cell(table, row, column):
    manifest, results = table
    if row not in manifest["rows"]:
        pytest.skip("trl is not installed (pip install trl): no SFTTrainer row")
    result = results[column][row]
    expected_error = expected_outcome(row, column)
    if expected_error is None:
        assert "error" not in result, f"{row} x {column} should reload the saved model: {result.get('error')}"
        assert result["max_abs_diff"] <= 1e-5, f"{row} x {column}: reloaded with other logits ({result})"
    else:
        assert "error" in result, f"{row} x {column} loaded (max |diff| {result['max_abs_diff']}) but must raise"
        assert re.search(expected_error, result["error"], flags=re.S), result["error"]
