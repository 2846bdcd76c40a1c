# How an mmdet user plugs mmdetr into a config of their own: mmdet's bases,
# `custom_imports` to load mmdetr, and a model dict with `_scope_='mmdetr'`
# (here mmdetr's R50 model base) so its DETR / DETRHead / HungarianAssigner /
# costs are mmdetr's, not mmdet's classes of the same names. Everything else
# (ResNet, losses, datasets, CocoMetric, hooks) comes from mmdet as usual.
#
#   python tools/train.py configs/mmdet_style_detr_r50_8x2_150e_coco.py
#   # or with mmdet's own tools/train.py: the same file works there.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py', './_base_/models/detr_r50.py'
]
custom_imports = dict(imports=['mmdetr'], allow_failed_imports=False)
# optional: stop early when num_classes and the dataset disagree
custom_hooks = [dict(type='mmdetr.DataCheckHook')]

# mmdetr's OptimWrapper: the clipped-gradient norm is logged one iteration
# late, in the loss copy, instead of costing a wait of its own
optim_wrapper = dict(
    type='mmdetr.DeferredGradNormOptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=150, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='MultiStepLR', end=150, by_epoch=True, milestones=[100])
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
