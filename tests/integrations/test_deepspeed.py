"""integrations/deepspeed.py in one process: what it leaves alone, and how it fails. The 2-rank ZeRO 1/2/3 runs
(equality with one process, the partition maps, batches, resume) are in tests/e2e/test_deepspeed.py."""

from __future__ import annotations

import pytest
import torch

from hf_superpositional.integrations.deepspeed import (
    check_deepspeed_launch,
    cpu_deepspeed_overrides,
    map_first_n_to_zero_partitions,
    zero_stage,
)
from hf_superpositional.optim import SuperpositionalAdamW


def test_outside_a_deepspeed_launch_nothing_changes(monkeypatch, tmp_path):
    from transformers import TrainingArguments

    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert cpu_deepspeed_overrides({"output_dir": str(tmp_path)}) == {}
    # `deepspeed=` outside a launcher (no LOCAL_RANK): not a multi-rank run either
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert cpu_deepspeed_overrides({"deepspeed": {"zero_optimization": {"stage": 2}}}) == {}
    check_deepspeed_launch(TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"))


def test_a_deepspeed_launch_accelerate_was_not_set_up_for_is_refused(monkeypatch, tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none")  # one process, no DeepSpeed
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"launched with DeepSpeed \(2 processes\).*cpu_deepspeed_overrides"):
        check_deepspeed_launch(args)


def test_optimizers_that_are_not_zero_are_left_alone():
    optimizer = SuperpositionalAdamW([torch.nn.Parameter(torch.zeros(3))])
    assert zero_stage(optimizer) is None and map_first_n_to_zero_partitions(optimizer) is None
    assert map_first_n_to_zero_partitions(None) is None


class UnreadableStage3:
    """Shaped like DeepSpeed's ZeRO-3 optimizer, but its map has no entry for the parameter (as a DeepSpeed version
    with other internals would)."""

    def __init__(self, scope: str) -> None:
        self.param = torch.nn.Parameter(torch.zeros(4))
        self.fp32_partitioned_groups_flat = [torch.zeros(4, requires_grad=True)]
        self.grad_position: dict = {}
        self.fp16_groups = [[self.param]]
        self.sub_group_to_group_id = {0: 0}
        self.optimizer = SuperpositionalAdamW([self.param], scope=scope)

    def get_param_id(self, param):
        return id(param)


def test_unreadable_partition_maps_raise_naming_the_stage_and_scope_all():
    zero = UnreadableStage3("first_n")
    assert zero_stage(zero) == 3
    with pytest.raises(RuntimeError, match=r"DeepSpeed ZeRO stage 3: .*Use scope='all'"):
        map_first_n_to_zero_partitions(zero)
    # scope="all" is elementwise: nothing to map, nothing to refuse
    assert map_first_n_to_zero_partitions(UnreadableStage3("all")) == {"stage": 3, "partitions": 0, "elements": 0}
