# DETR, ResNet-101, 500 epochs (official: 43.5 AP).
_base_ = './detr_r50_8x2_500e_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
