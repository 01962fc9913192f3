"""Print the ZeRO equality table of ``test_deepspeed.py``: stage x scope, max |delta parameters| against one process.

Run from the repository root (needs deepspeed; ~1 min on 2 CPU cores)::

    python -m tests.e2e.deepspeed_table

It launches ``scripts/deepspeed_checks.py`` on 2 gloo ranks, as the test does, trains the one-process
reference for each scope, and prints the largest absolute parameter difference per cell (the test's tolerance
is 2e-6) beside the distance to the other scope's reference (what a mask on the wrong elements would give).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from tests.e2e.test_deepspeed import SCRIPT, checks_module
from tests.subprocess_env import REPO, cpu_launch_env, free_port


def main() -> None:
    checks = checks_module()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(SCRIPT), "--out", str(out / "zero")]  # fmt: skip
        subprocess.run(cmd, cwd=REPO, env=cpu_launch_env(), check=True, capture_output=True, text=True, timeout=900)
        summary = json.loads((out / "zero" / "deepspeed.json").read_text())
        reference = {scope: checks.train(str(out / scope), 4, scope)[:2] for scope in checks.SCOPES}
        print("| ZeRO stage | scope | max abs diff vs 1 process | vs the other scope's 1-process run | losses max rel diff |")
        print("| ---: | --- | ---: | ---: | ---: |")
        for stage in checks.STAGES:
            for scope in checks.SCOPES:
                run = summary["runs"][f"zero{stage}_{scope}"]
                zero = torch.load(out / "zero" / f"zero{stage}_{scope}.pt")
                params, losses = reference[scope]
                same = max((zero[n] - p).abs().max().item() for n, p in params.items())
                other = reference["all" if scope == "first_n" else "first_n"][0]
                wrong = max((zero[n] - p).abs().max().item() for n, p in other.items())
                rel = max(abs(a - b) / abs(b) for a, b in zip(run["losses"], losses, strict=True))
                print(f"| {stage} | `{scope}` | {same:.1e} | {wrong:.1e} | {rel:.1e} |")


if __name__ == "__main__":
    main()
