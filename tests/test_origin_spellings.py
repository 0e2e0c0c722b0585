"""The config snippets of the README this project grew from (MultitaskVision) work as written, beside our
spelling, and mean the same: its type names (registry aliases), ``args=dict(...)`` beside flat keys,
``inputs=['image']``, ``data=dict(datasets=[...])`` with task lists, and the deploy config's ``deploy=dict(...)``.
Each error names its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import multitask_vision
from multitask_vision.compression.config import DeployConfigError, load_deploy_config, parse_deploy_config
from multitask_vision.datasets.nyu import NYUv2Dataset
from multitask_vision.engine.launch import load_config
from multitask_vision.models.backbones import ResNet
from multitask_vision.models.block_types import resolve_block_type
from multitask_vision.models.builder import as_config
from multitask_vision.models.graph import BlockGraph, GraphError
from multitask_vision.models.heads import DepthHead
from multitask_vision.registry import DATASETS, MODELS, SCOPE

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests/configs/tiny_quickstart.py"

multitask_vision.register_all_modules()


# ------------------------------------------------------------------------------------------ the model
def test_origin_type_names_are_aliases_of_ours():
    assert MODELS.get("ResNetBackbone") is ResNet and resolve_block_type("ResNetBackbone") == (SCOPE, ResNet)
    assert MODELS.get("DenseDepthHead") is DepthHead and resolve_block_type("DenseDepthHead") == (
        SCOPE,
        DepthHead,
    )
    assert DATASETS.get("NYUDepthDataset") is NYUv2Dataset
    # the origin's bare mmdet / mmseg names resolve in the one package that has them
    assert resolve_block_type("FCOSHead")[0] == "mmdet" and resolve_block_type("FCNHead")[0] == "mmseg"


FCOS = dict(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1, strides=[16, 32],
            regress_ranges=((-1, 64), (64, 1e8)), norm_cfg=dict(type="GN", num_groups=8, requires_grad=True))  # fmt: skip
FCN = dict(num_classes=4, in_channels=512, channels=16, num_convs=1)

# the origin README's model snippet, with sizes filled in
ORIGIN_BLOCKS = [
    dict(name="backbone", type="ResNetBackbone", inputs=["image"], args=dict(depth=18)),
    dict(name="neck", type="FPN", inputs=["backbone"], args=dict(in_channels=[64, 128, 256, 512], out_channels=32)),
    dict(name="det_head", type="FCOSHead", inputs=["neck.2", "neck.3"], task="detection", args=FCOS),
    dict(name="seg_head", type="FCNHead", inputs=["backbone.layer4"], task="segmentation", args=FCN),
    dict(name="depth_head", type="DenseDepthHead", inputs=["backbone.layer4"], task="depth",
         in_channels=512, args=dict(channels=16)),
]  # fmt: skip
# the same model in our spelling
OUR_BLOCKS = [
    dict(name="backbone", type="ResNet", inputs="img", depth=18),
    dict(name="neck", type="FPN", inputs="backbone", in_channels=[64, 128, 256, 512], out_channels=32),
    dict(name="det_head", type="mmdet.FCOSHead", inputs=["neck.2", "neck.3"], task="detection", **FCOS),
    dict(name="seg_head", type="mmseg.FCNHead", inputs="backbone.layer4", task="segmentation", **FCN),
    dict(name="depth_head", type="DepthHead", inputs="backbone.layer4", task="depth", in_channels=512, channels=16),
]  # fmt: skip


def test_the_origin_model_snippet_builds_our_model():
    models = []
    for blocks in (ORIGIN_BLOCKS, OUR_BLOCKS):
        torch.manual_seed(0)
        models.append(MODELS.build(dict(type="MultiTaskModel", blocks=copy.deepcopy(blocks))).eval())
    origin, ours = models
    assert [type(origin.blocks[n]) for n in origin.graph.order] == [
        type(ours.blocks[n]) for n in ours.graph.order
    ]
    a, b = origin.state_dict(), ours.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out_a, out_b = origin.tensor(img), ours.tensor(img)
    assert torch.equal(out_a["depth_head"], out_b["depth_head"])
    assert origin.graph.nodes["backbone"].inputs[0].block == "img"  # 'image' is the input images


@pytest.mark.parametrize(
    "block, match",
    [
        (dict(name="b", type="ResNet", inputs="img", depth=18, args=dict(depth=50)),
         r"block 'b': 'depth' is given twice, as a key of the block and in args=; keep one"),
        (dict(name="b", type="ResNet", inputs="img", args=dict(task="x")),
         r"block 'b': 'task' goes beside 'name' and 'type', not in args="),
        (dict(name="b", type="ResNet", inputs="img", args=[18]), r"block 'b': args must be a dict"),
        (dict(name="image", type="ResNet", inputs="img"), r"blocks\[0\]: the name 'image' is reserved"),
    ],
)  # fmt: skip
def test_block_spelling_errors_name_the_block_and_key(block, match):
    with pytest.raises(GraphError, match=match):
        BlockGraph([block])


# ------------------------------------------------------------------------------------------ the data
ORIGIN_DATA = """
_base_ = [{tiny!r}]
tiny = dict(num_train=16, num_val=8, image_size=(64, 64))  # the tiny quickstart's sources
voc = dict(type="SyntheticVOCDataset", data_root="data/voc", seed=0, source_name="synthetic_voc", **tiny)
nyu = dict(type="SyntheticNYUDataset", data_root="data/nyu", seed=1, source_name="synthetic_nyu", **tiny)
train_dataloader = dict(_delete_=True, batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type="MultiSourceSampler", shuffle=True),
                        batch_sampler=dict(type="MultiSourceBatchSampler", strategy="round_robin"))
data = dict(
    datasets=[
        dict(voc, split="train", tasks=["detection", "segmentation"]),
        dict(nyu, split="train", tasks={nyu_tasks}),
    ],
)
"""


def write_origin_config(tmp_path: Path, nyu_tasks='["depth", "segmentation"]', extra: str = "") -> Path:
    path = tmp_path / "origin_data.py"
    path.write_text(ORIGIN_DATA.format(tiny=str(TINY), nyu_tasks=nyu_tasks) + extra)
    return path


def test_data_datasets_with_task_lists_is_our_training_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ours = load_config(str(TINY))
    for origin in (load_config(str(write_origin_config(tmp_path))), as_config(write_origin_config(tmp_path))):
        assert "data" not in origin
        loader = origin.train_dataloader
        assert loader.dataset.type == "MultiSourceDataset" and loader.sampler == ours.train_dataloader.sampler
        for src, our_src in zip(loader.dataset.sources, ours.train_dataloader.dataset.sources):
            assert (
                src.pipeline == our_src.pipeline
            )  # a source without pipeline gets the config's train_pipeline
        built, ref = DATASETS.build(loader.dataset), DATASETS.build(ours.train_dataloader.dataset)
        assert built.source_names == ref.source_names and len(built) == len(ref)
        assert [ds.tasks for ds in built.datasets] == [ds.tasks for ds in ref.datasets]
        assert [built.datasets[i].data_list for i in (0, 1)] == [ref.datasets[i].data_list for i in (0, 1)]
        assert built.metainfo == ref.metainfo


def test_data_spelling_errors_name_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    twice = write_origin_config(
        tmp_path, extra="train_dataloader = dict(batch_size=2)\n"
    )  # the base's dataset
    with pytest.raises(
        ValueError, match=r"given twice, as data.datasets and as train_dataloader.dataset; keep one"
    ):
        load_config(str(twice))
    with pytest.raises(
        ValueError, match=r"data= takes one key, datasets=\[...\].*got \['batch_size', 'datasets'\]"
    ):
        load_config(str(write_origin_config(tmp_path, extra="data['batch_size'] = 2\n")))
    cfg = load_config(str(write_origin_config(tmp_path, nyu_tasks='["depth", "normals"]')))
    with pytest.raises(
        ValueError, match=r"SyntheticNYUDataset: tasks\[1\] = 'normals' is not a task name whose annotation"
    ):
        DATASETS.build(cfg.train_dataloader.dataset)
    # a known task name of a kind the source does not have is the source's usual error
    cfg = load_config(str(write_origin_config(tmp_path, nyu_tasks='["detection"]')))
    with pytest.raises(ValueError, match=r"tasks\['detection'\] = 'instances' is not an annotation kind"):
        DATASETS.build(cfg.train_dataloader.dataset)  # fmt: skip


# ------------------------------------------------------------------------------------------ the deploy config
# the origin's configs/deploy.py, as it writes it
ORIGIN_DEPLOY = """
deploy = dict(
    pruning=dict(method='structured', amount=0.3, targets='all'),
    quantization=dict(method='static', observer='minmax'),
    export=dict(format='torchscript', blocks=['backbone']),
)
"""
FLAT = dict(
    pruning=dict(method="structured", amount=0.3, targets="all"),
    quantization=dict(method="static", observer="minmax"),
    export=dict(format="torchscript", blocks=["backbone"]),
)


def test_the_origin_deploy_wrapper_builds_the_same_steps(tmp_path):
    path = tmp_path / "deploy.py"
    path.write_text(ORIGIN_DEPLOY)
    wrapped, flat = load_deploy_config(path), parse_deploy_config(copy.deepcopy(FLAT))
    for section in ("pruning", "quantization", "export"):
        a, b = getattr(wrapped, section), getattr(flat, section)
        assert type(a) is type(b) and vars(a) == vars(b), section
    assert type(wrapped.pruning).__name__ == "StructuredPruning" and wrapped.export.blocks == ["backbone"]
    assert wrapped.quantization.backends == ("x86",)


@pytest.mark.parametrize(
    "raw, match",
    [
        (dict(pruning=dict(method="structured", amount=0.5), deploy=FLAT),
         "pruning is given twice, as pruning= and as deploy.pruning; keep one"),
        (dict(deploy=dict(prune=dict(method="structured"))), r"unknown deploy-config key deploy.prune \(sections:"),
        (dict(deploy=[FLAT]), "deploy must be a dict of sections, got list"),
    ],
)  # fmt: skip
def test_deploy_wrapper_errors(raw, match):
    with pytest.raises(DeployConfigError, match=match):
        parse_deploy_config(raw)
