# Copyright (c) mmdetr contributors. All rights reserved.
"""Write a small synthetic detection dataset in COCO format.

    python tools/misc/make_shapes_dataset.py OUT_DIR [--num-train N]
        [--num-val N] [--seed S] [--img-size PX] [--classes NAME ...]
        [--panoptic]

OUT_DIR gets::

    train/000000.jpg ...             val/000000.jpg ...
    annotations/instances_train.json annotations/instances_val.json

and with ``--panoptic`` also a COCO panoptic version (the detection files
above are written exactly as without the flag)::

    panoptic/train/000000.jpg ...                the same shapes, drawn over
    panoptic/val/000000.jpg ...                  background regions (stuff)
    panoptic/annotations/panoptic_train.json     segments_info per image
    panoptic/annotations/panoptic_train/000000.png ...   segment ids (RGB)
    panoptic/annotations/panoptic_val.json, panoptic/annotations/panoptic_val/
    panoptic/annotations/instances_train.json, instances_val.json   things
                                                 with their visible masks

The panoptic images hold the same objects at the same places as the
detection images of the same index (so ``annotations/instances_*.json``
boxes fit them too), but their background is split by one or two straight
lines into up to three regions of the stuff classes ``stripes``,
``checker`` and ``plain`` (the detection background). Things are the
shapes (category ids as in the detection files), stuff gets the next ids.
Segment ids are ``category_id * 1000 + k`` (k = 1, 2 ... per thing, 0 for
stuff), stored in the PNGs with panopticapi's encoding ``id = R + 256 G +
256^2 B``; every pixel belongs to a segment (no void), a thing covers what
is visible of it (later shapes overlap earlier ones).

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
from typing import Dict, List, Optional, Sequence, Tuple

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
STUFF_CLASSES = ('stripes', 'checker', 'plain')  # --panoptic backgrounds
STUFF_STREAM = 1  # the stuff layout's random stream: (seed, split, index, 1)
SEGMENT_ID_STRIDE = 1000  # segment id = category_id * 1000 + instance


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


def stuff_layout(rng: np.random.Generator, size: int) -> np.ndarray:
    """Background regions: 1 to 3 stuff classes, split by as many straight
    lines minus one, each through the image's central half.

    Returns:
        np.ndarray: Index into :data:`STUFF_CLASSES` per pixel, has shape
        (size, size).
    """
    k = int(rng.integers(1, len(STUFF_CLASSES) + 1))
    chosen = rng.permutation(len(STUFF_CLASSES))[:k]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    region = np.zeros((size, size), dtype=np.int64)
    for _ in range(k - 1):
        px, py = rng.uniform(0.25, 0.75, 2) * size
        angle = rng.uniform(0, math.pi)
        # pixels on one side of the line count one region further
        region += ((xx - px) * math.sin(angle) -
                   (yy - py) * math.cos(angle) > 0)
    return chosen[region]


def _texture(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """A two-tone, slightly tinted grey texture: ``stripes`` (random angle,
    period 7-12 px) or ``checker`` (cells of 5-9 px). float BGR image."""
    grey = rng.uniform(70, 190)
    contrast = rng.uniform(25, 45)
    tint = rng.uniform(-12, 12, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if name == 'stripes':
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(7, 12)
        t = ((xx * math.cos(angle) + yy * math.sin(angle)) / period) % 1
        on = t < 0.5
    elif name == 'checker':
        cell = int(rng.integers(5, 10))
        on = ((xx // cell + yy // cell) % 2) == 0
    else:
        raise ValueError(f'no texture for stuff class {name!r}')
    tone = np.where(on, grey + contrast, grey - contrast)
    return tone[..., None] + tint + rng.normal(0, 8, (size, size, 3))


def paint_stuff(rng: np.random.Generator, img: np.ndarray,
                stuff_map: np.ndarray) -> np.ndarray:
    """Paint the textured stuff regions of ``stuff_map`` over ``img``;
    ``plain`` keeps ``img`` (the detection background).

    Returns:
        np.ndarray: uint8 BGR image, the shape of ``img``.
    """
    out = img.astype(np.float64)
    for index, name in enumerate(STUFF_CLASSES):
        if name == 'plain' or not (stuff_map == index).any():
            continue
        region = stuff_map == index
        out[region] = _texture(rng, name, img.shape[0])[region]
    return np.clip(out, 0, 255).astype(np.uint8)


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
               classes: Sequence[str] = CLASSES,
               stuff_map: Optional[np.ndarray] = None,
               stuff_rng: Optional[np.random.Generator] = None
               ) -> Tuple[np.ndarray, List[Dict]]:
    """Draw one image and its objects.

    Args:
        rng: The image's own random stream.
        size (int): Image side in pixels.
        empty (bool): Draw no object.
        classes (sequence[str]): The shapes to draw from (each equally
            likely). Defaults to :data:`CLASSES`.
        stuff_map (np.ndarray, optional): Index into :data:`STUFF_CLASSES`
            per pixel (:func:`stuff_layout`): paint those background
            regions before the shapes. ``rng`` is read exactly as without
            it, so the objects are the same. Defaults to None.
        stuff_rng: The random stream of the stuff textures (needed with
            ``stuff_map``).

    Returns:
        tuple: the uint8 BGR image (size, size, 3) and a list of objects,
        each ``dict(category=str, bbox=[x, y, w, h], area=float,
        polygon=int32 array)`` in pixels (``polygon``: vertices with 4
        fractional bits, as drawn with ``cv2.fillPoly(..., shift=4)``).
    """
    img = draw_background(rng, size)
    if stuff_map is not None:
        img = paint_stuff(stuff_rng, img, stuff_map)
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
                           2),
                polygon=poly))
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


def _id2rgb(ids: np.ndarray) -> np.ndarray:
    """panopticapi's encoding: id = R + 256 G + 256^2 B -> uint8 RGB."""
    return np.stack([(ids >> (8 * c)) & 255 for c in range(3)],
                    axis=-1).astype(np.uint8)


def panoptic_segments(objects: List[Dict], stuff_map: np.ndarray,
                      thing_ids: Dict[str, int], stuff_ids: Dict[str, int]
                      ) -> Tuple[np.ndarray, List[Dict]]:
    """The segment id of every pixel and the segments' info.

    Stuff regions first, then every shape in drawing order over them (what
    is drawn later covers what is drawn earlier, as in the image).

    Returns:
        tuple: uint32 id map (size, size) and ``segments_info``: per segment
        ``dict(id, category_id, area, bbox=[x, y, w, h], iscrowd=0)``, stuff
        in :data:`STUFF_CLASSES` order then things, segments of area 0 left
        out.
    """
    size = stuff_map.shape[0]
    ids = np.zeros((size, size), dtype=np.uint32)
    order = []
    for index, name in enumerate(STUFF_CLASSES):
        seg_id = stuff_ids[name] * SEGMENT_ID_STRIDE
        ids[stuff_map == index] = seg_id
        order.append((seg_id, stuff_ids[name]))
    for k, obj in enumerate(objects, start=1):
        cat = thing_ids[obj['category']]
        seg_id = cat * SEGMENT_ID_STRIDE + k
        mask = np.zeros((size, size), dtype=np.uint8)
        cv2.fillPoly(mask, [obj['polygon']], 1, cv2.LINE_8, shift=4)
        ids[mask > 0] = seg_id
        order.append((seg_id, cat))
    segments = []
    for seg_id, cat in order:
        ys, xs = np.nonzero(ids == seg_id)
        if len(ys) == 0:
            continue
        x0, y0 = int(xs.min()), int(ys.min())
        segments.append(
            dict(id=int(seg_id), category_id=int(cat), area=int(len(ys)),
                 bbox=[x0, y0, int(xs.max()) - x0 + 1,
                       int(ys.max()) - y0 + 1], iscrowd=0))
    return ids, segments


def thing_instances(ids: np.ndarray, segments: List[Dict],
                    thing_cat_ids: set, image_id: int,
                    first: int) -> List[Dict]:
    """COCO instance annotations of an image's thing segments: the visible
    mask as RLE, its box and area (ids ``first + 1``, ``first + 2`` ...)."""
    from pycocotools import mask as mask_utils
    out = []
    for seg in segments:
        if seg['category_id'] not in thing_cat_ids:
            continue
        rle = mask_utils.encode(
            np.asfortranarray((ids == seg['id']).astype(np.uint8)))
        rle['counts'] = rle['counts'].decode('ascii')
        out.append(
            dict(id=first + len(out) + 1, image_id=image_id,
                 category_id=seg['category_id'], bbox=seg['bbox'],
                 area=seg['area'], iscrowd=0, segmentation=rle))
    return out


def make_panoptic_split(out_dir: str,
                        split: str,
                        num: int,
                        seed: int,
                        size: int,
                        classes: Sequence[str] = CLASSES
                        ) -> Tuple[dict, dict]:
    """Write the panoptic images and PNGs of one split under
    ``out_dir/panoptic`` and return its COCO panoptic dict (things: ids
    1, 2 ... in the order of ``classes``, as the detection files; stuff:
    the next ids, in :data:`STUFF_CLASSES` order) and the COCO instances
    dict of its things (:func:`thing_instances`)."""
    root = osp.join(out_dir, 'panoptic')
    img_dir = osp.join(root, split)
    png_dir = osp.join(root, 'annotations', f'panoptic_{split}')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(png_dir, exist_ok=True)
    empties = empty_indices(seed, split, num)
    thing_ids = {name: i + 1 for i, name in enumerate(classes)}
    stuff_ids = {
        name: len(classes) + 1 + i
        for i, name in enumerate(STUFF_CLASSES)
    }
    images, annotations, instances = [], [], []
    for idx in range(num):
        stuff_rng = np.random.default_rng(
            [seed, SPLITS[split], idx, STUFF_STREAM])
        stuff_map = stuff_layout(stuff_rng, size)
        img, objects = make_image(
            _rng(seed, split, idx), size, idx in empties, classes,
            stuff_map, stuff_rng)
        ids, segments = panoptic_segments(objects, stuff_map, thing_ids,
                                          stuff_ids)
        file_name = f'{idx:06d}.jpg'
        png_name = f'{idx:06d}.png'
        for path, data, params in (
                (osp.join(img_dir, file_name), img,
                 [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY]),
                # cv2 writes BGR: reverse panopticapi's RGB
                (osp.join(png_dir, png_name), _id2rgb(ids)[..., ::-1], [])):
            if not cv2.imwrite(path, data, params):
                raise OSError(f'could not write {path}')
        image_id = idx + 1
        images.append(
            dict(id=image_id, file_name=file_name, width=size, height=size))
        annotations.append(
            dict(image_id=image_id, file_name=png_name,
                 segments_info=segments))
        instances.extend(
            thing_instances(ids, segments, set(thing_ids.values()),
                            image_id, len(instances)))
    categories = [
        dict(id=i, name=name, supercategory='shape', isthing=1)
        for name, i in thing_ids.items()
    ] + [
        dict(id=i, name=name, supercategory='background', isthing=0)
        for name, i in stuff_ids.items()
    ]
    panoptic = dict(
        info=dict(description=f'mmdetr synthetic shapes, panoptic, split '
                  f'{split}, seed {seed}'),
        images=images,
        annotations=annotations,
        categories=categories)
    # the things as COCO instances with their visible masks (COCO's
    # instances json beside the panoptic one, for box and mask AP)
    things = dict(
        info=dict(description=f'mmdetr synthetic shapes, panoptic things, '
                  f'split {split}, seed {seed}'),
        images=images,
        annotations=instances,
        categories=[c for c in categories if c['isthing']])
    return panoptic, things


def make_dataset(out_dir: str,
                 num_train: int = 1000,
                 num_val: int = 200,
                 seed: int = 0,
                 img_size: int = 160,
                 classes: Sequence[str] = CLASSES,
                 panoptic: bool = False) -> Dict[str, dict]:
    """Write both splits and their annotation files under ``out_dir``.

    With the default ``classes`` the output is the same, byte for byte, as
    before ``classes`` existed (the demo's data does not change); so are the
    detection files with ``panoptic``, which adds ``out_dir/panoptic``.

    Returns:
        dict[str, dict]: split name -> its COCO dict (as written); with
        ``panoptic`` also ``panoptic_<split>`` -> its COCO panoptic dict.
    """
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    written = {}
    for split, num in (('train', num_train), ('val', num_val)):
        coco = make_split(out_dir, split, num, seed, img_size, classes)
        with open(osp.join(ann_dir, f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
        written[split] = coco
    if panoptic:
        pan_ann_dir = osp.join(out_dir, 'panoptic', 'annotations')
        for split, num in (('train', num_train), ('val', num_val)):
            coco, things = make_panoptic_split(out_dir, split, num, seed,
                                               img_size, classes)
            for name, data in ((f'panoptic_{split}', coco),
                               (f'instances_{split}', things)):
                with open(osp.join(pan_ann_dir, f'{name}.json'), 'w') as f:
                    json.dump(data, f)
            written[f'panoptic_{split}'] = coco
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
    parser.add_argument(
        '--panoptic',
        action='store_true',
        help='also write a COCO panoptic version under OUT_DIR/panoptic '
        f'(the same shapes as things; stuff: {" ".join(STUFF_CLASSES)})')
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
                           args.seed, args.img_size, tuple(args.classes),
                           args.panoptic)
    for split, coco in written.items():
        if split.startswith('panoptic_'):
            split = split[len('panoptic_'):]
            n_seg = sum(len(a['segments_info']) for a in coco['annotations'])
            ann_file = osp.join(args.out_dir, 'panoptic', 'annotations',
                                f'panoptic_{split}.json')
            print(f'panoptic {split}: {len(coco["images"])} images in '
                  f'{osp.join(args.out_dir, "panoptic", split)}/, '
                  f'{n_seg} segments, {ann_file} (PNGs in '
                  f'{ann_file[:-len(".json")]}/)')
            continue
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
