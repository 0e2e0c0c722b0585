# Runtime shared by every training config (mmengine Runner keys).
default_scope = "multitask_vision"

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=25),  # loss per task, lr, ETA
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=250, max_keep_ckpts=2, save_last=True),
    latest_checkpoint=dict(type="LatestCheckpointHook"),  # <work_dir>/latest.pth -> the last checkpoint
    sampler_seed=dict(type="DistSamplerSeedHook"),  # re-seeds MultiSourceSampler every epoch
    # steps with a nan/inf loss or gradient are skipped by the model; this stops the run after that many in a
    # row (exit code 3, naming the task and the last good checkpoint) and never saves or validates nan weights
    nonfinite=dict(type="NonFiniteGuardHook", max_skipped_steps=3),
)
custom_hooks = [
    dict(type="TaskCoverageHook", strict=True),  # data tasks vs head tasks, checked before training
    dict(type="MetricsJSONHook"),  # work_dir/val_metrics.json (history), work_dir/test_metrics.json
    dict(type="MultiTaskVisualizationHook", num_samples=2),  # prediction/GT grids at every validation
    dict(type="CurvesHook", interval=10),  # work_dir/curves.png: per-task losses and metrics over time
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]
visualizer = dict(type="Visualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(by_epoch=False, window_size=25)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)

# Under DDP: a batch trains only the heads of the tasks its source labels, so the other heads' parameters
# get no gradient in that step. All ranks draw the same source at every step (MultiSourceBatchSampler), so
# the unused set is the same on every rank, which is what find_unused_parameters needs.
# MultiTaskDistributedDataParallel is mmengine's DDP wrapper running the model's own (guarded) train step.
model_wrapper_cfg = dict(type="MultiTaskDistributedDataParallel", find_unused_parameters=True)
