# Copyright (c) mmdetr contributors. All rights reserved.
"""Count the duplicate detections a set predictor makes.

DETR's promise is one prediction per object without NMS; an under-trained
DETR breaks it by predicting the same object from several queries. A
duplicate pair is two detections of the same class in one image, both
scoring at least ``score_thr``, that overlap with IoU above ``iou_thr``.
Nothing is suppressed here: the figures are what the model itself predicts.
"""
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import torch
from mmdet.structures.bbox import bbox_overlaps
from mmengine.evaluator import BaseMetric

from mmdetr.registry import METRICS


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(
        np.asarray(x))


def _fields(det) -> tuple:
    """``bboxes, scores, labels`` of a dict or an InstanceData."""
    get = det.get if isinstance(det, dict) else det.__getattribute__
    return tuple(_tensor(get(key)) for key in ('bboxes', 'scores', 'labels'))


def duplicate_pairs(bboxes, scores, labels, score_thr: float = 0.5,
                    iou_thr: float = 0.5) -> int:
    """Duplicate pairs among one image's detections.

    Args:
        bboxes (Tensor | ndarray): (x1, y1, x2, y2), has shape (n, 4).
        scores (Tensor | ndarray): has shape (n, ).
        labels (Tensor | ndarray): has shape (n, ).
        score_thr (float): Both detections of a pair score at least this.
        iou_thr (float): Their IoU is above this.

    Returns:
        int: the number of unordered same-class pairs over both thresholds.
    """
    bboxes, scores, labels = map(_tensor, (bboxes, scores, labels))
    keep = scores >= score_thr
    bboxes, labels = bboxes[keep].float(), labels[keep]
    if len(bboxes) < 2:
        return 0
    iou = bbox_overlaps(bboxes, bboxes)
    same = labels[:, None] == labels[None, :]
    pairs = (iou > iou_thr) & same
    return int(pairs.triu(diagonal=1).sum())


def count_duplicates(detections: Iterable, score_thr: float = 0.5,
                     iou_thr: float = 0.5) -> Dict[str, int]:
    """Duplicate figures of a whole set of images.

    Args:
        detections (iterable): Per image, an object or dict with
            ``bboxes``, ``scores`` and ``labels`` (e.g. ``pred_instances``
            of a data sample, or of a ``tools/test.py --out`` pickle).
        score_thr, iou_thr (float): As :func:`duplicate_pairs`.

    Returns:
        dict: ``images`` (how many), ``detections`` (scoring at least
        ``score_thr``), ``pairs`` (duplicate pairs) and
        ``images_with_duplicates``.
    """
    out = dict(images=0, detections=0, pairs=0, images_with_duplicates=0)
    for det in detections:
        bboxes, scores, labels = _fields(det)
        pairs = duplicate_pairs(bboxes, scores, labels, score_thr, iou_thr)
        out['images'] += 1
        out['detections'] += int((scores >= score_thr).sum())
        out['pairs'] += pairs
        out['images_with_duplicates'] += int(pairs > 0)
    return out


def format_duplicates(figures: Dict[str, int], score_thr: float = 0.5,
                      iou_thr: float = 0.5) -> str:
    """One line for people: what was counted and how many."""
    return (f'duplicates (same class, both scores >= {score_thr:g}, '
            f'IoU > {iou_thr:g}, no NMS): {figures["pairs"]} pairs, '
            f'{figures["images_with_duplicates"]} of {figures["images"]} '
            f'images with a duplicate; {figures["detections"]} detections '
            f'scoring >= {score_thr:g}')


@METRICS.register_module()
class DuplicateMetric(BaseMetric):
    """Duplicate detections as a validation metric (see
    :func:`count_duplicates`), logged as ``duplicates/pairs``,
    ``duplicates/images_with_duplicates`` and ``duplicates/detections``.

    Args:
        score_thr (float): Defaults to 0.5.
        iou_thr (float): Defaults to 0.5.
        collect_device (str): Defaults to 'cpu'.
        prefix (str, optional): Defaults to 'duplicates'.
    """
    default_prefix: Optional[str] = 'duplicates'

    def __init__(self,
                 score_thr: float = 0.5,
                 iou_thr: float = 0.5,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.score_thr = score_thr
        self.iou_thr = iou_thr

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            pred = sample['pred_instances'] if isinstance(
                sample, dict) else sample.pred_instances
            bboxes, scores, labels = _fields(pred)
            keep = scores >= self.score_thr
            self.results.append(
                dict(bboxes=bboxes[keep].cpu(), scores=scores[keep].cpu(),
                     labels=labels[keep].cpu()))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        figures = count_duplicates(results, self.score_thr, self.iou_thr)
        return dict(
            pairs=figures['pairs'],
            images_with_duplicates=figures['images_with_duplicates'],
            detections=figures['detections'])
