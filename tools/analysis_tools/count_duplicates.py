# Copyright (c) mmdetr contributors. All rights reserved.
"""Count the duplicate detections in a ``tools/test.py --out`` pickle.

    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    python tools/analysis_tools/count_duplicates.py results.pkl \
        [--score-thr 0.5] [--iou-thr 0.5]

A duplicate pair is two detections of one class in one image, both scoring
at least ``--score-thr``, overlapping with IoU above ``--iou-thr``. The
detections are the model's own: nothing is suppressed before counting.
"""
import argparse
import os.path as osp
import sys

from mmengine.fileio import load

from mmdetr.evaluation import count_duplicates, format_duplicates


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Count duplicate detections (no NMS) in test results')
    parser.add_argument('results', help='pickle written by test.py --out')
    parser.add_argument('--score-thr', type=float, default=0.5)
    parser.add_argument('--iou-thr', type=float, default=0.5)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.results):
        sys.exit(f'count_duplicates.py: no such results file: '
                 f'{args.results}')
    results = load(args.results)
    try:
        detections = [r['pred_instances'] for r in results]
    except (TypeError, KeyError):
        sys.exit(f'count_duplicates.py: {args.results} is not a test.py '
                 '--out pickle (a list of dicts with "pred_instances")')
    figures = count_duplicates(detections, args.score_thr, args.iou_thr)
    print(format_duplicates(figures, args.score_thr, args.iou_thr))


if __name__ == '__main__':
    main()
