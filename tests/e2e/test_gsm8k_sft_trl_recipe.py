"""``recipes/gsm8k_sft_trl.py`` end to end on the tiny offline config (TRL's SFTTrainer, Superpositional AdamW,
quantum attention): a checkpoint resumes bit-identically, the saved model reloads as the same model through
``hf_superpositional.load_trained_model``, and a LoRA run pushes (to a faked Hub, offline) an adapter with its card
that reloads as the same model."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, RepoUrl

from hf_superpositional import load_trained_model
from tests.subprocess_env import REPO

pytestmark = pytest.mark.slow
pytest.importorskip("trl")

TINY = ["--config", str(REPO / "recipes/configs/gsm8k_sft_trl_tiny.yaml"), "--max_train_samples", "32",
        "--max_eval_samples", "4", "--generation_eval_samples", "2", "--max_new_tokens", "4", "--logging_steps", "1"]  # fmt: skip


def recipe():
    sys.path.insert(0, str(REPO / "recipes"))
    try:
        import gsm8k_sft_trl
    finally:
        sys.path.remove(str(REPO / "recipes"))
    return gsm8k_sft_trl


def logits(model, ids):
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def test_a_checkpoint_resumes_identically_and_the_model_reloads_identically(tmp_path):
    from safetensors.torch import load_file

    gsm8k_sft_trl = recipe()
    full = gsm8k_sft_trl.parse_args(
        [*TINY, "--output_dir", str(tmp_path / "full"), "--save_strategy", "steps", "--save_steps", "2",
         "--save_total_limit", "3"]
    )
    results, trainer = gsm8k_sft_trl.run(full)
    assert trainer.state.global_step == 4
    resumed_args = gsm8k_sft_trl.parse_args(
        [*TINY, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint",
         str(tmp_path / "full" / "checkpoint-2")]  # fmt: skip
    )
    resumed_results, _ = gsm8k_sft_trl.run(resumed_args)
    weights = load_file(tmp_path / "full" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert weights.keys() == resumed.keys() and any("quantum_circuit" in k for k in weights)
    for name in weights:
        assert torch.equal(weights[name], resumed[name]), name
    steps = lambda history: {e["step"]: e["loss"] for e in history if "loss" in e}  # noqa: E731
    assert steps(results["log_history"]) == steps(resumed_results["log_history"])  # (steps 1-2 from the checkpoint)

    ids = torch.tensor([trainer.train_dataset[0]["input_ids"][:40]])
    reloaded = load_trained_model(tmp_path / "full")
    torch.testing.assert_close(logits(reloaded, ids), logits(trainer.model, ids), rtol=0, atol=0)
    assert (tmp_path / "full" / "modeling_quantum_attention.py").is_file()  # loadable without the import too


def test_a_lora_run_pushes_an_adapter_and_card_that_reload_identically(tmp_path, monkeypatch):
    from hf_superpositional.attention.patch import quantum_circuit_modules

    pushed = tmp_path / "hub" / "user" / "tiny-sft"

    def fake_create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        from hf_superpositional.integrations.hub import stage_upload_folder

        if pushed.exists():
            shutil.rmtree(pushed)
        stage_upload_folder(folder_path, pushed, ignore_patterns=ignore_patterns)  # huggingface_hub's selection
        return f"https://huggingface.co/{repo_id}/commit/fake"

    def local_yaml_check(self, content, **kwargs):  # stands in for the Hub's metadata validation
        assert isinstance(yaml.safe_load(content.split("---\n")[1]), dict)

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    monkeypatch.setattr(HfApi, "_validate_yaml", local_yaml_check, raising=False)

    gsm8k_sft_trl = recipe()
    args = gsm8k_sft_trl.parse_args(
        [*TINY, "--output_dir", str(tmp_path / "lora"), "--use_lora", "true", "--lora_r", "4",
         "--push_to_hub", "true", "--hub_model_id", "user/tiny-sft", "--hub_strategy", "end"]  # fmt: skip
    )
    _, trainer = gsm8k_sft_trl.run(args)
    assert (pushed / "adapter_config.json").is_file() and not (pushed / "model.safetensors").exists()
    card = ModelCard.load(pushed / "README.md")
    assert {"trl", "sft", "hf_superpositional", "quantum-attention", "gsm8k"} <= set(card.data.tags)
    assert "### LoRA" in card.text and 'load_trained_model("user/tiny-sft")' in card.text
    assert "| gsm8k_accuracy_strict |" in card.text

    reloaded = load_trained_model(pushed)  # the base (saved beside the adapter), patched, plus the adapter
    assert len(quantum_circuit_modules(reloaded)) == 2
    ids = torch.tensor([trainer.train_dataset[0]["input_ids"][:40]])
    torch.testing.assert_close(logits(reloaded, ids), logits(trainer.model, ids), rtol=0, atol=0)
