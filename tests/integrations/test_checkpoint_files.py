"""File-level checkpoint checks (integrations/checkpoint_files.py): checksums written and verified, NaN/inf
found in weights and optimizer state, headers of cut-short files refused."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from hf_superpositional.integrations.checkpoint_files import (
    CHECKSUMS_FILE,
    CheckpointError,
    checksummed_files,
    non_finite_tensors,
    safetensors_shapes,
    verify_checksums,
    write_checksums,
)


@pytest.fixture
def folder(tmp_path):
    save_file({"w": torch.arange(6.0).reshape(2, 3)}, tmp_path / "model.safetensors")
    torch.save({"state": {}, "param_groups": []}, tmp_path / "optimizer.pt")
    (tmp_path / "trainer_state.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    torch.save({"x": torch.ones(2)}, tmp_path / "sub" / "rng_state.pth")
    return tmp_path


def test_checksums_cover_weights_and_state_not_json(folder):
    assert checksummed_files(folder) == ["model.safetensors", "optimizer.pt", "sub/rng_state.pth"]
    record = write_checksums(folder).read_text().splitlines()
    expected = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()  # the reference: hashlib
    assert f"{expected}  model.safetensors" in record
    assert verify_checksums(folder) == ["model.safetensors", "optimizer.pt", "sub/rng_state.pth"]


def test_size_preserving_corruption_is_caught(folder):
    write_checksums(folder)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0x01  # one bit of one float: the header and the size still agree
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert safetensors_shapes(folder / "model.safetensors") == {"w": (2, 3)}  # headers alone cannot tell
    with pytest.raises(CheckpointError, match=r"model.safetensors: its SHA-256 .* differs from the one recorded"):
        verify_checksums(folder)


def test_missing_recorded_file_and_absent_record(folder):
    assert verify_checksums(folder) is None  # a stock-Trainer checkpoint: nothing recorded, nothing to check
    write_checksums(folder)
    (folder / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match=f"optimizer.pt: missing, but .*{CHECKSUMS_FILE} lists it"):
        verify_checksums(folder)


def test_non_finite_values_are_named(folder):
    assert non_finite_tensors([folder / "model.safetensors"]) == []
    save_file({"w": torch.tensor([1.0, float("inf")]), "i": torch.tensor([1, 2])}, folder / "bad.safetensors")
    state = {3: {"step": torch.tensor(2.0), "exp_avg": torch.zeros(2), "exp_avg_sq": torch.tensor([0.0, float("nan")])}}
    assert non_finite_tensors([folder / "bad.safetensors"], state) == ["bad.safetensors:w", "state[3].exp_avg_sq"]


def test_cut_short_safetensors_is_refused(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-4])
    with pytest.raises(CheckpointError, match="truncated or corrupt: its header describes"):
        safetensors_shapes(folder / "model.safetensors")
