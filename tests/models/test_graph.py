"""BlockGraph validation: every error names its culprit."""

from __future__ import annotations

import pytest

from multitask_vision.models.graph import BlockGraph, GraphError


def heads_by_type(node):
    return node.type.endswith("Head")


def blk(name, inputs, type_="Conv", **kw):
    return dict(name=name, type=type_, inputs=inputs, **kw)


GOOD = [
    blk("backbone", "img", "ResNet"),
    blk("neck", ["backbone.layer3", "backbone.layer4"], "FPN"),
    blk("det", "neck", "DetHead", task="detection"),
    blk("seg", "neck.0", "SegHead", task="segmentation"),
]


def test_topological_order_and_queries():
    # config order scrambled: the graph still runs producers first
    g = BlockGraph([GOOD[2], GOOD[3], GOOD[1], GOOD[0]], is_head=heads_by_type)
    assert g.order == ["backbone", "neck", "det", "seg"]
    assert g.tasks == ["detection", "segmentation"]
    assert [h.name for h in g.heads] == ["det", "seg"]
    assert g.ancestors(["seg"]) == ["backbone", "neck", "seg"]
    ref = g.nodes["neck"].inputs[1]
    assert (ref.block, ref.path) == ("backbone", ("layer4",))
    assert g.nodes["det"].kwargs == {}


def test_unknown_input_names_block_and_input():
    with pytest.raises(
        GraphError, match=r"block 'neck' input 'backbon\.layer4': no block named 'backbon'.*'backbone'"
    ):
        BlockGraph([GOOD[0], blk("neck", "backbon.layer4", "FPN"), GOOD[2]])


def test_cycle_is_printed():
    blocks = [
        blk("a", ["img", "c"]),
        blk("b", "a"),
        blk("c", "b"),
        blk("h", "c", "XHead", task="t"),
    ]
    with pytest.raises(GraphError, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        BlockGraph(blocks)


def test_self_loop():
    with pytest.raises(GraphError, match="block 'a' takes its own output"):
        BlockGraph([blk("a", "a"), blk("h", "a", "XHead", task="t")])


def test_duplicate_name():
    with pytest.raises(GraphError, match=r"duplicate block name 'backbone' \(blocks\[1\]\)"):
        BlockGraph([GOOD[0], GOOD[0]])


def test_head_without_task():
    with pytest.raises(GraphError, match=r"block 'det' \(DetHead\) is a head but has no 'task'"):
        BlockGraph([GOOD[0], GOOD[1], blk("det", "neck", "DetHead")], is_head=heads_by_type)


def test_task_on_non_head_rejected():
    with pytest.raises(GraphError, match=r"block 'neck' \(FPN\) is not a head"):
        BlockGraph([GOOD[0], blk("neck", "backbone", "FPN", task="x"), GOOD[2]], is_head=heads_by_type)


def test_unused_block_warns():
    with pytest.warns(UserWarning, match=r"block 'spare' \(Conv\) feeds no other block"):
        BlockGraph(GOOD + [blk("spare", "backbone.layer2")], is_head=heads_by_type)


def test_task_nobody_labels_warns():
    g = BlockGraph(GOOD, is_head=heads_by_type)
    with pytest.warns(UserWarning, match=r"head 'seg' predicts task 'segmentation' but no dataset labels it"):
        g.check_tasks(["detection"])


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(type="X", inputs="img"), r"blocks\[0\] needs a 'name'"),
        (dict(name="a.b", type="X", inputs="img"), r"identifier \(no dots\)"),
        (dict(name="img", type="X", inputs="img"), "reserved"),
        (dict(name="a", inputs="img"), r"block 'a' needs a 'type'"),
        (dict(name="a", type="X"), r"block 'a' needs 'inputs'"),
        (dict(name="a", type="X", inputs="img.x"), "the images have no sub-outputs"),
    ],
)
def test_malformed_blocks(bad, match):
    with pytest.raises(GraphError, match=match):
        BlockGraph([bad])
