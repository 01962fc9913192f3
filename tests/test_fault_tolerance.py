"""Fault tolerance: a SIGKILLed run resumes to the same result; a damaged checkpoint fails loudly.

What each test proves:

- ``test_sigkilled_run_resumes_to_the_uninterrupted_result`` (slow, 3 processes): a training process killed
  with SIGKILL after step 5 of an 8-step epoch, resumed with ``resume_from_checkpoint=True`` from
  checkpoint-4, ends with parameters bit-identical to an uninterrupted run and the same logged ``loss``,
  ``grad_norm`` and ``learning_rate`` at every step -- with a half-written ``checkpoint-6`` (no
  ``trainer_state.json``, truncated ``optimizer.pt``) planted beside it, as a kill during a save leaves.
- ``test_resume_true_skips_a_half_written_checkpoint``: that planted folder is skipped, with a warning naming it.
- ``test_intact_checkpoint_passes``: no false alarm on what the Trainer writes.
- ``test_damaged_checkpoint_is_rejected[...]``: each damage (truncated / missing optimizer state, missing
  scheduler, optimizer state cut short, weights file cut short, half-written checkpoint, a ``config.json``
  whose ``n_qubits`` does not match the circuit tensors, a ``config.json`` that lost its quantum entry, circuits
  missing from the weights) raises
  ``CheckpointError`` naming the file and the mismatch.
- ``test_trainer_refuses_to_resume_*``: the same through ``SuperpositionalTrainer.train(resume_from_checkpoint=...)``,
  before any weight is touched: a truncated optimizer file, a model whose quantum config differs from the
  checkpoint's (``n_qubits``), and ``optim_args`` asking for another ``quantum_weight``.
- ``test_stock_trainer_resumes_silently_without_optimizer_state``: why the check exists -- the stock
  ``transformers.Trainer`` resumes from a checkpoint without ``optimizer.pt`` with no error and a different
  result.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hf_superpositional.integrations.checkpoint import (
    CheckpointError,
    last_complete_checkpoint,
    validate_checkpoint,
)
from tests.subprocess_env import repo_env

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "dist_scripts"
SCRIPT = SCRIPTS / "fault_tolerant_train.py"


def _script_module():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import fault_tolerant_train
    finally:
        sys.path.remove(str(SCRIPTS))
    return fault_tolerant_train


def _env() -> dict[str, str]:
    return repo_env(TOKENIZERS_PARALLELISM="false")


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


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
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--output_dir", str(killed), "--pause_after_step", "5"],
        cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
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
    _truncate(half_written / "optimizer.pt")

    resumed = subprocess.run(
        [sys.executable, str(SCRIPT), "--output_dir", str(killed), "--resume"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
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


# --------------------------------------------------------------------------------------------------
# damaged checkpoints (in-process, a 2-step run)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint-2 of a 2-step run of the script's trainer (in-process, ~2 s)."""
    out = tmp_path_factory.mktemp("ckpt")
    _script_module().build_trainer(str(out), max_steps=2).train()
    return out / "checkpoint-2"


@pytest.fixture
def damaged(checkpoint, tmp_path):
    copy = tmp_path / "checkpoint-2"
    shutil.copytree(checkpoint, copy)
    return copy


def test_intact_checkpoint_passes(checkpoint):
    module = _script_module()
    report = validate_checkpoint(
        checkpoint, module.build_model(), optimizer_kwargs={"quantum_weight": 0.5, "n_qubits": 4}
    )
    assert report.global_step == 2
    assert report.quantum_attention["n_qubits"] == module.QUANTUM_CONFIG.n_qubits
    for name in (
        "trainer_state.json",
        "model.safetensors",
        "config.json",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
    ):
        assert name in report.checked
    assert report.warnings == []


def _drop_moments(path: Path) -> None:
    saved = torch.load(path, weights_only=True)
    for entry in saved["state"].values():
        del entry["exp_avg_sq"]
    torch.save(saved, path)


def _config_n_qubits(path: Path) -> None:
    config = json.loads(path.read_text())
    config["quantum_attention"]["n_qubits"] = 3
    path.write_text(json.dumps(config))


def _drop_quantum_entry(path: Path) -> None:
    config = json.loads(path.read_text())
    del config["quantum_attention"]
    path.write_text(json.dumps(config))


def _drop_circuits(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(path).items() if "quantum_circuit" not in k}
    save_file(tensors, path, metadata={"format": "pt"})


DAMAGE = {
    "truncated_optimizer": (
        lambda c: _truncate(c / "optimizer.pt"),
        r"optimizer\.pt: cannot be read .*truncated",
    ),
    "missing_optimizer": (
        lambda c: (c / "optimizer.pt").unlink(),
        r"optimizer\.pt: missing.*silently restart",
    ),
    "missing_scheduler": (lambda c: (c / "scheduler.pt").unlink(), r"scheduler\.pt: missing"),
    "optimizer_state_cut_short": (
        lambda c: _drop_moments(c / "optimizer.pt"),
        r"optimizer\.pt: .*lacks \['exp_avg_sq'\]",
    ),
    "truncated_weights": (
        lambda c: _truncate(c / "model.safetensors", 0.9),
        r"model\.safetensors: truncated",
    ),
    "half_written": (
        lambda c: (c / "trainer_state.json").unlink(),
        r"trainer_state\.json: missing.*incomplete",
    ),
    "config_n_qubits_mismatch": (
        lambda c: _config_n_qubits(c / "config.json"),
        r"config\.json describes quantum attention with n_qubits=3.*ry of shape \(1, 3\).*model\.safetensors holds "
        r".*quantum_circuit\.ry with shape \(1, 2\)",
    ),
    "config_lost_quantum_entry": (
        lambda c: _drop_quantum_entry(c / "config.json"),
        r"config\.json: the model being trained uses quantum attention but the checkpoint does not",
    ),
    "circuits_missing_from_weights": (
        lambda c: _drop_circuits(c / "model.safetensors"),
        r"config\.json describes quantum attention .*model\.safetensors holds no quantum_circuit parameters",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_is_rejected(damaged, damage):
    corrupt, message = DAMAGE[damage]
    corrupt(damaged)
    with pytest.raises(CheckpointError, match=message):
        validate_checkpoint(damaged, _script_module().build_model())


def _params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_trainer_refuses_to_resume_from_a_truncated_optimizer(damaged, tmp_path):
    _truncate(damaged / "optimizer.pt")
    trainer = _script_module().build_trainer(str(tmp_path / "run"))
    before = _params(trainer.model)
    with pytest.raises(CheckpointError, match=r"optimizer\.pt: cannot be read"):
        trainer.train(resume_from_checkpoint=str(damaged))
    after = _params(trainer.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing loaded, nothing trained


def test_trainer_refuses_a_checkpoint_with_another_quantum_config(checkpoint, tmp_path):
    from hf_superpositional.attention.patch import apply_quantum_attention
    from tests.tiny_models import tiny_llama

    module = _script_module()
    other = apply_quantum_attention(
        tiny_llama(seed=0, attention_dropout=0.1), n_qubits=3, depth=1, gate_init=1.0
    )
    trainer = module.build_trainer(str(tmp_path / "run"), model=other)
    before = _params(trainer.model)
    with pytest.raises(
        CheckpointError, match=r"config\.json: .*does not match the model.*n_qubits: checkpoint 2, model 3"
    ):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert all(torch.equal(before[k], v) for k, v in _params(trainer.model).items())


def test_trainer_refuses_to_resume_with_another_quantum_weight(checkpoint, tmp_path):
    trainer = _script_module().build_trainer(
        str(tmp_path / "run"), optim_args="quantum_weight=0.1,n_qubits=4"
    )
    with pytest.raises(
        CheckpointError, match=r"optimizer\.pt: param group 0 was saved with quantum_weight=0\.5 .*0\.1"
    ):
        trainer.train(resume_from_checkpoint=str(checkpoint))


def test_last_complete_checkpoint_skips_folders_without_trainer_state(checkpoint, tmp_path):
    shutil.copytree(checkpoint, tmp_path / "checkpoint-2")
    (tmp_path / "checkpoint-10").mkdir()  # numerically newest, never finished
    with pytest.warns(UserWarning, match="checkpoint-10"):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert last_complete_checkpoint(tmp_path / "absent") is None


def test_stock_trainer_resumes_silently_without_optimizer_state(checkpoint, damaged, tmp_path):
    """The failure mode the validation prevents: transformers resumes, with fresh Adam state, and says nothing."""
    from transformers import Trainer

    module = _script_module()
    (damaged / "optimizer.pt").unlink()
    results = {}
    for name, folder in (("intact", checkpoint), ("no_optimizer", damaged)):
        trainer = module.build_trainer(str(tmp_path / name), max_steps=5, save_strategy="no")
        Trainer.train(trainer, resume_from_checkpoint=str(folder))  # the stock method, without the validation
        assert trainer.state.global_step == 5
        results[name] = _params(trainer.model)
    assert any(not torch.equal(results["intact"][k], results["no_optimizer"][k]) for k in results["intact"])
