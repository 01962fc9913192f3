"""optim='superpositional_adamw' in transformers (integrations/transformers.py): the registry, its undo, TrainingArguments, HfArgumentParser, the stock Trainer, the public fallback."""

from __future__ import annotations

import importlib
import pickle
import warnings

import pytest
import torch
import transformers
import transformers.trainer as hf_trainer_module
import transformers.trainer_optimizer as hf_trainer_optimizer
from transformers import HfArgumentParser, Trainer, TrainingArguments
from transformers.training_args import OptimizerNames

from hf_superpositional.cli import ArgumentsError
from hf_superpositional.integrations import transformers as integration
from hf_superpositional.integrations.transformers import (
    QUANTUM_MOMENT_ADAMW,
    SUPERPOSITIONAL_ADAMW,
    check_optimizer_arguments,
    register_superpositional_optimizers,
    superpositional_optimizer_cls_and_kwargs,
    unregister_superpositional_optimizers,
)
from hf_superpositional.optim.args import (
    parse_optim_args,
)
from tests.tiny_models import tiny_llama

OUR_NAMES = (SUPERPOSITIONAL_ADAMW, QUANTUM_MOMENT_ADAMW)


@pytest.fixture(autouse=True)
def _registered():
    """Every test starts registered and leaves transformers registered (tests below unregister on purpose)."""
    register_superpositional_optimizers()
    yield
    register_superpositional_optimizers()


def training_args(tmp_path, **kwargs) -> TrainingArguments:
    kwargs.setdefault("report_to", "none")
    return TrainingArguments(output_dir=str(tmp_path), **kwargs)


def test_enum_members_behave_like_builtin_ones():
    for value in OUR_NAMES:
        member = OptimizerNames(value)
        assert member == value and member.value == value
        assert isinstance(member, OptimizerNames) and isinstance(member, str)
        assert member in OptimizerNames
        assert [m for m in OptimizerNames if m.value == value] == [member]
        assert pickle.loads(pickle.dumps(member)) is member
    assert OptimizerNames.SUPERPOSITIONAL_ADAMW is OptimizerNames(SUPERPOSITIONAL_ADAMW)
    assert OptimizerNames("adamw_torch") is OptimizerNames.ADAMW_TORCH  # built-ins untouched


def test_registration_is_idempotent():
    before = list(OptimizerNames)
    handlers = dict(hf_trainer_optimizer._OPTIMIZER_HANDLERS)
    assert register_superpositional_optimizers() is True
    assert register_superpositional_optimizers() is True
    assert list(OptimizerNames) == before
    assert len(OptimizerNames) == len(set(m.value for m in OptimizerNames))
    assert dict(hf_trainer_optimizer._OPTIMIZER_HANDLERS) == handlers
    assert hf_trainer_module._OPTIMIZER_HANDLERS is hf_trainer_optimizer._OPTIMIZER_HANDLERS


def test_unregister_restores_transformers_and_register_again_works(tmp_path):
    builtin_count = len(OptimizerNames) - len(OUR_NAMES)
    unregister_superpositional_optimizers()
    try:
        assert len(OptimizerNames) == builtin_count
        assert not hasattr(OptimizerNames, "SUPERPOSITIONAL_ADAMW")
        assert all(
            not integration.is_superpositional_optim(k) for k in hf_trainer_optimizer._OPTIMIZER_HANDLERS
        )
        with pytest.raises(ValueError, match="not a valid OptimizerNames"):
            training_args(tmp_path, optim=SUPERPOSITIONAL_ADAMW)
    finally:
        register_superpositional_optimizers()
    assert training_args(tmp_path, optim=SUPERPOSITIONAL_ADAMW).optim == SUPERPOSITIONAL_ADAMW


def test_import_of_the_package_registers(tmp_path):
    import hf_superpositional

    unregister_superpositional_optimizers()
    importlib.reload(hf_superpositional)
    assert training_args(tmp_path, optim=SUPERPOSITIONAL_ADAMW).optim == SUPERPOSITIONAL_ADAMW


@pytest.mark.parametrize(
    ("module", "attribute", "named"),
    [
        (hf_trainer_optimizer, "_OPTIMIZER_HANDLERS", "transformers.trainer_optimizer._OPTIMIZER_HANDLERS"),
        (hf_trainer_module, "_OPTIMIZER_HANDLERS", "transformers.trainer._OPTIMIZER_HANDLERS"),
        (transformers.training_args, "OptimizerNames", "transformers.training_args.OptimizerNames"),
    ],
)
def test_missing_private_hook_fails_loudly_and_points_at_the_fallback(monkeypatch, module, attribute, named):
    unregister_superpositional_optimizers()
    monkeypatch.delattr(module, attribute)
    with pytest.raises(RuntimeError) as info:
        register_superpositional_optimizers()
    message = str(info.value)
    assert named in message
    assert "optimizer_cls_and_kwargs" in message and "superpositional_optimizer_cls_and_kwargs" in message
    assert transformers.__version__ in message
    with pytest.warns(RuntimeWarning, match=attribute):
        assert register_superpositional_optimizers(on_missing="warn") is False
    with pytest.raises(ValueError, match="on_missing"):
        register_superpositional_optimizers(on_missing="ignore")


def test_training_arguments_accept_our_names(tmp_path):
    args = training_args(
        tmp_path,
        optim=SUPERPOSITIONAL_ADAMW,
        optim_args="quantum_weight=0.5,n_qubits=4,mode=update,scope=first_n",
    )
    assert args.optim is OptimizerNames.SUPERPOSITIONAL_ADAMW
    assert args.optim == "superpositional_adamw"
    assert training_args(tmp_path, optim=QUANTUM_MOMENT_ADAMW).optim == QUANTUM_MOMENT_ADAMW
    # Serialisation used by the Trainer (training_args.bin, to_json_string for loggers) keeps the value.
    assert '"optim": "superpositional_adamw"' in args.to_json_string()
    assert pickle.loads(pickle.dumps(args)).optim is OptimizerNames.SUPERPOSITIONAL_ADAMW


def test_hf_argument_parser_accepts_our_names_and_still_rejects_unknown(tmp_path, capsys):
    parser = HfArgumentParser(TrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--report_to",
            "none",
            "--optim",
            "superpositional_adamw",
            "--optim_args",
            "quantum_weight=0.5,n_qubits=2",
        ]  # fmt: skip
    )
    assert args.optim is OptimizerNames.SUPERPOSITIONAL_ADAMW
    assert parse_optim_args(args.optim_args) == {"quantum_weight": 0.5, "n_qubits": 2}
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--optim", "quantum_moment_adamw"]
    )
    assert args.optim is OptimizerNames.QUANTUM_MOMENT_ADAMW
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(
            ["--output_dir", str(tmp_path), "--optim", "superpositional_adamw_typo"]
        )
    assert "invalid choice" in capsys.readouterr().err


def stock_optimizer(tmp_path, **arg_kwargs):
    model = tiny_llama()
    trainer = Trainer(model=model, args=training_args(tmp_path, **arg_kwargs))
    return model, trainer, trainer.create_optimizer()


def test_stock_trainer_builds_superpositional_adamw_from_training_arguments(tmp_path):
    from hf_superpositional.optim import SuperpositionalAdamW

    model, trainer, optimizer = stock_optimizer(
        tmp_path,
        optim=SUPERPOSITIONAL_ADAMW,
        optim_args="quantum_weight=0.5,n_qubits=4,mode=update,scope=first_n",
        learning_rate=3e-4,
        adam_beta1=0.8,
        adam_beta2=0.95,
        adam_epsilon=1e-6,
        weight_decay=0.05,
    )
    assert type(optimizer) is SuperpositionalAdamW
    decay_names = set(trainer.get_decay_parameter_names(model))
    by_id = {id(p): n for n, p in model.named_parameters()}
    assert len(optimizer.param_groups) == 2
    decay_group, no_decay_group = optimizer.param_groups
    assert decay_group["weight_decay"] == 0.05 and no_decay_group["weight_decay"] == 0.0
    assert {by_id[id(p)] for p in decay_group["params"]} == decay_names
    assert {by_id[id(p)] for p in no_decay_group["params"]} == set(by_id.values()) - decay_names
    assert any("norm" in by_id[id(p)] for p in no_decay_group["params"])
    for group in optimizer.param_groups:
        assert group["lr"] == 3e-4
        assert tuple(group["betas"]) == (0.8, 0.95)
        assert group["eps"] == 1e-6
        assert group["quantum_weight"] == 0.5
        assert group["n_qubits"] == 4
        assert group["mode"] == "update"
        assert group["scope"] == "first_n"


def test_stock_trainer_quantum_moment_adamw_forces_moment_mode(tmp_path):
    _, _, optimizer = stock_optimizer(tmp_path, optim=QUANTUM_MOMENT_ADAMW, optim_args="quantum_weight=0.3")
    assert all(group["mode"] == "moment" for group in optimizer.param_groups)
    assert all(group["quantum_weight"] == 0.3 for group in optimizer.param_groups)
    _, _, optimizer = stock_optimizer(tmp_path, optim=QUANTUM_MOMENT_ADAMW, optim_args="mode=moment")
    assert all(group["mode"] == "moment" for group in optimizer.param_groups)
    with pytest.raises(ValueError, match="always uses mode='moment'"):
        stock_optimizer(tmp_path, optim=QUANTUM_MOMENT_ADAMW, optim_args="mode=update")


def test_stock_trainer_reports_bad_optim_args_clearly(tmp_path):
    for optim_args, piece in (("n_qubits=four", "n_qubits=four"), ("quantum_weight", "quantum_weight")):
        with pytest.raises(ValueError) as info:
            stock_optimizer(tmp_path, optim=SUPERPOSITIONAL_ADAMW, optim_args=optim_args)
        assert piece in str(info.value) and "track_diagnostics" in str(info.value)


def test_get_optimizer_cls_and_kwargs_matches_the_factory(tmp_path):
    args = training_args(
        tmp_path, optim=SUPERPOSITIONAL_ADAMW, optim_args="quantum_weight=0.5", weight_decay=0.01
    )
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    assert (cls, kwargs) == superpositional_optimizer_cls_and_kwargs(args)
    assert kwargs == {
        "lr": args.learning_rate,
        "betas": (args.adam_beta1, args.adam_beta2),
        "eps": args.adam_epsilon,
        "weight_decay": 0.01,
        "quantum_weight": 0.5,
    }


def test_factory_fallback_with_stock_trainer_and_stock_optim_name(tmp_path):
    from hf_superpositional.optim import SuperpositionalAdamW

    args = training_args(tmp_path, optim="adamw_torch", learning_rate=5e-4, weight_decay=0.1)
    cls_and_kwargs = superpositional_optimizer_cls_and_kwargs(args, quantum_weight=0.5, n_qubits=2, eps=1e-7)
    trainer = Trainer(model=tiny_llama(), args=args, optimizer_cls_and_kwargs=cls_and_kwargs)
    optimizer = trainer.create_optimizer()
    assert type(optimizer) is SuperpositionalAdamW
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    for group in optimizer.param_groups:
        assert (group["lr"], group["eps"], group["quantum_weight"], group["n_qubits"]) == (5e-4, 1e-7, 0.5, 2)


def test_factory_without_args_and_its_errors():
    from hf_superpositional.optim import SuperpositionalAdamW

    cls, kwargs = superpositional_optimizer_cls_and_kwargs(lr=1e-2, quantum_weight="0.25", mode="moment")
    assert cls is SuperpositionalAdamW and kwargs == {"lr": 1e-2, "quantum_weight": 0.25, "mode": "moment"}
    with pytest.raises(ValueError, match="unknown argument"):
        superpositional_optimizer_cls_and_kwargs(learning_rate=1e-3)
    with pytest.raises(ValueError, match="mode"):
        superpositional_optimizer_cls_and_kwargs(mode="sideways")


def test_other_optimizers_are_unaffected(tmp_path):
    _, _, optimizer = stock_optimizer(tmp_path, optim="adamw_torch", weight_decay=0.02)
    assert type(optimizer) is torch.optim.AdamW
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, optimizer = stock_optimizer(tmp_path, optim="sgd", optim_args="momentum=0.5")
    assert type(optimizer) is torch.optim.SGD


def test_check_optimizer_arguments_leaves_other_optimizers_and_good_args_alone(tmp_path):
    out = str(tmp_path)
    # transformers' own optimizers that read optim_args parse them themselves (and differently): not ours to
    # judge. Only what would be silently ignored is refused (our keys, or any key for adamw_torch & co.).
    check_optimizer_arguments(TrainingArguments(out, optim="sgd", optim_args="momentum=0.9", report_to="none"))
    check_optimizer_arguments(TrainingArguments(out, optim="adamw_torch", optim_args="", report_to="none"))
    with pytest.raises(ArgumentsError, match="optim='adamw_torch' takes no optim_args"):
        check_optimizer_arguments(TrainingArguments(out, optim="adamw_torch", optim_args="bogus=1", report_to="none"))
    check_optimizer_arguments(
        TrainingArguments(
            out, optim="superpositional_adamw", optim_args="quantum_weight=0.5", report_to="none"
        )
    )
    # Values parsing accepts but the optimizer rejects are caught too (without a model or a device).
    with pytest.raises(ArgumentsError, match="quantum_weight must be a non-negative float"):
        check_optimizer_arguments(
            TrainingArguments(
                out, optim="superpositional_adamw", optim_args="quantum_weight=-1", report_to="none"
            )
        )
    with pytest.raises(ArgumentsError, match="lr must be a non-negative float"):
        check_optimizer_arguments(
            TrainingArguments(out, optim="quantum_moment_adamw", learning_rate=-1.0, report_to="none")
        )


def test_the_declared_transformers_floor_is_the_one_import_checks():
    import tomllib

    from hf_superpositional.integrations.transformers import MIN_TRANSFORMERS_VERSION
    from tests.subprocess_env import REPO

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"transformers>={MIN_TRANSFORMERS_VERSION},<6" in dependencies


def test_a_transformers_below_the_floor_or_of_another_major_is_refused():
    import transformers

    from hf_superpositional.integrations.transformers import check_transformers_version

    for version in ("5.0.0", "5.3.0", "6.0.0"):
        with pytest.raises(ImportError, match=rf"needs transformers>=5.4,<6 .*found {version}"):
            check_transformers_version(version)
    check_transformers_version("5.4.0")
    check_transformers_version(transformers.__version__)


def test_importing_the_package_on_an_older_transformers_raises():
    import subprocess
    import sys

    from tests.subprocess_env import REPO, repo_env

    # what pip reports installed: transformers 5.0.0
    code = (
        "import importlib.metadata as m\nreal = m.version\n"
        "m.version = lambda name: '5.0.0' if name == 'transformers' else real(name)\nimport hf_superpositional"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=repo_env(), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode != 0
    assert "ImportError: hf_superpositional needs transformers>=5.4,<6" in result.stderr
