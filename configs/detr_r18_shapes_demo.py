# The `make demo` model: DETR trained from scratch on the generated shapes
# dataset in 15 minutes on 2 CPU cores (configs/detr_r18_shapes.py) with two
# training-only extras; inference is plain DETR. docs/demo.md has the recipe
# and the results.
# - AuxHeadDETR: an auxiliary FCOS head on the encoder memory (Co-DETR's
#   one-to-many heads) teaches the backbone and the encoder where objects
#   are sooner than one matched query per object does;
# - DuplicateWeightDETRHead: the last decoder layer's unmatched predictions
#   that overlap an object (IoU > 0.5) learn "no object" with weight 2.0
#   instead of 0.25: DETR has no NMS, and these are its duplicates.
_base_ = './detr_r18_shapes.py'

classes = ('circle', 'square', 'triangle')

model = dict(
    type='AuxHeadDETR',
    bbox_head=dict(
        type='DuplicateWeightDETRHead',
        duplicate_cls_weight=2.0,
        duplicate_iou_thr=0.5,
        duplicate_weight_layers='last'),
    aux_head=dict(
        type='mmdet.FCOSHead',
        num_classes=len(classes),
        in_channels=128,  # the transformer's embed_dims
        feat_channels=128,
        stacked_convs=2,
        strides=[16],  # the single feature level, stride 16
        regress_ranges=((-1, 1e8), ),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        center_sampling=True,
        center_sample_radius=1.5,
        norm_on_bbox=True,
        centerness_on_reg=True,
        loss_cls=dict(
            type='mmdet.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='mmdet.GIoULoss', loss_weight=2.0),
        loss_centerness=dict(
            type='mmdet.CrossEntropyLoss', use_sigmoid=True,
            loss_weight=1.0)))

# 11 epochs with the lr drop after the 10th (plain DETR's config: 9, drop
# after 7): one epoch at the low lr gives all of its gain (+0.11 AP), the
# extra epochs go to the high lr. The fused AdamW step
# (mmdetr/engine/fused_optimizer.py) made the steps fast enough for 11
# epochs in the 15-minute budget: 833-871 s on 2 idle cores (docs/demo.md).
max_epochs = 11
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
        end=200),
    dict(_base_.lr_drop, end=max_epochs, milestones=[10])
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
