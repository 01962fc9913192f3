"""The offline tokenizer and load_tokenizer (tasks/gsm8k/tokenizer.py)."""

from __future__ import annotations

import pytest

from hf_superpositional.tasks.gsm8k.tokenizer import train_offline_tokenizer


def test_tokenizer_is_deterministic_and_round_trips(rows):
    texts = [r["answer"] for r in rows[:100]]
    a, b = train_offline_tokenizer(texts, vocab_size=400), train_offline_tokenizer(texts, vocab_size=400)
    assert a.get_vocab() == b.get_vocab()
    assert a.decode(a(texts[3])["input_ids"]) == texts[3]
    with pytest.raises(ValueError, match="vocab_size"):
        train_offline_tokenizer(texts, vocab_size=10)
