"""GSM8K accuracy as an ``evaluate.Metric`` that needs neither the Hub nor evaluate's module cache.

``evaluate.load("gsm8k_accuracy")`` would look the name up on the Hugging Face Hub. This metric ships
in the package instead: use the class directly, or load it from its local folder with
``evaluate.load(str(GSM8K_ACCURACY_DIR))`` (evaluate then copies the one-line script in that folder into
its dynamic-modules directory and imports it; no network is used). For training loops,
``gsm8k_compute_metrics`` grades a Trainer's ``EvalPrediction`` with the pure functions of
``hf_superpositional.tasks.gsm8k.answers`` and touches no evaluate state at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
import evaluate
import numpy as np

from .answers import check_mode, gsm8k_accuracy

# evaluate.load(<folder>) wants <folder>/<folder name>.py; that script re-exports the class below.
GSM8K_ACCURACY_DIR = Path(__file__).with_name("gsm8k_accuracy")

_CITATION = """\
@article{cobbe2021gsm8k,
  title={Training Verifiers to Solve Math Word Problems},
  author={Cobbe, Karl and Kosaraju, Vineet and Bavarian, Mohammad and Chen, Mark and Jun, Heewoo and
          Kaiser, Lukasz and Plappert, Matthias and Tworek, Jerry and Hilton, Jacob and Nakano, Reiichiro and
          Hesse, Christopher and Schulman, John},
  journal={arXiv preprint arXiv:2110.14168},
  year={2021}
}
"""

_DESCRIPTION = """\
Final-answer accuracy on GSM8K (grade-school maths word problems). In "strict" mode (the default) a
prediction is graded exactly as by the dataset authors' grader (openai/grade-school-math,
grade_school_math/dataset.py): the first "#### N" of the prediction, commas removed, must equal the
reference's as a string. In "flexible" mode the last number of the prediction ("$" and thousands commas
removed) is compared numerically with the reference's "#### N" (5.0 == 5).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list` of `str`): model outputs, e.g. a worked solution ending in "#### 72".
    references (`list` of `str`): the dataset's "answer" fields, each ending in "#### N".
    mode (`str`, default "strict"): "strict" (the authors' grader) or "flexible" (last number, numeric).
Returns:
    accuracy (`float`): fraction of predictions graded correct, in [0, 1].
    invalid (`float`): fraction of predictions from which no answer can be extracted under `mode`.
Raises:
    ValueError: unknown `mode`, different numbers of predictions and references, or a reference with no
        answer ("#### N" in strict mode, any number in flexible mode).
Examples:
    >>> metric = GSM8KAccuracy()
    >>> metric.compute(predictions=["... #### 72", "#### 5.0"], references=["... #### 72", "#### 5"])
    {'accuracy': 0.5, 'invalid': 0.0}
    >>> metric.compute(predictions=["#### 72", "#### 5.0"], references=["#### 72", "#### 5"], mode="flexible")
    {'accuracy': 1.0, 'invalid': 0.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GSM8KAccuracy(evaluate.Metric):
    """GSM8K final-answer accuracy, ``strict`` (the authors' grader) or ``flexible`` (numeric).

    Unlike ``evaluate.Metric``, results are kept in memory by default when ``num_process == 1``: the
    inputs are a few hundred strings, so evaluate's Arrow cache files would only add disk writes.
    Pass ``keep_in_memory=False`` (and ``num_process``/``process_id``) for evaluate's distributed mode.

    Example:
        >>> metric = GSM8KAccuracy()
        >>> metric.compute(predictions=["so #### 1,000"], references=["... #### 1000"])
        {'accuracy': 1.0, 'invalid': 0.0}
    """

    def __init__(self, *args, keep_in_memory: bool | None = None, num_process: int = 1, **kwargs):
        if keep_in_memory is None:
            keep_in_memory = num_process == 1
        super().__init__(*args, keep_in_memory=keep_in_memory, num_process=num_process, **kwargs)
        self.info.module_name = self.name

    @property
    def name(self) -> str:
        # evaluate derives the name from the class name, which turns "GSM8K" into "gsm8_k"; the name
        # keys `evaluate.combine` results and the cache folder, so give it the spelling users expect.
        return "gsm8k_accuracy"

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            homepage="https://github.com/openai/grade-school-math",
            license="MIT (GSM8K data and grader)",
            codebase_urls=[
                "https://github.com/openai/grade-school-math/blob/master/grade_school_math/dataset.py"
            ],
            reference_urls=["https://arxiv.org/abs/2110.14168"],
        )

    def compute(self, *, predictions=None, references=None, mode: str = "strict", **kwargs) -> dict | None:
        """Grade ``predictions`` against ``references`` (plus any batches added with ``add_batch``).

        Returns ``{"accuracy": float, "invalid": float}`` on process 0 and ``None`` elsewhere, like every
        ``evaluate`` module. The arguments are described below.
        """
        # Checked here, before evaluate stores the batch, so bad arguments fail on every process and
        # leave no half-written cache behind (evaluate itself only calls _compute on process 0).
        check_mode(mode)
        if predictions is not None and references is not None and len(predictions) != len(references):
            raise ValueError(
                "predictions and references must have the same length, "
                f"got {len(predictions)} and {len(references)}"
            )
        return super().compute(predictions=predictions, references=references, mode=mode, **kwargs)

    def _compute(self, predictions: Sequence[str], references: Sequence[str], mode: str = "strict") -> dict:
        return gsm8k_accuracy(list(predictions), list(references), mode=mode)


def logits_to_token_ids(logits, labels=None):
    """A Trainer ``preprocess_logits_for_metrics`` that keeps only the argmax token ids.

    Storing ``[batch, seq, vocab]`` logits for a whole evaluation set is what runs out of memory; the
    argmax is all ``gsm8k_compute_metrics(..., teacher_forced=True)`` needs.

    Example:
        >>> import torch
        >>> logits_to_token_ids(torch.tensor([[[0.1, 2.0], [3.0, 0.0]]])).tolist()
        [[1, 0]]
    """
    if isinstance(logits, tuple):  # models that also return past_key_values etc.
        logits = logits[0]
    return logits.argmax(dim=-1)


def gsm8k_compute_metrics(
    tokenizer, mode: str = "strict", teacher_forced: bool = False, ignore_index: int = -100
) -> Callable[..., dict[str, float]]:
    """A ``compute_metrics`` for ``transformers.Trainer`` grading GSM8K answers; no evaluate cache used.

    References are decoded from the label positions that are not ``ignore_index`` (the answer tokens of
    ``hf_superpositional.tasks.gsm8k.data.tokenize_for_sft``). Predictions are read in one of two ways:

    - ``teacher_forced=False``: ``predictions`` are generated token ids (e.g. ``Seq2SeqTrainer`` with
      ``predict_with_generate=True``, or your own ``model.generate`` output); each row is decoded whole,
      negative ids (the Trainer's padding) dropped.
    - ``teacher_forced=True``: ``predictions`` are a causal LM's logits ``[batch, seq, vocab]`` (or their
      argmax, see ``logits_to_token_ids``) over the labelled sequence; the token predicted at position
      ``t`` is read against label ``t + 1``, so the decoded text is the model's greedy answer given the
      gold prefix. A cheap proxy for generation accuracy that a plain ``Trainer.evaluate`` can compute.

    Args:
        tokenizer: the tokenizer used for the data (its ``batch_decode`` is called with
            ``skip_special_tokens=True``).
        mode: ``"strict"`` or ``"flexible"``, as in ``hf_superpositional.tasks.gsm8k.answers``.
        teacher_forced: how to read ``predictions`` (see above).
        ignore_index: the label value of positions without loss.

    Returns:
        ``compute_metrics(eval_pred) -> {"gsm8k_accuracy": float, "gsm8k_invalid": float}``.

    Example:
        >>> trainer = Trainer(model, args, eval_dataset=ds,  # doctest: +SKIP
        ...                   compute_metrics=gsm8k_compute_metrics(tok, teacher_forced=True),
        ...                   preprocess_logits_for_metrics=logits_to_token_ids)
    """
    check_mode(mode)

    def compute_metrics(eval_pred) -> dict[str, float]:
        predictions, labels = eval_pred[0], eval_pred[1]
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        if predictions.ndim == 3:
            predictions = predictions.argmax(axis=-1)
        if predictions.ndim != 2 or labels.ndim != 2:
            raise ValueError(
                "expected predictions [batch, seq] (token ids) or [batch, seq, vocab] (logits) and labels "
                f"[batch, seq], got shapes {predictions.shape} and {labels.shape}"
            )
        if predictions.shape[0] != labels.shape[0]:
            raise ValueError(
                f"predictions and labels differ in batch size: {predictions.shape[0]} vs {labels.shape[0]}"
            )
        reference_ids = [row[row != ignore_index].tolist() for row in labels]
        if teacher_forced:
            if predictions.shape[1] != labels.shape[1]:
                raise ValueError(
                    "teacher_forced=True needs predictions over the labelled sequence (same length as labels), "
                    f"got {predictions.shape[1]} and {labels.shape[1]}"
                )
            # Causal LM: logits at position t predict token t + 1.
            keep = labels[:, 1:] != ignore_index
            prediction_ids = [row[k].tolist() for row, k in zip(predictions[:, :-1], keep, strict=True)]
        else:
            prediction_ids = [row[row >= 0].tolist() for row in predictions]
        decoded_predictions = tokenizer.batch_decode(prediction_ids, skip_special_tokens=True)
        decoded_references = tokenizer.batch_decode(reference_ids, skip_special_tokens=True)
        result = gsm8k_accuracy(decoded_predictions, decoded_references, mode=mode)
        return {"gsm8k_accuracy": result["accuracy"], "gsm8k_invalid": result["invalid"]}

    return compute_metrics
