"""The model card (integrations/model_card.py): its section and metadata are added once, and record what the optimizer ran with."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub import ModelCard

from hf_superpositional.integrations.model_card import (
    CARD_BEGIN,
    CARD_END,
    ModelCardInfo,
    render_model_card_section,
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


def _trainer(tmp_path, model, **kwargs):
    from transformers import TrainingArguments

    import hf_superpositional  # noqa: F401

    args = TrainingArguments(
        str(tmp_path),
        optim="superpositional_adamw",
        optim_args="quantum_weight=0.5,n_qubits=2",
        report_to=[],
        use_cpu=True,
        **kwargs,
    )
    return SuperpositionalTrainer(model=model, args=args)


def test_a_model_built_from_a_config_is_carded_as_trained_from_scratch_with_its_config(tmp_path):
    from hf_superpositional.attention.patch import apply_quantum_attention
    from tests.tiny_models import tiny_llama

    model = apply_quantum_attention(tiny_llama(), n_qubits=2, depth=1)
    trainer = _trainer(tmp_path / "run", model)
    trainer.create_model_card(model_name="run")
    text = ModelCard.load(tmp_path / "run" / "README.md").text
    # transformers alone writes "a fine-tuned version of [](https://huggingface.co/)" for a model from a config
    assert "fine-tuned version of" not in text and "This model was trained from scratch on " in text
    assert "## Trained from scratch with hf_superpositional" in text
    assert "- **Model:** a `LlamaForCausalLM` trained from scratch" in text and "**Base model:**" not in text
    section = text[text.index("### Model configuration") : text.index("### Optimizer hyper-parameters")]
    for row in ("| hidden_size | `32` |", "| num_hidden_layers | `2` |", "| num_attention_heads | `4` |",
                "| vocab_size | `96` |", f"| parameters | `{sum(p.numel() for p in model.parameters())}` |"):  # fmt: skip
        assert row in section, row
    assert "| n_qubits | `2` |" in text  # the quantum configuration
    assert 'from_pretrained("<user>/<repo>", trust_remote_code=True)' in text  # loading without the import


def test_a_loaded_model_is_carded_as_a_fine_tune(tmp_path):
    from transformers import AutoModelForCausalLM

    from tests.tiny_models import tiny_llama

    tiny_llama().save_pretrained(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    details = training_details(_trainer(tmp_path / "run", model))
    assert details["model"]["from_scratch"] is False
    text = render_model_card_section(ModelCardInfo(base_model="org/base"), details)
    assert "## Fine-tuned with hf_superpositional" in text and "- **Base model:** `org/base`" in text
    assert "### Model configuration" not in text


@pytest.mark.filterwarnings("ignore:fp16=True has no effect")  # the Trainer's own warning about the same fact
def test_the_card_records_the_precision_that_ran_not_the_one_requested(tmp_path):
    from tests.tiny_models import tiny_llama

    if torch.cuda.is_available():  # the Trainer would run fp16 on the GPU
        pytest.skip("checks a CPU run; this machine has a CUDA GPU")
    # fp16 autocast exists on accelerators only: on this CPU the run trains in float32, and the card says so.
    fp16 = training_details(_trainer(tmp_path / "fp16", tiny_llama(), fp16=True))["training"]
    expected = {"mixed_precision": "no", "mixed_precision_requested": "fp16", "parameter_dtype": "float32"}
    assert {k: fp16[k] for k in expected} == expected
    text = render_model_card_section(ModelCardInfo(), {"optimizer": {"optim": "adamw_torch"}, "training": fp16,
                                                      "quantum_attention": None, "lora": None})  # fmt: skip
    assert "- **Precision:** float32 (no mixed precision); `fp16` was requested" in text
    # bf16 autocast does run on a CPU: recorded as it ran, with nothing "requested" beside it.
    bf16 = training_details(_trainer(tmp_path / "bf16", tiny_llama(), bf16=True))["training"]
    assert bf16["mixed_precision"] == "bf16" and "mixed_precision_requested" not in bf16
