# Fine-tuning measured: the shapes demo model (configs/detr_r18_shapes_demo.py,
# classes circle, square, triangle) fine-tuned on shapes data with a class it
# has never seen (hexagon instead of triangle), against the same config
# trained from scratch (`--cfg-options load_from=None`). docs/finetune.md
# has the commands and the numbers.
#   python tools/misc/make_shapes_dataset.py data/shapes_hexagon --seed 1 \
#       --classes circle square hexagon
_base_ = './detr_r18_shapes_demo.py'

data_root = 'data/shapes_hexagon/'
classes = ('circle', 'square', 'hexagon')
metainfo = dict(classes=classes)

model = dict(
    bbox_head=dict(num_classes=len(classes)),
    aux_head=dict(num_classes=len(classes)))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = [
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val.json',
        metric='bbox',
        format_only=False),
    dict(type='mmdetr.DuplicateMetric', score_thr=0.5, iou_thr=0.5)
]
test_evaluator = val_evaluator

# circle and square keep their trained classifier rows (copied by name),
# hexagon starts fresh; everything else is the demo model's.
load_from = 'work_dirs/detr_r18_shapes_demo/epoch_11.pth'

# 5 epochs (625 iterations on 1000 images), lr step at 4, evaluated every
# epoch so that the epoch reaching a given AP50 shows.
train_cfg = dict(max_epochs=5, val_interval=1)
# the demo's warm-up, then its lr drop at epoch 4
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.lr_drop, end=5, milestones=[4])
]
