"""The dataset authors' grader (the independent oracle of strict grading), shared by the answer and metric tests."""

from __future__ import annotations

import re

# ---- The dataset authors' grader, copied verbatim from openai/grade-school-math
# ---- (grade_school_math/dataset.py) as the independent oracle for strict mode.
ANS_RE = re.compile(r"#### (\-?[0-9\.\,]+)")


INVALID_ANS = "[invalid]"


def reference_extract_answer(completion):
    match = ANS_RE.search(completion)
    if match:
        match_str = match.group(1).strip()
        match_str = match_str.replace(",", "")
        return match_str
    else:
        return INVALID_ANS


def reference_is_correct(model_completion, gt_example):
    gt_answer = reference_extract_answer(gt_example["answer"])
    assert gt_answer != INVALID_ANS
    return reference_extract_answer(model_completion) == gt_answer


TRICKY = [
    "#### 1,000",
    "#### 1000",
    "so 1,000 eggs\n#### 1,000 eggs in total",
    "#### $5",
    "#### 5",
    "#### 5.0",
    "#### 5.",
    "#### -3",
    "#### 3",
    "#### -3.50",
    "She has 12 apples.",  # no ####
    "####5",  # the grader wants exactly one space
    "#### 72\nThe answer is 72, or 73 if rounded.",  # trailing text
    "#### 4\n#### 7",  # several ####: the first one wins (re.search)
    "#### 1,2,3",
    "#### .5",
    "#### 0.5",
    "",
]
