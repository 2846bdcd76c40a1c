# DETR panoptic segmentation, ResNet-50, 8 GPUs x 2 images, COCO panoptic
# 2017 (official: PQ 43.4, box AP 38.8, segm AP 31.1): the second stage of
# official DETR's panoptic training (main.py --masks --frozen_weights
# --epochs 25 --lr_drop 15): the mask head trained for 25 epochs on the box
# model of configs/detr_r50_8x2_300e_coco_panoptic_boxes.py, frozen, with
# the matched queries' focal and dice mask losses (weights 1 and 1).
# Official panoptic weights (detr-r50-panoptic-00ce5173.pth) convert with
# tools/model_converters/detr_to_mmdetr.py and test with this config
# (docs/panoptic.md).
_base_ = [
    '_base_/models/detr_r50.py', '_base_/datasets/coco_panoptic.py',
    '_base_/schedules/schedule_150e.py', '_base_/default_runtime.py'
]

model = dict(
    type='PanopticDETR',
    num_things_classes=80,  # of the 133: 80 things, then 53 stuff
    freeze_detector=True,
    # the weights come from load_from; the mask head also reads the stride
    # 16, 8 and 4 levels (layer3, layer2, layer1)
    backbone=dict(out_indices=(0, 1, 2, 3), init_cfg=None),
    bbox_head=dict(num_classes=133),
    mask_feat_indices=(2, 1, 0),
    mask_head=dict(
        type='DETRMaskHead',
        embed_dims=256,
        num_heads=8,
        in_channels=(1024, 512, 256)),
    loss_mask=dict(
        type='DETRMaskLoss', loss_weight_focal=1.0, loss_weight_dice=1.0),
    test_cfg=dict(
        max_per_img=100,
        panoptic_on=True,
        instance_on=True,
        mask_thr=0.5,
        panoptic=dict(threshold=0.85, min_area=4, crop_padding=False)))
load_from = 'work_dirs/detr_r50_8x2_300e_coco_panoptic_boxes/epoch_300.pth'

max_epochs = 25
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [dict(_base_.lr_drop, end=max_epochs, milestones=[15])]
