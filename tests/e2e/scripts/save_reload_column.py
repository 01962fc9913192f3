"""One column of the save x reload table in a fresh process: ``save_reload_column.py ROOT COLUMN``.

Imports ``hf_superpositional`` (as a user would before loading), loads every row saved under ROOT one way
(tests/e2e/save_reload_cases.py) and prints the results as one JSON line.
"""

from __future__ import annotations

import json
import sys

import hf_superpositional  # noqa: F401  (the import every reload path below relies on)
from tests.e2e.save_reload_cases import load_column

if __name__ == "__main__":
    root, column = sys.argv[1], sys.argv[2]
    print(json.dumps(load_column(root, column)))
