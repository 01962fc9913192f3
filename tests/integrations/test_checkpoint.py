"""Checkpoint validation before resuming (integrations/checkpoint.py): damaged checkpoints raise CheckpointError naming the file and the mismatch, where the stock Trainer resumes silently."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from hf_superpositional.integrations.checkpoint import (
    CheckpointError,
    last_complete_checkpoint,
    validate_checkpoint,
)
from tests.integrations.checkpoint_cases import SCRIPTS, truncate


def script_module():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import fault_tolerant_train
    finally:
        sys.path.remove(str(SCRIPTS))
    return fault_tolerant_train


# --------------------------------------------------------------------------------------------------
# damaged checkpoints (in-process, a 2-step run)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint-2 of a 2-step run of the script's trainer (in-process, ~2 s)."""
    out = tmp_path_factory.mktemp("ckpt")
    script_module().build_trainer(str(out), max_steps=2).train()
    return out / "checkpoint-2"


@pytest.fixture
def damaged(checkpoint, tmp_path):
    copy = tmp_path / "checkpoint-2"
    shutil.copytree(checkpoint, copy)
    return copy


def test_intact_checkpoint_passes(checkpoint):
    module = script_module()
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


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's data: size and header unchanged
    path.write_bytes(bytes(data))


def _nan_weight(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    name = next(k for k in tensors if k.endswith("mlp.up_proj.weight"))
    tensors[name][0, 0] = float("nan")
    save_file(tensors, path, metadata={"format": "pt"})


def _nan_moment(path: Path) -> None:
    saved = torch.load(path, weights_only=True)
    next(iter(saved["state"].values()))["exp_avg"].view(-1)[0] = float("inf")
    torch.save(saved, path)


DAMAGE = {
    "truncated_optimizer": (
        lambda c: truncate(c / "optimizer.pt"),
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
        lambda c: truncate(c / "model.safetensors", 0.9),
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
    "weights_bit_flip": (
        lambda c: _flip_a_bit(c / "model.safetensors"),
        r"model\.safetensors: its SHA-256 .* differs from the one recorded in checksums\.sha256",
    ),
    "nan_weights": (
        lambda c: _nan_weight(c / "model.safetensors"),
        r"holds NaN/inf weights \(model\.safetensors:model\.layers\.0\.mlp\.up_proj\.weight\)",
    ),
    "nan_optimizer_state": (
        lambda c: _nan_moment(c / "optimizer.pt"),
        r"optimizer\.pt: holds NaN/inf optimizer state \(state\[0\]\.exp_avg\)",
    ),
    "not_a_checkpoint": (
        lambda c: [(c / name).unlink() for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth")],
        r"not a Trainer checkpoint \(no trainer_state\.json, optimizer\.pt or scheduler\.pt\).*load_trained_model",
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
        validate_checkpoint(damaged, script_module().build_model())


def _params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_trainer_refuses_to_resume_from_a_truncated_optimizer(damaged, tmp_path):
    truncate(damaged / "optimizer.pt")
    trainer = script_module().build_trainer(str(tmp_path / "run"))
    before = _params(trainer.model)
    with pytest.raises(CheckpointError, match=r"optimizer\.pt: cannot be read"):
        trainer.train(resume_from_checkpoint=str(damaged))
    after = _params(trainer.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing loaded, nothing trained


def test_trainer_refuses_a_checkpoint_with_another_quantum_config(checkpoint, tmp_path):
    from hf_superpositional.attention.patch import apply_quantum_attention
    from tests.tiny_models import tiny_llama

    module = script_module()
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
    trainer = script_module().build_trainer(
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

    module = script_module()
    (damaged / "optimizer.pt").unlink()
    results = {}
    for name, folder in (("intact", checkpoint), ("no_optimizer", damaged)):
        trainer = module.build_trainer(str(tmp_path / name), max_steps=5, save_strategy="no")
        Trainer.train(trainer, resume_from_checkpoint=str(folder))  # the stock method, without the validation
        assert trainer.state.global_step == 5
        results[name] = _params(trainer.model)
    assert any(not torch.equal(results["intact"][k], results["no_optimizer"][k]) for k in results["intact"])


def test_superpositional_trainer_checkpoints_record_checksums_that_resume_verifies(checkpoint):
    import hashlib

    record = (checkpoint / "checksums.sha256").read_text().splitlines()
    digest = hashlib.sha256((checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert f"{digest}  model.safetensors" in record
    assert {line.split("  ")[1] for line in record} >= {"model.safetensors", "optimizer.pt", "scheduler.pt"}
    report = validate_checkpoint(checkpoint, script_module().build_model())
    assert any(entry.startswith("checksums.sha256") for entry in report.checked)


def test_a_stock_trainer_checkpoint_resumes_in_its_own_param_group_layout(tmp_path):
    # The stock Trainer keeps circuits in the decay group (2 groups); SuperpositionalTrainer resumes it with that
    # layout, to the same parameters as the stock Trainer resuming its own checkpoint.
    from transformers import Trainer

    from hf_superpositional.integrations.trainer import SuperpositionalTrainer

    module = script_module()
    dataset = module.build_trainer(str(tmp_path / "unused")).train_dataset
    stock_args = module.training_arguments(str(tmp_path / "stock"), max_steps=2, save_steps=2)
    Trainer(model=module.build_model(), args=stock_args, train_dataset=dataset).train()
    ckpt = str(tmp_path / "stock" / "checkpoint-2")
    results = {}
    for name, cls in (("stock", Trainer), ("ours", SuperpositionalTrainer)):
        args = module.training_arguments(str(tmp_path / name / "more"), max_steps=3, save_strategy="no")
        trainer = cls(model=module.build_model(), args=args, train_dataset=dataset)
        trainer.train(resume_from_checkpoint=ckpt)
        results[name] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert len(unwrap_groups(trainer)) == 2
    for name, value in results["stock"].items():
        torch.testing.assert_close(results["ours"][name], value, rtol=0, atol=0, msg=name)


def unwrap_groups(trainer):
    return getattr(trainer.optimizer, "optimizer", trainer.optimizer).param_groups
