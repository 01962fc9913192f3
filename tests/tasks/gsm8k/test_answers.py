"""Answer grading (tasks/gsm8k/answers.py) against a re-implementation of OpenAI's grader on the bundled sample and on tricky strings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hf_superpositional.tasks.gsm8k.answers import (
    extract_answer,
    extract_last_number,
    extract_reference_number,
    extract_strict_answer,
    gsm8k_accuracy,
    is_correct,
)
from tests.tasks.gsm8k.gsm8k_cases import (
    INVALID_ANS,
    TRICKY,
    reference_extract_answer,
    reference_is_correct,
)


def test_strict_extraction_is_the_graders_on_the_sample_and_tricky_strings(sample):
    for text in [row["answer"] for row in sample] + TRICKY:
        expected = reference_extract_answer(text)
        assert extract_strict_answer(text) == (None if expected == INVALID_ANS else expected), text


def test_strict_grading_agrees_with_the_reference_grader_on_the_sample(sample):
    answers = [row["answer"] for row in sample]
    assert gsm8k_accuracy(answers, answers)["accuracy"] == 1.0
    # Each answer graded against the next row's reference: mostly wrong, right where they coincide.
    shifted = answers[1:] + answers[:1]
    ours = [is_correct(p, r) for p, r in zip(shifted, answers, strict=True)]
    theirs = [reference_is_correct(p, {"answer": r}) for p, r in zip(shifted, answers, strict=True)]
    assert ours == theirs
    assert gsm8k_accuracy(shifted, answers)["accuracy"] == pytest.approx(sum(theirs) / len(theirs))
    assert 0 < sum(not t for t in theirs)  # the check is not vacuous


def test_strict_grading_agrees_with_the_reference_grader_on_every_tricky_pair():
    checked = 0
    for reference in TRICKY:
        if reference_extract_answer(reference) == INVALID_ANS:
            with pytest.raises(AssertionError):
                reference_is_correct("#### 1", {"answer": reference})
            with pytest.raises(ValueError, match="reference has no"):
                is_correct("#### 1", reference)
            continue
        for prediction in TRICKY:
            assert is_correct(prediction, reference) == reference_is_correct(
                prediction, {"answer": reference}
            ), (
                prediction,
                reference,
            )
            checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    ("prediction", "reference", "strict", "flexible"),
    [
        ("#### 1,000", "#### 1000", True, True),
        ("so the total is 1,000", "#### 1000", False, True),
        ("#### $5", "#### 5", False, True),
        ("She pays $5.", "#### 5", False, True),
        ("#### 5.0", "#### 5", False, True),
        ("#### 5.00", "#### 5.0", False, True),
        ("#### -3", "#### 3", False, False),
        ("#### -3", "#### -3", True, True),
        ("The loss is -$3.", "#### -3", False, True),
        ("5-3", "#### 3", False, True),  # a subtraction (or a range), not a negative 3
        ("#### 5\nthen 7 more", "#### 5", True, False),  # flexible: the last number wins
        ("#### 4\n#### 7", "#### 4", True, False),
        ("no numbers here", "#### 4", False, False),
        ("It costs 0.5 dollars", "#### .5", False, True),
        ("#### 72", "72 clips in total", None, True),  # flexible reference without ####: last number
    ],
)
def test_strict_and_flexible_on_tricky_strings(prediction, reference, strict, flexible):
    if strict is None:
        with pytest.raises(ValueError, match="strict"):
            is_correct(prediction, reference, mode="strict")
    else:
        assert is_correct(prediction, reference, mode="strict") is strict
        assert strict == reference_is_correct(prediction, {"answer": reference})
    assert is_correct(prediction, reference, mode="flexible") is flexible


def test_flexible_extraction_reads_numbers():
    assert extract_last_number("She pays $1,250.50 then 3 more.") == Decimal("3")
    assert extract_last_number("total: $1,250.50.") == Decimal("1250.50")
    assert extract_last_number("nothing") is None
    assert extract_reference_number("12 + 3 = 15\n#### $1,015 dollars, 7 cents") == Decimal("1015")
    assert extract_reference_number("#### no number") is None
    assert extract_answer("#### 5.0", mode="flexible") == extract_answer("#### 5", mode="flexible") == "5"
    assert extract_answer("#### 1,000", mode="flexible") == "1000"
    assert extract_answer("#### -0.0", mode="flexible") == "0"


def test_invalid_fraction_and_flexible_reference_errors():
    result = gsm8k_accuracy(["#### 3", "three", "#### $3"], ["#### 3"] * 3)
    assert result == {"accuracy": pytest.approx(1 / 3), "invalid": pytest.approx(2 / 3)}
    result = gsm8k_accuracy(["#### 3", "three", "#### $3"], ["#### 3"] * 3, mode="flexible")
    assert result == {"accuracy": pytest.approx(2 / 3), "invalid": pytest.approx(1 / 3)}
    with pytest.raises(ValueError, match="flexible"):
        is_correct("#### 3", "#### three", mode="flexible")
