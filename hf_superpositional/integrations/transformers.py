"""Make ``optim="superpositional_adamw"`` (and ``"quantum_moment_adamw"``) work in the stock HF Trainer.

transformers has no public optimizer registry. The stock path is:

1. ``TrainingArguments.__post_init__`` does ``self.optim = OptimizerNames(self.optim)`` (an ``ExplicitEnum``),
   and ``HfArgumentParser`` builds the ``--optim`` choices by iterating that enum when the parser is made;
2. ``Trainer.get_optimizer_cls_and_kwargs`` looks ``args.optim`` up in ``_OPTIMIZER_HANDLERS`` (a private dict
   in ``transformers.trainer_optimizer``, imported by name into ``transformers.trainer``).

:func:`register_superpositional_optimizers` adds our two names to that enum and our handler to that dict.
Both are private, so the hook is feature-detected: when something is missing it raises a ``RuntimeError``
that names the missing piece and points at the supported fallback, the public factory
:func:`superpositional_optimizer_cls_and_kwargs` for ``Trainer(optimizer_cls_and_kwargs=...)``, which
relies only on public Trainer API. Tested against transformers ``TESTED_TRANSFORMERS_VERSION``.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .._utils import TESTED_TRANSFORMERS_VERSION, parse_key_value_pairs, unwrap_optimizer
from ..optim import SuperpositionalAdamW
from ..optim.args import VALID_OPTIM_ARG_KEYS, parse_optim_args, validate_optim_kwargs

__all__ = [
    "MIN_TRANSFORMERS_VERSION",
    "OPTIMIZER_NAMES",
    "ArgumentsError",
    "QUANTUM_MOMENT_ADAMW",
    "SUPERPOSITIONAL_ADAMW",
    "TESTED_TRANSFORMERS_VERSION",
    "check_optimizer_arguments",
    "check_transformers_version",
    "is_superpositional_optim",
    "superpositional_kwargs_of",
    "register_superpositional_optimizers",
    "superpositional_optimizer_cls_and_kwargs",
    "unregister_superpositional_optimizers",
    "uses_superpositional_optimizer",
]

SUPERPOSITIONAL_ADAMW = "superpositional_adamw"
"""``optim`` name of SuperpositionalAdamW; ``mode`` defaults to ``"update"`` (the paper's eq. 1)."""

QUANTUM_MOMENT_ADAMW = "quantum_moment_adamw"
"""``optim`` name of SuperpositionalAdamW with ``mode="moment"`` forced (the paper's comparison method)."""

OPTIMIZER_NAMES: tuple[str, ...] = (SUPERPOSITIONAL_ADAMW, QUANTUM_MOMENT_ADAMW)
"""Every ``optim`` name this package registers."""

MIN_TRANSFORMERS_VERSION = "5.4"
"""The oldest transformers ``make test-oldest`` runs the fast suite with (the floor ``pyproject.toml`` declares).
Older 5.x releases lack what the hooks need: 5.0/5.1 have no optimizer handler table (``optim="superpositional_adamw"``
fails at ``TrainingArguments``), and up to 5.3 the attention-mask functions are called with another signature."""


def check_transformers_version(version: str | None = None) -> None:
    """Raise unless the installed transformers (or ``version``) is one this package was tested with.

    ``import hf_superpositional`` calls it before any registration: on an older transformers the hooks
    cannot work, and a quantum checkpoint would load without its circuit term instead of failing.

    Raises:
        ImportError: the version is below :data:`MIN_TRANSFORMERS_VERSION` or from another major release.

    Example:
        >>> check_transformers_version("5.0.0")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ImportError: hf_superpositional needs transformers>=5.4,<6 ...; found 5.0.0. ...
    """
    from packaging.version import Version

    if version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed_version

        try:  # the installed distribution (what pip installed), as the floor in pyproject.toml means it
            version = installed_version("transformers")
        except PackageNotFoundError:
            import transformers

            version = transformers.__version__
    found = Version(version)
    if found < Version(MIN_TRANSFORMERS_VERSION) or found.major >= 6:
        raise ImportError(
            f"hf_superpositional needs transformers>={MIN_TRANSFORMERS_VERSION},<6 (its optimizer registration and "
            f"loading hooks are tested from {MIN_TRANSFORMERS_VERSION} to {TESTED_TRANSFORMERS_VERSION}); found "
            f"{version}. Install a supported release: pip install 'transformers>={MIN_TRANSFORMERS_VERSION},<6'."
        )


class ArgumentsError(ValueError):
    """Training arguments, a command-line flag or a configuration file are invalid (the message says which
    and why). Scripts answer it with one error line and exit status 2."""


# Enum member names, following OptimizerNames' own UPPER_CASE convention.
_MEMBER_NAMES = {SUPERPOSITIONAL_ADAMW: "SUPERPOSITIONAL_ADAMW", QUANTUM_MOMENT_ADAMW: "QUANTUM_MOMENT_ADAMW"}
_ADAM_KEYS = ("lr", "betas", "eps", "weight_decay")
_FALLBACK_HINT = (
    "Fallback that needs no registration: build the Trainer with "
    "`Trainer(..., optimizer_cls_and_kwargs=hf_superpositional.superpositional_optimizer_cls_and_kwargs("
    "training_args, quantum_weight=...))` and keep a stock `optim` name in TrainingArguments."
)

# What register_* added, so unregister_* removes exactly that and nothing transformers owns.
_added_members: dict[str, Enum] = {}
_original_parse_optim_args: Callable[[str | None], dict[str, str]] | None = None


def is_superpositional_optim(optim: Any) -> bool:
    """Whether an ``optim`` value (a string or an ``OptimizerNames`` member) names this package's optimizer.

    Example:
        >>> is_superpositional_optim("quantum_moment_adamw"), is_superpositional_optim("adamw_torch")
        (True, False)
    """
    return str(getattr(optim, "value", optim)) in OPTIMIZER_NAMES


def superpositional_optimizer_cls_and_kwargs(
    args: Any | None = None, **optim_kwargs: Any
) -> tuple[type, dict]:
    """Return ``(SuperpositionalAdamW, kwargs)`` built from ``TrainingArguments`` and/or explicit kwargs.

    This is what the registered ``optim`` names resolve to inside ``Trainer.get_optimizer_cls_and_kwargs``,
    and it is the supported public fallback when the registration hook is unavailable:
    ``Trainer(optimizer_cls_and_kwargs=superpositional_optimizer_cls_and_kwargs(args, quantum_weight=0.5))``.

    The Trainer builds the parameter groups and sets ``weight_decay`` per group (0 for biases and norms);
    the ``weight_decay`` returned here is only the default for groups that do not set one.

    Args:
        args: a ``TrainingArguments`` (or ``None``). When given, ``lr``, ``betas``, ``eps`` and
            ``weight_decay`` come from ``learning_rate``, ``adam_beta1``/``adam_beta2``, ``adam_epsilon`` and
            ``weight_decay``, and ``args.optim_args`` is parsed with
            :func:`~hf_superpositional.optim.args.parse_optim_args`. ``args.optim == "quantum_moment_adamw"``
            forces ``mode="moment"``.
        **optim_kwargs: explicit SuperpositionalAdamW arguments, overriding the above: any of
            ``lr, betas, eps, weight_decay`` and of :data:`~hf_superpositional.optim.args.VALID_OPTIM_ARG_KEYS`.

    Returns:
        ``(SuperpositionalAdamW, kwargs)`` ready for ``optimizer_cls(param_groups, **kwargs)``.

    Raises:
        ValueError: for an unknown keyword, a malformed ``optim_args``, or ``mode="update"`` together with
            ``optim="quantum_moment_adamw"``.

    Example:
        >>> from transformers import Trainer, TrainingArguments
        >>> args = TrainingArguments("out", learning_rate=2e-5, weight_decay=0.01)
        >>> cls_and_kwargs = superpositional_optimizer_cls_and_kwargs(args, quantum_weight=0.5)
        >>> trainer = Trainer(model=model, args=args, optimizer_cls_and_kwargs=cls_and_kwargs)  # doctest: +SKIP
    """
    unknown = sorted(set(optim_kwargs) - set(_ADAM_KEYS) - set(VALID_OPTIM_ARG_KEYS))
    if unknown:
        raise ValueError(
            f"superpositional_optimizer_cls_and_kwargs: unknown argument(s) {unknown}. "
            f"Valid: {', '.join(_ADAM_KEYS + VALID_OPTIM_ARG_KEYS)}."
        )
    kwargs: dict[str, Any] = {}
    optim_name = None
    if args is not None:
        kwargs.update(
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
            weight_decay=args.weight_decay,
        )
        kwargs.update(parse_optim_args(getattr(args, "optim_args", None)))
        optim_name = str(getattr(args.optim, "value", args.optim))
    kwargs.update({k: v for k, v in optim_kwargs.items() if k in _ADAM_KEYS})
    kwargs.update(validate_optim_kwargs({k: v for k, v in optim_kwargs.items() if k not in _ADAM_KEYS}))

    if optim_name == QUANTUM_MOMENT_ADAMW:
        # The name promises the moment variant; silently training the update variant under it would make
        # runs mislabelled, so a contradicting explicit mode is an error rather than a quiet override.
        if kwargs.get("mode", "moment") != "moment":
            raise ValueError(
                f"optim='{QUANTUM_MOMENT_ADAMW}' always uses mode='moment', but mode={kwargs['mode']!r} was "
                f"given. Use optim='{SUPERPOSITIONAL_ADAMW}' (mode='update' is its default) instead."
            )
        kwargs["mode"] = "moment"
    return SuperpositionalAdamW, kwargs


def check_optimizer_arguments(training_args: Any) -> None:
    """Validate ``optim_args`` now when ``training_args.optim`` is one of this package's optimizers.

    The Trainer only parses ``optim_args`` when it builds the optimizer, after the data is loaded and the
    model built; a script calls this while parsing its arguments so a typo fails at once.

    Args:
        training_args: a ``TrainingArguments``. For other ``optim`` values only ``optim_args`` they would
            silently ignore are refused: this package's keys (``quantum_weight``...), or any key for an
            optimizer whose transformers handler reads none (``adamw_torch``, ``adamw_torch_fused``...).

    Raises:
        ArgumentsError: the message of :func:`superpositional_optimizer_cls_and_kwargs` (unknown or malformed
            key, bad value, ``mode=update`` with ``quantum_moment_adamw``) or of the optimizer's own validation
            (``quantum_weight=-1``, a negative ``learning_rate``...).

    Example:
        >>> from transformers import TrainingArguments
        >>> args = TrainingArguments("out", optim="superpositional_adamw", optim_args="bogus=1")
        >>> check_optimizer_arguments(args)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_superpositional.integrations.transformers.ArgumentsError: TrainingArguments: optim_args: unknown key 'bogus' ...
    """
    import torch

    if not is_superpositional_optim(training_args.optim):
        _check_foreign_optim_args(training_args)
        return
    try:
        optimizer_cls, kwargs = superpositional_optimizer_cls_and_kwargs(training_args)
        # The optimizer checks its hyper-parameters in __init__, whatever the device (fused kernels are only
        # chosen at step time), so one placeholder tensor also catches what parsing alone lets through:
        # quantum_weight=-1, n_qubits=0, a negative learning rate.
        optimizer_cls([torch.zeros(1, requires_grad=True)], **kwargs)
    except ValueError as error:
        raise ArgumentsError(f"{type(training_args).__name__}: {error}") from None


# transformers' handlers for these never read `optim_args`: anything given there would be silently ignored.
OPTIMS_WITHOUT_OPTIM_ARGS = ("adamw_torch", "adamw_torch_fused", "adafactor", "adamw_torch_xla", "adamw_torch_npu_fused")


def _check_foreign_optim_args(training_args: Any) -> None:
    optim = str(getattr(training_args.optim, "value", training_args.optim))
    raw = getattr(training_args, "optim_args", None) or ""
    try:
        keys = list(parse_key_value_pairs(raw, "optim_args"))
    except ValueError:
        return  # malformed: transformers' own parser reports it
    ours = [k for k in keys if k in VALID_OPTIM_ARG_KEYS]
    if ours or (keys and optim in OPTIMS_WITHOUT_OPTIM_ARGS):
        if ours:
            why = f"does not take {', '.join(ours)} (arguments of {list(OPTIMIZER_NAMES)})"
        else:
            why = "takes no optim_args"
        raise ArgumentsError(
            f"{type(training_args).__name__}: optim_args={raw!r} would be silently ignored: optim={optim!r} {why}. "
            f"Clear them (--optim_args \"\") or choose another optim (e.g. '{SUPERPOSITIONAL_ADAMW}')."
        )


def superpositional_kwargs_of(trainer: Any) -> dict[str, Any] | None:
    """The SuperpositionalAdamW keyword arguments a Trainer is set up to build, or ``None`` if it builds
    another optimizer.

    Read from ``trainer.optimizer_cls_and_kwargs`` when that names SuperpositionalAdamW (or a subclass), else
    from ``trainer.args`` when its ``optim`` is one of this package's names. An optimizer object passed to the
    Trainer is not looked at (its settings are its own): see :func:`uses_superpositional_optimizer`.
    """
    cls_and_kwargs = getattr(trainer, "optimizer_cls_and_kwargs", None)
    if cls_and_kwargs is not None:
        cls, kwargs = cls_and_kwargs
        return dict(kwargs) if isinstance(cls, type) and issubclass(cls, SuperpositionalAdamW) else None
    args = getattr(trainer, "args", None)
    if args is not None and is_superpositional_optim(args.optim):
        return superpositional_optimizer_cls_and_kwargs(args)[1]
    return None


def uses_superpositional_optimizer(trainer: Any) -> bool:
    """Whether a Trainer trains (or will train) with SuperpositionalAdamW: by its arguments, by its
    ``optimizer_cls_and_kwargs``, or because the optimizer it holds is one (accelerate's wrapper unwrapped)."""
    if superpositional_kwargs_of(trainer) is not None:
        return True
    return isinstance(unwrap_optimizer(getattr(trainer, "optimizer", None)), SuperpositionalAdamW)


def _superpositional_handler(ctx: Any) -> tuple[type, dict]:
    """Handler in transformers' ``_OPTIMIZER_HANDLERS``: ``ctx`` is its ``OptimizerContext``.

    ``ctx.optim_args`` holds transformers' untyped parse; we re-parse ``ctx.args.optim_args`` ourselves.
    """
    return superpositional_optimizer_cls_and_kwargs(ctx.args)


@dataclass
class _Hooks:
    optimizer_names: type[Enum]
    handler_tables: list[dict]
    trainer_module: Any


def _missing(what: str, transformers_version: str) -> RuntimeError:
    return RuntimeError(
        f"hf_superpositional cannot register optim names {list(OPTIMIZER_NAMES)} with the installed "
        f"transformers {transformers_version}: {what}. This hook uses private transformers internals and was "
        f"tested with transformers {TESTED_TRANSFORMERS_VERSION}. {_FALLBACK_HINT}"
    )


def _find_hooks() -> _Hooks:
    """Locate the private registry pieces, raising a RuntimeError that names the first missing one."""
    import transformers

    version = getattr(transformers, "__version__", "unknown")
    try:
        training_args = importlib.import_module("transformers.training_args")
        trainer_optimizer = importlib.import_module("transformers.trainer_optimizer")
        trainer_module = importlib.import_module("transformers.trainer")
    except ImportError as exc:
        raise _missing(f"a module could not be imported ({exc})", version) from exc

    names = getattr(training_args, "OptimizerNames", None)
    if not (isinstance(names, type) and issubclass(names, Enum) and issubclass(names, str)):
        raise _missing("`transformers.training_args.OptimizerNames` is missing or not a str Enum", version)
    for attribute in ("_member_map_", "_value2member_map_", "_member_names_"):
        if not hasattr(names, attribute):
            raise _missing(f"`OptimizerNames.{attribute}` (enum internals) is missing", version)

    tables = []
    for module, label in (
        (trainer_optimizer, "transformers.trainer_optimizer"),
        (trainer_module, "transformers.trainer"),
    ):
        table = getattr(module, "_OPTIMIZER_HANDLERS", None)
        if not isinstance(table, dict):
            raise _missing(f"`{label}._OPTIMIZER_HANDLERS` (the optimizer handler table) is missing", version)
        if all(table is not seen for seen in tables):
            tables.append(table)
    trainer_cls = getattr(trainer_module, "Trainer", None)
    if trainer_cls is None or not hasattr(trainer_cls, "get_optimizer_cls_and_kwargs"):
        raise _missing("`Trainer.get_optimizer_cls_and_kwargs` is missing", version)
    return _Hooks(optimizer_names=names, handler_tables=tables, trainer_module=trainer_module)


def _add_enum_member(enum_cls: type[Enum], member_name: str, value: str) -> tuple[Enum, bool]:
    """Add ``member_name = value`` to an existing str Enum the way ``EnumType`` itself would.

    Mirrors ``enum._proto_member.__set_name__`` (CPython 3.10-3.13): create the member with the mixin's
    ``__new__``, set ``_value_``/``_name_``/``__objclass__``/``_sort_order_``, set the class attribute BEFORE
    entering it in ``_member_map_`` (``EnumType.__setattr__`` refuses to reassign members), then record it in
    ``_member_names_`` (iteration, ``len``) and ``_value2member_map_`` (``OptimizerNames("...")`` lookup).
    Returns ``(member, created)``; an existing member with this value is reused, not replaced.
    """
    existing = enum_cls._value2member_map_.get(value)
    if existing is not None:
        return existing, False
    if member_name in enum_cls._member_map_:
        raise RuntimeError(
            f"{enum_cls.__name__}.{member_name} already exists with value "
            f"{enum_cls._member_map_[member_name].value!r}, not {value!r}. {_FALLBACK_HINT}"
        )
    new_member = getattr(enum_cls, "_new_member_", None) or enum_cls._member_type_.__new__
    member = new_member(enum_cls, value)
    member._value_ = value
    member._name_ = member_name
    member.__objclass__ = enum_cls
    member.__init__(value)
    member._sort_order_ = len(enum_cls._member_names_)
    type.__setattr__(enum_cls, member_name, member)
    enum_cls._member_map_[member_name] = member
    enum_cls._member_names_.append(member_name)
    enum_cls._value2member_map_[value] = member
    return member, True


def _remove_enum_member(enum_cls: type[Enum], member: Enum) -> None:
    enum_cls._member_map_.pop(member._name_, None)
    if member._name_ in enum_cls._member_names_:
        enum_cls._member_names_.remove(member._name_)
    if enum_cls._value2member_map_.get(member._value_) is member:
        del enum_cls._value2member_map_[member._value_]
    if enum_cls.__dict__.get(member._name_) is member:
        type.__delattr__(enum_cls, member._name_)


def _with_clear_errors(
    original: Callable[[str | None], dict[str, str]],
) -> Callable[[str | None], dict[str, str]]:
    """Wrap transformers' ``_parse_optim_args`` so a malformed string names its bad piece.

    ``Trainer.get_optimizer_cls_and_kwargs`` runs that parser before any handler, and on ``"quantum_weight"``
    or ``"a=b=c"`` it fails with a bare tuple-unpacking error. Well-formed strings parse exactly as before.
    """

    @functools.wraps(original)
    def parse(optim_args_str: str | None) -> dict[str, str]:
        try:
            return original(optim_args_str)
        except ValueError as exc:
            try:  # the package's own grammar names the bad piece
                parse_key_value_pairs(str(optim_args_str), "optim_args")
                detail = f"optim_args {optim_args_str!r} is malformed ({exc})."
            except ValueError as grammar_error:
                detail = str(grammar_error)
            raise ValueError(
                f"{detail} For optim in {list(OPTIMIZER_NAMES)} the valid keys are: "
                f"{', '.join(VALID_OPTIM_ARG_KEYS)}."
            ) from exc

    parse._hf_superpositional_wrapper = True  # type: ignore[attr-defined]
    return parse


def register_superpositional_optimizers(*, on_missing: str = "raise") -> bool:
    """Make ``optim="superpositional_adamw"`` / ``"quantum_moment_adamw"`` valid across transformers.

    Afterwards ``TrainingArguments(optim="superpositional_adamw", optim_args="quantum_weight=0.5")`` is valid,
    ``HfArgumentParser`` parsers created afterwards accept ``--optim superpositional_adamw``, and the stock
    ``Trainer`` builds :class:`~hf_superpositional.optim.adamw.SuperpositionalAdamW`. Idempotent. Called by
    ``import hf_superpositional``.

    Args:
        on_missing: ``"raise"`` (default) raises a ``RuntimeError`` when the installed transformers lacks the
            private registry this hooks into; ``"warn"`` issues that message as a ``RuntimeWarning`` and
            returns ``False`` instead (used at import, so the public fallback stays usable).

    Returns:
        ``True`` when the names are registered.

    Raises:
        RuntimeError: a hooked-into transformers internal is missing (message names it and the fallback).
        ValueError: ``on_missing`` is not ``"raise"`` or ``"warn"``.

    Example:
        >>> from transformers import TrainingArguments
        >>> register_superpositional_optimizers()
        True
        >>> TrainingArguments("out", optim="superpositional_adamw").optim == "superpositional_adamw"
        True
    """
    global _original_parse_optim_args
    if on_missing not in ("raise", "warn"):
        raise ValueError(f"on_missing must be 'raise' or 'warn', got {on_missing!r}.")
    try:
        hooks = _find_hooks()
    except RuntimeError as exc:
        if on_missing == "warn":
            warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
            return False
        raise

    for value in OPTIMIZER_NAMES:
        member, created = _add_enum_member(hooks.optimizer_names, _MEMBER_NAMES[value], value)
        if created:
            _added_members[value] = member
        # Keys must be the enum members: OptimizerNames hashes by member NAME, so a plain string key would
        # never match `args.optim` after __post_init__ turned it into a member.
        for table in hooks.handler_tables:
            table[member] = _superpositional_handler

    parse = getattr(hooks.trainer_module, "_parse_optim_args", None)
    if callable(parse) and not getattr(parse, "_hf_superpositional_wrapper", False):
        _original_parse_optim_args = parse
        hooks.trainer_module._parse_optim_args = _with_clear_errors(parse)
    return True


def unregister_superpositional_optimizers() -> None:
    """Undo :func:`register_superpositional_optimizers`: remove our enum members and handlers.

    ``TrainingArguments`` objects created while registered keep their (now orphaned) ``optim`` member.
    Mostly for tests and for users who want transformers exactly as shipped.

    Example:
        >>> unregister_superpositional_optimizers()
        >>> register_superpositional_optimizers()
        True
    """
    global _original_parse_optim_args
    try:
        hooks = _find_hooks()
    except RuntimeError:
        return
    for table in hooks.handler_tables:
        for key in [k for k, handler in table.items() if handler is _superpositional_handler]:
            del table[key]
    for value in list(_added_members):
        _remove_enum_member(hooks.optimizer_names, _added_members.pop(value))
    if _original_parse_optim_args is not None:
        hooks.trainer_module._parse_optim_args = _original_parse_optim_args
        _original_parse_optim_args = None
