# Copyright (c) mmdetr contributors. All rights reserved.
"""Compare an exported model's detections with mmdetr's PyTorch ``predict``
on the same padded batch."""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from torch import nn

# what --verify and the tests accept (boxes relative to the image size)
TOLERANCE = 1e-4


def random_batch(detector: nn.Module, sizes: Sequence[Tuple[int, int]],
                 seed: int = 0):
    """Random uint8 images of ``sizes`` (h, w), through the detector's data
    preprocessor: the padded normalised batch and its data samples."""
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for h, w in sizes:
        inputs.append(
            torch.randint(0, 256, (3, h, w), generator=gen,
                          dtype=torch.uint8))
        samples.append(
            DetDataSample(metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.))))
    data = detector.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), False)
    return data['inputs'], data['data_samples']


def _match(t_scores, t_boxes, t_labels, o_scores, o_boxes, o_labels,
           score_tol):
    """Pair each exported detection with PyTorch's at the same rank, or,
    where two near-equal scores swapped ranks, with the one of equal label
    and nearest box among those within ``score_tol``."""
    pairs, used = [], set()
    for i in range(len(o_scores)):
        cand = [i] if i not in used else []
        cand += [
            j for j in np.nonzero(np.abs(t_scores - o_scores[i]) <= score_tol)
            [0] if j not in used and j != i
        ]
        best = None
        for j in cand:
            if t_labels[j] != o_labels[i]:
                continue
            err = np.abs(t_boxes[j] - o_boxes[i]).max()
            if best is None or err < best[1]:
                best = (j, err)
        if best is None:
            pairs.append((i, None))
        else:
            used.add(best[0])
            pairs.append((i, best[0]))
    return pairs


def compare_with_pytorch(detector: nn.Module,
                         session,
                         sizes: Sequence[Tuple[int, int]],
                         seed: int = 0,
                         batch: Optional[tuple] = None) -> Dict[str, float]:
    """Run ``detector.predict`` and the ONNX session on one padded batch of
    random images and measure how far their detections are apart.

    Args:
        detector (DETR): mmdetr's DETR, eval mode.
        session (onnxruntime.InferenceSession): The exported model.
        sizes (list[tuple[int, int]]): (h, w) of each image of the batch.
        seed (int): Of the random images.
        batch (tuple, optional): ``(inputs, data_samples)`` to use instead
            of random images.

    Returns:
        dict: ``label_mismatches`` (detections whose label has no
        counterpart), ``max_score_diff``, ``max_box_diff`` (box coordinates
        divided by the image's width/height), ``num_dets`` (compared).
    """
    detector.eval()
    inputs, samples = batch or random_batch(detector, sizes, seed)
    img_shape = np.array([s.img_shape[:2] for s in samples], np.int64)
    results = detector.predict(inputs, samples, rescale=False)
    dets, labels = session.run(['dets', 'labels'], {
        'input': inputs.numpy().astype(np.float32),
        'img_shape': img_shape
    })
    mismatches, score_diff, box_diff, count = 0, 0.0, 0.0, 0
    for i, sample in enumerate(results):
        pred = sample.pred_instances
        h, w = img_shape[i]
        norm = np.array([w, h, w, h], np.float64)
        t_boxes = pred.bboxes.numpy().astype(np.float64) / norm
        t_scores = pred.scores.numpy().astype(np.float64)
        t_labels = pred.labels.numpy()
        o_boxes = dets[i, :, :4].astype(np.float64) / norm
        o_scores = dets[i, :, 4].astype(np.float64)
        if len(o_scores) != len(t_scores):
            mismatches += abs(len(o_scores) - len(t_scores))
        n = min(len(o_scores), len(t_scores))
        for k, j in _match(t_scores[:n], t_boxes[:n], t_labels[:n],
                           o_scores[:n], o_boxes[:n], labels[i, :n],
                           TOLERANCE):
            if j is None:
                mismatches += 1
                continue
            count += 1
            score_diff = max(score_diff, abs(t_scores[j] - o_scores[k]))
            box_diff = max(box_diff,
                           float(np.abs(t_boxes[j] - o_boxes[k]).max()))
    return dict(
        label_mismatches=mismatches,
        max_score_diff=score_diff,
        max_box_diff=box_diff,
        num_dets=count)


def within_tolerance(diffs: Dict[str, float],
                     tol: float = TOLERANCE) -> bool:
    """True when labels agree and scores/boxes are within ``tol``."""
    return (diffs['label_mismatches'] == 0 and diffs['max_score_diff'] <= tol
            and diffs['max_box_diff'] <= tol)
