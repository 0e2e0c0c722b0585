# The deployment tests' tiny model with a timm backbone: timm's tiny test ConvNeXt (random init, no download)
# up to its stride-16 stage, the same 2-level FPN and native heads as tiny_train.py.
_base_ = ["./tiny_train.py"]

backbone_block = dict(name="backbone", type="timm.test_convnext", inputs="img", out_indices=(1, 2))
neck_block = dict(name="neck", type="FPN", inputs=["backbone.stage1", "backbone.stage2"], in_channels=[32, 48],
                  out_channels=32)  # fmt: skip
model = dict(
    blocks=[
        backbone_block,
        neck_block,
        {{_base_.det_block}},
        dict(name="seg_head", type="SegHead", inputs="neck", task="segmentation", num_classes=5,
             in_channels=[32, 32], channels=16),
        dict(name="depth_head", type="DepthHead", inputs="neck", task="depth", in_channels=[32, 32], channels=16,
             max_depth=10.0),
    ],
)  # fmt: skip
