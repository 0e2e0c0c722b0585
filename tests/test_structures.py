"""The contract of logged loss keys: built, parsed and summed by one set of helpers."""

from __future__ import annotations

import pytest

from multitask_vision.structures import is_loss_key, loss_key, split_loss_key


@pytest.mark.parametrize(
    "task, name, head, key",
    [
        ("depth", "loss_depth_l1", None, "depth.loss_depth_l1"),
        ("segmentation", "loss_seg", "seg_a", "segmentation.seg_a.loss_seg"),
        ("detection", "weight", None, "detection.weight"),
    ],
)
def test_loss_key_round_trip(task, name, head, key):
    assert loss_key(task, name, head) == key
    assert split_loss_key(key) == (task, f"{head}.{name}" if head else name)


def test_keys_of_no_task_and_what_mmengine_sums():
    assert split_loss_key("loss") == (None, "loss")
    assert [is_loss_key(k) for k in ("detection.loss_cls", "depth.weight", "segmentation.acc_seg", "loss")] == [
        True, False, False, True,
    ]  # fmt: skip
