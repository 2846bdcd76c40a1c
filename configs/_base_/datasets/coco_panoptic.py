# COCO panoptic 2017, laid out as mmdet's: data/coco/{train2017,val2017} and
# data/coco/annotations/{panoptic_train2017.json, panoptic_train2017/,
# panoptic_val2017.json, panoptic_val2017/, instances_val2017.json}.
# mmdetr's CocoPanopticDataset checks the json and every PNG before training
# or testing starts (mmdetr/datasets/coco_panoptic.py). For DETR every
# segment, thing or stuff, is a target with a box, a label and a mask
# (mmdetr.LoadPanopticTargets), as official DETR trains on COCO panoptic.
dataset_type = 'mmdetr.CocoPanopticDataset'
data_root = 'data/coco/'
backend_args = None

# official DETR's augmentation: flip, then either multi-scale resize or
# resize -> random crop -> multi-scale resize; a crop drops the segments it
# leaves without a pixel
_multi_scale = [(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='mmdetr.LoadPanopticTargets', backend_args=backend_args),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[
            dict(type='RandomChoiceResize', scales=_multi_scale,
                 keep_ratio=True)
        ],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(400, 1333), (500, 1333), (600, 1333)],
                            keep_ratio=True),
                        dict(
                            type='RandomCrop',
                            crop_type='absolute_range',
                            crop_size=(384, 600),
                            allow_negative_crop=True),
                        dict(
                            type='RandomChoiceResize',
                            scales=_multi_scale,
                            keep_ratio=True)
                    ]]),
    dict(type='FilterAnnotations', by_box=False, by_mask=True,
         min_gt_mask_area=1, keep_empty=False),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# PQ, SQ, RQ (all, things, stuff); box and mask AP of the thing instances on
# COCO's instances json, as mmdet's panoptic configs do
val_evaluator = [
    dict(
        type='CocoPanopticMetric',
        ann_file=data_root + 'annotations/panoptic_val2017.json',
        seg_prefix=data_root + 'annotations/panoptic_val2017/',
        backend_args=backend_args),
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val2017.json',
        metric=['bbox', 'segm'],
        backend_args=backend_args)
]
test_evaluator = val_evaluator
