# The deployment tests' tiny model with OpenMMLab heads: mmdet FCOSHead (detection) and mmseg FCNHead
# (segmentation) beside our DepthHead, on the same trunk and tiny synthetic data as tiny_train.py.
_base_ = ["./tiny_train.py"]

model = dict(
    blocks=[
        {{_base_.backbone_block}},
        {{_base_.neck_block}},
        dict(name="det_head", type="mmdet.FCOSHead", inputs="neck", task="detection", num_classes=4,
             in_channels=32, feat_channels=32, stacked_convs=1, strides=[8, 16],
             regress_ranges=((-1, 32), (32, 1e8)), norm_cfg=dict(type="GN", num_groups=8, requires_grad=True),
             test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0, nms=dict(type="nms", iou_threshold=0.6),
                           max_per_img=100)),
        dict(name="seg_head", type="mmseg.FCNHead", inputs="neck", task="segmentation", in_channels=32,
             in_index=0, channels=16, num_convs=1, num_classes=5, align_corners=False),
        dict(name="depth_head", type="DepthHead", inputs="neck", task="depth", in_channels=[32, 32], channels=16,
             max_depth=10.0),
    ],
)  # fmt: skip
