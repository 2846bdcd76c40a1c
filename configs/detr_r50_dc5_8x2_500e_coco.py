# DETR, ResNet-50-DC5, 500 epochs: the official recipe with the last ResNet
# stage dilated instead of strided (stride 16; official: 43.3 AP).
# DilatedResNet dilates as torchvision does (the stage's first block keeps
# dilation 1), so official DC5 weights compute what they computed there:
# load_from = ('mmdetr-convert://'
#              'https://dl.fbaipublicfiles.com/detr/detr-r50-dc5-f0fb7ef5.pth')
_base_ = './detr_r50_8x2_500e_coco.py'

model = dict(
    backbone=dict(
        type='DilatedResNet', strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)))
