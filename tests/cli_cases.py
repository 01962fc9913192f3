"""The dataclasses a GSM8K training script parses, shared by the cli and arguments tests."""

from __future__ import annotations

from transformers import TrainingArguments

from hf_superpositional.attention.config import QuantumAttentionConfig
from hf_superpositional.tasks.gsm8k.arguments import (
    DataArguments,
    GenerationEvalArguments,
    ModelArguments,
)

TYPES = (ModelArguments, DataArguments, GenerationEvalArguments, QuantumAttentionConfig, TrainingArguments)
