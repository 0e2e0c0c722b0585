# OpenMMLab blocks in one graph: mmdet ResNet-18 + mmdet FPN + mmdet FCOSHead (detection) + mmseg FCNHead
# (segmentation) + our DepthHead. mmdet/mmseg heads train with their own loss() and predict(), so every loss,
# assigner and test_cfg below is really used.
num_det_classes = 4
num_seg_classes = 5
fpn_channels = 64

# blocks are named so that sibling configs can reuse them beside other heads
backbone_block = dict(
    name="backbone",
    type="mmdet.ResNet",
    inputs="img",
    depth=18,
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type="BN", requires_grad=True),
    norm_eval=False,
    style="pytorch",
)
neck_block = dict(
    name="neck",
    type="mmdet.FPN",
    inputs=["backbone.1", "backbone.2", "backbone.3"],
    in_channels=[128, 256, 512],
    out_channels=fpn_channels,
    num_outs=3,
)
det_block = dict(
    name="det_head",
    type="mmdet.FCOSHead",
    inputs="neck",
    task="detection",
    num_classes=num_det_classes,
    in_channels=fpn_channels,
    feat_channels=64,
    stacked_convs=2,
    strides=[8, 16, 32],
    regress_ranges=((-1, 32), (32, 64), (64, 1e8)),
    norm_cfg=dict(type="GN", num_groups=32, requires_grad=True),
    center_sampling=True,
    norm_on_bbox=True,
    centerness_on_reg=True,
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type="GIoULoss", loss_weight=1.0),
    loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.6),
        max_per_img=100,
    ),
)
depth_block = dict(
    name="depth_head",
    type="DepthHead",
    inputs="neck",
    task="depth",
    in_channels=[fpn_channels] * 3,
    channels=64,
    max_depth=10.0,
)

model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", pad_size_divisor=32),
    blocks=[
        backbone_block,
        neck_block,
        det_block,
        dict(
            name="seg_head", type="mmseg.FCNHead", inputs="backbone", task="segmentation",
            in_channels=128, in_index=1, channels=64, num_convs=2, concat_input=True, dropout_ratio=0.1,
            num_classes=num_seg_classes, norm_cfg=dict(type="BN", requires_grad=True), align_corners=False,
            loss_decode=[dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
                         dict(type="DiceLoss", loss_weight=0.3)],
        ),
        depth_block,
    ],
)  # fmt: skip
