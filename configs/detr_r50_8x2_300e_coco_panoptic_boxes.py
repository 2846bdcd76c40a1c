# DETR, ResNet-50, 8 GPUs x 2 images, 300 epochs on COCO panoptic 2017 with
# every segment, thing or stuff, as a box (133 classes): the first stage of
# official DETR's panoptic training (main.py --dataset_file coco_panoptic).
# configs/detr_r50_8x2_panoptic_coco.py trains the mask head on it, frozen.
_base_ = [
    '_base_/models/detr_r50.py', '_base_/datasets/coco_panoptic.py',
    '_base_/schedules/schedule_150e.py', '_base_/default_runtime.py'
]

model = dict(bbox_head=dict(num_classes=133))

max_epochs = 300
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)
param_scheduler = [dict(_base_.lr_drop, end=max_epochs, milestones=[200])]
# a box model predicts no panoptic segmentation, and COCO's instances json
# has no stuff boxes: it is evaluated through the mask head trained on it
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
