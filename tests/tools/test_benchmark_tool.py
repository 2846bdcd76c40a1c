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


# ---------------------------------------------------------------- roofline
def test_roofline_counts_convolutions_and_matmuls_apart(tool):
    """FlopCounterMode's totals are the analytic counts (2 FLOPs a
    multiply-add): a convolution 2*N*Cin*Cout*k*k*H*W, a linear layer
    2*N*in*out; backward (input and weight gradients) twice each more."""
    torch.manual_seed(0)
    n, cin, cout, k, h, w, out = 2, 3, 4, 3, 8, 10, 5
    conv = torch.nn.Conv2d(cin, cout, k, padding=1)
    linear = torch.nn.Linear(cout * h * w, out)
    x = torch.randn(n, cin, h, w, requires_grad=True)
    conv_flops = 2 * n * cin * cout * k * k * h * w
    linear_flops = 2 * n * cout * h * w * out
    flops = tool.roofline.count_flops(lambda: linear(conv(x).flatten(1)))
    assert (flops.conv, flops.matmul) == (conv_flops, linear_flops)
    assert flops.total == conv_flops + linear_flops
    flops = tool.roofline.count_flops(
        lambda: linear(conv(x).flatten(1)).sum().backward())
    assert (flops.conv, flops.matmul) == (3 * conv_flops, 3 * linear_flops)


def test_roofline_counts_the_fused_attention_under_inference_mode(tool):
    """A step under ``torch.inference_mode`` with a parameter passed into a
    module (as mmdetr's ``predict`` and its queries) is counted (torch 2.1's
    counter sees nothing under inference mode, 2.13's fails on the
    parameter), and the CPU's fused attention kernel (no formula of
    torch's) counts as its two products: 2*B*H*L*S*E each. The parameters
    and ``torch.inference_mode`` are restored."""
    import torch.nn.functional as F
    b, heads, length, source, dims = 2, 3, 5, 7, 8

    class Inner(torch.nn.Module):
        def forward(self, q, kv):
            return F.scaled_dot_product_attention(q, kv, kv)

    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.queries = torch.nn.Parameter(
                torch.randn(b, heads, length, dims))
            self.inner = Inner()

        def forward(self, kv):
            return self.inner(self.queries, kv)

    model, kv = Outer(), torch.randn(b, heads, source, dims)

    def predict():
        with torch.inference_mode():
            return model(kv)

    flops = tool.roofline.count_flops(predict, inference_model=model)
    assert flops.matmul == 2 * (2 * b * heads * length * source * dims)
    assert flops.conv == 0
    assert model.queries.requires_grad
    assert torch.inference_mode is torch.autograd.grad_mode.inference_mode


def test_roofline_floor_is_conv_at_conv_peak_plus_matmul_at_matmul_peak(
        tool):
    roofline = tool.roofline
    flops = roofline.Flops({'aten.convolution': 6 * 10**9,
                            'aten.convolution_backward': 4 * 10**9,
                            'aten.mm': 10**9, 'aten.bmm': 10**9})
    assert (flops.conv, flops.matmul) == (10**10, 2 * 10**9)
    peak = roofline.Peak('float32', conv=1e11, matmul=4e10, conv_flops=1,
                         matmul_flops=1)
    assert roofline.floor_seconds(flops, peak) == pytest.approx(0.15)
    row = roofline.entry('train', flops, peak, dict(mmdet=0.6, mmdetr=0.3))
    assert row.floor == pytest.approx(0.15)
    assert row.multiples == pytest.approx(dict(mmdet=4.0, mmdetr=2.0))
    table = roofline.format_table([row], {'float32': peak})
    line = next(x for x in table.splitlines() if x.startswith('train'))
    assert line.split() == ['train', 'float32', '10.00', '2.00', '150.0ms',
                            '600.0ms', '4.0x', '300.0ms', '2.0x']
    assert 'conv    100.0  matmul     40.0' in table
    data = roofline.to_json([row], {'float32': peak})
    assert data['workloads'][0]['multiples'] == row.multiples
    assert data['workloads'][0]['conv_flops'] == 10**10


def test_roofline_probe_time_is_the_best_repeat(tool):
    """Warm-up calls untimed, then one timed call that sizes the
    measurements: a fast step runs enough times to fill ``min_seconds``;
    the fastest of the measurements, per call."""
    calls, now = [], [0.0]
    durations = iter([1.0, 1.0, 0.2, 0.3, 0.4])  # 2 warm-up, 1 sizing, 2

    def step():
        calls.append(1)
        now[0] += next(durations)

    best = tool.roofline.best_seconds(step, lambda: now[0], warmup=2,
                                      repeats=2, min_seconds=0.1)
    assert best == pytest.approx(0.3) and len(calls) == 5
    durations = iter([0.01] * 40)
    calls.clear()
    best = tool.roofline.best_seconds(step, lambda: now[0], warmup=0,
                                      repeats=2, min_seconds=0.045)
    assert len(calls) == 1 + 2 * 5 and best == pytest.approx(0.01)


def test_roofline_probes_count_their_flops(tool):
    """The probes' FLOPs are counted (the analytic counts here) and their
    speeds are positive, in each dtype asked for."""
    conv, size = (1, 4, 6, 7), 8
    peaks = tool.roofline.probe_peaks(
        'cpu', ['float32', 'bfloat16'], quick=True,
        probes=dict(conv=conv, matmul=size))
    n, c, h, w = conv
    for dtype, peak in peaks.items():
        assert peak.dtype == dtype
        assert peak.conv_flops == 2 * n * c * c * 9 * h * w
        assert peak.matmul_flops == 2 * size**3
        assert peak.conv > 0 and peak.matmul > 0
    # the bfloat16 probe runs in bfloat16
    step = tool.roofline.probe_steps('cpu', 'bfloat16',
                                     dict(conv=conv, matmul=size))
    assert step['matmul']().dtype == step['conv']().dtype == torch.bfloat16


@pytest.mark.slow  # builds both R50 models and runs every row: about 10 s
def test_benchmark_prints_the_roofline(tool, monkeypatch, capsys, tmp_path):
    """The roofline table after the times: train and infer with their
    counted FLOPs, floors and both models' multiples; the peaks; the same
    in the JSON file."""
    import json
    monkeypatch.setattr(tool.roofline, 'PROBES',
                        dict(conv=(1, 16, 8, 8), matmul=64))
    # the memory rows' children build R50 models: a stand-in value here
    # (the rows print beside the roofline, its peaks are not theirs)
    monkeypatch.setattr(tool.memory, 'peak_memory',
                        lambda which, *args: 2**20 * len(which))
    tool.main(['--train-sizes', '64x96', '64x80',
               '--infer-size', '64x96', '--repeats', '1', '--warmup', '0',
               '--match-repeats', '1', '--match-batch', '1',
               '--json', str(tmp_path / 'r.json')])
    out = capsys.readouterr().out
    table = out[out.index('\nroofline'):]
    assert '\ntrain' in table and '\ninfer' in table
    assert 'peak GFLOPS' in table and '\n' + ' ' * 10 + '  float32' in table
    data = json.load(open(tmp_path / 'r.json'))
    rows = {r['name']: r for r in data['rows']}
    work = {w['workload']: w for w in data['roofline']['workloads']}
    assert set(work) == {'train', 'infer'}
    peak = data['roofline']['peaks']['float32']
    for name, w in work.items():
        assert w['dtype'] == 'float32'
        assert w['conv_flops'] > 0 and w['matmul_flops'] > 0
        assert w['floor'] == pytest.approx(
            w['conv_flops'] / peak['conv'] +
            w['matmul_flops'] / peak['matmul'])
        for model in ('mmdet', 'mmdetr'):
            assert w['times'][model] == pytest.approx(
                rows[name][model] / 1e3)
            assert w['multiples'][model] == pytest.approx(
                w['times'][model] / w['floor'])
    # train: 2 images of infer's padded size, and the backward
    assert work['train']['conv_flops'] > 2 * work['infer']['conv_flops']
