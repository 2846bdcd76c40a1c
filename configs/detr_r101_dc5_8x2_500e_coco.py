# DETR, ResNet-101-DC5, 500 epochs (official: 44.9 AP): the R101 config with
# its last stage dilated as in detr_r50_dc5_8x2_500e_coco.py.
# load_from = ('mmdetr-convert://'
#              'https://dl.fbaipublicfiles.com/detr/detr-r101-dc5-a2e86def.pth')
_base_ = './detr_r101_8x2_500e_coco.py'

model = dict(
    backbone=dict(
        type='DilatedResNet', strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)))
