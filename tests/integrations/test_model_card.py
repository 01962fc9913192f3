"""The model card (integrations/model_card.py): its section and metadata are added once, and record what the optimizer ran with."""

from __future__ import annotations

from huggingface_hub import ModelCard

from hf_superpositional.integrations.model_card import (
    CARD_BEGIN,
    CARD_END,
    ModelCardInfo,
    training_details,
    update_model_card,
)
from hf_superpositional.integrations.trainer import SuperpositionalTrainer

DETAILS = {
    "optimizer": {
        "optim": "superpositional_adamw",
        "class": "SuperpositionalAdamW",
        "lr": 2e-5,
        "quantum_weight": 0.5,
        "n_qubits": 4,
    },
    "training": {"lr_scheduler_type": "linear", "warmup_steps": 500},
    "quantum_attention": {"n_qubits": 4, "depth": 2},
    "lora": None,
}


TRAINER_CARD = """---
library_name: transformers
base_model: outputs/local-folder
tags:
- generated_from_trainer
model-index:
- name: run
  results: []
---

# run

This model was trained from scratch.

## Training procedure
"""


def test_model_card_section_and_metadata_are_added_once(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(TRAINER_CARD)
    info = ModelCardInfo(
        base_model="meta-llama/Llama-3.2-1B-Instruct",
        dataset="openai/gsm8k",
        dataset_config="main",
        train_split="train",
        max_length=2048,
        results={"eval_loss": 0.25},
        tags=["gsm8k"],
    )
    update_model_card(path, info, DETAILS, repo_id="user/run", extra_tags=["quantum-attention"])
    info.results["eval_loss"] = 0.125
    update_model_card(path, info, DETAILS, repo_id="user/run", extra_tags=["quantum-attention"])
    card = ModelCard.load(path)
    assert card.data.base_model == "meta-llama/Llama-3.2-1B-Instruct"
    assert card.data.datasets == ["openai/gsm8k"] and card.data.pipeline_tag == "text-generation"
    assert card.data.tags == ["generated_from_trainer", "hf_superpositional", "quantum-attention", "gsm8k"]
    text = card.text
    assert text.count(CARD_BEGIN) == 1 and text.count(CARD_END) == 1
    assert text.index("# run") < text.index(CARD_BEGIN) < text.index("This model was trained from scratch.")
    assert "| eval_loss | `0.125` |" in text and "`0.25`" not in text  # replaced, not appended
    assert "| quantum_weight | `0.5` |" in text and "| depth | `2` |" in text
    assert "- **Dataset:** `openai/gsm8k` (config `main`, split `train`)" in text
    assert 'AutoModelForCausalLM.from_pretrained("user/run")' in text and "import hf_superpositional" in text

    # A base model that is no Hub repository (a local folder, a model built from a config) is not metadata.
    update_model_card(path, ModelCardInfo(base_model="llama built from a config (random init)"), DETAILS)
    assert ModelCard.load(path).data.get("base_model") is None


def test_training_details_record_what_the_optimizer_runs_with(tmp_path):
    from transformers import TrainingArguments

    import hf_superpositional  # noqa: F401
    from hf_superpositional.attention.config import QuantumAttentionConfig
    from tests.tiny_models import tiny_llama

    args = TrainingArguments(
        str(tmp_path),
        optim="superpositional_adamw",
        optim_args="quantum_weight=0.5,n_qubits=2",
        learning_rate=2e-5,
        weight_decay=0.01,
        warmup_steps=5,
        max_grad_norm=1.0,
        report_to=[],
        use_cpu=True,
    )
    trainer = SuperpositionalTrainer(
        model=tiny_llama(), args=args, quantum_attention_config=QuantumAttentionConfig(n_qubits=2, depth=1)
    )
    before = training_details(trainer)  # no optimizer yet: read from the arguments
    assert before["optimizer"]["quantum_weight"] == 0.5 and before["optimizer"]["lr"] == 2e-5
    trainer.create_optimizer()
    details = training_details(trainer)
    optimizer = details["optimizer"]
    assert optimizer["class"] == "SuperpositionalAdamW"
    assert (
        optimizer["lr"],
        optimizer["weight_decay"],
        optimizer["quantum_weight"],
        optimizer["n_qubits"],
    ) == (
        2e-5,
        0.01,
        0.5,
        2,
    )
    assert optimizer["mode"] == "update" and optimizer["betas"] == [0.9, 0.999]
    assert details["training"]["warmup_steps"] == 5 and details["training"]["max_grad_norm"] == 1.0
    assert details["quantum_attention"]["n_qubits"] == 2 and details["lora"] is None
