"""SuperpositionalAdamW under DeepSpeed ZeRO 1/2/3 on CPU, 2 gloo ranks (SPEC 1.12 and 8).

One launch of ``tests/e2e/scripts/deepspeed_checks.py`` (2 processes, ~25 s: every stage and check in it) and one
``accelerate launch`` of the GSM8K recipe with ``recipes/accelerate/deepspeed_zero3.yaml`` as written (~25 s).
What each test proves:

- ``test_zero_matches_one_process``: after 4 Trainer steps with ``optim="superpositional_adamw"``, DeepSpeed's
  full fp32 parameters equal a one-process run on the same global batch, for every stage and both scopes.
  Tolerance 2e-6: both runs are float32 and differ only in the order of reductions (DeepSpeed's reduce-scatter of
  two half-batch gradients against one batched sum); measured <= 3e-7 here. Adam turns a gradient at rounding
  level into an update of lr * g / (sqrt(v) + eps), so the runs use eps=1e-4 (with 1e-8 the same rounding shows
  as 1e-5). A mask on the wrong elements lands >= 1e-4 away (``test_the_check_is_sensitive_to_the_mask``).
- ``test_first_n_covers_each_parameters_first_elements``: the ranks' declared positions add up to the first
  ``n_qubits`` elements of every parameter, once each (stage 3 splits parameters between ranks).
- ``test_ranks_see_different_batches``: the two ranks were served disjoint rows that together cover the data.
- ``test_a_zero_checkpoint_resumes_identically``: resuming from the ZeRO checkpoint saved at step 2 ends
  bit-identical to the uninterrupted run, every stage.
- ``test_the_stock_trainer_refuses_first_n_on_flat_partitions`` and ``test_a_given_optimizer_object_trains``.
- ``test_accelerate_deepspeed_config_trains_the_recipe_on_cpu``: ``accelerate launch --config_file
  recipes/accelerate/deepspeed_zero3.yaml`` runs ``gsm8k_finetune.py`` with both ranks counted (the recipe
  applies the gloo set-up itself).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.subprocess_env import REPO, cpu_launch_env, free_port, run_distributed_launch

SCRIPT = REPO / "tests" / "e2e" / "scripts" / "deepspeed_checks.py"
PARAM_ATOL = 2e-6
LOSS_RTOL = 1e-5

pytestmark = pytest.mark.slow




def checks_module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import deepspeed_checks
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return deepspeed_checks


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("deepspeed")
    def command():
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port()), str(SCRIPT), "--out", str(out)]  # fmt: skip

    proc = run_distributed_launch(command, timeout=600, env=cpu_launch_env())
    assert proc.returncode == 0, f"launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out, json.loads((out / "deepspeed.json").read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same training in one process, 4 rows per step, no DeepSpeed."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")
    checks = checks_module()
    out = tmp_path_factory.mktemp("one_process")
    return {scope: checks.train(str(out / scope), 4, scope)[:2] for scope in checks.SCOPES}


@pytest.mark.parametrize("scope", ["first_n", "all"])
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_matches_one_process(results, one_process, stage, scope):
    out, summary = results
    run = summary["runs"][f"zero{stage}_{scope}"]
    assert run["deepspeed"] and run["world_size"] == 2
    zero = torch.load(out / f"zero{stage}_{scope}.pt")
    reference, reference_losses = one_process[scope]
    assert zero.keys() == reference.keys() and any("quantum_circuit" in name for name in zero)
    for name, param in reference.items():
        torch.testing.assert_close(zero[name], param, rtol=0, atol=PARAM_ATOL, msg=name)
    torch.testing.assert_close(torch.tensor(run["losses"]), torch.tensor(reference_losses), rtol=LOSS_RTOL, atol=0)
    # The scopes really differ (so agreement within the tolerance says which elements were perturbed).
    other = one_process["all" if scope == "first_n" else "first_n"][0]
    assert max((zero[n] - other[n]).abs().max().item() for n in zero) > 100 * PARAM_ATOL


def test_first_n_covers_each_parameters_first_elements(results):
    out, _ = results
    checks = checks_module()
    n = checks.OPTIM["n_qubits"]
    expected = sum(min(n, p.numel()) for p in checks.build_model().parameters())
    for stage in (1, 2, 3):
        reports = [json.loads((out / f"map_zero{stage}_first_n_rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["stage"] for r in reports] == [stage, stage]
        assert sum(r["elements"] for r in reports) == expected, (stage, reports)
        all_reports = [json.loads((out / f"map_zero{stage}_all_rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["elements"] for r in all_reports] == [0, 0]  # scope="all" needs no map


def test_the_check_is_sensitive_to_the_mask(results, one_process):
    out, _ = results
    wrong = torch.load(out / "local_prefix_bug.pt")  # the first n_qubits of each flat partition instead
    reference = one_process["first_n"][0]
    assert max((wrong[n] - reference[n]).abs().max().item() for n in wrong) > 50 * PARAM_ATOL


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_ranks_see_different_batches(results, stage):
    out, _ = results
    rank0, rank1 = (set(json.loads((out / f"batches_zero{stage}_first_n_rank{r}.json").read_text())) for r in (0, 1))
    assert rank0 and rank1 and not rank0 & rank1
    assert rank0 | rank1 == set(range(checks_module().STEPS * checks_module().GLOBAL_BATCH))


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_a_zero_checkpoint_resumes_identically(results, stage):
    _, summary = results
    assert summary["runs"][f"zero{stage}_first_n"]["resume_max_abs_diff"] == 0.0


def test_the_stock_trainer_refuses_first_n_on_flat_partitions(results):
    _, summary = results
    message = summary["stock_trainer_first_n"]
    assert "never given as a parameter" in message and "scope='all'" in message, message


def test_a_given_optimizer_object_trains(results):
    _, summary = results
    assert summary["given_optimizer"] == {"is_the_given_object": True, "steps": [4]}


def test_accelerate_deepspeed_config_trains_the_recipe_on_cpu(tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        "recipes/accelerate/deepspeed_zero3.yaml", "--num_processes", "2", "--main_process_port", str(free_port()),
        "recipes/gsm8k_finetune.py", "--config", "recipes/configs/gsm8k_tiny_offline.yaml",
        "--output_dir", str(tmp_path / "run"), "--max_train_samples", "32", "--per_device_train_batch_size", "4",
        "--generation_eval_samples", "0", "--save_strategy", "no",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=cpu_launch_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 4  # 32 rows / (4 rows x 2 ranks): both ranks counted, each its own rows
    card = (tmp_path / "run" / "README.md").read_text()
    assert "| processes | `2` |" in card and "| total_train_batch_size | `8` |" in card
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses and all(loss == loss and loss < 20 for loss in losses)
