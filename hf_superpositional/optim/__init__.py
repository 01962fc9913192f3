"""The optimizer tier: ``SuperpositionalAdamW`` and its maths. torch only (Qiskit for the optional
perturbation backend); nothing here imports a Hugging Face library.

- :mod:`.adamw`: the ``torch.optim.Optimizer`` (param groups, state, DTensor handling, diagnostics);
- :mod:`.functional`: the step on plain tensors, a readable per-tensor reference beside the fast paths;
- :mod:`.masks`: which elements are perturbed (``scope``), by global index under sharding;
- :mod:`.options`: torch AdamW's options (validation, path choice, ``step`` conversions, complex views);
- :mod:`.qiskit_backend`: ``sin(pi * theta)`` evaluated by a Qiskit estimator;
- :mod:`.args`: the ``optim_args`` string of ``TrainingArguments``, parsed and typed.
"""

from .adamw import PERTURBATION_BACKENDS, SuperpositionalAdamW
from .args import VALID_OPTIM_ARG_KEYS, format_optim_args, parse_optim_args, validate_optim_kwargs

__all__ = [
    "PERTURBATION_BACKENDS",
    "VALID_OPTIM_ARG_KEYS",
    "SuperpositionalAdamW",
    "format_optim_args",
    "parse_optim_args",
    "validate_optim_kwargs",
]
