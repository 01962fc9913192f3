"""A training run SIGKILLed mid-epoch resumes to bit-identical parameters and logged losses; resume_from_checkpoint=True skips a half-written checkpoint (3 processes of e2e/scripts/fault_tolerant_train.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.integrations.checkpoint_cases import SCRIPTS, truncate
from tests.subprocess_env import REPO, repo_env

SCRIPT = SCRIPTS / "fault_tolerant_train.py"


def script_env() -> dict[str, str]:
    return repo_env(TOKENIZERS_PARALLELISM="false")


# --------------------------------------------------------------------------------------------------
# SIGKILL mid-epoch, then resume
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault")
    full, killed = root / "uninterrupted", root / "killed"
    # The uninterrupted reference and the run to be killed start together (two cores, two processes).
    reference = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--output_dir", str(full)],
        cwd=REPO, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--output_dir", str(killed), "--pause_after_step", "5"],
        cwd=REPO, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    marker = killed / "paused_at_step_5"
    deadline = time.monotonic() + 300
    while not marker.exists():
        if victim.poll() is not None:
            reference.kill()
            pytest.fail(f"the run to be killed exited early:\n{victim.stderr.read()[-4000:]}")
        if time.monotonic() > deadline:
            victim.kill()
            reference.kill()
            pytest.fail("the run to be killed never reached step 5")
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    victim.stderr.close()
    checkpoints_at_kill = sorted(p.name for p in killed.glob("checkpoint-*"))
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-4000:]

    # What a kill in the middle of saving checkpoint-6 leaves: no trainer_state.json, a cut optimizer file.
    half_written = killed / "checkpoint-6"
    shutil.copytree(killed / "checkpoint-4", half_written)
    (half_written / "trainer_state.json").unlink()
    truncate(half_written / "optimizer.pt")

    resumed = subprocess.run(
        [sys.executable, str(SCRIPT), "--output_dir", str(killed), "--resume"],
        cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return {
        "full": full,
        "killed": killed,
        "victim_returncode": victim.returncode,
        "checkpoints_at_kill": checkpoints_at_kill,
        "resume_stderr": resumed.stderr,
    }


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(killed_and_resumed):
    from safetensors.torch import load_file

    run = killed_and_resumed
    assert run["victim_returncode"] == -signal.SIGKILL
    assert run["checkpoints_at_kill"] == ["checkpoint-2", "checkpoint-4"]  # killed mid-epoch, after step 5
    full = load_file(run["full"] / "final_params.safetensors")
    resumed = load_file(run["killed"] / "final_params.safetensors")
    assert full.keys() == resumed.keys() and any("quantum_circuit" in k for k in full)
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    full_log = json.loads((run["full"] / "final_log.json").read_text())
    resumed_log = json.loads((run["killed"] / "final_log.json").read_text())
    assert [entry["step"] for entry in full_log] == list(range(1, 9))
    assert resumed_log == full_log  # steps 1-4 from checkpoint-4's history, 5-8 recomputed: all identical
    # The run really moved past the checkpoint it resumed from.
    at_kill = load_file(run["killed"] / "checkpoint-4" / "model.safetensors")
    assert any(not torch.equal(at_kill[k], full[k]) for k in at_kill)


@pytest.mark.slow
def test_resume_true_skips_a_half_written_checkpoint(killed_and_resumed):
    stderr = killed_and_resumed["resume_stderr"]
    assert "Skipping incomplete checkpoint" in stderr and "checkpoint-6" in stderr
