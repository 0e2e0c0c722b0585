# det_seg_depth_mmlab.py (mmdet FCOSHead, mmseg FCNHead, our depth head) with quantization-aware training:
# fake quantization (torchao PT2E, x86 int8) from iteration 800 of 1000, then conversion to int8, saved as
# work_dirs_mmlab_qat/qat_int8.pt2. Validation, metrics, prediction grids and curves run as in the base config
# (the validation at iteration 1000 scores the fake-quantized model). Start it from a trained model with
#   uv run python train.py --config configs/det_seg_depth_mmlab_qat.py \
#       --cfg-options load_from=work_dirs_mmlab/latest.pth
_base_ = ["det_seg_depth_mmlab.py"]

work_dir = "work_dirs_mmlab_qat"  # its checkpoints hold fake-quantized graphs: not the float model's work dir
custom_hooks = [
    dict(type="TaskCoverageHook", strict=True),
    dict(type="MetricsJSONHook"),
    dict(type="MultiTaskVisualizationHook", num_samples=2),
    dict(type="CurvesHook", interval=10),
    dict(type="QATHook", start_iter=800, save_name="qat_int8.pt2"),
]
