"""SuperpositionalSFTTrainer (integrations/trl.py): TRL's SFTTrainer training a tiny quantum Llama with our optimizer.

One short training (module fixture, ~5 s) on GSM8K rows in TRL's conversational prompt/completion form, then:
the optimizer inside is SuperpositionalAdamW with the circuit group, the circuits trained, the loss covered the
completion tokens only (the prompt located with the tokenizer's own chat template), the ``quantum/...`` values
reached the logs, and the card is TRL's with this package's section. The recipe (resume, reload, LoRA, push) is
``tests/e2e/test_gsm8k_sft_trl_recipe.py``.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from hf_superpositional.integrations import unwrap_optimizer  # noqa: E402
from hf_superpositional.optim import SuperpositionalAdamW  # noqa: E402
from hf_superpositional.tasks.gsm8k.data import IGNORE_INDEX, load_gsm8k, prompt_token_ids  # noqa: E402

ROWS = load_gsm8k("bundled", "train", max_samples=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import datasets
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig

    import hf_superpositional  # noqa: F401
    from hf_superpositional.attention.config import QuantumAttentionConfig
    from hf_superpositional.integrations.trl import SuperpositionalSFTTrainer
    from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer

    tokenizer = train_offline_tokenizer([r["question"] + r["answer"] for r in ROWS], vocab_size=400)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, pad_token_id=tokenizer.pad_token_id))  # fmt: skip
    dataset = datasets.Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["question"]}],
          "completion": [{"role": "assistant", "content": r["answer"]}]} for r in ROWS]  # fmt: skip
    )
    out = tmp_path_factory.mktemp("sft")
    config = SFTConfig(
        str(out), optim="superpositional_adamw", optim_args="quantum_weight=0.5,n_qubits=4", learning_rate=1e-2,
        weight_decay=0.01, max_steps=4, per_device_train_batch_size=4, logging_steps=2, max_length=160,
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no",
        disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = SuperpositionalSFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
        quantum_attention_config=QuantumAttentionConfig(n_qubits=2, depth=2, gate_init=1.0),
    )  # fmt: skip
    initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    first_batch = next(iter(trainer.get_train_dataloader()))
    trainer.train()
    return trainer, initial, first_batch, tokenizer


def test_it_is_an_sft_trainer_and_the_optimizer_inside_is_ours(trained):
    from trl import SFTTrainer

    trainer = trained[0]
    assert isinstance(trainer, SFTTrainer)
    optimizer = unwrap_optimizer(trainer.optimizer)
    assert type(optimizer) is SuperpositionalAdamW
    assert optimizer.defaults["quantum_weight"] == 0.5 and optimizer.defaults["n_qubits"] == 4
    circuit_group = optimizer.param_groups[-1]
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert circuit_group["weight_decay"] == 0.0
    assert all("quantum_circuit." in names[id(p)] for p in circuit_group["params"]) and circuit_group["params"]
    assert {int(optimizer.state[p]["step"]) for p in circuit_group["params"]} == {4}


def test_the_circuits_train(trained):
    trainer, initial = trained[0], trained[1]
    circuit = [n for n in initial if "quantum_circuit." in n]
    assert len(circuit) == 6  # ry, rz, gate in each of 2 layers (depth 2: the last rz row has no gradient)
    for name in circuit:
        assert not torch.equal(dict(trainer.model.named_parameters())[name].detach(), initial[name]), name


def test_the_loss_covers_the_completion_only(trained):
    _, _, batch, tokenizer = trained
    # the prompts as the tokenizer's own chat template renders them (user turn + generation prompt)
    prompts = [prompt_token_ids(row["question"], tokenizer) for row in ROWS]
    for labels, ids in zip(batch["labels"], batch["input_ids"], strict=True):
        (prompt,) = [p for p in prompts if ids[: len(p)].tolist() == p]  # the (shuffled) row this is
        kept = (labels != IGNORE_INDEX).nonzero().flatten()
        assert kept[0].item() == len(prompt)  # the first supervised token is the answer's first
        assert torch.equal(labels[kept], ids[kept])
        assert (labels[: len(prompt)] == IGNORE_INDEX).all()


def test_the_quantum_diagnostics_are_logged(trained):
    logs = [entry for entry in trained[0].state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [2, 4]
    for entry in logs:
        assert entry["quantum/perturbation_norm"] > 0 and entry["quantum/update_norm"] > 0
        assert "quantum/gate_mean" in entry and "mean_token_accuracy" in entry  # ours beside TRL's


def test_the_card_is_trls_with_our_section(trained):
    from huggingface_hub import ModelCard

    trainer = trained[0]
    trainer.create_model_card()
    card = ModelCard.load(f"{trainer.args.output_dir}/README.md")
    assert {"trl", "sft", "hf_superpositional", "superpositional-gradient-descent", "quantum-attention"} <= set(
        card.data.tags
    )
    assert "It has been trained using [TRL]" in card.text  # TRL's template
    assert "## Trained from scratch with hf_superpositional" in card.text and "fine-tuned version" not in card.text
    assert "| quantum_weight | `0.5` |" in card.text
