"""Custom code saved beside a quantum model (integrations/remote_code.py): it loads with
``trust_remote_code=True`` in a process that never imported hf_superpositional, computes the saved model's
logits, and nothing loads it as a plain Llama."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from hf_superpositional.attention.patch import apply_quantum_attention, remove_quantum_attention
from hf_superpositional.integrations.remote_code import (
    REMOTE_CODE_FILE,
    auto_map_for,
    install_remote_code_saving,
)
from tests.subprocess_env import REPO, repo_env
from tests.tiny_models import tiny_input_ids, tiny_llama

install_remote_code_saving()  # done by `import hf_superpositional`; idempotent


def saved_quantum_model(folder):
    model = apply_quantum_attention(tiny_llama(seed=3), n_qubits=2, depth=1, gate_init=0.7).eval()
    model.save_pretrained(folder)
    with torch.no_grad():
        torch.save(model(tiny_input_ids(seed=5)).logits, folder / "expected_logits.pt")
    return model


def test_saving_a_quantum_model_writes_its_code_and_auto_map(tmp_path):
    model = saved_quantum_model(tmp_path / "quantum")
    config = json.loads((tmp_path / "quantum" / "config.json").read_text())
    assert config["auto_map"] == auto_map_for("llama")
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_quantum_attention.QuantumLlamaForCausalLM"
    code = (tmp_path / "quantum" / REMOTE_CODE_FILE).read_text()
    compile(code, REMOTE_CODE_FILE, "exec")
    for name in ("LlamaForCausalLM", "LlamaModel", "LlamaForSequenceClassification"):
        assert f"class Quantum{name}({name}):" in code
    assert getattr(model.config, "auto_map", None) is None  # only the written config.json gains the entries

    plain = tiny_llama()
    plain.save_pretrained(tmp_path / "plain")
    assert not (tmp_path / "plain" / REMOTE_CODE_FILE).exists()
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())

    # A model loaded from the quantum folder carries the auto_map; once its quantum attention is removed, a save
    # drops our entries (the folder would otherwise point at custom code for circuits it no longer has).
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "quantum")
    assert loaded.config.auto_map == auto_map_for("llama")
    remove_quantum_attention(loaded).save_pretrained(tmp_path / "removed")
    assert "auto_map" not in json.loads((tmp_path / "removed" / "config.json").read_text())
    assert not (tmp_path / "removed" / REMOTE_CODE_FILE).exists()


LOAD_WITHOUT_THE_PACKAGE = """
import sys, json, torch
from transformers import AutoModelForCausalLM
folder = sys.argv[1]
result = {"imported_before": "hf_superpositional" in sys.modules}
try:
    AutoModelForCausalLM.from_pretrained(folder)
    result["without_trust"] = "loaded"
except Exception as error:
    result["without_trust"] = f"{type(error).__name__}: {error}"
result["imported_after_refusal"] = "hf_superpositional" in sys.modules
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
result["class"] = type(model).__name__
result["circuits"] = sum(1 for n, _ in model.named_modules() if n.endswith("quantum_circuit"))
ids = torch.load(folder + "/ids.pt")
with torch.no_grad():
    diff = (model(ids).logits - torch.load(folder + "/expected_logits.pt")).abs().max().item()
result["max_abs_diff"] = diff
model.save_pretrained(folder + "/resaved")  # a model loaded through remote code saves a loadable folder again
print(json.dumps(result))
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    # The repository is NOT put on the path: the child imports hf_superpositional only if the code file does.
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO.parent,
        env=repo_env(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_loads_with_trust_remote_code_where_the_package_was_never_imported(tmp_path):
    folder = tmp_path / "quantum"
    saved_quantum_model(folder)
    torch.save(tiny_input_ids(seed=5), folder / "ids.pt")
    proc = run_python(LOAD_WITHOUT_THE_PACKAGE, str(folder))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["imported_before"] is False
    # Without trust_remote_code transformers' own LlamaForCausalLM refuses the quantum attention it cannot run.
    assert result["without_trust"].startswith("ValueError") and "quantum" in result["without_trust"]
    assert result["imported_after_refusal"] is False
    assert result["class"] == "QuantumLlamaForCausalLM" and result["circuits"] == 2
    assert result["max_abs_diff"] == 0.0  # the same model: circuits and their trained values restored

    from transformers import AutoModelForCausalLM

    resaved = AutoModelForCausalLM.from_pretrained(folder / "resaved").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            resaved(tiny_input_ids(seed=5)).logits, torch.load(folder / "expected_logits.pt"), rtol=0, atol=0
        )
    assert (folder / "resaved" / REMOTE_CODE_FILE).read_text() == (folder / REMOTE_CODE_FILE).read_text()


@pytest.mark.slow
def test_without_the_package_installed_the_code_file_names_pip_install(tmp_path):
    saved_quantum_model(tmp_path / "quantum")
    code = """
    import sys
    sys.modules["hf_superpositional"] = None  # as if it were not installed: importing it raises ImportError
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
    """
    proc = run_python(code, str(tmp_path / "quantum"))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and "pip install hf_superpositional" in last, last
