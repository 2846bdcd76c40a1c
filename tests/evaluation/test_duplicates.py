# Copyright (c) mmdetr contributors. All rights reserved.
"""Duplicate-detection figures (the demo's "one box per object" check) and
the enlarged drawing of small images."""
import pytest
import pickle
import sys

import mmcv
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmdetr.evaluation import (DuplicateMetric, count_duplicates,
                               duplicate_pairs)
from mmdetr.visualization import DetLocalVisualizer

from helpers import run  # noqa: E402

# box 0 and 1 overlap with IoU 0.9025 (1444 / 1600); box 2 is elsewhere
BOXES = torch.tensor([[10., 10., 50., 50.], [12., 12., 50., 50.],
                      [100., 100., 140., 140.]])


def test_pairs_need_same_class_both_scores_and_overlap():
    scores = torch.tensor([0.9, 0.8, 0.9])
    assert duplicate_pairs(BOXES, scores, torch.tensor([0, 0, 0])) == 1
    # another class: not a duplicate
    assert duplicate_pairs(BOXES, scores, torch.tensor([0, 1, 0])) == 0
    # one of the two under the score threshold
    assert duplicate_pairs(BOXES, torch.tensor([0.9, 0.4, 0.9]),
                           torch.tensor([0, 0, 0])) == 0
    # IoU 0.9025 is not above 0.95
    assert duplicate_pairs(BOXES, scores, torch.tensor([0, 0, 0]),
                           iou_thr=0.95) == 0
    # three boxes on one object are three pairs
    three = torch.cat([BOXES[:2], BOXES[:1] + 1])
    assert duplicate_pairs(three, scores, torch.tensor([0, 0, 0])) == 3
    # numpy input, as in a results pickle
    assert duplicate_pairs(BOXES.numpy(), scores.numpy(),
                           np.zeros(3, dtype=np.int64)) == 1


def _images():
    dup = dict(bboxes=BOXES, scores=torch.tensor([0.9, 0.8, 0.9]),
               labels=torch.tensor([0, 0, 0]))
    clean = dict(bboxes=BOXES, scores=torch.tensor([0.9, 0.2, 0.9]),
                 labels=torch.tensor([0, 0, 2]))
    return [dup, clean, dup]


def test_count_duplicates_over_images():
    assert count_duplicates(_images()) == dict(
        images=3, detections=8, pairs=2, images_with_duplicates=2)


def test_metric_logs_the_same_figures():
    metric = DuplicateMetric()
    samples = []
    for det in _images():
        sample = DetDataSample()
        sample.pred_instances = InstanceData(**det)
        samples.append(sample)
    metric.process({}, samples)
    assert metric.compute_metrics(metric.results) == dict(
        pairs=2, images_with_duplicates=2, detections=8)


@pytest.mark.slow
def test_count_duplicates_tool_reads_a_test_out_pickle(tmp_path):
    results = [dict(img_id=i, pred_instances=det)
               for i, det in enumerate(_images())]
    path = tmp_path / 'results.pkl'
    path.write_bytes(pickle.dumps(results))
    out = run(sys.executable, 'tools/analysis_tools/count_duplicates.py',
              path)
    assert '2 pairs, 2 of 3 images with a duplicate' in out.stdout
    bad = run(sys.executable, 'tools/analysis_tools/count_duplicates.py',
              tmp_path / 'missing.pkl', check=False)
    assert bad.returncode != 0 and 'missing.pkl' in bad.stderr


def test_small_images_are_drawn_enlarged_with_their_boxes(tmp_path):
    vis = DetLocalVisualizer(name='test_enlarged', min_size=480)
    image = np.zeros((160, 120, 3), dtype=np.uint8)
    assert vis.draw_scale(image) == 4  # 120 * 4 >= 480
    sample = DetDataSample()
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10., 10., 50., 50.]]), labels=torch.tensor([0]))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[10., 10., 50., 50.]]),
        scores=torch.tensor([0.9]), labels=torch.tensor([0]))
    vis.dataset_meta = dict(classes=('a', ), palette=[(255, 0, 0)])
    out = tmp_path / 'drawn.png'
    vis.add_datasample('x', image, sample, out_file=str(out))
    drawn = mmcv.imread(str(out))
    # ground truth and prediction side by side, each enlarged 4x
    assert drawn.shape[:2] == (640, 2 * 480)
    # the box is drawn where the enlarged box is: red pixels near x=40
    # (10 * 4) on the prediction's side, none near the unscaled x=10
    pred = drawn[:, 480:]
    assert pred[160:200, 38:43].any()
    # the caller's data sample is not changed
    assert torch.equal(sample.pred_instances.bboxes,
                       torch.tensor([[10., 10., 50., 50.]]))
    large = np.zeros((600, 800, 3), dtype=np.uint8)
    assert vis.draw_scale(large) == 1
    assert DetLocalVisualizer(name='test_off', min_size=0).draw_scale(
        image) == 1
