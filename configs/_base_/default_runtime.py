# Runner settings shared by every mmdetr config.
# mmdetr's model dicts carry _scope_='mmdetr'; everything else (datasets,
# transforms, metrics, hooks, visualiser) resolves in mmdet's scope.
default_scope = 'mmdet'
custom_imports = dict(imports=['mmdetr'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # mid-epoch checkpoints to resume from (resume_iter_N.pth, the newest 2
    # kept), every 30 minutes and on SIGTERM/SIGUSR1 (preemption), which
    # then exits with status 75; needs the resumable loops of
    # _base_/schedules (docs/distributed.md)
    resume_checkpoint=dict(
        type='mmdetr.ResumeCheckpointHook',
        interval_minutes=30,
        max_keep_ckpts=2))

# dist_cfg's backend is switched to gloo automatically by tools/train.py and
# tools/test.py on machines without CUDA.
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# stop at the start when num_classes and the dataset disagree or images
# are missing
custom_hooks = [dict(type='mmdetr.DataCheckHook')]

vis_backends = [dict(type='LocalVisBackend')]
# mmdet's visualiser; images under 480 pixels are drawn enlarged
visualizer = dict(
    type='mmdetr.DetLocalVisualizer',
    vis_backends=vis_backends,
    name='visualizer',
    min_size=480)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
