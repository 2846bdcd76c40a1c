# Plain DETR for the generated shapes dataset
# (tools/misc/make_shapes_dataset.py data/shapes --num-train 3600), trained
# from scratch on a CPU: 3600 train / 200 val images of 160 x 160, 3
# classes, batch 8, 9 epochs. No pretrained weights exist offline, so the
# backbone (a quarter-width ResNet-18 cut at stride 16) trains from scratch
# with trainable BN; the transformer is 128-d with 2 + 3 layers and 10
# queries (at most 6 objects per image). `make demo` trains this model with
# two training-only extras: configs/detr_r18_shapes_demo.py.
_base_ = './detr_r50_8x2_150e_coco.py'

data_root = 'data/shapes/'
classes = ('circle', 'square', 'triangle')
metainfo = dict(classes=classes)
img_scale = (160, 160)

model = dict(
    backbone=dict(
        depth=18,
        base_channels=32,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        zero_init_residual=False,
        init_cfg=None),
    bbox_head=dict(
        num_classes=len(classes),
        in_channels=128,  # base_channels * 4 at stage 3
        num_query=10,
        transformer=dict(
            embed_dims=128,
            num_heads=8,
            num_encoder_layers=2,
            num_decoder_layers=3,
            feedforward_channels=512,
            dropout=0.0),
        positional_encoding=dict(num_feats=64),
        # "no object" weighs 0.25 (the paper's 0.1 left many duplicates)
        loss_cls=dict(bg_cls_weight=0.25)),
    test_cfg=dict(max_per_img=10))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
# images are loaded in the training process: a loader process would take a
# core from the 2 compute threads
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        # DETR learns "no object" from empty images too
        filter_cfg=dict(filter_empty_gt=False, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val.json',
        metric='bbox',
        format_only=False),
    # what DETR must not do: two boxes for one object (no NMS anywhere)
    dict(type='mmdetr.DuplicateMetric', score_thr=0.5, iou_thr=0.5)
]
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))

max_epochs = 9
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
        end=200),
    dict(_base_.lr_drop, end=max_epochs, milestones=[7])
]
randomness = dict(seed=0)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=8)
