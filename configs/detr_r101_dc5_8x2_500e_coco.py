# DETR, ResNet-101-DC5, 500 epochs (official: 44.9 AP).
# load_from = ('mmdetr-convert://'
#              'https://dl.fbaipublicfiles.com/detr/detr-r101-dc5-a2e86def.pth')
_base_ = './detr_r50_dc5_8x2_500e_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
