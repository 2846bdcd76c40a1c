# DETR, ResNet-50, 8 GPUs x 2 images, 150 epochs, COCO 2017.
# The official recipe (see README for the numbers); children of this file
# hold only their differences.
_base_ = [
    '_base_/models/detr_r50.py', '_base_/datasets/coco_detection.py',
    '_base_/schedules/schedule_150e.py', '_base_/default_runtime.py'
]

# The paper's augmentation: flip, then either multi-scale resize or
# resize -> random crop -> multi-scale resize.
_multi_scale = [(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
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
    dict(type='PackDetInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
