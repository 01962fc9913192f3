"""SuperpositionalAdamW at scale on CPU: DDP through ``accelerate launch`` and FSDP2 ``fully_shard``, 2 gloo ranks.

One launch of ``tests/e2e/scripts/distributed_checks.py`` (2 processes, ~20 s) produces every result; the tests
below read them. What each proves:

- ``test_ddp_ranks_hold_identical_parameters``: after 4 Trainer steps with ``optim="superpositional_adamw"``
  the two DDP replicas are bit-identical (the optimizer step is deterministic given the all-reduced gradient).
- ``test_ddp_matches_one_process_with_the_same_global_batch``: those parameters and the logged losses equal a
  one-process run with 4 rows per step (2 ranks x 2 rows). Tolerance: float64 training, so the only
  difference is the order of the gradient reduction (gloo's all-reduce of two half-batch means against one
  batched mean), ~1e-16 relative per step; 1e-10 absolute on parameters after 4 steps of lr 1e-2 leaves
  four orders of magnitude of headroom, while a different perturbation mask moves parameters by ~1e-5
  (see the sensitivity test). Losses are computed in float32 by transformers' loss (it upcasts logits with
  ``.float()``), hence their 1e-6 relative tolerance.
- ``test_fsdp2_matches_unsharded_trajectory``: ``fully_shard`` (DTensor parameters, the perturbation mask
  from the shards' global offsets) gives the unsharded parameters, Adam moments and losses, with the
  optimizer built before sharding and remapped (the Trainer's order) in both modes, and built after.
- ``test_fsdp2_check_is_sensitive_to_the_mask``: a mask computed from LOCAL flat indices, and dropping the
  perturbation altogether, both land >= 1e-6 away, so the 1e-10 agreement above is evidence about which
  global elements are perturbed, not a tolerance wide enough to hide a bug.

The accelerate FSDP2 config (``recipes/accelerate/fsdp2.yaml``) needs CUDA: accelerate never enables FSDP on
CPU. ``test_accelerate_fsdp2_config_runs_the_recipe`` (marked ``gpu``) runs it where a GPU exists.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from tests.subprocess_env import REPO, cpu_launch_env, free_port, repo_env, run_distributed_launch

SCRIPT = REPO / "tests" / "e2e" / "scripts" / "distributed_checks.py"
PARAM_ATOL = 1e-10
LOSS_RTOL = 1e-6

pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def dist_results(tmp_path_factory):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    if shutil.which("accelerate") is None:
        pytest.skip("the accelerate command line is not installed")
    out = tmp_path_factory.mktemp("dist")
    def command():
        return [
            "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
            str(SCRIPT), "--out", str(out),
        ]  # fmt: skip

    proc = run_distributed_launch(command, timeout=300, env=cpu_launch_env())
    assert proc.returncode == 0, f"launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out


def test_ddp_ranks_hold_identical_parameters(dist_results):
    rank0 = torch.load(dist_results / "ddp_rank0.pt")
    rank1 = torch.load(dist_results / "ddp_rank1.pt")
    assert rank0.keys() == rank1.keys()
    assert any("quantum_circuit" in name for name in rank0)  # the circuits trained too
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


def test_ddp_matches_one_process_with_the_same_global_batch(dist_results, tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import distributed_checks as checks
    finally:
        sys.path.remove(str(SCRIPT.parent))

    single, single_losses = checks.train_ddp(str(tmp_path / "single"), per_device_batch=4)
    ddp = torch.load(dist_results / "ddp_rank0.pt")
    logged = json.loads((dist_results / "ddp_losses.json").read_text())
    assert logged["world_size"] == 2
    initial = dict(checks.build_model().named_parameters())
    moved = 0.0
    for name, param in single.items():
        torch.testing.assert_close(ddp[name], param, rtol=0, atol=PARAM_ATOL, msg=name)
        moved = max(moved, (param - initial[name]).abs().max().item())
    assert moved > 1e-3  # the runs trained: agreement is not two copies of the initial weights
    assert len(logged["losses"]) == len(single_losses) == checks.DDP_STEPS
    torch.testing.assert_close(
        torch.tensor(logged["losses"]), torch.tensor(single_losses), rtol=LOSS_RTOL, atol=0
    )


@pytest.mark.parametrize(
    "variant", ["built_before_sharding_update", "built_before_sharding_moment", "built_after_sharding_update"]
)
def test_fsdp2_matches_unsharded_trajectory(dist_results, variant):
    results = json.loads((dist_results / "fsdp2.json").read_text())
    assert results["world_size"] == 2 and results["backend"] == "gloo"
    run = results[variant]
    assert run["dtensor_params"] == run["n_params"] > 0  # every parameter really was a sharded DTensor
    assert run["optimizer_steps"] == [3.0]  # every parameter got all three steps (none left unmapped)
    assert run["max_param_diff"] <= PARAM_ATOL
    assert run["max_state_diff"] <= PARAM_ATOL
    assert run["max_loss_diff"] <= LOSS_RTOL * 10  # losses ~4.6, float32


def test_fsdp2_check_is_sensitive_to_the_mask(dist_results):
    results = json.loads((dist_results / "fsdp2.json").read_text())
    assert results["local_index_mask_bug"]["max_param_diff"] > 1e-6
    assert results["reference_without_quantum_term"]["max_param_diff"] > 1e-6


# --------------------------------------------------------------------------------------------------
# GPU machine only
# --------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="accelerate enables FSDP only on CUDA")
def test_accelerate_fsdp2_config_runs_the_recipe(tmp_path):
    """``accelerate launch --config_file recipes/accelerate/fsdp2.yaml`` trains the tiny GSM8K recipe.

    Uses every visible GPU up to 2 (FSDP2 with one process still shards through DTensor with a 1-rank mesh).
    """
    n_gpus = min(torch.cuda.device_count(), 2)
    cmd = [
        "accelerate", "launch", "--config_file", "recipes/accelerate/fsdp2.yaml", "--num_processes", str(n_gpus),
        "--main_process_port", str(free_port()), "recipes/gsm8k_finetune.py",
        "--config", "recipes/configs/gsm8k_tiny_offline.yaml", "--use_cpu", "false",
        "--output_dir", str(tmp_path / "fsdp2"), "--max_train_samples", "16", "--generation_eval_samples", "0",
    ]  # fmt: skip
    env = repo_env()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    state = json.loads((tmp_path / "fsdp2" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses and all(map(lambda x: x == x and x < 1e4, losses))
