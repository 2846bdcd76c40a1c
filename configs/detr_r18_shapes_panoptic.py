# The panoptic demo (`make demo-panoptic`, docs/panoptic.md): official
# DETR's mask head trained on the frozen box model of
# configs/detr_r18_shapes_panoptic_boxes.py, as official DETR's
# `--masks --frozen_weights`: only the mask head learns, from the matched
# queries' focal and dice losses; evaluated by panoptic quality (PQ, SQ, RQ
# for things and stuff) on the 200 val images.
_base_ = './detr_r18_shapes_panoptic_boxes.py'

data_root = 'data/shapes/panoptic/'
num_things_classes = 3
embed_dims = 128

model = dict(
    type='PanopticDETR',
    num_things_classes=num_things_classes,
    freeze_detector=True,
    # the mask head reads the stride 16, 8 and 4 levels (the transformer
    # reads the last, stride 16)
    backbone=dict(out_indices=(0, 1, 2)),
    mask_feat_indices=(2, 1, 0),
    mask_head=dict(
        type='DETRMaskHead',
        embed_dims=embed_dims,
        num_heads=8,
        in_channels=(128, 64, 32)),
    loss_mask=dict(
        type='DETRMaskLoss', loss_weight_focal=1.0, loss_weight_dice=1.0),
    # threshold 0.3 (official 0.85, for COCO's 250 class slots), chosen on
    # 200 train images: with 7 classes a kept query needs little more than
    # a real class as its most likely one, and every pixel of a stuff
    # region whose query is dropped goes to the kept queries (things
    # included) by the per-pixel argmax
    test_cfg=dict(
        panoptic_on=True,
        instance_on=True,
        panoptic=dict(threshold=0.3, min_area=4, crop_padding=False)))
load_from = 'work_dirs/detr_r18_shapes_panoptic_boxes/epoch_16.pth'

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
val_dataloader = dict(
    _delete_=True,  # the box model has no evaluation
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mmdetr.CocoPanopticDataset',
        data_root=data_root,
        metainfo={{_base_.metainfo}},
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# PQ, SQ, RQ (all, things, stuff); box and mask AP of the things
val_evaluator = [
    dict(
        type='CocoPanopticMetric',
        ann_file=data_root + 'annotations/panoptic_val.json',
        seg_prefix=data_root + 'annotations/panoptic_val/'),
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val.json',
        metric=['bbox', 'segm'])
]
test_evaluator = val_evaluator
val_cfg = dict(_delete_=True, type='ValLoop')
test_cfg = dict(_delete_=True, type='TestLoop')

# a fresh mask head on the frozen detector: lr 1e-3 (official: 1e-4 for
# 25 COCO epochs), dropped after 5 of 6 epochs
optim_wrapper = dict(optimizer=dict(lr=1e-3))
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(_base_.lr_drop, end=max_epochs, milestones=[5])]
# a checkpoint per epoch (11 MB each): tools/test.py on each gives the PQ
# curve of docs/panoptic.md
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=max_epochs))
