# Copyright (c) mmdetr contributors. All rights reserved.
"""PQ as panopticapi defines it, on a hand-made case whose PQ/SQ/RQ are
worked out below: the panopticapi module mmdet imports (panopticapi-lite
0.2.0), mmdet's CocoPanopticMetric fed with mmdetr's panoptic encoding, and
an independent implementation (hotcoco) all give them.

Categories: 1 ``a`` (thing), 2 ``b`` (thing), 3 ``s`` (stuff).

Image 1, 10x10::

    gt                              pred
    rows 0-3, cols 0-3: a1 (16)     rows 0-3, cols 0-2: a  -> IoU 12/16 = .75
    rows 0-3, cols 6-9: a2 (16)     rows 0-1, cols 6-9: a' -> IoU 8/16 = .5,
                                                      not > .5: FN a2, FP a'
    rows 6-9, cols 0-3: b crowd     rows 6-9, cols 0-3: b  -> on a crowd
                                            region of its class: ignored
    rows 6-9, cols 6-9: void (0)    rows 6-9, cols 6-9: a'' -> on void:
                                                      ignored
    the rest: s (36)                the rest: s (48) -> IoU 36/48 = .75

Image 2, 4x8: gt a cols 0-3 (16), void cols 4-5, s cols 6-7; pred a cols
0-5 (24, 8 of them on void: they leave the union) -> IoU 16/16 = 1;
pred s cols 6-7 -> IoU 1.

a: TP 2 (IoU 1.75), FP 1, FN 1: PQ 1.75/3, SQ .875, RQ 2/3.
s: TP 2 (IoU 1.75): PQ .875, SQ .875, RQ 1. b: nothing, not averaged.
"""
import json

import cv2
import numpy as np
import pytest
import torch

from mmdetr.panoptic import panoptic_to_sem_seg

CATEGORIES = [
    dict(id=1, name='a', isthing=1, supercategory='x'),
    dict(id=2, name='b', isthing=1, supercategory='x'),
    dict(id=3, name='s', isthing=0, supercategory='x')
]
EXPECTED = {
    'All': dict(pq=(1.75 / 3 + 0.875) / 2, sq=0.875, rq=(2 / 3 + 1) / 2, n=2),
    'Things': dict(pq=1.75 / 3, sq=0.875, rq=2 / 3, n=1),
    'Stuff': dict(pq=0.875, sq=0.875, rq=1.0, n=1),
}


def _maps():
    """(gt ids, gt segments, pred ids, pred segments) per image; segments
    as (id, category_id, iscrowd)."""
    gt1 = np.full((10, 10), 31)
    gt1[0:4, 0:4], gt1[0:4, 6:10] = 11, 12
    gt1[6:10, 0:4], gt1[6:10, 6:10] = 21, 0
    pred1 = np.full((10, 10), 31)
    pred1[0:4, 0:3], pred1[0:2, 6:10] = 11, 12
    pred1[6:10, 0:4], pred1[6:10, 6:10] = 21, 13
    gt2 = np.zeros((4, 8), dtype=np.int64)
    gt2[:, 0:4], gt2[:, 6:8] = 11, 31
    pred2 = np.zeros((4, 8), dtype=np.int64)
    pred2[:, 0:6], pred2[:, 6:8] = 11, 31
    return [
        (gt1, [(11, 1, 0), (12, 1, 0), (21, 2, 1), (31, 3, 0)], pred1,
         [(11, 1), (12, 1), (21, 2), (13, 1), (31, 3)]),
        (gt2, [(11, 1, 0), (31, 3, 0)], pred2, [(11, 1), (31, 3)]),
    ]


def _write_png(path, ids):
    rgb = np.stack([(ids >> (8 * c)) & 255 for c in range(3)], -1)
    assert cv2.imwrite(str(path), rgb[..., ::-1].astype(np.uint8))


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1,
            int(np.ptp(ys)) + 1]


@pytest.fixture
def case(tmp_path):
    """The case in COCO panoptic files: gt.json + gt/, pred.json + pred/."""
    (tmp_path / 'gt').mkdir()
    (tmp_path / 'pred').mkdir()
    images, gt_anns, pred_anns = [], [], []
    for i, (gt, gt_segs, pred, pred_segs) in enumerate(_maps(), start=1):
        name = f'{i:06d}.png'
        _write_png(tmp_path / 'gt' / name, gt)
        _write_png(tmp_path / 'pred' / name, pred)
        images.append(dict(id=i, file_name=f'{i:06d}.jpg', height=gt.shape[0],
                           width=gt.shape[1]))
        gt_anns.append(dict(image_id=i, file_name=name, segments_info=[
            dict(id=s, category_id=c, iscrowd=crowd,
                 area=int((gt == s).sum()), bbox=_bbox(gt == s))
            for s, c, crowd in gt_segs
        ]))
        pred_anns.append(dict(image_id=i, file_name=name, segments_info=[
            dict(id=s, category_id=c) for s, c in pred_segs
        ]))
    json.dump(dict(images=images, annotations=gt_anns,
                   categories=CATEGORIES), open(tmp_path / 'gt.json', 'w'))
    json.dump(dict(images=images, annotations=pred_anns,
                   categories=CATEGORIES), open(tmp_path / 'pred.json', 'w'))
    return tmp_path


def _assert_expected(results, scale=1.0):
    for name, want in EXPECTED.items():
        for key in ('pq', 'sq', 'rq'):
            assert results[name][key] == pytest.approx(want[key] * scale,
                                                       abs=1e-9), (name, key)
        if 'n' in results[name]:
            assert results[name]['n'] == want['n']


def test_panopticapi_module_gives_the_hand_worked_pq(case):
    """The single-core function and PQStat that mmdet 3.3 calls."""
    from panopticapi.evaluation import PQStat, pq_compute_single_core
    gt = json.load(open(case / 'gt.json'))
    pred = json.load(open(case / 'pred.json'))
    stat = pq_compute_single_core(
        0, list(zip(gt['annotations'], pred['annotations'])),
        str(case / 'gt'), str(case / 'pred'),
        {c['id']: c for c in CATEGORIES})
    assert isinstance(stat, PQStat)
    assert (stat[1].tp, stat[1].fp, stat[1].fn) == (2, 1, 1)
    assert (stat[2].tp, stat[2].fp, stat[2].fn) == (0, 0, 0)
    assert (stat[3].tp, stat[3].fp, stat[3].fn) == (2, 0, 0)
    results = {
        name: stat.pq_average({c['id']: c for c in CATEGORIES}, isthing)[0]
        for name, isthing in (('All', None), ('Things', True),
                              ('Stuff', False))
    }
    _assert_expected(results)


def test_mmdet_metric_on_mmdetr_encoding_gives_the_hand_worked_pq(case):
    """CocoPanopticMetric (what ``tools/test.py --eval pq`` runs) fed with
    ``pred_panoptic_seg`` made by mmdetr's ``panoptic_to_sem_seg``."""
    from mmdet.evaluation import CocoPanopticMetric
    metric = CocoPanopticMetric(ann_file=str(case / 'gt.json'),
                                seg_prefix=str(case / 'gt'))
    metric.dataset_meta = dict(classes=('a', 'b', 's'),
                               thing_classes=('a', 'b'), stuff_classes=('s', ))
    label = {1: 0, 2: 1, 3: 2}
    samples = []
    for i, (gt, _, pred, pred_segs) in enumerate(_maps(), start=1):
        segment_map = torch.full(pred.shape, -1, dtype=torch.long)
        segments = []
        for k, (seg_id, cat) in enumerate(pred_segs):
            segment_map[torch.from_numpy(pred == seg_id)] = k
            segments.append(dict(label=label[cat], is_thing=cat != 3))
        sem_seg = panoptic_to_sem_seg(segment_map, segments, 3)
        samples.append(dict(img_id=i, img_path=f'x/{i:06d}.jpg',
                            ori_shape=pred.shape,
                            pred_panoptic_seg=dict(sem_seg=sem_seg)))
    metric.process({}, samples)
    out = metric.compute_metrics(metric.results)
    results = {
        name: dict(pq=out[f'PQ{suffix}'], sq=out[f'SQ{suffix}'],
                   rq=out[f'RQ{suffix}'])
        for name, suffix in (('All', ''), ('Things', '_th'), ('Stuff', '_st'))
    }
    _assert_expected(results, scale=100)


def test_hotcoco_gives_the_hand_worked_pq(case):
    """An independent implementation (Rust, from PyPI) of the same
    definition."""
    panoptic = pytest.importorskip('hotcoco.panoptic')
    results = panoptic.pq_compute(str(case / 'gt.json'),
                                  str(case / 'pred.json'),
                                  str(case / 'gt'), str(case / 'pred'))
    _assert_expected(results)


@pytest.mark.slow
def test_panopticapi_pq_compute_end_to_end(case):
    """panopticapi's own entry point (a process pool)."""
    from panopticapi.evaluation import pq_compute
    results = pq_compute(str(case / 'gt.json'), str(case / 'pred.json'),
                         str(case / 'gt'), str(case / 'pred'))
    _assert_expected(results)
