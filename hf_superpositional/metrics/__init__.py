"""Evaluation metrics that work offline: GSM8K accuracy as an ``evaluate.Metric`` and a Trainer hook.

Example:
    >>> from hf_superpositional.metrics import GSM8KAccuracy
    >>> GSM8KAccuracy().compute(predictions=["#### 5.0"], references=["#### 5"], mode="flexible")
    {'accuracy': 1.0, 'invalid': 0.0}
"""

from hf_superpositional.metrics.gsm8k_accuracy import (
    GSM8K_ACCURACY_DIR,
    GSM8KAccuracy,
    gsm8k_compute_metrics,
    logits_to_token_ids,
)

__all__ = ["GSM8K_ACCURACY_DIR", "GSM8KAccuracy", "gsm8k_compute_metrics", "logits_to_token_ids"]
