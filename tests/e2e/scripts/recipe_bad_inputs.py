"""Run recipe command lines with bad input, in one process, and record how each one fails.

    python tests/e2e/scripts/recipe_bad_inputs.py CASES.json RESULTS.json

``CASES.json`` maps a case id to ``{"script": "recipes/x.py", "argv": [...]}``. Each case runs exactly as from
its command line (``runpy`` with ``sys.argv`` set and ``__name__ == "__main__"``) and ``RESULTS.json`` maps the
id to ``{"status": <exit status>, "stderr": <what it printed>, "exception": <"Type: message"> or null}``.
An exception escaping the script is recorded as status 1 with its type and message (Python's own exit
status and last traceback line for an uncaught exception). One process for all cases: each separate
launch would pay the transformers import again.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def run_case(script: str, argv: list[str]) -> dict:
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *argv]
    sys.path.insert(0, str((REPO / script).parent))
    stderr = io.StringIO()
    status, exception = 0, None
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(REPO / script), run_name="__main__")
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except Exception as error:  # what an uncaught exception would print as the last traceback line
        status, exception = 1, f"{type(error).__name__}: {error}"
        stderr.write("".join(traceback.format_exception(error)))
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return {"status": status, "stderr": stderr.getvalue()[-4000:], "exception": exception}


def main() -> int:
    cases = json.loads(Path(sys.argv[1]).read_text())
    results = {case_id: run_case(case["script"], case["argv"]) for case_id, case in cases.items()}
    Path(sys.argv[2]).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
