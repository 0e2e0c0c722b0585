# Same trunk with other OpenMMLab heads, to show nothing is FCOS/FCN-specific: mmdet RetinaHead (anchors,
# MaxIoUAssigner and PseudoSampler from its train_cfg) and mmseg UPerHead (all four backbone levels by in_index).
_base_ = ["./det_seg_depth_mmlab.py"]
work_dir = "work_dirs/retinanet_uper_mmlab"  # not the base config's work_dirs_mmlab

fpn_channels = 64
model = dict(
    blocks=[
        {{_base_.backbone_block}},
        {{_base_.neck_block}},
        dict(
            name="det_head", type="mmdet.RetinaHead", inputs="neck", task="detection",
            num_classes=4, in_channels=fpn_channels, stacked_convs=2, feat_channels=64,
            anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3,
                                  ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32]),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
            train_cfg=dict(
                assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                              ignore_iof_thr=-1),
                sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False,
            ),
            test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                          max_per_img=100),
        ),
        dict(
            name="seg_head", type="mmseg.UPerHead", inputs="backbone", task="segmentation",
            in_channels=[64, 128, 256, 512], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6), channels=64,
            dropout_ratio=0.1, num_classes=5, norm_cfg=dict(type="BN", requires_grad=True), align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
        ),
        {{_base_.depth_block}},
    ]
)  # fmt: skip
