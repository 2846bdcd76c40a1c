# DETR R50 fine-tuned from COCO weights on your own COCO-format dataset.
# Copy this file and change the block below (classes, data_root, file
# names); the rest is the R50 recipe. As it stands it trains on the
# generated shapes dataset:
#   python tools/misc/make_shapes_dataset.py data/shapes
#   python tools/train.py configs/detr_r50_8x2_50e_finetune_custom.py
# Guide: docs/finetune.md.
_base_ = './detr_r50_8x2_150e_coco.py'

# ---- your data -------------------------------------------------------
# The class names, in the order you want the model's labels. Annotations
# whose category name is not listed are dropped (and counted in the log).
classes = ('circle', 'square', 'triangle')
data_root = 'data/shapes/'
train_ann_file = 'annotations/instances_train.json'
train_img_prefix = 'train/'
val_ann_file = 'annotations/instances_val.json'
val_img_prefix = 'val/'
# ----------------------------------------------------------------------

metainfo = dict(classes=classes)
model = dict(bbox_head=dict(num_classes=len(classes)))

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=train_ann_file,
        data_prefix=dict(img=train_img_prefix)))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=val_ann_file,
        data_prefix=dict(img=val_img_prefix)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + val_ann_file)
test_evaluator = val_evaluator

# COCO weights (official DETR R50, 500 epochs, 42.0 AP), converted on load.
# The classifier is rebuilt for `classes` by name: classes COCO also has
# ('person', 'car' ...) keep their trained rows, the others start fresh, and
# one log line says which (docs/finetune.md). Any other checkpoint works the
# same: an mmdetr/mmdet run's `epoch_N.pth` (class names recorded in it), or
# an mmdet COCO DETR.
load_from = ('mmdetr-convert://'
             'https://dl.fbaipublicfiles.com/detr/detr-r50-e632da11.pth')

# Fine-tuning schedule. Everything but the classifier starts trained, so far
# fewer epochs than COCO's 150/500 are needed; DETR's transformer still
# adapts slowly, so not as few as a CNN detector's 8-12 (mmdet's fine-tuning
# tutorial: Cityscapes from COCO in 8 epochs, lr step at 7). The official
# DETR authors suggest starting from their checkpoints for small datasets
# and from scratch only with ~10k+ images (facebookresearch/detr#9).
# - the recipe's lr (AdamW 1e-4, backbone 1e-5): the fresh classifier rows
#   need it, and the official recipe already keeps the backbone at 0.1x;
# - 50 epochs with a x0.1 step at 40 (80%, as the 500-epoch recipe's 400;
#   the 150-epoch one steps at 100): most of the AP comes before the step,
#   the step settles it. On a larger dataset fewer epochs do.
max_epochs = 50
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [dict(_base_.lr_drop, end=max_epochs, milestones=[40])]
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=2))
