"""Acceptance with a real client: lm-evaluation-harness evaluates a saved quantum model as the project does.

A tiny GSM8K model is trained with ``recipes/gsm8k_finetune.py``; then, on the same bundled test rows with greedy
decoding, ``recipes/gsm8k_evaluate.py`` grades it in this process and lm-evaluation-harness's ``hf`` model
(``trust_remote_code=True``) grades it in a fresh process that never imported hf_superpositional -- the model
loads through the custom code saved beside its weights -- with the local task ``recipes/lm_eval/gsm8k_bundled.yaml``
(lm-eval's own regex filter and exact-match metric). Both must report the same strict accuracy, and produce the
same text for every row (so the two pipelines agree on prompts, stopping and decoding, not only on a number).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.subprocess_env import REPO, repo_env

pytestmark = pytest.mark.slow
pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (pip install lm-eval)")

ROWS = 4
MAX_NEW_TOKENS = 24

LM_EVAL = """
import json, sys
assert "hf_superpositional" not in sys.modules
import lm_eval
from lm_eval.tasks import TaskManager

results = lm_eval.simple_evaluate(
    model="hf",
    model_args=f"pretrained={sys.argv[1]},trust_remote_code=True,dtype=float32",
    tasks=["gsm8k_bundled"],
    task_manager=TaskManager(include_path="recipes/lm_eval"),
    apply_chat_template=True,
    batch_size=1,
    limit=int(sys.argv[2]),
    gen_kwargs=f"max_gen_toks={sys.argv[3]}",
    device="cpu",
    log_samples=True,
)
samples = sorted(results["samples"]["gsm8k_bundled"], key=lambda s: s["doc_id"])
print(json.dumps({
    "exact_match": float(results["results"]["gsm8k_bundled"]["exact_match,strict-match"]),
    "generations": [s["resps"][0][0] for s in samples],
    "correct": [bool(s["exact_match"] == 1.0) for s in samples],
    "imported_by_the_model": "hf_superpositional" in sys.modules,
}))
"""


def test_lm_eval_reports_the_projects_strict_accuracy_on_the_same_rows(tmp_path):
    sys.path.insert(0, str(REPO / "recipes"))
    try:
        import gsm8k_evaluate
        import gsm8k_finetune
    finally:
        sys.path.remove(str(REPO / "recipes"))

    model_dir = tmp_path / "model"
    args = gsm8k_finetune.parse_args(
        ["--config", str(REPO / "recipes/configs/gsm8k_tiny_offline.yaml"), "--output_dir", str(model_dir),
         "--max_train_samples", "16", "--generation_eval_samples", "0", "--save_strategy", "no"]  # fmt: skip
    )
    gsm8k_finetune.run(args, gsm8k_finetune.prepare_data(args))

    report = tmp_path / "ours.json"
    status = gsm8k_evaluate.main(
        ["--model_path", str(model_dir), "--dataset_name", "bundled", "--max_eval_samples", str(ROWS),
         "--generation_eval_samples", str(ROWS), "--max_new_tokens", str(MAX_NEW_TOKENS), "--max_length", "256",
         "--output_file", str(report)]  # fmt: skip
    )
    assert status == 0
    ours = json.loads(report.read_text())
    our_rows = [json.loads(line) for line in report.with_suffix(".generations.jsonl").read_text().splitlines()]

    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LM_EVAL), str(model_dir), str(ROWS), str(MAX_NEW_TOKENS)],
        cwd=REPO,  # the task's data path is relative to the repository
        env=repo_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert theirs["imported_by_the_model"]  # loaded through the custom code, which imports the package
    assert theirs["generations"] == [row["prediction"] for row in our_rows]
    assert theirs["correct"] == [row["correct_strict"] for row in our_rows]
    assert theirs["exact_match"] == ours["accuracy_strict"]
