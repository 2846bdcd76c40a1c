# DETR, ResNet-50, 500 epochs: the official schedule (42.0 AP).
_base_ = './detr_r50_8x2_150e_coco.py'

max_epochs = 500
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
param_scheduler = [dict(_base_.lr_drop, end=max_epochs, milestones=[400])]
