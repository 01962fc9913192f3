"""What the flat layout saved loads, and resumes, the same after the redesign into tiers (issue 12).

The fixture in ``tests/fixtures/pre_redesign/`` was written by the package before the move (see
``tests/fixtures/pre_redesign.py``): a quantum-attention model folder, a Trainer checkpoint with optimizer
state, and a LoRA adapter with its quantum configuration. Here today's code loads each of them.
"""

from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import hf_superpositional
from hf_superpositional.integrations.hub import load_trained_model
from hf_superpositional.quantum.kernels import flash_attention
from tests.fixtures import pre_redesign as fixture


def test_saved_quantum_model_reloads_with_the_same_logits():
    folder = fixture.FIXTURE / "model"
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert hf_superpositional.get_quantum_attention_config(model).per_head
    expected = load_file(folder / "expected.safetensors")["logits"]
    torch.testing.assert_close(fixture.logits(model), expected, rtol=0, atol=1e-6)


def test_saved_lora_adapter_reloads_with_its_circuits():
    folder = fixture.FIXTURE / "adapter"
    model = load_trained_model(folder)
    expected = load_file(folder / "expected.safetensors")["logits"]
    torch.testing.assert_close(fixture.logits(model), expected, rtol=0, atol=1e-6)


def test_trainer_checkpoint_resumes_to_the_uninterrupted_run(tmp_path):
    shutil.copytree(fixture.FIXTURE / "trainer", tmp_path / "run")
    trainer = hf_superpositional.SuperpositionalTrainer(
        model=fixture.quantum_model(seed=99),  # replaced by the checkpoint's weights on resume
        args=fixture.training_arguments(tmp_path / "run"),
        train_dataset=fixture.TokenRows(),
    )
    # The fixture's uninterrupted run was recorded by the dense attention path (before the fused CPU kernel
    # of issue 16, whose float32 results differ in the last bits): resume on that path to compare bit for bit.
    with flash_attention(False):
        trainer.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    final = load_file(fixture.FIXTURE / "trainer" / "final.safetensors")
    expected_losses = final.pop("losses").tolist()
    assert fixture.losses(trainer) == expected_losses  # steps 1-2 from the checkpoint, 3-4 resumed
    for name, param in trainer.model.named_parameters():
        torch.testing.assert_close(param.detach(), final[name], rtol=0, atol=0, msg=name)
