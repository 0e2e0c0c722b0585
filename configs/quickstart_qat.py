# The quickstart with quantization-aware training: fake quantization (torchao PT2E, x86 int8) from iteration
# 1100 of 1300; at the end the model is converted to int8 and saved as work_dirs/quickstart_qat/qat_int8.pt2.
#   uv run train.py --config configs/quickstart_qat.py --cfg-options load_from=work_dirs/quickstart/iter_1300.pth
_base_ = ["quickstart.py"]
custom_hooks = [
    dict(type="TaskCoverageHook", strict=True),
    dict(type="QATHook", start_iter=1100, save_name="qat_int8.pt2"),
]
