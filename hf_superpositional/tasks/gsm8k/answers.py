"""GSM8K answer extraction and grading: pure functions, no ``evaluate`` or Trainer imports.

Two grading modes:

- ``"strict"`` reproduces the dataset authors' grader (``grade_school_math/dataset.py`` in
  openai/grade-school-math) exactly: the answer is the first ``#### N`` with ``N`` made of digits,
  ``.``, ``,`` and an optional leading ``-``; commas are removed and the strings are compared as strings.
  So ``"#### 5.0"`` does not match a reference ``"#### 5"`` and ``"#### $5"`` is no answer at all.
- ``"flexible"`` takes the last number in the prediction (``$`` signs dropped, thousands commas removed)
  and compares it numerically with the reference's ``#### N`` (or its last number when it has no
  ``####``), so ``5.0`` equals ``5`` and ``$1,000`` equals ``1000``.

``hf_superpositional.tasks.gsm8k.metric.GSM8KAccuracy`` wraps these as an ``evaluate.Metric``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

MODES = ("strict", "flexible")

# Verbatim from openai/grade-school-math (grade_school_math/dataset.py).
ANS_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
INVALID_ANS = "[invalid]"

# A number: digits with optional comma groups and decimals, or a bare decimal such as ".5". The minus
# sign only counts when it does not follow a word character or a closing bracket, so "5-3" reads as
# 5 and 3 (a range or a subtraction), not 5 and -3.
_NUMBER_RE = re.compile(r"(?:(?<![0-9A-Za-z_)])-)?(?:\d+(?:,\d+)*(?:\.\d+)?|\.\d+)")


def check_mode(mode: str) -> None:
    """Raise a ``ValueError`` naming the allowed grading modes unless ``mode`` is one of :data:`MODES`.

    Example:
        >>> check_mode("strict")
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")


def _check_text(text: object, name: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string, got {type(text).__name__}")
    return text


def extract_strict_answer(text: str) -> str | None:
    """The GSM8K grader's answer: the first ``#### N``, commas removed; ``None`` when there is none.

    Same as ``extract_answer`` in openai/grade-school-math, with ``None`` in place of ``"[invalid]"``.

    Example:
        >>> extract_strict_answer("so 1,000 in all.\\n#### 1,000")
        '1000'
        >>> extract_strict_answer("#### $5") is None
        True
    """
    match = ANS_RE.search(_check_text(text, "text"))
    if match is None:
        return None
    return match.group(1).strip().replace(",", "")


def _parse_number(token: str) -> Decimal | None:
    try:
        return Decimal(token.replace(",", ""))
    except InvalidOperation:
        return None


def _numbers(text: str) -> list[Decimal]:
    # "$" is dropped first so "$5", "-$5" and "$-5" all read as numbers.
    return [n for n in map(_parse_number, _NUMBER_RE.findall(text.replace("$", ""))) if n is not None]


def extract_last_number(text: str) -> Decimal | None:
    """The last number in ``text`` as an exact ``Decimal`` (``$`` and thousands commas removed).

    Returns ``None`` when the text holds no number.

    Example:
        >>> extract_last_number("She pays $1,250.50, then 3 more.")
        Decimal('3')
        >>> extract_last_number("The answer is -$7.")
        Decimal('-7')
    """
    numbers = _numbers(_check_text(text, "text"))
    return numbers[-1] if numbers else None


def extract_reference_number(reference: str) -> Decimal | None:
    """The reference's answer for flexible grading: the number after the first ``####``.

    A reference without ``####`` falls back to its last number. Returns ``None`` when there is no
    number where one is expected.

    Example:
        >>> extract_reference_number("48/2 = 24 clips in May.\\n#### $72")
        Decimal('72')
        >>> extract_reference_number("The answer is 3.0")
        Decimal('3.0')
    """
    _check_text(reference, "reference")
    head, marker, tail = reference.partition("####")
    if not marker:
        return extract_last_number(head)
    numbers = _numbers(tail)
    return numbers[0] if numbers else None


def extract_answer(text: str, mode: str = "strict") -> str | None:
    """A prediction's answer under ``mode``, as a normalised string, or ``None`` if it has none.

    Under ``"strict"`` this is the grader's string (``"5.0"`` stays ``"5.0"``); under ``"flexible"`` it is
    the last number, normalised so equal numbers give equal strings (``"5.0"`` -> ``"5"``).

    Example:
        >>> extract_answer("#### 5.0"), extract_answer("#### 5.0", mode="flexible")
        ('5.0', '5')
    """
    check_mode(mode)
    if mode == "strict":
        return extract_strict_answer(text)
    number = extract_last_number(text)
    return None if number is None else _canonical(number)


def _canonical(number: Decimal) -> str:
    # normalize() drops trailing zeros ("5.0" -> "5"); format "f" avoids exponents ("1E+3" -> "1000").
    text = format(number.normalize(), "f")
    return "0" if text == "-0" else text


def is_correct(prediction: str, reference: str, mode: str = "strict") -> bool:
    """Whether ``prediction`` gets the GSM8K ``reference`` right.

    Args:
        prediction: model output (a worked solution, ideally ending in ``#### N``).
        reference: the dataset's ``answer`` field (ending in ``#### N``).
        mode: ``"strict"`` (the authors' grader) or ``"flexible"`` (last number, numeric compare).

    Raises:
        ValueError: unknown ``mode``, a non-string input, or a reference with no answer (strict: no
            ``#### N``; flexible: no number) -- that is bad data, not a wrong prediction.

    Example:
        >>> is_correct("12 + 60 = 72\\n#### 72", "...\\n#### 72")
        True
        >>> is_correct("The answer is 72.0", "...\\n#### 72", mode="flexible")
        True
    """
    check_mode(mode)
    _check_text(prediction, "prediction")
    _check_text(reference, "reference")
    if mode == "strict":
        gold = extract_strict_answer(reference)
        if gold is None:
            raise ValueError(f"reference has no '#### <number>' answer (strict mode): {reference[-80:]!r}")
        return extract_strict_answer(prediction) == gold
    gold_number = extract_reference_number(reference)
    if gold_number is None:
        raise ValueError(f"reference has no number to grade against (flexible mode): {reference[-80:]!r}")
    predicted = extract_last_number(prediction)
    return predicted is not None and predicted == gold_number


def gsm8k_accuracy(
    predictions: Sequence[str], references: Sequence[str], mode: str = "strict"
) -> dict[str, float]:
    """Accuracy of ``predictions`` against GSM8K ``references``, and the fraction with no answer.

    Args:
        predictions: model outputs, one per reference.
        references: the dataset's ``answer`` fields.
        mode: ``"strict"`` or ``"flexible"`` (see the module docstring).

    Returns:
        ``{"accuracy": float, "invalid": float}``; ``invalid`` is the fraction of predictions from which no
        answer can be extracted under ``mode`` (those count as wrong).

    Raises:
        ValueError: unknown ``mode``, empty or different-length inputs, or a reference without an answer.

    Example:
        >>> gsm8k_accuracy(["#### 72", "#### 5.0", "no idea"], ["#### 72", "#### 5", "#### 3"])
        {'accuracy': 0.3333333333333333, 'invalid': 0.3333333333333333}
    """
    check_mode(mode)
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length, got {len(predictions)} and {len(references)}"
        )
    if not predictions:
        # An accuracy over nothing has no value; 0.0 or 1.0 would hide an empty evaluation set.
        raise ValueError("predictions and references are empty: nothing to grade")
    correct = sum(is_correct(p, r, mode) for p, r in zip(predictions, references, strict=True))
    invalid = sum(extract_answer(p, mode) is None for p in predictions)
    return {"accuracy": correct / len(predictions), "invalid": invalid / len(predictions)}
