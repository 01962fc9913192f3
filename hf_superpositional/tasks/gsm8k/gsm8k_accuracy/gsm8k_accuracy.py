"""Loader script for ``evaluate.load(<this folder>)``: re-exports the packaged GSM8K metric.

evaluate loads a local metric from a folder holding a script named like the folder; it copies this file
into its dynamic-modules directory and imports it, so the import below must be absolute. The metric
itself lives in ``hf_superpositional/tasks/gsm8k/metric.py``; keeping this file a re-export means
``evaluate.load`` and ``GSM8KAccuracy()`` are the same class, with one implementation to test.

Example:
    >>> import evaluate
    >>> from hf_superpositional.tasks.gsm8k.metric import GSM8K_ACCURACY_DIR
    >>> metric = evaluate.load(str(GSM8K_ACCURACY_DIR))  # doctest: +SKIP
"""

from hf_superpositional.tasks.gsm8k.metric import GSM8KAccuracy

__all__ = ["GSM8KAccuracy"]
