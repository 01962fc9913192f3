"""The reproduction tier: the paper's set-ups (:mod:`.presets`) and the statistics, tables, plots and
verdicts of optimizer comparisons over seeds (:mod:`.reporting`)."""

from .presets import GSM8K, TEXT_CLASSIFICATION, gsm8k_training_arguments, text_classification_training_arguments

__all__ = ["GSM8K", "TEXT_CLASSIFICATION", "gsm8k_training_arguments", "text_classification_training_arguments"]
