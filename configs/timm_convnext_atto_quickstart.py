# The quickstart with a timm backbone: timm's ConvNeXt-Atto (features_only, random init: nothing to download)
# instead of ResNet-18, the same FPN, heads, data and schedule. Its outputs are named by timm feature index:
# out_indices=(1, 2, 3) gives stage1 (80ch, stride 8), stage2 (160ch, 16), stage3 (320ch, 32); the channels
# and strides come from timm's feature_info and are checked against the FPN's in_channels at build time.
# Run:  uv run train.py --config configs/timm_convnext_atto_quickstart.py
_base_ = [
    "_base_/default_runtime.py",
    "_base_/datasets/synthetic_det_seg_depth.py",
    "_base_/models/resnet18_fpn_det_seg_depth.py",
    "_base_/schedules/adamw_iters.py",
]

# any other key is a timm.create_model keyword: pretrained=True (with HF_HUB_OFFLINE=1 on a machine without
# internet, plus pretrained_cfg_overlay=dict(file="convnext_atto.safetensors")), drop_path_rate=0.1, ...
backbone_block = dict(name="backbone", type="timm.convnext_atto", inputs="img", out_indices=(1, 2, 3))
neck_block = dict(
    name="neck",
    type="FPN",
    inputs=["backbone.stage1", "backbone.stage2", "backbone.stage3"],
    in_channels=[80, 160, 320],
    out_channels={{_base_.fpn_channels}},
)
model = dict(
    blocks=[backbone_block, neck_block, {{_base_.det_block}}, {{_base_.seg_block}}, {{_base_.depth_block}}]
)
