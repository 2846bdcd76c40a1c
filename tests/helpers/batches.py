# Copyright (c) mmdetr contributors. All rights reserved.
"""Synthetic model input in memory: random boxes and padded image batches."""
import copy

import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData


def random_boxes(n, h, w, gen):
    """n valid absolute x1y1x2y2 boxes inside an h x w image."""
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.7, h * 0.7])
    wh = (torch.rand(n, 2, generator=gen) * 0.5 + 0.1) * torch.tensor([w, h])
    x2y2 = torch.minimum(xy + wh, torch.tensor([w - 1., h - 1.]))
    return torch.cat([xy, x2y2], dim=1)


def make_batch(sizes=((96, 128), (128, 80)),
               num_boxes=(0, 7),
               num_classes=5,
               seed=0):
    """Raw model input: images of different sizes (so the batch is padded)
    with ``num_boxes[i]`` random boxes each."""
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for (h, w), n in zip(sizes, num_boxes):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                ori_shape=(int(h * 1.25), int(w * 1.5)),
                scale_factor=(1 / 1.5, 1 / 1.25)))
        sample.gt_instances = InstanceData(
            bboxes=random_boxes(n, h, w, gen),
            labels=torch.randint(0, num_classes, (n, ), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def preprocess(model, data, training):
    """Run the model's data preprocessor on a deep copy of ``data``."""
    return model.data_preprocessor(copy.deepcopy(data), training)


def head_outputs_and_targets(model, data):
    """A DETR's head outputs on ``data`` (preprocessed for training) and
    what its ``loss`` takes besides: (outputs, gt boxes, gt labels,
    metas)."""
    inputs = preprocess(model, data, True)
    metas = [s.metainfo for s in inputs['data_samples']]
    outs = model.bbox_head(model.extract_feat(inputs['inputs']), metas)
    gt_bboxes = [s.gt_instances.bboxes for s in inputs['data_samples']]
    gt_labels = [s.gt_instances.labels for s in inputs['data_samples']]
    return outs, gt_bboxes, gt_labels, metas
