# DETR, 150 epochs: AdamW 1e-4 (backbone 1e-5), weight decay 1e-4, gradient
# clipping at L2 norm 0.1, lr x0.1 at epoch 100. The optimizer's step runs
# in torch's fused kernel where it has one (mmdetr/engine/fused_optimizer.py;
# constructor='DefaultOptimWrapperConstructor' is torch's default loop).
optim_wrapper = dict(
    type='mmdetr.DeferredGradNormOptimWrapper',
    constructor='mmdetr.FusedOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}))

max_epochs = 150
# mmengine's EpochBasedTrainLoop, plus exact resume mid-epoch (data order,
# augmentation and dropout as in the uninterrupted run)
train_cfg = dict(
    type='mmdetr.ResumableEpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# official DETR's schedule (--lr_drop): the lr drops x0.1 once. A config of
# another length states its end and the epoch of the drop:
#   param_scheduler = [dict(_base_.lr_drop, end=max_epochs, milestones=[400])]
lr_drop = dict(type='MultiStepLR', begin=0, by_epoch=True, gamma=0.1)
param_scheduler = [dict(lr_drop, end=max_epochs, milestones=[100])]
# The lr above is for 8 GPUs x 2 images; `tools/train.py --auto-scale-lr`
# scales it linearly to the actual total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)
