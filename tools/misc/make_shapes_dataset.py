# Copyright (c) mmdetr contributors. All rights reserved.
"""Write a small synthetic detection dataset in COCO format.

    python tools/misc/make_shapes_dataset.py OUT_DIR [--num-train N]
        [--num-val N] [--seed S] [--img-size PX] [--classes NAME ...]

OUT_DIR gets::

    train/000000.jpg ...             val/000000.jpg ...
    annotations/instances_train.json annotations/instances_val.json

Each image is a noisy, textured background with 0 to 6 filled shapes of three
classes (circle, square, triangle; ``--classes`` picks others among
circle, square, triangle, hexagon, e.g. for a fine-tuning dataset with a new
class), each class with its own colour family,
at random sizes (about 12% to 45% of the image side), positions and
rotations. Shapes may overlap a little (pairwise box IoU <= 0.35, and no box
lies inside another), so every object stays visible. About 5% of the images
(at least one in a split of 2 or more) have no object.

The output depends only on (seed, split, image index): the same seed gives
the same bytes, and a larger ``--num-train`` only appends images. Train and
val images come from different random streams, so the splits are disjoint.
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')  # the default classes
# Base colour (BGR, as cv2 writes) of each shape; every object jitters it.
CLASS_BGR = {
    'circle': (40, 40, 220),  # red
    'square': (50, 190, 40),  # green
    'triangle': (220, 120, 30),  # blue
    'hexagon': (30, 200, 220),  # yellow
}
SHAPES = tuple(CLASS_BGR)
SPLITS = {'train': 0, 'val': 1}
MAX_OBJECTS = 6
EMPTY_FRACTION = 0.05
MIN_SIDE, MAX_SIDE = 0.12, 0.45  # object size, fraction of the image side
MAX_IOU = 0.35
JPEG_QUALITY = 92


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    """One independent stream per image: (seed, split, index) -> rng."""
    return np.random.default_rng([seed, SPLITS[split], index])


def draw_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured, noisy background: a colour gradient, blurred blotches,
    a few grey lines and per-pixel noise.

    Returns:
        np.ndarray: uint8 BGR image, has shape (size, size, 3).
    """
    c0 = rng.uniform(60, 200, 3)
    c1 = rng.uniform(60, 200, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    # Low-frequency blotches: coarse noise upsampled, so the texture is not
    # just per-pixel noise that a conv can average away.
    coarse = rng.normal(0, 25, (size // 16 + 1, size // 16 + 1, 3))
    img += cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 6)):
        p0 = tuple(int(v) for v in rng.integers(0, size, 2))
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        grey = int(rng.integers(40, 220))
        cv2.line(img, p0, p1, (grey, grey, grey), int(rng.integers(1, 3)),
                 cv2.LINE_AA)
    noise = rng.normal(0, 10, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def shape_points(rng: np.random.Generator, cls: str, cx: float, cy: float,
                 side: float) -> np.ndarray:
    """Polygon of one shape, rotated at random (circles: 64 points).

    ``side`` is the side of a square or triangle, the diameter of a circle
    and the corner-to-corner width of a hexagon.

    Returns:
        np.ndarray: float (x, y) vertices, has shape (k, 2).
    """
    r = side / 2
    if cls == 'circle':
        k, phase = 64, 0.0
    elif cls == 'square':
        # circumradius of a square of side ``side``
        k, phase, r = 4, rng.uniform(0, math.pi / 2), side / math.sqrt(2)
    elif cls == 'triangle':
        k, phase = 3, rng.uniform(0, 2 * math.pi / 3)
        r = side / math.sqrt(3)  # equilateral triangle of side ``side``
    elif cls == 'hexagon':
        k, phase = 6, rng.uniform(0, math.pi / 3)
    else:
        raise ValueError(f'unknown shape {cls!r}; expected one of {SHAPES}')
    a = phase + np.arange(k) * 2 * math.pi / k
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1y1x2y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) *
             (b[3] - b[1]) - inter)
    return inter / union if union > 0 else 0.0


def _contains(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether box ``a`` covers box ``b`` or the other way round."""
    return bool((a[0] <= b[0] and a[1] <= b[1] and a[2] >= b[2]
                 and a[3] >= b[3]) or (b[0] <= a[0] and b[1] <= a[1]
                                       and b[2] >= a[2] and b[3] >= a[3]))


def make_image(rng: np.random.Generator,
               size: int,
               empty: bool,
               classes: Sequence[str] = CLASSES
               ) -> Tuple[np.ndarray, List[Dict]]:
    """Draw one image and its objects.

    Args:
        rng: The image's own random stream.
        size (int): Image side in pixels.
        empty (bool): Draw no object.
        classes (sequence[str]): The shapes to draw from (each equally
            likely). Defaults to :data:`CLASSES`.

    Returns:
        tuple: the uint8 BGR image (size, size, 3) and a list of objects,
        each ``dict(category=str, bbox=[x, y, w, h], area=float)`` in pixels.
    """
    img = draw_background(rng, size)
    if empty:
        return img, []
    num = int(rng.integers(1, MAX_OBJECTS + 1))
    objects, boxes = [], []
    tries = 0
    while len(objects) < num and tries < 200:
        tries += 1
        cls = classes[int(rng.integers(len(classes)))]
        side = rng.uniform(MIN_SIDE, MAX_SIDE) * size
        cx, cy = rng.uniform(side / 2, size - side / 2, 2)
        pts = shape_points(rng, cls, cx, cy, side)
        pts = np.clip(pts, 0, size - 1)
        box = np.array([pts[:, 0].min(), pts[:, 1].min(),
                        pts[:, 0].max() + 1, pts[:, 1].max() + 1])
        # A little overlap, but every object keeps most of itself visible.
        if any(_iou(box, b) > MAX_IOU or _contains(box, b) for b in boxes):
            continue
        colour = np.clip(
            np.array(CLASS_BGR[cls]) + rng.integers(-30, 31, 3), 0, 255)
        poly = np.round(pts * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(img, [poly], tuple(int(c) for c in colour),
                     cv2.LINE_AA, shift=4)
        boxes.append(box)
        x1, y1, x2, y2 = (float(v) for v in box)
        objects.append(
            dict(
                category=cls,
                bbox=[round(x1, 2), round(y1, 2), round(x2 - x1, 2),
                      round(y2 - y1, 2)],
                area=round(float(cv2.contourArea(pts.astype(np.float32))),
                           2)))
    # Light noise over the shapes too: flat colour would be too easy.
    noise = rng.normal(0, 6, img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, objects


def empty_indices(seed: int, split: str, num: int) -> set:
    """Which images of a split have no object (>= 1 when ``num`` >= 2)."""
    if num == 0:
        return set()
    k = max(1, round(EMPTY_FRACTION * num)) if num >= 2 else 0
    rng = np.random.default_rng([seed, SPLITS[split], 1 << 30])
    return set(int(i) for i in rng.choice(num, size=k, replace=False))


def make_split(out_dir: str,
               split: str,
               num: int,
               seed: int,
               size: int,
               classes: Sequence[str] = CLASSES) -> dict:
    """Write the images of one split and return its COCO dict (category
    ids 1, 2 ... in the order of ``classes``)."""
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    empties = empty_indices(seed, split, num)
    images, annotations = [], []
    cat_ids = {name: i + 1 for i, name in enumerate(classes)}
    for idx in range(num):
        img, objects = make_image(
            _rng(seed, split, idx), size, idx in empties, classes)
        file_name = f'{idx:06d}.jpg'
        ok = cv2.imwrite(
            osp.join(img_dir, file_name), img,
            [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY])
        if not ok:
            raise OSError(f'could not write {osp.join(img_dir, file_name)}')
        image_id = idx + 1
        images.append(
            dict(id=image_id, file_name=file_name, width=size, height=size))
        for obj in objects:
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=cat_ids[obj['category']],
                    bbox=obj['bbox'],
                    area=obj['area'],
                    iscrowd=0))
    return dict(
        info=dict(
            description=f'mmdetr synthetic shapes, split {split}, seed {seed}'
        ),
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i, name=name, supercategory='shape')
            for name, i in cat_ids.items()
        ])


def make_dataset(out_dir: str,
                 num_train: int = 1000,
                 num_val: int = 200,
                 seed: int = 0,
                 img_size: int = 160,
                 classes: Sequence[str] = CLASSES) -> Dict[str, dict]:
    """Write both splits and their annotation files under ``out_dir``.

    With the default ``classes`` the output is the same, byte for byte, as
    before ``classes`` existed (the demo's data does not change).

    Returns:
        dict[str, dict]: split name -> its COCO dict (as written).
    """
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    written = {}
    for split, num in (('train', num_train), ('val', num_val)):
        coco = make_split(out_dir, split, num, seed, img_size, classes)
        with open(osp.join(ann_dir, f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
        written[split] = coco
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a synthetic shapes detection dataset (COCO format)')
    parser.add_argument('out_dir', help='output folder, e.g. data/shapes')
    parser.add_argument(
        '--num-train', type=int, default=1000, help='train images (1000)')
    parser.add_argument(
        '--num-val', type=int, default=200, help='val images (200)')
    parser.add_argument('--seed', type=int, default=0, help='seed (0)')
    parser.add_argument(
        '--img-size', type=int, default=160, help='image side in px (160)')
    parser.add_argument(
        '--classes',
        nargs='+',
        default=list(CLASSES),
        metavar='NAME',
        help=f'shapes to draw, in category id order, among {SHAPES} '
        f'(default: {" ".join(CLASSES)})')
    args = parser.parse_args(argv)
    unknown = [c for c in args.classes if c not in CLASS_BGR]
    if unknown:
        parser.error(f'--classes: unknown shape(s) {unknown}; choose among '
                     f'{list(SHAPES)}')
    if len(set(args.classes)) != len(args.classes):
        parser.error(f'--classes: a class is named twice: {args.classes}')
    for name in ('num_train', 'num_val'):
        if getattr(args, name) < 0:
            parser.error(f'--{name.replace("_", "-")} must be >= 0, got '
                         f'{getattr(args, name)}')
    if args.img_size < 32:
        parser.error(f'--img-size must be >= 32, got {args.img_size}')
    if args.seed < 0:
        parser.error(f'--seed must be >= 0, got {args.seed}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    written = make_dataset(args.out_dir, args.num_train, args.num_val,
                           args.seed, args.img_size, tuple(args.classes))
    for split, coco in written.items():
        n_img = len(coco['images'])
        with_obj = {a['image_id'] for a in coco['annotations']}
        per_cls = {c['name']: 0 for c in coco['categories']}
        names = {c['id']: c['name'] for c in coco['categories']}
        for a in coco['annotations']:
            per_cls[names[a['category_id']]] += 1
        ann_file = osp.join(args.out_dir, 'annotations',
                            f'instances_{split}.json')
        print(f'{split}: {n_img} images ({n_img - len(with_obj)} empty) in '
              f'{osp.join(args.out_dir, split)}/, '
              f'{len(coco["annotations"])} objects {per_cls}, {ann_file}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
