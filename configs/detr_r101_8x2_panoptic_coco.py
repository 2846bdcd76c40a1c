# DETR panoptic segmentation, ResNet-101 (official: PQ 45.1, box AP 40.1,
# segm AP 33.0): configs/detr_r50_8x2_panoptic_coco.py with ResNet-101.
_base_ = './detr_r50_8x2_panoptic_coco.py'

model = dict(backbone=dict(depth=101))
# the R101 box model on COCO panoptic: tools/train.py
# configs/detr_r50_8x2_300e_coco_panoptic_boxes.py --work-dir
# work_dirs/detr_r101_8x2_300e_coco_panoptic_boxes --cfg-options
# model.backbone.depth=101
# "model.backbone.init_cfg.checkpoint=torchvision://resnet101"
load_from = 'work_dirs/detr_r101_8x2_300e_coco_panoptic_boxes/epoch_300.pth'
