"""The save x reload table (tests/README.md, issue 13 part B): every way a user saves a quantum-attention model,
reloaded every way a user loads one, each column in a fresh process.

:func:`build_saved_models` trains and saves each row's folder once (tiny Llama, 2 steps, float32) and records the
logits of the model as it was saved; :func:`load_column` (run by ``tests/e2e/scripts/save_reload_column.py`` in a
fresh process, one per column) loads every row one way and returns, per row, the largest absolute logit
difference or the error raised. ``python -m tests.e2e.save_reload_cases`` prints the table measured now.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from tests.subprocess_env import REPO, repo_env
from tests.tiny_models import TINY_COMMON, tiny_input_ids, tiny_llama

ROWS = {
    "save_pretrained": "`model.save_pretrained(folder)` (patched model)",
    "trainer_save_model": "`Trainer.save_model()` (stock Trainer, full model)",
    "trainer_checkpoint": "a Trainer checkpoint folder (`checkpoint-2`, stock Trainer)",
    "push_to_hub_folder": "the folder `push_to_hub` uploads (`stage_upload_folder(output_dir)`)",
    "lora_trainer": "LoRA adapter, stock `Trainer.save_model()`",
    "lora_superpositional": "LoRA adapter, `SuperpositionalTrainer.save_model()`",
    "lora_sft": "LoRA adapter, TRL `SFTTrainer.save_model()`",
    "merged": "`merge_and_unload()` + `save_pretrained` (of the SuperpositionalTrainer LoRA run)",
}
COLUMNS = {
    "auto_model": "`AutoModelForCausalLM.from_pretrained` after the import",
    "load_trained_model": "`hf_superpositional.load_trained_model`",
    "auto_peft": "`AutoPeftModelForCausalLM.from_pretrained`",
    "peft_on_patched_base": "`PeftModel.from_pretrained` on a base the user patched",
    "resume": "`SuperpositionalTrainer.train(resume_from_checkpoint=...)`",
}
LORA_ROWS = ("lora_trainer", "lora_superpositional", "lora_sft")
FULL_ROWS = ("save_pretrained", "trainer_save_model", "trainer_checkpoint", "push_to_hub_folder", "merged")
STEPS = 2

# The error each cell that cannot give the saved model must raise: it says what is missing and how to load it.
ADAPTER_VIA_AUTO_MODEL = r"is a PEFT adapter over a quantum-attention base .*Load it with hf_superpositional.load_trained_model"
FULL_MODEL_VIA_PEFT = r"holds a full model \(config.json\), not a PEFT adapter .*load_trained_model"
NOT_A_CHECKPOINT = r"not a Trainer checkpoint .*load_trained_model"


def expected_outcome(row: str, column: str) -> str | None:
    """``None`` when the cell must reload the saved model (logits within 1e-5), else the error's pattern."""
    if column == "auto_model":
        return ADAPTER_VIA_AUTO_MODEL if row in LORA_ROWS else None
    if column == "load_trained_model":
        return None
    if column in ("auto_peft", "peft_on_patched_base"):
        return None if row in LORA_ROWS else FULL_MODEL_VIA_PEFT
    # resume: the Trainer checkpoint, and the checkpoint of each LoRA run
    return None if row in ("trainer_checkpoint", *LORA_ROWS) else NOT_A_CHECKPOINT


def quantum_config():
    from hf_superpositional import QuantumAttentionConfig

    return QuantumAttentionConfig(n_qubits=2, depth=1, gate_init=0.5, per_head=True)


def input_ids() -> torch.Tensor:
    return tiny_input_ids(batch=2, length=10, seed=3)


def logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids()).logits.float()


def token_rows(count: int = 8, length: int = 12, with_labels: bool = True):
    from datasets import Dataset

    ids = tiny_input_ids(batch=count, length=length, seed=5).tolist()
    columns = {"input_ids": ids}
    if with_labels:
        columns["labels"] = ids
    return Dataset.from_dict(columns)


def tiny_tokenizer():
    """A word-level tokenizer over the tiny models' 96 ids (SFTTrainer wants a processing class)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, TINY_COMMON["vocab_size"])}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<pad>"
    )


def training_arguments(output_dir: Path, trainer_kind: str = "trainer", **overrides: Any):
    common = dict(
        output_dir=str(output_dir),
        max_steps=STEPS,
        per_device_train_batch_size=2,
        learning_rate=2e-2,
        save_strategy="steps",
        save_steps=STEPS,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    common.update(overrides)
    if trainer_kind == "sft":
        from trl import SFTConfig

        # float32 like the other rows (SFTConfig would otherwise pick bf16 autocast where it can)
        return SFTConfig(max_length=16, packing=False, bf16=False, fp16=False, **common)
    from transformers import TrainingArguments

    return TrainingArguments(**common)


def full_model(seed: int = 0):
    from hf_superpositional import apply_quantum_attention

    return apply_quantum_attention(tiny_llama(seed=seed), quantum_config())


def lora_model(base_folder: Path):
    """What a user trains: the saved plain base, patched, with a LoRA that keeps the circuits trainable."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from hf_superpositional import apply_quantum_attention, quantum_lora_config

    base = apply_quantum_attention(AutoModelForCausalLM.from_pretrained(base_folder), quantum_config())
    return get_peft_model(base, quantum_lora_config(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))


def trl_available() -> bool:
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def _train(kind: str, model, output_dir: Path):
    from transformers import Trainer

    from hf_superpositional import SuperpositionalTrainer

    if kind == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=training_arguments(output_dir, "sft"),
            train_dataset=token_rows(with_labels=False),
            processing_class=tiny_tokenizer(),
        )
    else:
        trainer_cls = SuperpositionalTrainer if kind == "superpositional" else Trainer
        trainer = trainer_cls(model=model, args=training_arguments(output_dir), train_dataset=token_rows())
    trainer.train()
    trainer.save_model()
    return trainer


def build_saved_models(root: Path) -> dict[str, Any]:
    """Train and save every row's folder under ``root``; write ``root/manifest.json`` and return it.

    The manifest maps each row to its folder, the checkpoint the resume column uses, and the file of the
    logits the saved model gave (``expected/<row>.pt``).
    """
    from hf_superpositional.integrations.hub import stage_upload_folder

    root = Path(root)
    (root / "expected").mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"rows": {}, "trl": trl_available()}

    def record(row: str, folder: Path, model, checkpoint: Path | None = None) -> None:
        torch.save(logits(model), root / "expected" / f"{row}.pt")
        manifest["rows"][row] = {
            "folder": str(folder),
            "checkpoint": str(checkpoint) if checkpoint else str(folder),
            "expected": str(root / "expected" / f"{row}.pt"),
        }

    model = full_model()
    with torch.no_grad():  # a trained-looking circuit: gates away from their init
        for name, param in model.named_parameters():
            if name.endswith("quantum_circuit.gate"):
                param.copy_(torch.linspace(-0.8, 1.1, param.numel()))
    model.save_pretrained(root / "save_pretrained")
    record("save_pretrained", root / "save_pretrained", model)

    run = root / "full_run"
    trainer = _train("trainer", full_model(), run)
    record("trainer_save_model", run, trainer.model)
    record("trainer_checkpoint", run / f"checkpoint-{STEPS}", trainer.model)
    stage_upload_folder(run, root / "push_to_hub_folder")
    record("push_to_hub_folder", root / "push_to_hub_folder", trainer.model)

    base = root / "base"
    tiny_llama(seed=1).save_pretrained(base)  # a plain pretrained model, patched for training only
    tiny_tokenizer().save_pretrained(base)
    for row, kind in (("lora_trainer", "trainer"), ("lora_superpositional", "superpositional"), ("lora_sft", "sft")):
        if kind == "sft" and not manifest["trl"]:
            continue
        run = root / row
        trainer = _train(kind, lora_model(base), run)
        record(row, run, trainer.model, checkpoint=run / f"checkpoint-{STEPS}")
        if kind == "superpositional":
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(root / "merged")
            record("merged", root / "merged", merged)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _load(column: str, row: str, entry: dict[str, str], scratch: Path):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    import hf_superpositional

    folder = entry["folder"]
    if column == "auto_model":
        return AutoModelForCausalLM.from_pretrained(folder)
    if column == "load_trained_model":
        return hf_superpositional.load_trained_model(folder)
    if column == "auto_peft":
        return AutoPeftModelForCausalLM.from_pretrained(folder)
    if column == "peft_on_patched_base":
        if row in LORA_ROWS:
            plain = AutoModelForCausalLM.from_pretrained(Path(folder).parent / "base")
            base = hf_superpositional.apply_quantum_attention(plain, quantum_config())
        else:
            base = full_model(seed=99)
        return PeftModel.from_pretrained(base, folder)
    # resume: the same set-up as the run that saved it (other seeds: the checkpoint must replace every value)
    model = lora_model(Path(folder).parent / "base") if row in LORA_ROWS else full_model(seed=99)
    trainer = hf_superpositional.SuperpositionalTrainer(
        model=model, args=training_arguments(scratch / row), train_dataset=token_rows()
    )
    trainer.train(resume_from_checkpoint=entry["checkpoint"])
    return trainer.model


def load_column(root: Path, column: str) -> dict[str, dict[str, Any]]:
    """Load every saved row one way: ``{row: {"max_abs_diff": float} or {"error": "Type: message"}}``."""
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for row, entry in manifest["rows"].items():
            try:
                model = _load(column, row, entry, Path(scratch))
            except Exception as error:  # the cell's outcome: the test checks which error, and its message
                results[row] = {"error": f"{type(error).__name__}: {error}"}
                continue
            expected = torch.load(entry["expected"])
            results[row] = {"max_abs_diff": (logits(model) - expected).abs().max().item()}
    return results


def run_columns(root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Every column in its own fresh process (two at a time on the 2-core budget); ``{column: results}``."""
    script = REPO / "tests" / "e2e" / "scripts" / "save_reload_column.py"
    results: dict[str, dict[str, dict[str, Any]]] = {}
    pending = list(COLUMNS)
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = {
            column: subprocess.Popen(
                [sys.executable, str(script), str(root), column],
                cwd=REPO,
                env=repo_env(TOKENIZERS_PARALLELISM="false"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for column in batch
        }
        for column, proc in procs.items():
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"column {column} failed:\n{err[-4000:]}")
            results[column] = json.loads(out.strip().splitlines()[-1])
    return results


def _cell_text(result: dict[str, Any] | None) -> str:
    if result is None:
        return "skipped (trl not installed)"
    if "error" in result:
        message = result["error"].split(". ")[0]
        return f"raises `{message[:150]}`"
    return f"{result['max_abs_diff']:.1e}"


def markdown_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The README table: max |logit difference| per cell, or the error raised (its first sentence)."""
    lines = ["| saved by \\ reloaded with | " + " | ".join(COLUMNS.values()) + " |"]
    lines.append("|" + " --- |" * (len(COLUMNS) + 1))
    for row, label in ROWS.items():
        cells = [_cell_text(results[column].get(row)) for column in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        build_saved_models(Path(folder))
        print(markdown_table(run_columns(Path(folder))))
        shutil.rmtree(folder, ignore_errors=True)
