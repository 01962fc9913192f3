"""The reproduction tier: the paper's set-ups and the experiments that test its claims.

- :mod:`.presets`: the paper's ``TrainingArguments`` (Tables II and III).
- :mod:`.classification`, :mod:`.gsm8k_analogue`: one seeded training run of the text-classification
  experiment and of the tiny-Llama GSM8K analogue; :mod:`.runs`: many of them over worker processes.
- :mod:`.statistics`: intervals, tests and seed counts; :mod:`.verdicts`: the rule that calls a claim
  refuted, reproduced or inconclusive.
- :mod:`.reporting`: the demo's table, plots and one-line verdict; :mod:`.study` and :mod:`.study_report`:
  the definitive study (``make study``) and its files.
"""

from .presets import (
    GSM8K,
    TEXT_CLASSIFICATION,
    gsm8k_training_arguments,
    text_classification_training_arguments,
)

__all__ = ["GSM8K", "TEXT_CLASSIFICATION", "gsm8k_training_arguments", "text_classification_training_arguments"]
