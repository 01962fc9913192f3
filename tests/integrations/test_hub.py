"""The exact upload and loading back (integrations/hub.py): files_to_upload is huggingface_hub's own selection; a push to a faked Hub reloads with quantum attention. No network: HfApi.create_repo / upload_folder are fakes that materialise the upload with huggingface_hub's own file selection."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, RepoUrl

from hf_superpositional.integrations.hub import (
    TRAINER_PUSH_IGNORE_PATTERNS,
    files_to_upload,
    load_trained_model,
    stage_upload_folder,
)
from tests.subprocess_env import REPO

sys.path.insert(0, str(REPO / "recipes"))


needs_hf_private_selection = pytest.mark.skipif(
    not hasattr(HfApi, "_prepare_upload_folder_additions"),
    reason="this huggingface_hub has no _prepare_upload_folder_additions to compare against",
)


def hf_selection(api: HfApi, folder, ignore_patterns) -> list:
    """huggingface_hub's own choice of files for upload_folder (it appends its defaults the same way)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS

    return api._prepare_upload_folder_additions(
        folder, "", allow_patterns=None, ignore_patterns=list(ignore_patterns) + list(DEFAULT_IGNORE_PATTERNS)
    )


def local_yaml_check(self, content, *, repo_type=None, token=None):
    # Stands in for the Hub's metadata validation: the front matter must parse as a YAML mapping.
    assert content.startswith("---\n")
    assert isinstance(yaml.safe_load(content.split("---\n")[1]), dict)


@needs_hf_private_selection
def test_files_to_upload_is_huggingface_hubs_selection(tmp_path, monkeypatch):
    monkeypatch.setattr(HfApi, "_validate_yaml", local_yaml_check)
    for relpath in (
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "base_model/config.json",
        "checkpoint-12/optimizer.pt",
        "_internal/state.json",
        ".git/HEAD",
        ".cache/huggingface/x.lock",
        "runs/events.out",
    ):
        path = tmp_path / "out" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("---\nlicense: mit\n---\n" if relpath == "README.md" else "x")
    ours = files_to_upload(tmp_path / "out")
    reference = sorted(
        op.path_in_repo for op in hf_selection(HfApi(), tmp_path / "out", TRAINER_PUSH_IGNORE_PATTERNS)
    )
    assert ours == reference
    assert ours == [
        "README.md",
        "base_model/config.json",
        "config.json",
        "model.safetensors",
        "runs/events.out",
        "tokenizer.json",
    ]
    staged = stage_upload_folder(tmp_path / "out", tmp_path / "staged")
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == ours
    with pytest.raises(FileExistsError):
        stage_upload_folder(tmp_path / "out", tmp_path / "staged")
    with pytest.raises(FileNotFoundError):
        files_to_upload(tmp_path / "missing")


@pytest.mark.slow
@needs_hf_private_selection
def test_push_to_hub_uploads_a_folder_that_reloads_with_quantum_attention(tmp_path, monkeypatch):
    import gsm8k_finetune

    from hf_superpositional.attention.patch import get_quantum_attention_config, quantum_circuit_modules

    created, uploads = [], []
    capture = tmp_path / "hub"

    def fake_create_repo(self, repo_id, *, token=None, private=None, exist_ok=False, **kwargs):
        created.append({"repo_id": repo_id, "exist_ok": exist_ok})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(
        self, *, repo_id, folder_path, ignore_patterns=None, run_as_future=False, **kwargs
    ):
        operations = hf_selection(self, folder_path, ignore_patterns or [])
        destination = capture / repo_id
        if destination.exists():
            shutil.rmtree(destination)  # a later commit replaces the earlier upload's files
        for op in operations:
            target = destination / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(op.path_or_fileobj, target)
        uploads.append(
            {
                "repo_id": repo_id,
                "folder_path": folder_path,
                "ignore_patterns": ignore_patterns,
                "files": sorted(op.path_in_repo for op in operations),
            }
        )
        return f"https://huggingface.co/{repo_id}/commit/fake"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    monkeypatch.setattr(HfApi, "_validate_yaml", local_yaml_check)

    output_dir = tmp_path / "run"
    argv = [
        "--config",
        str(REPO / "recipes/configs/gsm8k_tiny_offline.yaml"),
        "--output_dir",
        str(output_dir),
        "--max_train_samples",
        "16",
        "--max_eval_samples",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--max_length",
        "128",
        "--max_steps",
        "3",
        "--generation_eval_samples",
        "2",
        "--max_new_tokens",
        "4",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--hub_strategy",
        "end",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "user/gsm8k-tiny",
    ]
    args = gsm8k_finetune.parse_args(argv)
    results, trainer = gsm8k_finetune.run(args, gsm8k_finetune.prepare_data(args))

    assert created == [{"repo_id": "user/gsm8k-tiny", "exist_ok": True}]
    assert len(uploads) == 1  # hub_strategy=end: one push, after evaluation
    upload = uploads[0]
    assert upload["repo_id"] == "user/gsm8k-tiny" and Path(upload["folder_path"]) == output_dir
    assert list(upload["ignore_patterns"][:2]) == list(TRAINER_PUSH_IGNORE_PATTERNS)
    pushed = capture / "user/gsm8k-tiny"
    assert upload["files"] == files_to_upload(output_dir)  # our dry run lists exactly what was sent
    assert list(output_dir.glob("checkpoint-*")) and not any(
        f.startswith("checkpoint-") for f in upload["files"]
    )
    for name in ("README.md", "config.json", "model.safetensors", "tokenizer.json", "eval_results.json"):
        assert name in upload["files"], name

    card = ModelCard.load(pushed / "README.md")
    assert {"hf_superpositional", "superpositional-gradient-descent", "quantum-attention", "gsm8k"} <= set(
        card.data.tags
    )
    assert card.data.datasets == ["openai/gsm8k"] and card.data.get("base_model") is None  # random-init base
    text = card.text
    eval_results = json.loads((pushed / "eval_results.json").read_text())
    assert f"| eval_loss (mean held-out loss) | `{eval_results['eval_loss']:.6g}` |" in text
    assert f"| gsm8k_accuracy_strict | `{eval_results['gsm8k_accuracy_strict']:.6g}` |" in text
    assert (
        "| quantum_weight | `0.1` |" in text
        and "| lr | `0.003` |" in text
        and "| class | `SuperpositionalAdamW` |" in text
    )
    assert "| n_qubits | `4` |" in text and "| depth | `2` |" in text and "| gate_init | `1` |" in text
    # a model built from a config: carded as trained from scratch, never "a fine-tuned version of []"
    assert "- **Model:** a `LlamaForCausalLM` trained from scratch" in text and "fine-tuned version" not in text
    assert "| hidden_size | `64` |" in text and "| num_hidden_layers | `2` |" in text
    assert 'from_pretrained("user/gsm8k-tiny")' in text
    assert 'from_pretrained("user/gsm8k-tiny", trust_remote_code=True)' in text
    assert "modeling_quantum_attention.py" in upload["files"]  # the custom code travels with the weights

    # What a user downloads loads back with quantum attention and computes the trained model's logits.
    reloaded = load_trained_model(pushed)
    assert get_quantum_attention_config(reloaded) == args.quantum
    assert len(quantum_circuit_modules(reloaded)) == 2
    ids = torch.tensor([trainer.train_dataset[0]["input_ids"][:40]])
    with torch.no_grad():
        expected = trainer.model.eval()(input_ids=ids).logits
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, rtol=0, atol=0)


def test_a_quantum_model_loaded_after_the_registration_was_undone_names_the_import(tmp_path):
    from hf_superpositional import (
        apply_quantum_attention,
        register_quantum_attention,
        unregister_quantum_attention,
    )
    from tests.tiny_models import tiny_llama

    apply_quantum_attention(tiny_llama(), gate_init=0.5).save_pretrained(tmp_path)
    unregister_quantum_attention()
    try:
        with pytest.raises(ValueError, match=r"not supported.*the quantum attention is not registered in this process: "
                           r"`import hf_superpositional` registers it"):
            load_trained_model(tmp_path)
    finally:
        register_quantum_attention()
    assert load_trained_model(tmp_path).config._attn_implementation == "quantum"
