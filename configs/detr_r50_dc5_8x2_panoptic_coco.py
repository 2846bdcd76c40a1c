# DETR-DC5 panoptic segmentation, ResNet-50 (official: PQ 44.6, box AP
# 40.2, segm AP 31.9): configs/detr_r50_8x2_panoptic_coco.py with the last
# ResNet stage dilated as in configs/detr_r50_dc5_8x2_500e_coco.py. The mask
# head reads the same levels (layer3 is at stride 16 either way).
_base_ = './detr_r50_8x2_panoptic_coco.py'

model = dict(
    backbone=dict(
        type='DilatedResNet', strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)))
# the DC5 box model on COCO panoptic: tools/train.py
# configs/detr_r50_8x2_300e_coco_panoptic_boxes.py --work-dir
# work_dirs/detr_r50_dc5_8x2_300e_coco_panoptic_boxes --cfg-options
# model.backbone.type=DilatedResNet "model.backbone.strides=(1,2,2,1)"
# "model.backbone.dilations=(1,1,1,2)"
load_from = 'work_dirs/detr_r50_dc5_8x2_300e_coco_panoptic_boxes/epoch_300.pth'
