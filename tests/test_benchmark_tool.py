# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/analysis_tools/benchmark.py: its timing helpers, options, and that
its two 'match' and 'targets' rows compute the same thing for both models."""
import argparse
import importlib.util
import os.path as osp

import pytest
import torch

from helpers import build_mmdet, build_mmdetr

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def tool():
    path = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark.py')
    spec = importlib.util.spec_from_file_location('benchmark_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    times = tool.time_pair((lambda: calls.append('a'),
                            lambda: calls.append('b')),
                           warmup=1, repeats=4, sync=lambda: None)
    assert calls == ['a', 'b', 'a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']
    assert [len(t) for t in times] == [4, 4]


def test_row_is_the_ratio_of_medians_with_the_per_round_spread(tool):
    r = tool.row('x', ([2.0, 4.0, 3.0], [1.0, 1.0, 2.0]))
    assert r['mmdet'] == pytest.approx(3000.)
    assert r['mmdetr'] == pytest.approx(1000.)
    assert r['ratio'] == pytest.approx(3.)
    assert r['spread'] == pytest.approx((1.5, 4.))


def test_match_rows_compare_the_same_work(tool):
    """mmdet's per-image assigner calls and mmdetr's batched call give the
    same assignment and the same targets for every layer and image."""
    torch.manual_seed(0)
    ref, ours = build_mmdet(), build_mmdetr()
    args = tool.parse_args(['--match-batch', '3', '--match-gts', '25'])
    cls, box, gt_bboxes, gt_labels, gt_instances, metas = tool.match_inputs(
        args, 2, 20, 5, 'cpu')
    with torch.no_grad():
        theirs = tool.mmdet_match(ref.bbox_head, cls, box, gt_instances,
                                  metas)
        mine = tool.mmdetr_match(ours.bbox_head, cls, box, gt_bboxes,
                                 gt_labels, metas)
        their_targets = tool.mmdet_targets(ref.bbox_head, cls, box,
                                           gt_instances, metas)
        my_targets = tool.mmdetr_targets(ours.bbox_head, cls, box,
                                         gt_bboxes, gt_labels, metas)
    mine = [r for layer in mine for r in layer]
    assert len(theirs) == len(mine) == 6
    for a, b in zip(theirs, mine):
        assert torch.equal(a.gt_inds, b.gt_inds)
        assert torch.equal(a.labels, b.labels)
        assert (b.gt_inds > 0).sum() == 20  # 25 boxes, 20 queries
    for a, b in zip(their_targets, my_targets):
        for their_list, my_list in zip(a[:4], b[:4]):
            for x, y in zip(their_list, my_list):
                torch.testing.assert_close(y, x, rtol=0, atol=0)
        assert a[4:] == b[4:]  # numbers of positives and negatives
