# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr's visualiser enlarges a small image's panoptic segmentation and
instance masks with it (mmdet draws them only at the image's size)."""
import mmcv
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData, PixelData

from mmdetr.visualization import DetLocalVisualizer


def test_panoptic_maps_and_masks_are_drawn_enlarged(tmp_path):
    vis = DetLocalVisualizer(name='test_panoptic_enlarged', min_size=120)
    vis.dataset_meta = dict(classes=('thing', 'stuff'),
                            thing_classes=('thing', ), stuff_classes=(
                                'stuff', ), palette=[(255, 0, 0),
                                                     (0, 0, 255)])
    image = np.zeros((40, 30, 3), dtype=np.uint8)
    assert vis.draw_scale(image) == 4
    sample = DetDataSample()
    # the left half is the thing (label 0, instance 1), the rest stuff
    sem_seg = torch.ones(1, 40, 30, dtype=torch.long)
    sem_seg[:, :, :15] = 1000
    sample.pred_panoptic_seg = PixelData(sem_seg=sem_seg)
    mask = torch.zeros(1, 40, 30, dtype=torch.bool)
    mask[:, :, :15] = True
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[0., 0., 15., 40.]]), scores=torch.tensor([0.9]),
        labels=torch.tensor([0]), masks=mask)
    out = tmp_path / 'drawn.png'
    vis.add_datasample('x', image, sample, out_file=str(out),
                       draw_gt=False)
    drawn = mmcv.imread(str(out))
    assert drawn.shape[:2] == (160, 120)
    # the thing's half and the stuff's half coloured differently, split
    # where the enlarged map splits (x = 60)
    left, right = drawn[80, 20].astype(int), drawn[80, 100].astype(int)
    assert np.abs(left - right).sum() > 60
    # the data sample is left as it was
    assert sample.pred_panoptic_seg.sem_seg.shape == (1, 40, 30)
    assert sample.pred_instances.masks.shape == (1, 40, 30)
