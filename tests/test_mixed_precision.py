"""Mixed precision: the AMP grad scaler skips overflowing steps cleanly; the circuit term stays float32.

What each test proves:

- ``test_grad_scaler_skips_an_overflowing_step_without_touching_the_optimizer[...]``: with CPU autocast fp16
  and ``torch.amp.GradScaler`` (the Trainer's order: ``unscale_``, clip, ``step``, ``update``), a step whose
  gradients hold an inf leaves parameters AND optimizer state (``step``, ``exp_avg``, ``exp_avg_sq``)
  bit-identical, halves the scale, and the next finite step trains again -- for the loop, foreach and fused
  paths and both modes (the fused path must not advertise ``_step_supports_amp_scaling``, or the scaler
  would hand it the inf check).
- ``test_circuit_term_is_float32_in_half_precision_attention[...]``: fp16 / bf16 attention with logits of
  +-1e4 gives finite outputs equal to a float64 reference built from the exact circuit statevector
  (``quantum.simulation``, not the Fourier path); at that size one half-precision ulp of the argument moves
  ``Phi`` by O(1), so a circuit term evaluated in half precision could not pass. Fully masked (padding)
  query rows stay finite.
- ``test_bf16_autocast_training_step_on_cpu``: a tiny quantum Llama trains a step under CPU bf16 autocast:
  finite loss close to float32's, circuit parameters and their gradients float32.
- ``test_bf16_recipe_runs_on_cpu`` (slow): ``recipes/gsm8k_finetune.py --bf16 true`` trains and saves on CPU,
  circuits saved float32.
- GPU-only (``gpu``; skipped without CUDA): the same large-logit check on CUDA for ``quantum`` and
  ``quantum_flex``, and a Trainer ``fp16=True`` run whose overflowing step is skipped by accelerate's scaler
  with the optimizer state untouched (accelerate creates no grad scaler on CPU, so this part needs CUDA).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from hf_superpositional.attention.circuit_module import QuantumCircuitParameters
from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.attention.interface import quantum_attention_forward
from hf_superpositional.attention.patch import apply_quantum_attention
from hf_superpositional.optim import SuperpositionalAdamW
from hf_superpositional.quantum.simulation import circuit_readout
from tests.subprocess_env import REPO, repo_env
from tests.tiny_models import tiny_input_ids, tiny_llama

PATHS = {"loop": {"foreach": False, "fused": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _quantum_llama(**overrides):
    return apply_quantum_attention(
        tiny_llama(seed=0, **overrides), n_qubits=2, depth=1, gate_init=1.0
    ).train()


def _snapshot(model, optimizer):
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    state = {
        name: {key: value.clone() for key, value in optimizer.state[p].items()}
        for name, p in model.named_parameters()
        if p in optimizer.state
    }
    return params, state


def _assert_same(snapshot, model, optimizer):
    params, state = _snapshot(model, optimizer)
    for name, value in snapshot[0].items():
        assert torch.equal(params[name], value), name
    assert state.keys() == snapshot[1].keys()
    for name, entries in snapshot[1].items():
        for key, value in entries.items():
            assert torch.equal(state[name][key], value), (name, key)


# --------------------------------------------------------------------------------------------------
# AMP grad scaler
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["update", "moment"])
@pytest.mark.parametrize("path", list(PATHS))
def test_grad_scaler_skips_an_overflowing_step_without_touching_the_optimizer(path, mode):
    model = _quantum_llama()
    optimizer = SuperpositionalAdamW(
        model.parameters(), lr=1e-2, quantum_weight=0.5, mode=mode, **PATHS[path]
    )
    assert not getattr(optimizer, "_step_supports_amp_scaling", False)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    gate = model.model.layers[0].self_attn.quantum_circuit.gate
    ids = tiny_input_ids(batch=2, length=8, seed=5)

    def amp_step(overflow: bool) -> None:
        with torch.autocast("cpu", dtype=torch.float16):
            loss = model(input_ids=ids, labels=ids).loss
        scaler.scale(loss).backward()
        if overflow:
            gate.grad[0] = math.inf  # what an fp16 overflow in backward leaves behind
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    amp_step(overflow=False)
    before = _snapshot(model, optimizer)
    scale = scaler.get_scale()
    amp_step(overflow=True)
    _assert_same(before, model, optimizer)
    assert scaler.get_scale() == scale / 2
    amp_step(overflow=False)
    assert all(float(s["step"]) == 2.0 for s in optimizer.state.values())  # 3 calls, 2 real steps
    assert any(not torch.equal(p, before[0][n]) for n, p in model.named_parameters())


# --------------------------------------------------------------------------------------------------
# the circuit term in half-precision attention
# --------------------------------------------------------------------------------------------------
def _attention_case(dtype: torch.dtype, device: str, key_step: float, gate: float):
    heads, length, head_dim = 2, 6, 8
    module = nn.Module()
    module.num_key_value_groups, module.is_causal = 1, True
    module.quantum_circuit = QuantumCircuitParameters(
        QuantumAttentionConfig(n_qubits=2, depth=2, gate_init=gate), num_heads=heads
    )
    module.to(device).eval()
    q = torch.zeros(1, heads, length, head_dim)
    k = torch.zeros(1, heads, length, head_dim)
    q[:, 0, :, 0], q[:, 1, :, 0] = 100.0, -100.0  # logits near +1e4 in head 0, -1e4 in head 1
    k[0, :, :, 0] = 282.75 + key_step * torch.arange(length)
    v = torch.randn(1, heads, length, head_dim, generator=torch.Generator().manual_seed(0))
    return module, q.to(device, dtype), k.to(device, dtype), v.to(device, dtype), head_dim**-0.5


def _float64_reference(module, q, k, v, scaling, allowed):
    """softmax(x + gate * Phi(x) + mask) V in float64, Phi by exact statevector simulation of the circuit."""
    x = (torch.matmul(q, k.transpose(2, 3)) * scaling).double().cpu()  # the half-precision logits themselves
    circuit = module.quantum_circuit
    phi = circuit_readout(x.reshape(-1), circuit.ry.double().cpu(), circuit.rz.double().cpu()).reshape(
        x.shape
    )
    logits = x + circuit.gate.double().cpu() * phi
    logits = logits.masked_fill(~allowed.cpu(), torch.finfo(torch.float64).min)
    weights = logits.softmax(-1)
    return weights, (weights @ v.double().cpu()).transpose(1, 2), x, phi


CASES = {  # dtype, key step (logits ~8 resp. ~64 apart: one ulp at 1e4), gate, tolerance on weights / output
    "fp16": (torch.float16, 0.25, 20.0, 1e-3, 2e-3),
    "bf16": (torch.bfloat16, 1.0, 40.0, 8e-3, 1.6e-2),
}


def _check_large_logits(case: str, device: str, attention=quantum_attention_forward):
    dtype, key_step, gate, w_tol, out_tol = CASES[case]
    module, q, k, v, scaling = _attention_case(dtype, device, key_step, gate)
    length = q.shape[2]
    allowed = (
        torch.ones(length, length, dtype=torch.bool, device=device)
        .tril()
        .expand(1, 1, length, length)
        .clone()
    )
    allowed[..., 0, :] = False  # a fully masked (padding) query row
    out, weights = attention(module, q, k, v, allowed, scaling=scaling)
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref_weights, ref_out, x, phi = _float64_reference(module, q, k, v, scaling, allowed)
    assert x.abs().max() > 9.9e3  # the logits really are ~1e4
    rows = slice(1, None)  # the padding row is uniform in both, but the reference's finfo.min differs in kind
    if weights is not None:
        assert torch.isfinite(weights).all()
        torch.testing.assert_close(
            weights.double().cpu()[..., rows, :], ref_weights[..., rows, :], rtol=0, atol=w_tol
        )
    torch.testing.assert_close(out.double().cpu()[:, rows], ref_out[:, rows], rtol=0, atol=out_tol)
    # One half-precision ulp of the circuit's argument moves Phi by O(1): only a float32 (or wider) evaluation
    # of the circuit term can meet the tolerances above.
    ulp = 8.0 if dtype == torch.float16 else 64.0
    shifted = circuit_readout(
        (x + ulp / 2).reshape(-1),
        module.quantum_circuit.ry.double().cpu(),
        module.quantum_circuit.rz.double().cpu(),
    ).reshape(x.shape)
    assert (shifted - phi).abs().max() > 0.5


@pytest.mark.parametrize("case", list(CASES))
def test_circuit_term_is_float32_in_half_precision_attention(case):
    _check_large_logits(case, "cpu")


def test_bf16_autocast_training_step_on_cpu():
    model = _quantum_llama()
    ids = tiny_input_ids(batch=2, length=8, seed=7)
    reference = model(input_ids=ids, labels=ids).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert math.isfinite(loss.item()) and abs(loss.item() - reference) < 0.05 * reference
    circuit = model.model.layers[0].self_attn.quantum_circuit
    for param in circuit.parameters():
        assert param.dtype == torch.float32 and param.grad.dtype == torch.float32
        assert torch.isfinite(param.grad).all()
    assert circuit.gate.grad.abs().sum() > 0  # the circuit term is in the graph


@pytest.mark.slow
def test_bf16_recipe_runs_on_cpu(tmp_path):
    from safetensors import safe_open

    out = tmp_path / "bf16"
    cmd = [
        sys.executable, "recipes/gsm8k_finetune.py", "--config", "recipes/configs/gsm8k_tiny_offline.yaml",
        "--output_dir", str(out), "--bf16", "true", "--max_train_samples", "8", "--max_eval_samples", "4",
        "--generation_eval_samples", "0", "--save_strategy", "no", "--logging_steps", "1",
    ]  # fmt: skip
    env = repo_env(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "all_results.json").read_text())
    assert math.isfinite(results["train_loss"]) and math.isfinite(results["eval_loss"])
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        circuit_keys = [k for k in weights.keys() if "quantum_circuit" in k]
        assert circuit_keys
        assert all(weights.get_slice(k).get_dtype() == "F32" for k in circuit_keys)


# --------------------------------------------------------------------------------------------------
# GPU machine only
# --------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("implementation", ["quantum", "quantum_flex"])
def test_circuit_term_is_float32_in_half_precision_attention_cuda(case, implementation):
    from hf_superpositional.attention.interface import quantum_flex_attention_forward

    attention = quantum_attention_forward if implementation == "quantum" else quantum_flex_attention_forward
    _check_large_logits(case, "cuda", attention)


@pytest.mark.gpu
@needs_cuda
def test_fp16_trainer_skips_an_overflowing_step_on_cuda(tmp_path):
    """Trainer(fp16=True) on CUDA: accelerate's GradScaler skips the step whose gradients overflow."""
    from transformers import TrainerCallback, TrainingArguments

    from hf_superpositional.integrations import SuperpositionalTrainer, unwrap_optimizer

    class Rows(torch.utils.data.Dataset):
        ids = tiny_input_ids(batch=16, length=8, seed=2)

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    model = _quantum_llama()
    gate = model.model.layers[0].self_attn.quantum_circuit.gate
    calls = {"backward": 0}

    def overflow_on_second_step(grad):
        calls["backward"] += 1
        return torch.full_like(grad, math.inf) if calls["backward"] == 2 else grad

    gate.register_hook(overflow_on_second_step)
    seen = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            opt = unwrap_optimizer(optimizer)
            seen.append(_snapshot(model, opt))

    args = TrainingArguments(
        str(tmp_path), fp16=True, per_device_train_batch_size=4, max_steps=3, optim="superpositional_adamw",
        optim_args="quantum_weight=0.5", learning_rate=1e-2, report_to="none", save_strategy="no", logging_steps=1,
    )  # fmt: skip
    trainer = SuperpositionalTrainer(model=model, args=args, train_dataset=Rows(), callbacks=[Record()])
    trainer.train()
    assert trainer.state.global_step == 3
    params_1, state_1 = seen[0]
    params_2, state_2 = seen[1]
    for name in params_1:
        assert torch.equal(params_1[name], params_2[name]), name
        for key in state_1.get(name, {}):
            assert torch.equal(state_1[name][key], state_2[name][key]), (name, key)
    assert any(not torch.equal(seen[2][0][n], params_2[n]) for n in params_2)
