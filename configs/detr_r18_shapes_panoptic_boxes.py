# The box model of the panoptic demo (docs/panoptic.md): the plain shapes
# DETR (configs/detr_r18_shapes.py) trained from scratch on the panoptic shapes
# (tools/misc/make_shapes_dataset.py data/shapes --num-train 3600
# --panoptic), with every panoptic segment as a box: the 3 shapes (things)
# and the 3 background regions (stuff), as official DETR trains its box
# model on COCO panoptic annotations. Up to 9 segments per image: 15
# queries. configs/detr_r18_shapes_panoptic.py trains the mask head on this
# model, frozen.
_base_ = './detr_r18_shapes.py'

data_root = 'data/shapes/panoptic/'
thing_classes = ('circle', 'square', 'triangle')
stuff_classes = ('stripes', 'checker', 'plain')
classes = thing_classes + stuff_classes  # things first, as mmdet's
metainfo = dict(
    classes=classes, thing_classes=thing_classes, stuff_classes=stuff_classes)
img_scale = (160, 160)
num_query = 15

model = dict(
    # DETR's own head, as official DETR trains its panoptic box model. The
    # shapes demo's extra "no object" weight on unmatched predictions that
    # overlap a ground-truth box (DuplicateWeightDETRHead) does not fit
    # stuff: the stuff boxes are large and overlap each other and most
    # things, so it taught the stuff queries "no object" (recall of the
    # stripes and checker regions about 0.2 at score 0.5)
    bbox_head=dict(
        num_classes=len(classes),
        num_query=num_query),
    test_cfg=dict(max_per_img=num_query))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    # one box, label and mask per segment, things and stuff alike
    dict(type='mmdetr.LoadPanopticTargets'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='mmdetr.CocoPanopticDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
        filter_cfg=dict(filter_empty_gt=False, min_size=8),
        pipeline=train_pipeline))
# the boxes are judged by the panoptic quality of the mask head trained on
# them (configs/detr_r18_shapes_panoptic.py): no evaluation here
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
train_cfg = dict(val_interval=1000)
# 16 epochs with the lr drop after the 14th (the detection config: 9, drop
# after 7): with 9 the box model gave stripes and checker regions about
# 0.35 for each of the two classes (stripes PQ 6); with 16 it tells them
# apart (stripes PQ 79, checker 84; docs/panoptic.md)
max_epochs = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=1000)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
        end=200),
    dict(_base_.lr_drop, end=max_epochs, milestones=[14])
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
