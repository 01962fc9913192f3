"""Bad input, everywhere: every public entry point x the bad inputs tried x the error each gives.

Each case below is one row of the table in ``tests/README.md`` and one test (its id is the row's test id):

- ``test_python_entry_point_rejects`` -- the optimizer, ``optim_args`` (parsed, and through ``TrainingArguments``
  and the Trainer), ``QuantumAttentionConfig``, ``apply_quantum_attention``, the data loaders: the exception
  type and a message naming the argument (and the allowed values) are asserted;
- ``test_recipe_command_line_rejects`` (slow) -- every recipe's command line and YAML config (unknown,
  misspelt and abbreviated flags and keys, bad values, bad optimizer arms, missing files); all cases run in
  ONE process (``tests/e2e/scripts/recipe_bad_inputs.py``, each exactly as from its command line), and the
  exit status (2), the message and that it is one ``prog: error:`` line (no traceback, no usage block) are
  asserted;
- ``test_readme_table_lists_every_case`` -- the README table and these cases agree row for row (rows that
  point at tests in other files -- checkpoints, non-finite gradients -- must name a test that exists).

Regenerate the table after adding a case with ``python -m tests.test_bad_inputs``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.subprocess_env import REPO, repo_env

README = REPO / "tests" / "README.md"


@dataclasses.dataclass(frozen=True)
class Case:
    """One row: ``call(tmp_path)`` must raise ``error`` with a message matching ``match``."""

    id: str
    entry: str
    bad: str
    error: type[BaseException]
    match: str
    call: Callable[[Path], object]
    shown: str = ""  # the message as the table shows it (default: ``match`` without regex escapes)


def _param():
    return [torch.nn.Parameter(torch.zeros(3))]


def _optimizer(**kwargs):
    from hf_superpositional.optim import SuperpositionalAdamW

    return lambda _tmp: SuperpositionalAdamW(_param(), **kwargs)


def _group(**override):
    from hf_superpositional.optim import SuperpositionalAdamW

    return lambda _tmp: SuperpositionalAdamW([{"params": _param(), **override}])


def _sparse_step(_tmp):
    from hf_superpositional.optim import SuperpositionalAdamW

    embedding = torch.nn.Embedding(5, 2, sparse=True)
    optimizer = SuperpositionalAdamW(embedding.parameters())
    embedding(torch.tensor([1])).sum().backward()
    optimizer.step()


def _capturable_cpu_step(_tmp):
    from hf_superpositional.optim import SuperpositionalAdamW

    params = _param()
    params[0].grad = torch.ones(3)
    SuperpositionalAdamW(params, capturable=True, foreach=False).step()


def _fused_layout_step(_tmp):
    from hf_superpositional.optim import SuperpositionalAdamW

    weight = torch.nn.Parameter(torch.zeros(2, 3).t())  # strides (1, 3)
    weight.grad = torch.ones(3, 2)  # strides (2, 1)
    SuperpositionalAdamW([weight], fused=True).step()


def _optim_args(text):
    from hf_superpositional.optim.args import parse_optim_args

    return lambda _tmp: parse_optim_args(text)


def _trainer_optimizer(optim, optim_args):
    """TrainingArguments accept the string; the Trainer builds (and so validates) the optimizer."""

    def call(tmp):
        from transformers import TrainingArguments

        from hf_superpositional.integrations.trainer import SuperpositionalTrainer
        from tests.tiny_models import tiny_llama

        args = TrainingArguments(
            str(tmp / "out"), optim=optim, optim_args=optim_args, report_to="none", use_cpu=True
        )
        SuperpositionalTrainer(model=tiny_llama(), args=args).create_optimizer()

    return call


def _training_arguments(**kwargs):
    def call(tmp):
        from transformers import TrainingArguments

        from hf_superpositional.integrations.transformers import superpositional_optimizer_cls_and_kwargs

        superpositional_optimizer_cls_and_kwargs(
            TrainingArguments(str(tmp / "out"), report_to="none", **kwargs)
        )

    return call


def _qconfig(**kwargs):
    from hf_superpositional.attention.config import QuantumAttentionConfig

    return lambda _tmp: QuantumAttentionConfig(**kwargs)


def _from_dict(data):
    from hf_superpositional.attention.config import QuantumAttentionConfig

    return lambda _tmp: QuantumAttentionConfig.from_dict(data)


def _apply(model_fn, **kwargs):
    def call(_tmp):
        from hf_superpositional.attention.patch import apply_quantum_attention

        return apply_quantum_attention(model_fn(), **kwargs)

    return call


def _flash(kv_heads=1, dtype=torch.float32, **kwargs):
    def call(_tmp):
        from hf_superpositional.quantum.kernels.flash import circuit_flash_attention

        query, key = torch.zeros(1, 2, 4, 8, dtype=dtype), torch.zeros(1, kv_heads, 4, 8, dtype=dtype)
        coefficients, gate = torch.zeros(2, 3), torch.ones(1)
        return circuit_flash_attention(query, key, key, coefficients, gate, omega=1.0, logit_scale=0.5, **kwargs)

    return call


def _flash_switch(_tmp):
    from hf_superpositional.quantum.kernels import set_flash_attention

    set_flash_attention("no")


def _tiny_llama():
    from tests.tiny_models import tiny_llama

    return tiny_llama()


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0)
    )


def _patched_twice():
    from hf_superpositional.attention.patch import apply_quantum_attention

    return apply_quantum_attention(_tiny_llama(), n_qubits=2)


def _gsm8k_file(content: str | None, name: str = "data.jsonl", **kwargs):
    def call(tmp):
        from hf_superpositional.tasks.gsm8k.data import load_gsm8k

        path = tmp / name
        if content is not None:
            path.write_text(content)
        return load_gsm8k(data_file=path, **kwargs)

    return call


def _bundled(split="train", **kwargs):
    from hf_superpositional.tasks.gsm8k.data import load_gsm8k

    return lambda _tmp: load_gsm8k("bundled", split, **kwargs)


def _task_config(**kwargs):
    from hf_superpositional.tasks.direction import DirectionTaskConfig

    return lambda _tmp: DirectionTaskConfig(**kwargs)


def _task(num_examples=4, seed=0, split="train"):
    from hf_superpositional.tasks.direction import generate_direction_task

    return lambda _tmp: generate_direction_task(num_examples, seed=seed, split=split)


def _saved_quantum_model(tmp, damage=None):
    from hf_superpositional.attention.patch import apply_quantum_attention

    apply_quantum_attention(_tiny_llama(), gate_init=0.5).save_pretrained(tmp / "model")
    if damage is not None:
        damage(tmp / "model")
    return tmp / "model"


def _drop_quantum_entry(folder):
    config = json.loads((folder / "config.json").read_text())
    del config["quantum_attention"], config["attn_implementation"]
    (folder / "config.json").write_text(json.dumps(config))


def _drop_layer0_circuit(folder):
    from safetensors.torch import load_file, save_file

    kept = {k: v for k, v in load_file(folder / "model.safetensors").items() if "layers.0.self_attn.quantum_circuit" not in k}
    save_file(kept, folder / "model.safetensors", metadata={"format": "pt"})


def _from_pretrained(damage=None, **kwargs):
    def call(tmp):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(_saved_quantum_model(tmp, damage), **kwargs)

    return call


def _quantum_alone_on_gpt2(_tmp):
    from transformers import AutoModelForCausalLM, GPT2Config

    return AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=16, n_head=2), attn_implementation="quantum")


def _unpatched_forward_as_quantum(_tmp):
    from tests.tiny_models import tiny_input_ids

    model = _tiny_llama()
    model.set_attn_implementation("quantum")
    return model(tiny_input_ids())


def _saved_adapter(tmp, *, keep_quantum_file=True, hand_unfrozen=False):
    from peft import LoraConfig, get_peft_model

    from hf_superpositional.attention.patch import apply_quantum_attention
    from hf_superpositional.integrations.peft import quantum_lora_config

    base = apply_quantum_attention(_tiny_llama(), gate_init=0.5)
    if hand_unfrozen:
        model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
        for name, param in model.named_parameters():
            param.requires_grad_(param.requires_grad or "quantum_circuit" in name)
    else:
        model = get_peft_model(base, quantum_lora_config(r=2, target_modules=["q_proj"]))
    model.save_pretrained(tmp / "adapter")
    if not keep_quantum_file:
        (tmp / "adapter" / "quantum_attention.json").unlink()
    return tmp / "adapter"


def _adapter_load(how):
    def call(tmp):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from hf_superpositional.attention.patch import apply_quantum_attention

        if how == "auto_model":
            return AutoModelForCausalLM.from_pretrained(_saved_adapter(tmp))
        if how == "no_quantum_file":
            return PeftModel.from_pretrained(_tiny_llama(), _saved_adapter(tmp, keep_quantum_file=False))
        if how == "patched_differently":
            return PeftModel.from_pretrained(apply_quantum_attention(_tiny_llama(), n_qubits=2), _saved_adapter(tmp))
        if how == "full_model":
            return PeftModel.from_pretrained(_tiny_llama(), _saved_quantum_model(tmp))
        if how == "circuits_missing":
            from safetensors.torch import load_file, save_file

            folder = _saved_adapter(tmp)
            kept = {k: v for k, v in load_file(folder / "adapter_model.safetensors").items() if "quantum_circuit" not in k}
            save_file(kept, folder / "adapter_model.safetensors", metadata={"format": "pt"})
            return PeftModel.from_pretrained(_tiny_llama(), folder)
        return _saved_adapter(tmp, hand_unfrozen=True)  # "hand_unfrozen": refused when saving

    return call


def _flat_partition_step(_tmp):
    # What DeepSpeed ZeRO does to the optimizer it wraps: a group's tensors become one flat partition.
    from hf_superpositional.optim import SuperpositionalAdamW

    params = [torch.nn.Parameter(torch.zeros(2, 3))]
    optimizer = SuperpositionalAdamW(params, scope="first_n")
    flat = torch.zeros(6, requires_grad=True)
    flat.grad = torch.ones(6)
    optimizer.param_groups[0]["params"] = [flat]
    optimizer.step()


def _element_mask_out_of_range(_tmp):
    from hf_superpositional.optim import SuperpositionalAdamW

    params = _param()
    SuperpositionalAdamW(params).set_element_mask(params[0], [12])


def _deepspeed_launch_not_set_up(tmp):
    import os

    from transformers import TrainingArguments

    from hf_superpositional.integrations.trainer import SuperpositionalTrainer
    from tests.tiny_models import tiny_llama

    args = TrainingArguments(str(tmp), use_cpu=True, report_to="none")
    saved = {k: os.environ.get(k) for k in ("ACCELERATE_USE_DEEPSPEED", "LOCAL_RANK", "WORLD_SIZE")}
    os.environ.update(ACCELERATE_USE_DEEPSPEED="true", LOCAL_RANK="0", WORLD_SIZE="2")
    try:
        SuperpositionalTrainer(model=tiny_llama(), args=args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _unreadable_zero_maps(_tmp):
    from hf_superpositional.integrations.deepspeed import map_first_n_to_zero_partitions
    from hf_superpositional.optim import SuperpositionalAdamW

    class Stage3Lookalike:  # shaped like DeepSpeed's ZeRO-3 optimizer, with a map that lacks the parameter
        def __init__(self):
            self.param = torch.nn.Parameter(torch.zeros(4))
            self.fp32_partitioned_groups_flat = [torch.zeros(4, requires_grad=True)]
            self.grad_position, self.fp16_groups, self.sub_group_to_group_id = {}, [[self.param]], {0: 0}
            self.optimizer = SuperpositionalAdamW([self.param], scope="first_n")

        def get_param_id(self, param):
            return id(param)

    map_first_n_to_zero_partitions(Stage3Lookalike())


def _shared_field_clash(_tmp):
    from hf_superpositional.cli import parse_args_and_config

    first = dataclasses.make_dataclass("A", [("max_length", int, dataclasses.field(default=1))])
    second = dataclasses.make_dataclass("B", [("max_length", int, dataclasses.field(default=2))])
    parse_args_and_config([first, second], [])


def _trainer_on_nonfinite(_tmp):
    from transformers import TrainingArguments

    from hf_superpositional.integrations.trainer import SuperpositionalTrainer

    args = TrainingArguments(str(_tmp), report_to="none", use_cpu=True)
    return SuperpositionalTrainer(model=_tiny_llama(), args=args, on_nonfinite="ignore")


def _foreign_optim_args(optim, optim_args):
    def call(tmp):
        from transformers import TrainingArguments

        from hf_superpositional.integrations.transformers import check_optimizer_arguments

        return check_optimizer_arguments(TrainingArguments(str(tmp), optim=optim, optim_args=optim_args))

    return call


OPT = "`SuperpositionalAdamW(params, ...)`"
OPT_GROUP = "`SuperpositionalAdamW([{param group}])`"
ARGS = "`parse_optim_args(optim_args)`"
TRAINER = "`TrainingArguments(optim=..., optim_args=...)` + `SuperpositionalTrainer`"
CHECK_ARGS = "`check_optimizer_arguments(TrainingArguments(...))` (every recipe runs it while parsing)"
LOAD = "`AutoModelForCausalLM.from_pretrained` / `from_config` (after `import hf_superpositional`)"
PEFT_LOAD = "`PeftModel.from_pretrained` / `AutoPeftModelForCausalLM.from_pretrained` (after the import)"
QAC = "`QuantumAttentionConfig(...)`"
APPLY = "`apply_quantum_attention(model, ...)`"
FLASH = "`circuit_flash_attention(query, key, value, coefficients, gate, ...)` (the fused CPU kernel)"
DATA = "`load_gsm8k(data_file=...)` (GSM8K JSONL)"
SYN = "`hf_superpositional.tasks.direction` (text-classification data)"
VALID_KEYS = r"Valid keys: quantum_weight, n_qubits, mode, scope"

# fmt: off
CASES: list[Case] = [
    # ---- the optimizer
    Case("optim-negative-lr", OPT, "`lr=-1`", ValueError, r"lr must be a non-negative float \(allowed range: lr >= 0\)", _optimizer(lr=-1)),
    Case("optim-nan-lr", OPT, "`lr=nan`", ValueError, r"lr must be a non-negative float \(allowed range: lr >= 0\), got nan", _optimizer(lr=math.nan)),
    Case("optim-lr-tensor-shape", OPT, "`lr=torch.tensor([1e-3, 1e-3])`", ValueError, r"lr must be a non-negative float or a 1-element tensor", _optimizer(lr=torch.tensor([1e-3, 1e-3]))),
    Case("optim-negative-eps", OPT, "`eps=-1e-8`", ValueError, r"eps must be a non-negative float \(allowed range: eps >= 0\)", _optimizer(eps=-1e-8)),
    Case("optim-negative-weight-decay", OPT, "`weight_decay=-0.1`", ValueError, r"weight_decay must be a non-negative float", _optimizer(weight_decay=-0.1)),
    Case("optim-negative-quantum-weight", OPT, "`quantum_weight=-0.5`", ValueError, r"quantum_weight must be a non-negative float \(allowed range: quantum_weight >= 0\)", _optimizer(quantum_weight=-0.5)),
    Case("optim-beta-one", OPT, "`betas=(1.0, 0.999)`", ValueError, r"betas\[0\] must be in \[0, 1\), got 1.0", _optimizer(betas=(1.0, 0.999))),
    Case("optim-betas-length", OPT, "`betas=(0.9,)`", ValueError, r"betas must be a pair \(beta1, beta2\) with each in \[0, 1\)", _optimizer(betas=(0.9,))),
    Case("optim-n-qubits-zero", OPT, "`n_qubits=0`", ValueError, r"n_qubits must be an int >= 1, got 0", _optimizer(n_qubits=0)),
    Case("optim-n-qubits-float", OPT, "`n_qubits=2.5`", ValueError, r"n_qubits must be an int >= 1, got 2.5", _optimizer(n_qubits=2.5)),
    Case("optim-mode", OPT, "`mode='sideways'`", ValueError, r"mode must be one of \('update', 'moment'\)", _optimizer(mode="sideways")),
    Case("optim-scope", OPT, "`scope='some'`", ValueError, r"scope must be one of \('first_n', 'all'\)", _optimizer(scope="some")),
    Case("optim-backend", OPT, "`perturbation_backend='gpu'`", ValueError, r"perturbation_backend must be one of \('analytic', 'qiskit', 'aer'\)", _optimizer(perturbation_backend="gpu")),
    Case("optim-foreach-and-fused", OPT, "`foreach=True, fused=True`", ValueError, r"foreach=True and fused=True cannot be used together", _optimizer(foreach=True, fused=True)),
    Case("optim-group-n-qubits", OPT_GROUP, "`{'n_qubits': -1}`", ValueError, r"n_qubits must be an int >= 1, got -1", _group(n_qubits=-1)),
    Case("optim-inf-lr", OPT, "`lr=inf`", ValueError, r"lr must be a finite non-negative float \(allowed range: 0 <= lr < inf\), got inf", _optimizer(lr=math.inf)),
    Case("optim-inf-weight-decay", OPT, "`weight_decay=inf`", ValueError, r"weight_decay must be a finite non-negative float \(allowed range: 0 <= weight_decay < inf\), got inf", _optimizer(weight_decay=math.inf)),
    Case("optim-inf-quantum-weight", OPT, "`quantum_weight=inf`", ValueError, r"quantum_weight must be a finite non-negative float \(allowed range: 0 <= quantum_weight < inf\), got inf", _optimizer(quantum_weight=math.inf)),
    Case("optim-flag-type", OPT, "`amsgrad='yes'`", ValueError, r"amsgrad must be True or False, got 'yes'", _optimizer(amsgrad="yes")),
    Case("optim-fused-differentiable", OPT, "`fused=True, differentiable=True`", ValueError, r"fused=True does not support differentiable=True.*leave fused None or False", _optimizer(fused=True, differentiable=True)),
    Case("optim-group-foreach-differentiable", OPT_GROUP, "`{'foreach': True, 'differentiable': True}`", ValueError, r"foreach=True does not support differentiable=True", _group(foreach=True, differentiable=True)),
    Case("optim-sparse-grad", "`SuperpositionalAdamW.step()`", "sparse gradient (`nn.Embedding(sparse=True)`)", RuntimeError, r"does not support sparse gradients", _sparse_step),
    Case("optim-capturable-cpu", "`SuperpositionalAdamW.step()`", "`capturable=True` (loop or foreach) on CPU, outside `torch.compile`", ValueError, r"capturable=True needs parameters and step counters on one of \['cuda', 'xpu', .*\], got cpu", _capturable_cpu_step),
    Case("optim-fused-layout", "`SuperpositionalAdamW.step()`", "`fused=True`, a parameter whose gradient has other strides (a transposed weight)", RuntimeError, r"fused=True cannot step the parameter of shape \(3, 2\): its gradient's strides \(2, 1\) differ from its own \(1, 3\)", _fused_layout_step),
    # ---- optim_args
    Case("optim-flat-partition-first-n", "`SuperpositionalAdamW.step()`", "`scope='first_n'`, a group's parameters swapped for a flat partition it was never given (what DeepSpeed ZeRO does)", RuntimeError, r"asked to step a tensor of shape \(6,\) that it was never given as a parameter.*Train with SuperpositionalTrainer.*or use scope='all'", _flat_partition_step),
    Case("optim-element-mask-range", "`SuperpositionalAdamW.set_element_mask(tensor, flat_indices)`", "`flat_indices=[12]` for a 3-element tensor", ValueError, r"flat_indices must lie in \[0, 3\) for a tensor of shape \(3,\)", _element_mask_out_of_range),
    Case("deepspeed-launch-not-set-up", "`SuperpositionalTrainer(model, args)`", "ranks launched with DeepSpeed (`WORLD_SIZE=2`), `TrainingArguments` built without the CPU set-up (accelerate sees 1 process)", RuntimeError, r"launched with DeepSpeed \(2 processes\), but the TrainingArguments set accelerate up as .*cpu_deepspeed_overrides", _deepspeed_launch_not_set_up),
    Case("deepspeed-unreadable-maps", "`hf_superpositional.integrations.deepspeed.map_first_n_to_zero_partitions(optimizer)`", "a ZeRO-3 optimizer whose partition maps cannot be read, `scope='first_n'`", RuntimeError, r"DeepSpeed ZeRO stage 3: SuperpositionalAdamW\(scope='first_n'\) .* Use scope='all'", _unreadable_zero_maps),
    Case("cli-fields-clash", "`hf_superpositional.cli.parse_args_and_config(types, ...)`", "two dataclasses with a field of the same name, not in `shared_fields`", ValueError, r"fields defined by several dataclasses: \{'max_length': \['A', 'B'\]\}; pass them as shared_fields", _shared_field_clash),
    Case("optim-args-malformed", ARGS, "`'quantum_weight'` (no `=`)", ValueError, rf"malformed piece 'quantum_weight'.*{VALID_KEYS}", _optim_args("quantum_weight")),
    Case("optim-args-unknown-key", ARGS, "`'bogus=1'`", ValueError, rf"unknown key 'bogus'.*{VALID_KEYS}", _optim_args("bogus=1")),
    Case("optim-args-adam-key", ARGS, "`'lr=0.1'`", ValueError, r"unknown key 'lr'.*lr, betas, eps and weight_decay come from TrainingArguments", _optim_args("lr=0.1")),
    Case("optim-args-bad-int", ARGS, "`'n_qubits=abc'`", ValueError, r"bad value in 'n_qubits=abc': n_qubits must be an integer", _optim_args("n_qubits=abc")),
    Case("optim-args-nan", ARGS, "`'quantum_weight=nan'`", ValueError, r"quantum_weight must be a finite number, got 'nan'", _optim_args("quantum_weight=nan")),
    Case("optim-args-choice", ARGS, "`'mode=sideways'`", ValueError, r"mode must be one of \['update', 'moment'\], got 'sideways'", _optim_args("mode=sideways")),
    Case("optim-args-bool", ARGS, "`'fused=maybe'`", ValueError, r"fused must be true or false or none, got 'maybe'", _optim_args("fused=maybe")),
    Case("optim-args-repeated", ARGS, "`'quantum_weight=0.5,quantum_weight=0.1'`", ValueError, r"key 'quantum_weight' is given twice", _optim_args("quantum_weight=0.5,quantum_weight=0.1")),
    Case("trainer-optim-args-unknown", TRAINER, "`optim_args='bogus=1'` (raised when the Trainer builds the optimizer)", ValueError, rf"unknown key 'bogus'.*{VALID_KEYS}", _trainer_optimizer("superpositional_adamw", "bogus=1")),
    Case("trainer-optim-args-negative", TRAINER, "`optim_args='quantum_weight=-1'`", ValueError, r"quantum_weight must be a non-negative float", _trainer_optimizer("superpositional_adamw", "quantum_weight=-1")),
    Case("trainer-moment-mode-conflict", TRAINER, "`optim='quantum_moment_adamw', optim_args='mode=update'`", ValueError, r"optim='quantum_moment_adamw' always uses mode='moment', but mode='update' was given", _training_arguments(optim="quantum_moment_adamw", optim_args="mode=update")),
    Case("trainer-on-nonfinite", "`SuperpositionalTrainer(..., on_nonfinite=...)`", "`on_nonfinite='ignore'`", ValueError, r"on_nonfinite must be one of \['raise', 'skip'\], got 'ignore'", _trainer_on_nonfinite),
    Case("optim-args-for-another-optimizer", CHECK_ARGS, "`optim='adamw_torch', optim_args='quantum_weight=0.1'`", ValueError, r"optim_args='quantum_weight=0.1' would be silently ignored: optim='adamw_torch' does not take quantum_weight", _foreign_optim_args("adamw_torch", "quantum_weight=0.1")),
    Case("optim-args-ignored-by-stock-adamw", CHECK_ARGS, "`optim='adamw_torch_fused', optim_args='foo=1'`", ValueError, r"optim_args='foo=1' would be silently ignored: optim='adamw_torch_fused' takes no optim_args", _foreign_optim_args("adamw_torch_fused", "foo=1")),
    Case("trainer-optim-name-typo", TRAINER, "`optim='superpositional_adamx'`", ValueError, r"superpositional_adamx is not a valid OptimizerNames, please select one of \[.*'superpositional_adamw', 'quantum_moment_adamw'\]", _training_arguments(optim="superpositional_adamx")),
    # ---- QuantumAttentionConfig
    Case("qconfig-n-qubits-zero", QAC, "`n_qubits=0`", ValueError, r"`n_qubits` must be an integer >= 1, got 0", _qconfig(n_qubits=0)),
    Case("qconfig-n-qubits-string", QAC, "`n_qubits='4'`", ValueError, r"`n_qubits` must be an integer >= 1, got '4'", _qconfig(n_qubits="4")),
    Case("qconfig-depth-zero", QAC, "`depth=0`", ValueError, r"`depth` must be an integer >= 1, got 0", _qconfig(depth=0)),
    Case("qconfig-readout", QAC, "`readout='x'`", ValueError, r"`readout` must be one of \['expval_z', 'amplitude'\]", _qconfig(readout="x")),
    Case("qconfig-score-input", QAC, "`score_input='x'`", ValueError, r"`score_input` must be one of \['logit', 'raw'\]", _qconfig(score_input="x")),
    Case("qconfig-gate-nan", QAC, "`gate_init=nan`", ValueError, r"`gate_init` must be a finite number, got nan", _qconfig(gate_init=math.nan)),
    Case("qconfig-gate-string", QAC, "`gate_init='1'`", ValueError, r"`gate_init` must be a finite number, got '1'", _qconfig(gate_init="1")),
    Case("qconfig-per-head", QAC, "`per_head='yes'`", ValueError, r"`per_head` must be True or False, got 'yes'", _qconfig(per_head="yes")),
    Case("qconfig-backend", QAC, "`circuit_backend='qiskit'`", ValueError, r"`circuit_backend` must be one of \['torch', 'aer'\]", _qconfig(circuit_backend="qiskit")),
    Case("qconfig-attn", QAC, "`attn_implementation='sdpa'`", ValueError, r"`attn_implementation` must be one of \['quantum', 'quantum_flex'\]", _qconfig(attn_implementation="sdpa")),
    Case("qconfig-layers-empty", QAC, "`layers=[]`", ValueError, r"`layers` must be None \(all layers\) or a non-empty list of layer indices >= 0", _qconfig(layers=[])),
    Case("qconfig-layers-negative", QAC, "`layers=[-1]`", ValueError, r"`layers` must be None \(all layers\) or a non-empty list of layer indices >= 0, got \[-1\]", _qconfig(layers=[-1])),
    Case("qconfig-layers-repeated", QAC, "`layers=[0, 0]`", ValueError, r"`layers` must not repeat an index", _qconfig(layers=[0, 0])),
    Case("qconfig-init-seed", QAC, "`init_seed=-1`", ValueError, r"`init_seed` must be an integer >= 0, got -1", _qconfig(init_seed=-1)),
    Case("qconfig-n-qubits-above-max", QAC, "`n_qubits=25`", ValueError, r"`n_qubits` must be an integer in \[1, 24\] \(the circuit simulators hold 2\*\*n_qubits amplitudes per point\), got 25", _qconfig(n_qubits=25)),
    Case("qconfig-from-dict-unknown", "`QuantumAttentionConfig.from_dict(d)`", "`{'n_qubit': 4}` (typo)", ValueError, r"Unknown QuantumAttentionConfig keys \['n_qubit'\]; valid keys are \['n_qubits'", _from_dict({"n_qubit": 4})),
    Case("qconfig-from-dict-type", "`QuantumAttentionConfig.from_dict(d)`", "a list instead of a mapping", ValueError, r"`data` must be a mapping or a QuantumAttentionConfig, got list", _from_dict([("n_qubits", 4)])),
    # ---- apply_quantum_attention
    Case("apply-unsupported-model", APPLY, "a GPT-2 model", ValueError, r"Quantum attention supports model_type in \['llama', 'mistral', 'qwen2'\]; got 'gpt2'", _apply(_tiny_gpt2)),
    Case("apply-not-a-model", APPLY, "`nn.Linear(2, 2)`", ValueError, r"supports model_type in \['llama', 'mistral', 'qwen2'\]; got None \(Linear\)", _apply(lambda: torch.nn.Linear(2, 2))),
    Case("apply-layer-out-of-range", APPLY, "`layers=[5]` on a 2-layer model", ValueError, r"`layers` must hold indices in \[0, 1\], got \[5\]", _apply(_tiny_llama, layers=[5])),
    Case("apply-unknown-override", APPLY, "`n_qubit=3` (typo)", ValueError, r"Unknown QuantumAttentionConfig keys \['n_qubit'\]; valid keys are", _apply(_tiny_llama, n_qubit=3)),
    Case("apply-different-config", APPLY, "a model already patched with another config", ValueError, r"already patched with .*call remove_quantum_attention\(model\) before", _apply(_patched_twice, n_qubits=3)),
    # ---- the fused CPU attention kernel (quantum/kernels/flash.py)
    Case("flash-key-padding-shape", FLASH, "`key_padding` of shape `[1, 5]` for 4 keys", ValueError, r"key_padding must be a boolean \[B, S_kv\] = \[1, 4\] tensor, got \(1, 5\)", _flash(key_padding=torch.ones(1, 5, dtype=torch.bool))),
    Case("flash-kv-heads", FLASH, "key/value with 3 heads for 2 query heads", ValueError, r"key and value must be \[B, H_kv, S_kv, D\] with query's B and D and H_kv dividing query's heads 2", _flash(kv_heads=3)),
    Case("flash-float16", FLASH, "float16 query, key and value", ValueError, r"query must be a 4-D \[B, H, S, D\] tensor of dtype \(torch.float32, torch.float64, torch.bfloat16\)", _flash(dtype=torch.float16)),
    Case("flash-causal-type", FLASH, "`causal='yes'`", ValueError, r"causal must be a bool, got 'yes'", _flash(causal="yes")),
    Case("flash-switch", "`set_flash_attention(enabled)`", "`enabled='no'`", ValueError, r"enabled must be a bool, got 'no'", _flash_switch),
    # ---- loading (attention/loading.py, integrations/peft.py)
    Case("load-quantum-alone-unsupported", LOAD, "`from_config(GPT2Config(), attn_implementation='quantum')`", ValueError, r"attn_implementation='quantum' needs quantum-attention circuits, which support model_type in \['llama', 'mistral', 'qwen2'\]; got 'gpt2'", _quantum_alone_on_gpt2),
    Case("load-unpatched-run-as-quantum", LOAD, "an unpatched model switched with `set_attn_implementation('quantum')`, then run", ValueError, r"attn_implementation='quantum' on a model without quantum-attention circuits: patch it first with hf_superpositional.apply_quantum_attention", _unpatched_forward_as_quantum),
    Case("load-quantum-as-sdpa", LOAD, "a quantum checkpoint with `attn_implementation='sdpa'`", ValueError, r"carries quantum attention .* but attn_implementation='sdpa' was requested: its trained circuits would be silently ignored.*remove_quantum_attention", _from_pretrained(attn_implementation="sdpa")),
    Case("load-circuits-without-config", LOAD, "circuit tensors in the weights, no `quantum_attention` in `config.json`", ValueError, r"model.safetensors holds quantum-attention circuit tensors .* but the model was built without them: .*config.json has no 'quantum_attention' entry", _from_pretrained(_drop_quantum_entry)),
    Case("load-config-without-circuits", LOAD, "`config.json` declares quantum attention, the weights lack layer 0's circuit", ValueError, r"config.json declares quantum attention but .*model.safetensors lacks 3 of its circuit tensors", _from_pretrained(_drop_layer0_circuit)),
    Case("load-adapter-via-automodel", LOAD, "`AutoModelForCausalLM.from_pretrained(adapter_folder)` of a LoRA over a quantum base", ValueError, r"is a PEFT adapter over a quantum-attention base .*would load the base without its circuits. Load it with hf_superpositional.load_trained_model", _adapter_load("auto_model")),
    Case("peft-adapter-without-quantum-file", PEFT_LOAD, "adapter weights with circuits, `quantum_attention.json` missing, base unpatched", ValueError, r"adapter_model.safetensors holds quantum-attention circuit tensors .*quantum_attention.json is missing and the base model has no quantum attention", _adapter_load("no_quantum_file")),
    Case("peft-base-patched-differently", PEFT_LOAD, "a base patched with another `QuantumAttentionConfig`", ValueError, r"quantum_attention.json says the adapter was trained on a base patched with .* but the base model given is patched with", _adapter_load("patched_differently")),
    Case("peft-adapter-circuits-missing", PEFT_LOAD, "`quantum_attention.json` and `modules_to_save` name the circuits, the adapter weights hold none", ValueError, r"adapter_model.safetensors holds no quantum-attention circuit tensors although .*adapter_config.json lists 'quantum_circuit' in modules_to_save", _adapter_load("circuits_missing")),
    Case("peft-full-model-folder", PEFT_LOAD, "a full model folder (no `adapter_config.json`)", ValueError, r"holds a full model \(config.json\), not a PEFT adapter \(no adapter_config.json\). Load it with", _adapter_load("full_model")),
    Case("peft-save-hand-unfrozen-circuits", "`PeftModel.save_pretrained` (any Trainer's `save_model`)", "circuits made trainable by hand, not in `modules_to_save`", ValueError, r"trainable circuit parameter\(s\) .* are not in the adapter's modules_to_save, so PEFT would leave their trained values out .*quantum_lora_config", _adapter_load("hand_unfrozen")),
    # ---- data files
    Case("data-missing-file", DATA, "a path that does not exist", FileNotFoundError, r"GSM8K data file not found: .*missing\.jsonl", _gsm8k_file(None, "missing.jsonl")),
    Case("data-malformed-json", DATA, "a line that is not JSON", ValueError, r"data\.jsonl:1: not valid JSON", _gsm8k_file("not json\n")),
    Case("data-missing-field", DATA, "a row without `answer`", ValueError, r"data\.jsonl:1: each row needs string fields 'question' and 'answer'", _gsm8k_file('{"question": "q"}\n')),
    Case("data-no-final-answer", DATA, "a row whose answer lacks `#### <number>`", ValueError, r"data\.jsonl:1: the answer must end in '#### <number>' \(the GSM8K final answer grading reads\)", _gsm8k_file('{"question": "q", "answer": "2 + 2 = 4"}\n')),
    Case("data-empty", DATA, "an empty file", ValueError, r"data\.jsonl: no GSM8K rows \(the split is empty\)", _gsm8k_file("")),
    Case("data-bundled-split", "`load_gsm8k('bundled', split)`", "`split='validation'`", ValueError, r"split must be one of \['test', 'train'\], got 'validation'", _bundled("validation")),
    Case("data-max-samples", "`load_gsm8k(..., max_samples=...)`", "`max_samples=0`", ValueError, r"max_samples must be None or an integer >= 1, got 0", _bundled("test", max_samples=0)),
    Case("synthetic-seq-len", SYN, "`DirectionTaskConfig(seq_len=2)`", ValueError, r"`seq_len` must be an integer >= 3, got 2", _task_config(seq_len=2)),
    Case("synthetic-follow-prob", SYN, "`DirectionTaskConfig(follow_prob=0)`", ValueError, r"`follow_prob` must be in \(0, 1\], got 0", _task_config(follow_prob=0)),
    Case("synthetic-split", SYN, "`generate_direction_task(..., split='val')`", ValueError, r"`split` must be one of \['test', 'train'\], got 'val'", _task(split="val")),
    Case("synthetic-num-examples", SYN, "`generate_direction_task(0, ...)`", ValueError, r"`num_examples` must be an integer >= 1, got 0", _task(num_examples=0)),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_python_entry_point_rejects(case, tmp_path):
    with pytest.raises(case.error, match=case.match):
        case.call(tmp_path)


# --------------------------------------------------------------------------------------------------
# recipe command lines and configs
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CliCase:
    """A recipe command line: exits with a status in ``status`` and prints / raises ``match``."""

    id: str
    entry: str
    bad: str
    status: tuple[int, ...]
    match: str
    argv: tuple[str, ...]
    shown: str = ""


FT, EV, CMP = "recipes/gsm8k_finetune.py", "recipes/gsm8k_evaluate.py", "recipes/gsm8k_compare.py"
TINY, TC = "recipes/compare_optimizers_tiny.py", "recipes/text_classification.py"
STUDY = "recipes/study.py"
SFT = "recipes/gsm8k_sft_trl.py"
SFT_CONFIG = ("--config", "recipes/configs/gsm8k_sft_trl_tiny.yaml", "--output_dir", "{tmp}/out")
TINY_CONFIG = ("--config", "recipes/configs/gsm8k_tiny_offline.yaml", "--output_dir", "{tmp}/out")
EXIT2 = (2,)

# fmt: off
CLI_CASES: list[CliCase] = [
    CliCase("cli-finetune-unknown-flag", FT, "`--bogus_flag 3`", EXIT2, r"unrecognized arguments: --bogus_flag 3", (FT, *TINY_CONFIG, "--bogus_flag", "3")),
    CliCase("cli-finetune-flag-typo", FT, "`--lerning_rate 0.1`", EXIT2, r"unrecognized arguments: --lerning_rate 0\.1 \(--lerning_rate: did you mean '--learning_rate'\?\)", (FT, *TINY_CONFIG, "--lerning_rate", "0.1")),
    CliCase("cli-finetune-abbreviated-flag", FT, "`--n_qubit 3` (abbreviation of `--n_qubits`)", EXIT2, r"unrecognized arguments: --n_qubit 3 \(--n_qubit is not accepted as an abbreviation of --n_qubits\)", (FT, *TINY_CONFIG, "--n_qubit", "3")),
    CliCase("cli-finetune-yaml-unknown-key", FT, "YAML config with an unknown key", EXIT2, r"unknown\.yaml: unknown key\(s\) 'bogus_key'", (FT, "--config", "{tmp}/unknown.yaml", "--output_dir", "{tmp}/out")),
    CliCase("cli-finetune-yaml-bad-value", FT, "YAML config with `n_qubits: 0`", EXIT2, r"`n_qubits` must be an integer >= 1, got 0", (FT, "--config", "{tmp}/bad_value.yaml", "--output_dir", "{tmp}/out")),
    CliCase("cli-finetune-missing-config", FT, "`--config nope.yaml`", EXIT2, r"config file not found: .*nope\.yaml", (FT, "--config", "{tmp}/nope.yaml")),
    CliCase("cli-finetune-missing-data", FT, "`--train_file nope.jsonl`", EXIT2, r"GSM8K data file not found: .*nope\.jsonl", (FT, *TINY_CONFIG, "--train_file", "{tmp}/nope.jsonl")),
    CliCase("cli-finetune-malformed-data", FT, "`--train_file` with a non-JSON line", EXIT2, r"malformed\.jsonl:1: not valid JSON", (FT, *TINY_CONFIG, "--train_file", "{tmp}/malformed.jsonl")),
    CliCase("cli-finetune-n-qubits", FT, "`--n_qubits 0`", EXIT2, r"QuantumAttentionConfig: `n_qubits` must be an integer >= 1, got 0", (FT, *TINY_CONFIG, "--n_qubits", "0")),
    CliCase("cli-finetune-max-length", FT, "`--max_length 0`", EXIT2, r"`max_length` must be None or an integer >= 8, got 0", (FT, *TINY_CONFIG, "--max_length", "0")),
    CliCase("cli-finetune-optim-typo", FT, "`--optim superpositional_adamx`", EXIT2, r"argument --optim: invalid choice: 'superpositional_adamx'", (FT, *TINY_CONFIG, "--optim", "superpositional_adamx")),
    CliCase("cli-finetune-optim-args", FT, "`--optim_args bogus=1` (checked while parsing, before any data is loaded)", EXIT2, rf"TrainingArguments: optim_args: unknown key 'bogus'.*{VALID_KEYS}", (FT, *TINY_CONFIG, "--optim_args", "bogus=1")),
    CliCase("cli-finetune-optim-args-negative", FT, "`--optim_args quantum_weight=-1`", EXIT2, r"TrainingArguments: quantum_weight must be a non-negative float \(allowed range: quantum_weight >= 0\)", (FT, *TINY_CONFIG, "--optim_args", "quantum_weight=-1")),
    CliCase("cli-finetune-foreign-optim-args", FT, "`--optim adamw_torch` while the config keeps `optim_args: quantum_weight=0.1,n_qubits=4`", EXIT2, r"TrainingArguments: optim_args='quantum_weight=0.1,n_qubits=4' would be silently ignored: optim='adamw_torch' does not take quantum_weight, n_qubits", (FT, *TINY_CONFIG, "--optim", "adamw_torch")),
    CliCase("cli-finetune-n-qubits-above-max", FT, "`--n_qubits 25` (checked before any data or model is loaded)", EXIT2, r"QuantumAttentionConfig: `n_qubits` must be an integer in \[1, 24\]", (FT, *TINY_CONFIG, "--n_qubits", "25")),
    CliCase("cli-finetune-no-final-answer", FT, "`--train_file` with a row whose answer lacks `#### <number>` (refused before training)", EXIT2, r"no_answer\.jsonl:2: the answer must end in '#### <number>'", (FT, *TINY_CONFIG, "--train_file", "{tmp}/no_answer.jsonl")),
    CliCase("cli-finetune-moment-mode", FT, "`--optim quantum_moment_adamw --optim_args mode=update`", EXIT2, r"TrainingArguments: optim='quantum_moment_adamw' always uses mode='moment', but mode='update' was given", (FT, *TINY_CONFIG, "--optim", "quantum_moment_adamw", "--optim_args", "mode=update")),
    CliCase("cli-evaluate-missing-model", EV, "`--model_path` a folder that does not exist", EXIT2, r"`model_path` '.*nomodel' not found \(neither a local folder nor a Hub id\)", (EV, "--model_path", "{tmp}/nomodel", "--dataset_name", "bundled"), shown="exit 2: ``model_path` '<tmp>/nomodel' not found (neither a local folder nor a Hub id)`"),
    CliCase("cli-evaluate-missing-hub-shaped", EV, "`--model_path outputs/nomodel` (missing, shaped like a Hub id; offline)", EXIT2, r"`model_path` 'outputs/nomodel' not found \(neither a local folder nor a Hub id: ", (EV, "--model_path", "outputs/nomodel", "--dataset_name", "bundled"), shown="exit 2: ``model_path` 'outputs/nomodel' not found (neither a local folder nor a Hub id: <the loader's first line>)`"),
    CliCase("cli-evaluate-abbreviated-flag", EV, "`--model <folder>` (abbreviation of `--model_path`)", EXIT2, r"unrecognized arguments: --model .*is not accepted as an abbreviation of --model_path", (EV, "--model", "{tmp}/m"), shown="exit 2: `unrecognized arguments: --model <folder> (--model is not accepted as an abbreviation of --model_path)`"),
    CliCase("cli-compare-bad-arm", CMP, "`--arms superpositional_adamw:bogus=1`", EXIT2, rf"`arms` entry 'superpositional_adamw:bogus=1': TrainingArguments: optim_args: unknown key 'bogus'.*{VALID_KEYS}", (CMP, *TINY_CONFIG, "--arms", "superpositional_adamw:bogus=1")),
    CliCase("cli-compare-bad-arm-name", CMP, "`--arms adamw_torch superpositional_adamx` (second arm)", EXIT2, r"`arms` entry 'superpositional_adamx': superpositional_adamx is not a valid OptimizerNames, please select one of \[.*'superpositional_adamw', 'quantum_moment_adamw'\]", (CMP, *TINY_CONFIG, "--arms", "adamw_torch", "superpositional_adamx")),
    CliCase("cli-compare-abbreviated-flag", CMP, "`--arm adamw_torch` (abbreviation of `--arms`)", EXIT2, r"unrecognized arguments: --arm adamw_torch \(--arm is not accepted as an abbreviation of --arms\)", (CMP, *TINY_CONFIG, "--arm", "adamw_torch")),
    CliCase("cli-tiny-max-steps", TINY, "`--max_steps 0`", EXIT2, r"DemoArguments: --max_steps must be >= 1, got 0", (TINY, "--max_steps", "0")),
    CliCase("cli-tiny-unknown-flag", TINY, "`--bogus_flag 2`", EXIT2, r"unrecognized arguments: --bogus_flag 2; run with --help to list the flags", (TINY, "--bogus_flag", "2")),
    CliCase("cli-tiny-abbreviated-flag", TINY, "`--max_step 2` (abbreviation of `--max_steps`)", EXIT2, r"unrecognized arguments: --max_step 2 \(--max_step is not accepted as an abbreviation of --max_steps\)", (TINY, "--max_step", "2")),
    CliCase("cli-tiny-bad-arm", TINY, "`--arms adamw_torch,superpositional_adamw:bogus=1` (checked before any arm trains)", EXIT2, rf"--arms entry 'superpositional_adamw:bogus=1': TrainingArguments: optim_args: unknown key 'bogus'.*{VALID_KEYS}", (TINY, "--max_steps", "1", "--arms", "adamw_torch,superpositional_adamw:bogus=1", "--output_dir", "{tmp}/tiny")),
    CliCase("cli-tiny-existing-results", TINY, "`--output_dir` a folder holding an earlier run's results", EXIT2, r"DemoArguments: --output_dir .*/earlier already holds results \(results.json, ...\); pass --overwrite_output_dir", (TINY, "--output_dir", "{tmp}/earlier"), shown="exit 2: `DemoArguments: --output_dir <folder> already holds results (results.json, ...); pass --overwrite_output_dir to replace them, or choose another folder.`"),
    CliCase("cli-tiny-bad-arm-name", TINY, "`--arms adamw_torch,adamx`", EXIT2, r"--arms entry 'adamx': adamx is not a valid OptimizerNames, please select one of \[", (TINY, "--arms", "adamw_torch,adamx", "--output_dir", "{tmp}/tiny"), shown="exit 2: `--arms entry 'adamx': adamx is not a valid OptimizerNames, please select one of [...]`"),
    CliCase("cli-tc-bad-arm", TC, "`--arms adamw bogus`", EXIT2, r"TextClassificationArguments: --arms must be a non-empty list from \['adamw', 'quantum_moment_adamw', 'sgd_lambda_0.1', 'sgd_lambda_0.5'\]", (TC, "--arms", "adamw", "bogus")),
    CliCase("cli-tc-no-baseline", TC, "`--arms sgd_lambda_0.5`", EXIT2, r"TextClassificationArguments: --arms must include the baseline 'adamw'", (TC, "--arms", "sgd_lambda_0.5")),
    CliCase("cli-tc-epochs", TC, "`--num_epochs 0`", EXIT2, r"TextClassificationArguments: --num_epochs must be >= 1, got 0", (TC, "--num_epochs", "0")),
    CliCase("cli-tc-follow-prob", TC, "`--follow_prob 2`", EXIT2, r"`follow_prob` must be in \(0, 1\], got 2", (TC, "--follow_prob", "2")),
    CliCase("cli-tc-attention", TC, "`--attention sdpa`", EXIT2, r"argument --attention: invalid choice: 'sdpa' \(choose from 'quantum', 'eager'\)", (TC, "--attention", "sdpa")),
    CliCase("cli-tc-missing-config", TC, "`--config nope.yaml`", EXIT2, r"config file not found: .*nope\.yaml", (TC, "--config", "{tmp}/nope.yaml")),
    CliCase("cli-tc-yaml-unknown-key", TC, "YAML config with an unknown key", EXIT2, r"unknown\.yaml: unknown key\(s\) 'bogus_key'", (TC, "--config", "{tmp}/unknown.yaml")),
    CliCase("cli-tc-yaml-key-typo", TC, "YAML config with `num_epoch: 3` (typo)", EXIT2, r"typo\.yaml: unknown key\(s\) 'num_epoch' \(did you mean 'num_epochs'\?\)", (TC, "--config", "{tmp}/typo.yaml")),
    CliCase("cli-tc-unknown-flag", TC, "`--bogus_flag 2`", EXIT2, r"unrecognized arguments: --bogus_flag 2; run with --help to list the flags", (TC, "--bogus_flag", "2")),
    CliCase("cli-tc-abbreviated-flag", TC, "`--num_epoch 2` (abbreviation of `--num_epochs`)", EXIT2, r"unrecognized arguments: --num_epoch 2 \(--num_epoch is not accepted as an abbreviation of --num_epochs\)", (TC, "--num_epoch", "2")),
    CliCase("cli-sft-trl-unknown-flag", SFT, "`--bogus_flag 3`", EXIT2, r"unrecognized arguments: --bogus_flag 3; run with --help to list the flags", (SFT, *SFT_CONFIG, "--bogus_flag", "3")),
    CliCase("cli-sft-trl-optim-args", SFT, "`--optim_args bogus=1` (checked while parsing the SFTConfig)", EXIT2, rf"SFTConfig: optim_args: unknown key 'bogus'.*{VALID_KEYS}", (SFT, *SFT_CONFIG, "--optim_args", "bogus=1")),
    CliCase("cli-sft-trl-missing-data", SFT, "`--train_file nope.jsonl`", EXIT2, r"GSM8K data file not found: .*nope\.jsonl", (SFT, *SFT_CONFIG, "--train_file", "{tmp}/nope.jsonl")),
    CliCase("cli-sft-trl-max-length", SFT, "`--max_length 0` (one value for the data and the SFTConfig)", EXIT2, r"`max_length` must be None or an integer >= 8, got 0", (SFT, *SFT_CONFIG, "--max_length", "0")),
    CliCase("cli-study-quick-and-config", STUDY, "`--quick --config recipes/configs/study.yaml`", EXIT2, r"--quick selects its own config file; give either --quick or --config, not both", (STUDY, "--quick", "--config", "recipes/configs/study.yaml")),
    CliCase("cli-study-dose-scope", STUDY, "`--dose_scopes first_n everything`", EXIT2, r"StudyArguments: `dose_scopes` must be values from \['first_n', 'all'\], got \['first_n', 'everything'\]", (STUDY, "--dose_scopes", "first_n", "everything")),
    CliCase("cli-study-seed-range", STUDY, "`--min_seeds 9 --max_seeds 4`", EXIT2, r"StudyArguments: need 2 <= min_seeds <= max_seeds, got 9 and 4", (STUDY, "--min_seeds", "9", "--max_seeds", "4")),
    CliCase("cli-study-zero-lambda", STUDY, "`--dose_lambdas 0 1`", EXIT2, r"StudyArguments: `dose_lambdas` and `gsm8k_lambdas` must be > 0 \(lambda = 0 is AdamW itself\)", (STUDY, "--dose_lambdas", "0", "1")),
    CliCase("cli-study-abbreviated-flag", STUDY, "`--pilot_seed 3` (abbreviation of `--pilot_seeds`)", EXIT2, r"unrecognized arguments: --pilot_seed 3 \(--pilot_seed is not accepted as an abbreviation of --pilot_seeds\)", (STUDY, "--pilot_seed", "3")),
    CliCase("cli-study-reanalyse-missing", STUDY, "`--reanalyse nope.json`", EXIT2, r"`reanalyse`: .*nope\.json not found", (STUDY, "--reanalyse", "{tmp}/nope.json"), shown="exit 2: ``reanalyse`: <tmp>/nope.json not found`"),
]
# fmt: on


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "unknown.yaml").write_text("bogus_key: 1\n")
    (tmp / "bad_value.yaml").write_text(
        (REPO / "recipes" / "configs" / "gsm8k_tiny_offline.yaml")
        .read_text()
        .replace("n_qubits: 4", "n_qubits: 0")
    )
    (tmp / "malformed.jsonl").write_text("not json\n")
    (tmp / "typo.yaml").write_text("num_epoch: 3\n")
    (tmp / "no_answer.jsonl").write_text(
        json.dumps({"question": "2+2?", "answer": "4\n#### 4"}) + "\n" + json.dumps({"question": "q", "answer": "four"}) + "\n"
    )
    (tmp / "earlier").mkdir()
    (tmp / "earlier" / "results.json").write_text("{}")
    cases = {
        c.id: {"script": c.argv[0], "argv": [a.replace("{tmp}", str(tmp)) for a in c.argv[1:]]}
        for c in CLI_CASES
    }
    (tmp / "cases.json").write_text(json.dumps(cases))
    env = repo_env(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    script = REPO / "tests" / "e2e" / "scripts" / "recipe_bad_inputs.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp / "cases.json"), str(tmp / "results.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_recipe_command_line_rejects(case, cli_results):
    result = cli_results[case.id]
    text = (result["exception"] or "") + "\n" + result["stderr"]
    assert result["status"] in case.status, text[-2000:]
    assert re.search(case.match, text, re.S), text[-2000:]
    if result["status"] == 2:  # one `prog: error:` line: no traceback, no argparse usage block
        assert "Traceback" not in result["stderr"] and "usage:" not in result["stderr"], result["stderr"][
            -2000:
        ]
        prog = Path(case.entry).name
        assert sum(line.startswith(f"{prog}: error: ") for line in result["stderr"].splitlines()) == 1


# --------------------------------------------------------------------------------------------------
# the README table
# --------------------------------------------------------------------------------------------------
# Rows whose test lives in another module: (entry, bad input, error, test id).
CKPT = "`validate_checkpoint(folder, model)` / `SuperpositionalTrainer.train(resume_from_checkpoint=...)`"
# fmt: off
EXTERNAL_ROWS = [
    (CKPT, "`optimizer.pt` cut short", "CheckpointError: `<folder>/optimizer.pt: cannot be read (...); the file is truncated or corrupt.`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[truncated_optimizer]"),
    (CKPT, "`optimizer.pt` missing", "CheckpointError: `<folder>/optimizer.pt: missing. transformers would resume without it and silently restart the optimizer ...`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[missing_optimizer]"),
    (CKPT, "`scheduler.pt` missing", "CheckpointError: `<folder>/scheduler.pt: missing. transformers skips the optimizer AND the learning-rate schedule ...`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[missing_scheduler]"),
    (CKPT, "optimizer state without `exp_avg_sq`", "CheckpointError: `<folder>/optimizer.pt: the state of parameter 0 lacks ['exp_avg_sq']: truncated optimizer state.`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[optimizer_state_cut_short]"),
    (CKPT, "`model.safetensors` cut short", "CheckpointError: `<folder>/model.safetensors: truncated or corrupt: its header describes N bytes, the file holds M.`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[truncated_weights]"),
    (CKPT, "no `trainer_state.json` (killed while saving)", "CheckpointError: `<folder>/trainer_state.json: missing. ... this checkpoint is incomplete ...`; `resume_from_checkpoint=True` skips such a folder with a warning", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[half_written]"),
    (CKPT, "`config.json` says `n_qubits=3`, weights hold 2 qubits", "CheckpointError: `<folder>/config.json describes quantum attention with n_qubits=3, ... (ry of shape (1, 3)), but <folder>/model.safetensors holds ...ry with shape (1, 2): the quantum config does not match the weights.`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[config_n_qubits_mismatch]"),
    (CKPT, "`config.json` without its `quantum_attention` entry, resumed into a quantum model", "CheckpointError: `<folder>/config.json: the model being trained uses quantum attention but the checkpoint does not (...)`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[config_lost_quantum_entry]"),
    (CKPT, "circuit tensors missing from the weights", "CheckpointError: `<folder>/config.json describes quantum attention (...) but <folder>/model.safetensors holds no quantum_circuit parameters ...`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[circuits_missing_from_weights]"),
    (CKPT, "model patched with `n_qubits=3`, checkpoint has 2", "CheckpointError: `<folder>/config.json: the checkpoint's quantum attention config does not match the model being trained (n_qubits: checkpoint 2, model 3)`", "integrations/test_checkpoint.py::test_trainer_refuses_a_checkpoint_with_another_quantum_config"),
    (CKPT, "resuming with `optim_args='quantum_weight=0.1'`, saved with 0.5", "CheckpointError: `<folder>/optimizer.pt: param group 0 was saved with quantum_weight=0.5 but this run asks for quantum_weight=0.1; ...`", "integrations/test_checkpoint.py::test_trainer_refuses_to_resume_with_another_quantum_weight"),
    (CKPT, "`model.safetensors` changed after it was written, size unchanged (a flipped bit)", "CheckpointError: `<folder>/model.safetensors: its SHA-256 (...) differs from the one recorded in checksums.sha256 when the checkpoint was written ...`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[weights_bit_flip]"),
    (CKPT, "NaN in a saved weight", "CheckpointError: `<folder>: holds NaN/inf weights (model.safetensors:...): the run had diverged when this checkpoint was written. ...`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[nan_weights]"),
    (CKPT, "inf in the saved Adam moments", "CheckpointError: `<folder>/optimizer.pt: holds NaN/inf optimizer state (state[0].exp_avg): ...`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[nan_optimizer_state]"),
    (CKPT, "a saved model folder, not a checkpoint", "CheckpointError: `<folder>: not a Trainer checkpoint (no trainer_state.json, optimizer.pt or scheduler.pt): ... load it with hf_superpositional.load_trained_model(folder) and start a new run`", "integrations/test_checkpoint.py::test_damaged_checkpoint_is_rejected[not_a_checkpoint]"),
    ("`SuperpositionalTrainer.train()`", "a NaN loss at step 3", "NonFiniteTrainingError: `training step 3: non-finite loss and gradient norm (nan). The optimizer step was not taken ... SuperpositionalTrainer(on_nonfinite='skip') skips such steps instead.`", "integrations/test_trainer.py::test_non_finite_loss_stops_training_naming_the_step_before_the_optimizer_step"),
    ("`SuperpositionalTrainer(..., on_nonfinite='skip').train()`", "a NaN loss at step 3", "no exception: warning `training step 3: non-finite loss ...; step skipped (1 so far)`, weights and moments untouched, `nonfinite_steps_skipped` in the logs", "integrations/test_trainer.py::test_skip_policy_leaves_weights_and_moments_untouched_warns_and_counts"),
    ("`SuperpositionalTrainer(args=TrainingArguments(fp16=True))`", "`fp16=True` on a CPU", "UserWarning (once): `fp16=True has no effect on this CPU run: ... the model trains in float32. Use bf16=True ...`; `trainer.effective_mixed_precision == 'no'`", "integrations/test_trainer.py::test_fp16_on_cpu_warns_that_it_trains_in_float32"),
    ("`SuperpositionalTrainer.train()` (saving a checkpoint)", "the disk fills while `checkpoint-2` is written (torch's `unexpected pos`)", "CheckpointError: `<run>/checkpoint-2: could not be written (the disk is full: ...). The incomplete folder was removed ...`", "integrations/test_trainer.py::test_a_checkpoint_that_fails_to_write_is_removed_with_a_clear_error"),
    (QAC, "`n_qubits=16, depth=2` (costly circuit)", "UserWarning: `QuantumAttentionConfig(n_qubits=16, depth=2): every forward pass simulates the circuit at 65 points per patched layer, about 1.4e+08 operations ...: training will be slow.`", "attention/test_config.py::test_a_costly_circuit_warns_with_its_size"),
    ("`recipes/gsm8k_finetune.py`, `recipes/gsm8k_evaluate.py`", "`--max_length` above the model's `max_position_embeddings`", "UserWarning: `max_length=160 exceeds the model's max_position_embeddings=128: positions past 128 were never trained ...`", "tasks/gsm8k/test_model.py::test_a_context_longer_than_the_models_positions_warns"),
    ("`hf_superpositional.load_trained_model(path)`", "a quantum model after `unregister_quantum_attention()`", "ValueError: `... not supported ... -- the quantum attention is not registered in this process: `import hf_superpositional` registers it ...`", "integrations/test_hub.py::test_a_quantum_model_loaded_after_the_registration_was_undone_names_the_import"),
    ("`SuperpositionalAdamW.step()`", "inf / NaN gradient", "no exception, as `torch.optim.AdamW` (SPEC 1.9): the AMP grad scaler skips such steps", "test_mixed_precision.py::test_grad_scaler_skips_an_overflowing_step_without_touching_the_optimizer"),
]
# fmt: on


def _shown(case) -> str:
    if case.shown:
        return case.shown
    message = case.match.replace(".*", " ... ").replace("\\", "").replace("{VALID_KEYS}", "")
    kind = case.error.__name__ if isinstance(case, Case) else f"exit {case.status[0]}"
    return f"{kind}: `{message}`"


def table_rows() -> list[tuple[str, str, str, str]]:
    rows = [
        (c.entry, c.bad, _shown(c), f"test_bad_inputs.py::test_python_entry_point_rejects[{c.id}]")
        for c in CASES
    ]
    rows += [
        (
            f"`python {c.entry}`",
            c.bad,
            _shown(c),
            f"test_bad_inputs.py::test_recipe_command_line_rejects[{c.id}]",
        )
        for c in CLI_CASES
    ]
    return rows + EXTERNAL_ROWS


def render_table() -> str:
    lines = ["| Entry point | Bad input | Error | Test |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows()]
    return "\n".join(lines)


def test_readme_table_lists_every_case():
    readme = README.read_text(encoding="utf-8")
    start, end = "<!-- bad-input-table:start -->", "<!-- bad-input-table:end -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == render_table(), (
        "tests/README.md is stale: run `python -m tests.test_bad_inputs` and paste"
    )
    for *_, test_id in EXTERNAL_ROWS:
        module, _, name = test_id.partition("::")
        function, _, param = name.partition("[")
        source = (REPO / "tests" / module).read_text(encoding="utf-8")
        assert f"def {function}(" in source, test_id
        if param:
            assert f'"{param.rstrip("]")}"' in source, test_id


if __name__ == "__main__":
    print(render_table())
