"""The README's code examples run: the custom-head example trains and predicts inside a graph."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from mmengine.structures import PixelData

from multitask_vision.models import MultiTaskModel
from multitask_vision.registry import MODELS
from multitask_vision.structures import MultiTaskDataSample

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str) -> str:
    """The first ```python block after a heading of the README."""
    text = README.read_text()
    start = text.index(f"### {heading}\n")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


@pytest.fixture
def normals_head():
    namespace: dict = {}
    exec(compile(readme_block("Your own head"), "README.md", "exec"), namespace)
    yield namespace["NormalsHead"]
    MODELS._module_dict.pop("NormalsHead")  # keep the registry as other tests expect it


def normals_sample(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    sample = MultiTaskDataSample(metainfo=dict(tasks=("normals",), img_path=f"{seed}.jpg", ori_shape=(h, w),
                                               img_shape=(h, w), scale_factor=(1.0, 1.0)))  # fmt: skip
    normals = torch.nn.functional.normalize(torch.randn(3, h, w, generator=g), dim=0)
    normals[:, :4] = 0  # pixels without ground truth
    sample.gt_normals = PixelData(data=normals)
    return sample


def test_readme_custom_head_trains_and_predicts(normals_head):
    torch.manual_seed(0)
    model = MultiTaskModel(
        data_preprocessor=dict(
            type="MultiTaskDataPreprocessor", pad_size_divisor=32, dense_gt_pad_values=dict(gt_normals=0.0)
        ),
        blocks=[
            dict(name="backbone", type="ResNet", inputs="img", depth=18),
            dict(name="neck", type="FPN", inputs=["backbone.layer3", "backbone.layer4"], in_channels=[256, 512],
                 out_channels=32),
            dict(name="normals_head", type="NormalsHead", inputs="neck", task="normals", in_channels=[32, 32],
                 channels=16),
        ],
    )  # fmt: skip
    assert isinstance(model.blocks["normals_head"], normals_head)
    # two image sizes: the second image and its normals are padded to the batch's 64x64
    images = [
        torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8),
        torch.randint(0, 255, (3, 50, 60), dtype=torch.uint8),
    ]
    data = dict(inputs=images, data_samples=[normals_sample(64, 64, 0), normals_sample(50, 60, 1)])
    optim = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        batch = model.data_preprocessor(
            dict(inputs=list(images), data_samples=[s.clone() for s in data["data_samples"]]), True
        )
        loss = model(**batch, mode="loss")["normals.loss_normals"]
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss))
    assert 0 < losses[0] <= 2 and losses[-1] < losses[0]  # 1 - cos is in [0, 2], and it learns
    model.eval()
    batch = model.data_preprocessor(
        dict(inputs=list(images), data_samples=[s.clone() for s in data["data_samples"]])
    )
    out = model(**batch, mode="predict")
    assert out[1].pred_normals.data.shape == (3, 50, 60)  # original size, padding cropped
    torch.testing.assert_close(out[1].pred_normals.data.norm(dim=0), torch.ones(50, 60))


def test_readme_timm_example_builds_and_its_stage_table_is_timms():
    import timm

    namespace: dict = {}
    exec(compile(readme_block("timm backbones"), "README.md", "exec"), namespace)
    head = dict(name="seg_head", type="SegHead", inputs="neck", task="segmentation", num_classes=3,
                in_channels=[64] * 3, channels=8)  # fmt: skip
    model = MultiTaskModel(blocks=[namespace["backbone_block"], namespace["neck_block"], head])
    specs = [(s.channels, s.stride) for s in model.specs["backbone"].values()]
    assert specs == [(80, 8), (160, 16), (320, 32)]
    text = README.read_text()
    table = text[text.index("| model | stage0 |") :].split("\n\n")[0]
    for row in table.splitlines()[2:]:
        name, *cells = [c.strip() for c in row.strip("|").split("|")]
        with torch.device("meta"):
            info = timm.create_model(name.strip("`"), features_only=True).feature_info
        published = [f"{c}ch/s{r}" for c, r in zip(info.channels(), info.reduction())]
        assert [c.split(" ")[0] for c in cells if c] == published, name
