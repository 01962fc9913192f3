"""GSM8K (paper Table I): data and formatting (:mod:`.data`), evaluation (:mod:`.evaluation`), answer
grading (:mod:`.answers`), the offline ``evaluate`` metric (:mod:`.metric`; imports ``evaluate``, so it is
not imported here), the offline tokenizer (:mod:`.tokenizer`), the model builder (:mod:`.model`) and the
scripts' arguments (:mod:`.arguments`). A sample of GSM8K ships in ``data/`` with its MIT licence."""

from .answers import extract_answer, gsm8k_accuracy, is_correct
from .data import bundled_gsm8k_path, load_gsm8k, read_gsm8k_jsonl, tokenize_for_sft
from .evaluation import evaluate_generation, generate_answers, mean_answer_loss

__all__ = [
    "bundled_gsm8k_path",
    "evaluate_generation",
    "extract_answer",
    "generate_answers",
    "gsm8k_accuracy",
    "is_correct",
    "load_gsm8k",
    "mean_answer_loss",
    "read_gsm8k_jsonl",
    "tokenize_for_sft",
]
