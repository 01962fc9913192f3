"""Training with the stock Trainer and with SuperpositionalTrainer (SPEC section 5): loss, resume, groups, logs."""

from __future__ import annotations

import pytest
import torch
import yaml
from transformers import LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

from hf_superpositional.integrations.trainer import MODEL_CARD_TAGS, SuperpositionalTrainer
from hf_superpositional.integrations.transformers import register_superpositional_optimizers
from hf_superpositional.naming import is_quantum_parameter_name
from hf_superpositional.optim import SuperpositionalAdamW
from tests.tiny_models import TINY_COMMON, tiny_llama

register_superpositional_optimizers()

VOCAB = TINY_COMMON["vocab_size"]


class ProgressionDataset(torch.utils.data.Dataset):
    """Sequences ``t_{i+1} = (t_i + stride) mod VOCAB`` with a random start and a stride in {1, 2, 3}.

    Learnable from the first two tokens, so a tiny model's LM loss falls quickly from ln(vocab).
    """

    def __init__(self, n: int = 64, length: int = 16, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, VOCAB, (n, 1), generator=generator)
        strides = torch.randint(1, 4, (n, 1), generator=generator)
        self.ids = (starts + strides * torch.arange(length)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def args_for(tmp_path, **kwargs) -> TrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path),
        report_to="none",
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        optim="superpositional_adamw",
        optim_args="quantum_weight=0.5",
    )
    return TrainingArguments(**{**defaults, **kwargs})


def unwrap(optimizer):
    return getattr(optimizer, "optimizer", optimizer)


def circuit_config(**kwargs):
    """A real QuantumAttentionConfig; skips the test while the attention stack is unavailable."""
    pytest.importorskip("hf_superpositional.attention.patch")
    from hf_superpositional.attention.config import QuantumAttentionConfig
    from hf_superpositional.attention.interface import register_quantum_attention

    register_quantum_attention()  # normally done by `import hf_superpositional`; idempotent

    # gate_init != 0 so the circuit term is active and its parameters receive gradients.
    return QuantumAttentionConfig(**{"n_qubits": 2, "depth": 1, "gate_init": 0.5, **kwargs})


class DummyCircuit(torch.nn.Module):
    """Stands in for the attention patch's circuit module: same attribute name and parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.ry = torch.nn.Parameter(torch.full((1, 4), 0.3))
        self.rz = torch.nn.Parameter(torch.full((1, 4), -0.2))
        self.gate = torch.nn.Parameter(torch.tensor([0.5]))


def with_dummy_circuits(model: LlamaForCausalLM) -> LlamaForCausalLM:
    """Attach a ``quantum_circuit`` to every attention module, wired into its output so it gets gradients."""

    def add_circuit_term(module, inputs, output):
        c = module.quantum_circuit
        return (output[0] + c.gate * (c.ry.sin().mean() + c.rz.cos().mean()), *output[1:])

    for layer in model.model.layers:
        layer.self_attn.add_module("quantum_circuit", DummyCircuit())
        layer.self_attn.register_forward_hook(add_circuit_term)
    return model


# ---------------------------------------------------------------- the stock Trainer


@pytest.mark.slow
def test_stock_trainer_trains_tiny_llama_and_loss_falls(tmp_path):
    trainer = Trainer(
        model=tiny_llama(), args=args_for(tmp_path, max_steps=30), train_dataset=ProgressionDataset()
    )
    trainer.train()
    optimizer = unwrap(trainer.optimizer)
    assert type(optimizer) is SuperpositionalAdamW
    assert all(group["quantum_weight"] == 0.5 for group in optimizer.param_groups)
    assert max(int(state["step"]) for state in optimizer.state.values()) == 30
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 30
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert first > 3.5  # ~ln(vocab) at initialisation
    assert last < 0.6 * first, (first, last)


@pytest.mark.slow
@pytest.mark.parametrize("trainer_cls", [Trainer, SuperpositionalTrainer])
def test_resume_from_mid_run_checkpoint_matches_uninterrupted_run(tmp_path, trainer_cls):
    # Attention dropout makes the result depend on the restored RNG state, the quantum term on the restored
    # optimizer state (exp_avg/exp_avg_sq/step), warm-up + linear decay on the restored scheduler. With
    # SuperpositionalTrainer the circuit group must come back in the same place for the state to line up.
    def run(output_dir, resume_from_checkpoint=None):
        args = args_for(
            output_dir,
            max_steps=8,
            per_device_train_batch_size=4,
            save_strategy="steps",
            save_steps=4,
            warmup_steps=2,
            weight_decay=0.1,
            optim_args="quantum_weight=0.5,n_qubits=4",
        )
        model = tiny_llama(seed=1, attention_dropout=0.2)
        if trainer_cls is SuperpositionalTrainer:
            model = with_dummy_circuits(model)
        trainer = trainer_cls(model=model, args=args, train_dataset=ProgressionDataset(n=48))
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        return trainer

    uninterrupted = run(tmp_path / "a")
    checkpoint = tmp_path / "a" / "checkpoint-4"
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "scheduler.pt").is_file()
    saved_state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(next(iter(saved_state["state"].values())))
    resumed = run(tmp_path / "b", resume_from_checkpoint=str(checkpoint))

    assert resumed.state.global_step == uninterrupted.state.global_step == 8
    expected = dict(uninterrupted.model.named_parameters())
    worst = max((p - expected[name]).abs().max().item() for name, p in resumed.model.named_parameters())
    assert worst <= 1e-6, worst
    losses_a = [e["loss"] for e in uninterrupted.state.log_history if "loss" in e and e["step"] > 4]
    # The resumed history starts with the checkpoint's own entries (steps 1-4).
    losses_b = [e["loss"] for e in resumed.state.log_history if "loss" in e and e["step"] > 4]
    assert len(losses_b) == 4
    assert losses_b == pytest.approx(losses_a, abs=1e-6)


# ---------------------------------------------------------------- SuperpositionalTrainer


def _names_by_id(model):
    return {id(p): n for n, p in model.named_parameters()}


def test_circuit_parameters_get_their_own_no_decay_group(tmp_path):
    trainer = SuperpositionalTrainer(
        model=with_dummy_circuits(tiny_llama()), args=args_for(tmp_path, weight_decay=0.1)
    )
    model = trainer.model
    circuit = {n for n, _ in model.named_parameters() if is_quantum_parameter_name(n)}
    assert len(circuit) == 6  # ry, rz, gate on each of 2 layers
    assert not circuit & set(trainer.get_decay_parameter_names(model))

    optimizer = trainer.create_optimizer()
    assert type(optimizer) is SuperpositionalAdamW
    names = _names_by_id(model)
    groups = [{names[id(p)] for p in group["params"]} for group in optimizer.param_groups]
    assert len(groups) == 3
    decay, no_decay, quantum = groups
    assert quantum == circuit
    assert optimizer.param_groups[2]["weight_decay"] == 0.0
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert decay == set(Trainer.get_decay_parameter_names(trainer, model)) - circuit
    assert no_decay and not no_decay & circuit
    flat = [n for group in groups for n in group]
    assert sorted(flat) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    for group in optimizer.param_groups:
        assert (group["lr"], group["quantum_weight"]) == (1e-2, 0.5)


def test_quantum_parameter_hook_is_overridable(tmp_path):
    class LmHeadIsQuantum(SuperpositionalTrainer):
        def is_quantum_parameter(self, name, param):
            return super().is_quantum_parameter(name, param) or name.startswith("lm_head.")

    trainer = LmHeadIsQuantum(model=tiny_llama(), args=args_for(tmp_path, weight_decay=0.1))
    optimizer = trainer.create_optimizer()
    names = _names_by_id(trainer.model)
    assert [names[id(p)] for p in optimizer.param_groups[-1]["params"]] == ["lm_head.weight"]
    assert optimizer.param_groups[-1]["weight_decay"] == 0.0


def test_without_circuits_groups_equal_the_stock_trainer(tmp_path):
    model = tiny_llama()
    ours = SuperpositionalTrainer(model=model, args=args_for(tmp_path, weight_decay=0.1)).create_optimizer()
    stock = Trainer(model=model, args=args_for(tmp_path, weight_decay=0.1)).create_optimizer()
    assert [[id(p) for p in g["params"]] for g in ours.param_groups] == [
        [id(p) for p in g["params"]] for g in stock.param_groups
    ]


class _TrackRecorder(TrainerCallback):
    def __init__(self):
        self.tracked_steps = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # global_step is incremented after this event, so the step that just ran is global_step + 1.
        if unwrap(optimizer).track_diagnostics:
            self.tracked_steps.append(state.global_step + 1)


@pytest.mark.slow
def test_quantum_values_are_logged_and_diagnostics_tracked_only_on_logged_steps(tmp_path):
    recorder = _TrackRecorder()
    trainer = SuperpositionalTrainer(
        model=with_dummy_circuits(tiny_llama()),
        args=args_for(tmp_path, max_steps=6, logging_steps=2, logging_first_step=True),
        train_dataset=ProgressionDataset(n=48),
        callbacks=[recorder],
    )
    trainer.train()

    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in train_logs] == [1, 2, 4, 6]
    assert recorder.tracked_steps == [1, 2, 4, 6]
    for entry in train_logs:
        for key in (
            "quantum/perturbation_norm",
            "quantum/update_norm",
            "quantum/perturbation_to_update_ratio",
            "quantum/gate_mean",
            "quantum/gate_abs_max",
        ):
            assert key in entry, (key, entry)
        assert entry["quantum/perturbation_norm"] > 0
        assert entry["quantum/perturbation_to_update_ratio"] == pytest.approx(
            entry["quantum/perturbation_norm"] / entry["quantum/update_norm"]
        )
    gates = torch.cat(
        [
            p.detach().reshape(-1)
            for n, p in trainer.model.named_parameters()
            if n.endswith("quantum_circuit.gate")
        ]
    )
    assert train_logs[-1]["quantum/gate_mean"] == pytest.approx(gates.mean().item(), abs=1e-7)
    assert train_logs[-1]["quantum/gate_abs_max"] == pytest.approx(gates.abs().max().item(), abs=1e-7)
    assert train_logs[-1]["quantum/gate_mean"] != pytest.approx(0.5, abs=1e-6)  # the gates did train
    summary = trainer.state.log_history[-1]
    assert "train_loss" in summary and not any(k.startswith("quantum/") for k in summary)


def test_user_requested_diagnostics_stay_on_every_step(tmp_path):
    recorder = _TrackRecorder()
    trainer = SuperpositionalTrainer(
        model=tiny_llama(),
        args=args_for(
            tmp_path, max_steps=3, logging_steps=3, optim_args="quantum_weight=0.5,track_diagnostics=true"
        ),
        train_dataset=ProgressionDataset(n=24),
        callbacks=[recorder],
    )
    trainer.train()
    assert recorder.tracked_steps == [1, 2, 3]
    assert "quantum/perturbation_norm" in trainer.state.log_history[0]


def test_stock_optimizer_with_circuits_and_model_card_tags(tmp_path):
    trainer = SuperpositionalTrainer(
        model=with_dummy_circuits(tiny_llama()),
        args=args_for(
            tmp_path, optim="adamw_torch", optim_args=None, weight_decay=0.1, max_steps=2, logging_steps=1
        ),
        train_dataset=ProgressionDataset(n=16),
    )
    trainer.train()
    optimizer = unwrap(trainer.optimizer)
    assert type(optimizer) is torch.optim.AdamW
    names = _names_by_id(trainer.model)
    assert {names[id(p)] for p in optimizer.param_groups[-1]["params"]} == set(
        trainer.quantum_parameter_names()
    )
    assert optimizer.param_groups[-1]["weight_decay"] == 0.0
    logged = trainer.state.log_history[0]
    assert "quantum/gate_mean" in logged and "quantum/perturbation_norm" not in logged

    trainer.create_model_card(tags=["my-tag"])
    tags = _card_tags(tmp_path)
    assert {"my-tag", "generated_from_trainer", "hf_superpositional", "quantum-attention"} <= set(tags)
    assert MODEL_CARD_TAGS["optimizer"] not in tags


def _card_tags(output_dir) -> list[str]:
    text = (output_dir / "README.md").read_text()
    front_matter = text.split("---")[1]
    return yaml.safe_load(front_matter)["tags"]


def test_model_card_tags_with_our_optimizer(tmp_path):
    trainer = SuperpositionalTrainer(model=with_dummy_circuits(tiny_llama()), args=args_for(tmp_path))
    trainer.create_model_card()
    tags = _card_tags(tmp_path)
    assert {
        "hf_superpositional",
        "superpositional-gradient-descent",
        "quantum-attention",
        "generated_from_trainer",
    } <= set(tags)
    # Also on the model, so a direct model.push_to_hub carries them.
    assert {"hf_superpositional", "quantum-attention"} <= set(trainer.model.model_tags)

    plain = SuperpositionalTrainer(model=tiny_llama(), args=args_for(tmp_path / "plain", optim="adamw_torch"))
    plain.create_model_card()
    tags = _card_tags(tmp_path / "plain")
    assert "hf_superpositional" in tags
    assert "superpositional-gradient-descent" not in tags and "quantum-attention" not in tags


@pytest.mark.slow
def test_quantum_attention_config_patches_the_model_and_its_circuits_train(tmp_path):
    trainer = SuperpositionalTrainer(
        model=tiny_llama(),
        args=args_for(tmp_path, max_steps=2, weight_decay=0.1),
        train_dataset=ProgressionDataset(n=16),
        # depth 2: the LAST layer's RZ angles commute with the Z readout (CNOTs only permute basis states), so
        # with depth 1 `rz` would get an exactly-zero gradient and rightly never move.
        quantum_attention_config=circuit_config(depth=2),
    )
    assert trainer.model.config._attn_implementation == "quantum"
    names = trainer.quantum_parameter_names()
    assert len(names) == 6  # ry, rz, gate on each of 2 layers
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n in names}
    trainer.train()
    optimizer = unwrap(trainer.optimizer)
    by_id = _names_by_id(trainer.model)
    assert {by_id[id(p)] for p in optimizer.param_groups[-1]["params"]} == set(names)
    assert optimizer.param_groups[-1]["weight_decay"] == 0.0
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in names)
    trainer.create_model_card()
    assert "quantum-attention" in _card_tags(tmp_path)


def test_model_init_models_are_patched(tmp_path):
    trainer = SuperpositionalTrainer(
        model_init=lambda: tiny_llama(), args=args_for(tmp_path), quantum_attention_config=circuit_config()
    )
    assert len(trainer.quantum_parameter_names()) == 6
    assert trainer.model.config._attn_implementation == "quantum"
    assert len(trainer.quantum_parameter_names(trainer.call_model_init())) == 6


def test_quantum_values_reach_tensorboard_at_the_logged_steps(tmp_path):
    """``report_to="tensorboard"``: the event file holds every ``quantum/...`` value of every training log, at its
    step and with its value (read back with TensorBoard's own reader, not through the Trainer)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = SuperpositionalTrainer(
        model=with_dummy_circuits(tiny_llama()),
        args=args_for(tmp_path, max_steps=4, logging_steps=2, report_to="tensorboard"),
        train_dataset=ProgressionDataset(n=32),
    )
    trainer.train()  # the TensorBoard callback closes (flushes) its writer at the end of training

    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logged] == [2, 4]
    keys = sorted(k for k in logged[0] if k.startswith("quantum/"))
    assert {"quantum/perturbation_norm", "quantum/update_norm", "quantum/gate_mean"} <= set(keys)
    event_files = list((tmp_path / "runs").rglob("events.out.tfevents.*"))  # the callback's default folder
    assert len(event_files) == 1, event_files
    accumulator = EventAccumulator(str(event_files[0].parent), size_guidance={"scalars": 0}).Reload()
    for key in keys:
        tag = f"train/{key}"  # the Trainer's TensorBoard callback prefixes training logs with "train/"
        assert tag in accumulator.Tags()["scalars"], (tag, accumulator.Tags()["scalars"])
        scalars = accumulator.Scalars(tag)
        assert [event.step for event in scalars] == [2, 4], tag
        for event, entry in zip(scalars, logged, strict=True):
            assert event.value == pytest.approx(entry[key], rel=1e-6), (tag, event.step)


# ---- non-finite losses and gradients (issue 13, probe finding 3) ----


def _poison(model, at_call: int):
    # The loss of the `at_call`-th forward (0-based) becomes NaN: a NaN embedding output poisons every layer.
    calls = {"n": 0}

    def hook(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] - 1 == at_call else output

    return model.model.embed_tokens.register_forward_hook(hook)


def _snapshot(model, optimizer):
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    state = {id(p): {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for p, s in optimizer.state.items()}
    return params, state


class _Snapshots(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.after = trainer, {}

    def on_step_end(self, args, state, control, **kwargs):
        self.after[state.global_step] = _snapshot(self.trainer.model, unwrap(self.trainer.optimizer))


def test_non_finite_loss_stops_training_naming_the_step_before_the_optimizer_step(tmp_path):
    from hf_superpositional.integrations.trainer import NonFiniteTrainingError

    model = tiny_llama()
    trainer = SuperpositionalTrainer(model=model, args=args_for(tmp_path, max_steps=4), train_dataset=ProgressionDataset())
    snapshots = _Snapshots(trainer)
    trainer.add_callback(snapshots)
    _poison(model, at_call=2)  # the third training step
    with pytest.raises(NonFiniteTrainingError, match=r"training step 3: non-finite loss and gradient norm \(nan\).*on_nonfinite='skip'"):
        trainer.train()
    params, state = _snapshot(model, unwrap(trainer.optimizer))
    assert trainer.state.global_step == 2
    for name, value in params.items():  # nothing of step 3 reached the weights or the moments
        assert torch.isfinite(value).all() and torch.equal(value, snapshots.after[2][0][name]), name
    for key, entry in state.items():
        assert all(torch.equal(v, snapshots.after[2][1][key][k]) for k, v in entry.items())


def test_skip_policy_leaves_weights_and_moments_untouched_warns_and_counts(tmp_path, caplog):
    model = tiny_llama()
    trainer = SuperpositionalTrainer(
        model=model, args=args_for(tmp_path, max_steps=4), train_dataset=ProgressionDataset(), on_nonfinite="skip"
    )
    snapshots = _Snapshots(trainer)
    trainer.add_callback(snapshots)
    _poison(model, at_call=2)
    with caplog.at_level("WARNING"):
        trainer.train()
    assert "training step 3: non-finite loss" in caplog.text and "step skipped (1 so far)" in caplog.text
    for name, value in snapshots.after[3][0].items():  # step 3 changed nothing ...
        assert torch.equal(value, snapshots.after[2][0][name]), name
    assert any(not torch.equal(v, snapshots.after[3][0][n]) for n, v in snapshots.after[4][0].items())  # ... step 4 trains
    assert all(torch.isfinite(v).all() for v in snapshots.after[4][0].values())
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry.get("nonfinite_steps_skipped", 0) for entry in logged] == [0, 0, 1, 1]


def test_on_nonfinite_takes_raise_or_skip(tmp_path):
    with pytest.raises(ValueError, match=r"on_nonfinite must be one of \['raise', 'skip'\], got 'ignore'"):
        SuperpositionalTrainer(model=tiny_llama(), args=args_for(tmp_path), on_nonfinite="ignore")


def test_fp16_on_cpu_warns_that_it_trains_in_float32(tmp_path):
    with pytest.warns(UserWarning, match="fp16=True has no effect on this CPU run: .* trains in float32"):
        trainer = SuperpositionalTrainer(model=tiny_llama(), args=args_for(tmp_path, fp16=True))
    assert trainer.effective_mixed_precision == "no"
    assert SuperpositionalTrainer(model=tiny_llama(), args=args_for(tmp_path, bf16=True)).effective_mixed_precision == "bf16"


def test_a_checkpoint_that_fails_to_write_is_removed_with_a_clear_error(tmp_path, monkeypatch):
    from hf_superpositional.integrations.checkpoint_files import CheckpointError

    trainer = SuperpositionalTrainer(
        model=tiny_llama(), args=args_for(tmp_path, max_steps=2, save_strategy="steps", save_steps=1),
        train_dataset=ProgressionDataset(),
    )
    original = torch.save

    def full_disk(obj, f, *args, **kwargs):  # what torch raises when the disk fills mid-write
        if "checkpoint-2" in str(f) and str(f).endswith("optimizer.pt"):  # checkpoint-1 is written whole
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4096 vs 3971")
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"checkpoint-2: could not be written \(the disk is full: .*unexpected pos.*removed"):
        trainer.train()
    assert (tmp_path / "checkpoint-1" / "trainer_state.json").is_file()
    assert not (tmp_path / "checkpoint-2").exists()


def test_checksums_are_taken_after_every_process_has_written_its_files(tmp_path, monkeypatch):
    """Under DDP or DeepSpeed each rank writes files of its own into the checkpoint (``rng_state_<rank>.pth``)
    with no barrier after them; a checksum taken before another rank has finished records a half-written file,
    and the next resume refuses the checkpoint as corrupt. Here a second rank is simulated: its file is complete
    only once the processes meet at ``wait_for_everyone``."""
    import hashlib

    from hf_superpositional.integrations.checkpoint_files import CHECKSUMS_FILE, verify_checksums

    trainer = SuperpositionalTrainer(
        model=tiny_llama(), args=args_for(tmp_path, max_steps=1, save_strategy="steps", save_steps=1),
        train_dataset=ProgressionDataset(),
    )  # fmt: skip
    other_rank = b"rank 1's random number generator states"

    def other_rank_finishes_writing():
        for folder in tmp_path.glob("checkpoint-*"):
            (folder / "rng_state_1.pth").write_bytes(other_rank)

    monkeypatch.setattr(trainer.accelerator, "wait_for_everyone", other_rank_finishes_writing)
    trainer.train()
    folder = tmp_path / "checkpoint-1"
    recorded = dict(reversed(line.split("  ")) for line in (folder / CHECKSUMS_FILE).read_text().splitlines())
    assert recorded["rng_state_1.pth"] == hashlib.sha256(other_rank).hexdigest()
    assert "rng_state_1.pth" in verify_checksums(folder)
