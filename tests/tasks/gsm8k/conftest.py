"""Fixtures shared by the tests of this folder."""

from __future__ import annotations

import pytest

from hf_superpositional.tasks.gsm8k.data import (
    bundled_gsm8k_path,
    load_gsm8k,
    read_gsm8k_jsonl,
)
from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer


@pytest.fixture(scope="module")
def rows():
    return load_gsm8k("bundled", "train", max_samples=300)


@pytest.fixture(scope="module")
def tokenizer(rows):
    return train_offline_tokenizer([r["question"] + "\n" + r["answer"] for r in rows], vocab_size=1024)


@pytest.fixture(scope="module")
def sample():
    return read_gsm8k_jsonl(bundled_gsm8k_path("test"))
