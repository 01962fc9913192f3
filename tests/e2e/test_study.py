"""recipes/study.py (`make study`): its configs, its command line, and one real run of the --quick preset."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from tests.cli_cases import assert_bad_input_exits_with_one_line
from tests.subprocess_env import REPO, repo_env

RECIPE = REPO / "recipes" / "study.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("study_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_default_config_is_the_issues_study(recipe):
    setup, study = recipe.parse_arguments([])
    assert study.dose_lambdas == [0.1, 0.5, 1.0, 10.0, 100.0, 1000.0]
    assert study.dose_scopes == ["first_n", "all"] and study.dose_modes == ["update", "moment"]
    assert (study.power, study.alpha, study.target_accuracy, study.budget_minutes) == (0.8, 0.05, 0.915, 25)
    assert study.gsm8k_lambdas == [0.1, 0.5] and study.ablation and study.calibrate
    assert study.calibration_first_seed >= study.first_seed + study.max_seeds  # calibration seeds are the study's own
    # the task and model of the text-classification demo (paper Table II), apart from the calibrated size
    from transformers import HfArgumentParser

    from hf_superpositional.reproduction.classification import TextClassificationArguments

    (demo,) = HfArgumentParser(TextClassificationArguments).parse_yaml_file(
        str(REPO / "recipes" / "configs" / "text_classification.yaml")
    )
    for name in ("num_epochs", "num_test", "seq_len", "follow_prob", "hidden_size", "num_heads", "ffn_size",
                 "num_layers", "dropout", "attention", "n_qubits", "depth", "gate_init", "batch_size", "learning_rate"):  # fmt: skip
        assert getattr(setup, name) == getattr(demo, name), name


def test_quick_preset_and_overrides(recipe):
    setup, study = recipe.parse_arguments(["--quick", "--dose_seeds", "3"])
    assert setup.num_workers == 1 and study.max_seeds <= 3 and study.dose_seeds == 3
    assert study.output_dir == "outputs/study_quick"


def test_bad_command_lines_exit_2_with_one_line(recipe, capsys):
    cases = {
        "--quick --config recipes/configs/study.yaml": r"give either --quick or --config, not both",
        "--dose_scopes first_n everything": r"`dose_scopes` must be values from \['first_n', 'all'\]",
        "--min_seeds 9 --max_seeds 4": r"need 2 <= min_seeds <= max_seeds, got 9 and 4",
        "--pilot_seed 3": r"--pilot_seed is not accepted as an abbreviation of --pilot_seeds",
        "--reanalyse /nonexistent/verdicts.json": r"`reanalyse`: /nonexistent/verdicts\.json not found",
    }
    for argv, message in cases.items():
        assert_bad_input_exits_with_one_line(recipe.main, argv, "study.py", message, capsys)


@pytest.mark.slow
def test_quick_study_writes_every_output(tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, str(RECIPE), "--quick", "--output_dir", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=repo_env(PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stderr[-3000:]
    for bar in ("calibration (AdamW)", "pilot", "study runs", "epochs"):  # the progress bars ran
        assert bar in result.stderr, bar
    assert "power: tc_final_accuracy: pilot 2 seeds" in result.stdout and "| claim |" in result.stdout

    payload = json.loads((out / "verdicts.json").read_text())
    claims = {claim["key"]: claim for claim in payload["claims"]}
    assert list(claims) == ["tc_final_accuracy", "tc_epochs_to_90", "tc_time_per_epoch", "tc_time_to_90",
                            "gsm8k_lambda_0.1", "gsm8k_lambda_0.5"]  # fmt: skip
    runs = payload["runs"]["text_classification"]
    for claim in claims.values():
        assert claim["verdict"] in ("refuted", "reproduced", "inconclusive")
        assert claim["num_seeds"] >= 2 and len(claim["baseline_values"]) == claim["num_seeds"]
    # the claim's raw values are the runs' own, and scipy gives its interval back from them
    accuracy = claims["tc_final_accuracy"]
    finals = {(r["arm"], r["seed"]): r["eval_accuracy"][-1] for r in runs}
    assert accuracy["baseline_values"] == [finals[("adamw", s)] for s in accuracy["seeds"]]
    assert accuracy["treatment_values"] == [finals[("sgd_lambda_0.5", s)] for s in accuracy["seeds"]]
    differences = np.subtract(accuracy["treatment_values"], accuracy["baseline_values"])
    if differences.std() > 0:
        ci = stats.ttest_1samp(differences, 0.0).confidence_interval(0.95)
        assert accuracy["ci"] == pytest.approx([ci.low, ci.high], rel=1e-9)
    # dose-response: 2 lambdas x 2 scopes (update mode), their ratios measured from the optimizer's diagnostics
    points = payload["dose_response"]
    assert len(points) == 4 and all(p["ratio"] > 0 for p in points)
    ratio = {(p["quantum_weight"], p["scope"], p["mode"]): p["ratio"] for p in points}
    assert ratio[(1000.0, "all", "update")] > 100 * ratio[(0.5, "first_n", "update")]
    assert len(payload["ablation"]) == 5 and payload["calibration"]["chosen_num_train"] in (32, 64)
    assert {r["attention"] for r in runs if r["arm"].startswith("eager_")} == {"eager"}
    assert len(payload["runs"]["gsm8k"]) == 3 * len(claims["gsm8k_lambda_0.1"]["seeds"])
    md = (out / "study.md").read_text()
    assert "## Verdicts" in md and "This is a tiny model" in md and "## Dose-response" in md
    for name in ("dose_response.png", "learning_curves.png", "gsm8k_loss_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
