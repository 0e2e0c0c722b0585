# The tiny quickstart (64x64 synthetic data, 4 iterations) with a timm backbone, as in
# configs/timm_convnext_atto_quickstart.py but timm's tiny test ConvNeXt (random init, no download).
_base_ = ["./tiny_quickstart.py"]

model = dict(
    blocks=[
        dict(name="backbone", type="timm.test_convnext", inputs="img", out_indices=(1, 2, 3)),
        dict(name="neck", type="FPN", inputs=["backbone.stage1", "backbone.stage2", "backbone.stage3"],
             in_channels=[32, 48, 64], out_channels={{_base_.fpn_channels}}),
        {{_base_.det_block}},
        {{_base_.seg_block}},
        {{_base_.depth_block}},
    ]
)  # fmt: skip
val_evaluator = dict(baselines=dict(_delete_=True))  # the quickstart's Δm baselines are of its ResNet-18
test_evaluator = val_evaluator
