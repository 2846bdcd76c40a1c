# Copyright (c) mmdetr contributors. All rights reserved.
"""Detect objects in images with an exported DETR (ONNX Runtime) and draw
them; needs no torch.

    python tools/deployment/onnx_image_demo.py IMAGE [IMAGE ...] detr.onnx \
        [--out-dir onnx_demo] [--score-thr 0.3]

The images go through :class:`mmdetr.deploy.ORTDetector` as one padded
batch (resized and normalised as the exported config's test pipeline);
each is written to ``--out-dir`` with its boxes, class names and scores.
"""
import argparse
import os
import os.path as osp
import sys

import cv2
import numpy as np

from mmdetr.deploy.ort_detector import ORTDetector


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Detect objects with an ONNX DETR and draw them')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('onnx_file', help='exported model (.onnx)')
    parser.add_argument('--out-dir', default='onnx_demo',
                        help='where to write the drawn images')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw detections scoring at least this')
    parser.add_argument('--num-threads', type=int, default=None,
                        help='ONNX Runtime intra-op threads')
    return parser.parse_args(argv)


def draw(image: np.ndarray, result: dict, classes) -> np.ndarray:
    """Boxes with '<class> <score>' labels on a copy of a BGR image."""
    out = image.copy()
    palette = [(0, 0, 255), (0, 200, 0), (255, 0, 0), (0, 200, 200),
               (200, 0, 200), (200, 200, 0)]
    for box, score, label in zip(result['bboxes'], result['scores'],
                                 result['labels']):
        colour = palette[int(label) % len(palette)]
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        name = classes[label] if classes else str(int(label))
        cv2.putText(out, f'{name} {score:.2f}', (x1, max(y1 - 3, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    for path in args.images + [args.onnx_file]:
        if not osp.isfile(path):
            sys.exit(f'onnx_image_demo: file not found: {path}')
    detector = ORTDetector(args.onnx_file, num_threads=args.num_threads)
    results = detector(args.images, score_thr=args.score_thr)
    os.makedirs(args.out_dir, exist_ok=True)
    classes = detector.classes
    for path, result in zip(args.images, results):
        for box, score, label in zip(result['bboxes'], result['scores'],
                                     result['labels']):
            name = classes[label] if classes else str(int(label))
            print(f'{osp.basename(path)}: {name:>12s} {score:.2f} '
                  f'[{", ".join(f"{v:.1f}" for v in box)}]')
        out = osp.join(args.out_dir, osp.splitext(osp.basename(path))[0]
                       + '.png')
        cv2.imwrite(out, draw(detector.load(path), result, classes))
        print(f'onnx_image_demo: {len(result["scores"])} detections >= '
              f'{args.score_thr} drawn into {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
