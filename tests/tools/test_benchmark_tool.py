# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/analysis_tools/benchmark.py: its timing helpers, options, and that
its two 'match' and 'targets' rows compute the same thing for both models."""
import argparse

import pytest
import torch
from torch.utils.benchmark import Measurement, TaskSpec

from helpers import build_mmdet, build_mmdetr, load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis_tools/benchmark.py', 'benchmark_tool')


def _measurement(seconds):
    return Measurement(1, list(seconds), TaskSpec(stmt='x', setup=''))


def test_sizes_are_parsed_and_bad_ones_named(tool):
    assert tool.parse_size('800x1066') == (800, 1066)
    with pytest.raises(argparse.ArgumentTypeError, match='HxW'):
        tool.parse_size('800')
    with pytest.raises(SystemExit):
        tool.parse_args(['--repeats', '0'])
    with pytest.raises(SystemExit):
        tool.parse_args(['--device', 'tpu'])
    quick = tool.parse_args(['--quick'])
    assert quick.train_sizes[0][0] < 800 and quick.repeats <= 3


def test_rounds_alternate_which_model_goes_first(tool):
    calls = []
    ticks = iter(range(100))
    measured = tool.timing.time_pair(
        (lambda: calls.append('a'), lambda: calls.append('b')),
        warmup=1, repeats=4, clock=lambda: next(ticks) ** 2, name='x')
    assert calls == ['a', 'b', 'a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']
    # each call is timed alone: a's readings are the clock's 1st and 2nd,
    # b's the 3rd and 4th; in round 1, b's the 5th and 6th ...
    assert measured[0].times == [1 - 0, 49 - 36, 81 - 64, 225 - 196]
    assert measured[1].times == [9 - 4, 25 - 16, 121 - 100, 169 - 144]
    assert [m.sub_label for m in measured] == ['mmdet', 'mmdetr']


def test_cpu_clock_is_process_time_and_wall_clock_synchronises(tool):
    import time
    assert tool.timing.clock('cpu') is time.process_time
    assert tool.timing.clock('wall') is torch.utils.benchmark.timer
    with pytest.raises(ValueError, match='wall or cpu'):
        tool.timing.clock('gpu')


def test_row_is_the_ratio_of_medians_with_the_per_round_spread(tool):
    r = tool.timing.compare('x', (_measurement([2.0, 4.0, 3.0]),
                                  _measurement([1.0, 1.0, 2.0])))
    assert r['mmdet'] == pytest.approx(3000.)
    assert r['mmdetr'] == pytest.approx(1000.)
    assert r['ratio'] == pytest.approx(3.)
    assert r['spread'] == pytest.approx((1.5, 4.))


def test_match_rows_compare_the_same_work(tool):
    """mmdet's per-image assigner calls and mmdetr's batched call give the
    same assignment, and mmdet's dense targets are mmdetr's matched
    targets, for every layer and image."""
    torch.manual_seed(0)
    ref, ours = build_mmdet(), build_mmdetr()
    args = tool.parse_args(['--match-batch', '3', '--match-gts', '25'])
    work = tool.workloads
    cls, box, gt_bboxes, gt_labels, gt_instances, metas = work.match_inputs(
        args, 2, 20, 5, 'cpu')
    with torch.no_grad():
        calls = work.mmdet_assigner_calls(ref.bbox_head, cls, box,
                                          gt_instances, metas)
        theirs = work.mmdet_match(ref.bbox_head, calls)
        targets, matches = work.mmdetr_targets(ours.bbox_head, cls, box,
                                               gt_bboxes, gt_labels, metas)
        mine = work.mmdetr_match(ours.bbox_head, cls, box, targets)
        their_targets = work.mmdet_targets(ref.bbox_head, cls, box,
                                           gt_instances, metas)
    # recorded from mmdet's own head (its assigner is back in place):
    # [layer][image] order, boxes converted to absolute x1y1x2y2
    assert type(ref.bbox_head.assigner).__module__.startswith('mmdet.')
    assert [c['img_meta'] for c in calls] == metas * 2
    h, w = metas[1]['img_shape']
    torch.testing.assert_close(
        calls[4]['pred_instances'].bboxes[:, 2:],
        (box[1, 1, :, :2] + box[1, 1, :, 2:] / 2) * torch.tensor([w, h]))
    # mmdetr's matches as 1-based ground truths per (layer, image, query)
    gt_inds = torch.zeros(2, 3, 20, dtype=torch.long)
    for n, (img, query, gt) in enumerate(mine):
        gt_inds[n, img, query] = gt + 1
    for ours_n, mine_n in zip(matches, mine):
        assert all(torch.equal(a, b) for a, b in zip(ours_n, mine_n))
    assert len(theirs) == 6 and len(mine) == 2
    for k, a in enumerate(theirs):
        n, i = divmod(k, 3)
        assert torch.equal(a.gt_inds, gt_inds[n, i])
        assert (a.gt_inds > 0).sum() == 20  # 25 boxes, 20 queries
    for n, (labels, _, bbox_targets, bbox_weights, num_pos,
            _) in enumerate(their_targets):
        img, query, gt = matches[n]
        assert num_pos == len(img) == 60
        for i in range(3):
            mine_i = img == i
            want = torch.full((20, ), 5)
            want[query[mine_i]] = targets.labels[i, gt[mine_i]]
            assert torch.equal(labels[i], want)
            pos = bbox_weights[i][:, 0] > 0
            assert torch.equal(pos, gt_inds[n, i] > 0)
            # the matched boxes, normalised (cx, cy, w, h)
            torch.testing.assert_close(
                bbox_targets[i][query[mine_i]],
                targets.boxes[i, gt[mine_i]], rtol=0, atol=0)


def test_host_syncs_row_counts_each_models_training_step(tool):
    """The 'train host syncs' row: mmdet 3.3's step waits for the device
    many times (per-image targets, per-key log reads); mmdetr's 3 times,
    the matches' copy back to the device included."""
    from mmengine.config import ConfigDict
    torch.manual_seed(0)
    ref, ours = build_mmdet(), build_mmdetr()
    args = tool.parse_args(['--train-sizes', '96x128', '128x80',
                            '--train-gts', '5'])
    optim_cfg = ConfigDict(
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
        clip_grad=dict(max_norm=0.1, norm_type=2))
    bench = tool.workloads.Bench(ref, ours, optim_cfg, args)
    theirs, mine = tool.workloads.train_host_syncs(bench)
    assert mine == 3
    assert theirs > 10
