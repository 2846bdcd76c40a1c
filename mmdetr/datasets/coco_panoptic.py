# Copyright (c) mmdetr contributors. All rights reserved.
"""COCO panoptic dataset whose annotations are checked before training."""
import os.path as osp
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from mmdet.datasets import CocoPanopticDataset as MMDetCocoPanopticDataset

from mmdetr.registry import DATASETS
from .coco import AnnotationFileError, load_coco_json


class PanopticAnnotationError(AnnotationFileError):
    """A COCO panoptic annotation file, or one of its PNGs, is missing or does
    not fit the other (or the config's classes)."""


def _rgb2id(rgb: np.ndarray) -> np.ndarray:
    """panopticapi's encoding: id = R + 256 G + 256^2 B."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def check_panoptic_annotations(ann_file: str,
                               seg_dir: Optional[str],
                               classes: Optional[Sequence[str]] = None,
                               read_pngs: bool = True) -> int:
    """Check a COCO panoptic annotation file and its PNGs, reading only.

    Fails on the first problem with :class:`PanopticAnnotationError` naming
    the file (json or PNG), the image and the segment id:

    - the json is missing, not JSON, or lacks images/annotations/categories;
      an annotation lacks ``file_name``/``image_id``/``segments_info``, or
      names an image id that ``images`` does not list;
    - a segment's ``category_id`` is not in the json's categories, or its
      category's name is not among ``classes`` (the config's
      ``metainfo.classes``);
    - a segment id is repeated within an image;
    - a PNG is missing (or unreadable);
    - with ``read_pngs``: a segment id of the json is not in its PNG, or the
      PNG holds a non-zero id (0 is void) that the json does not list.

    Args:
        ann_file (str): The panoptic json.
        seg_dir (str, optional): The folder of the PNGs (mmdet's
            ``data_prefix['seg']``); None skips the PNG checks.
        classes (sequence[str], optional): Class names the segments must
            belong to. Defaults to None (any category of the json).
        read_pngs (bool): Decode every PNG to compare its ids with the json
            (about as long as reading the dataset's masks once); False only
            checks that the PNGs exist. Defaults to True.

    Returns:
        int: The number of segments checked.
    """
    data = load_coco_json(ann_file, PanopticAnnotationError,
                          'panoptic annotation file', 'COCO panoptic')
    cats: Dict[int, str] = {}
    for c in data['categories']:
        if not isinstance(c, dict) or 'id' not in c:
            raise PanopticAnnotationError(
                f'{ann_file}: a category has no "id": {c!r}')
        cats[c['id']] = c.get('name')
    image_ids = {img.get('id') for img in data['images']
                 if isinstance(img, dict)}
    allowed = None if classes is None else set(classes)
    checked = 0
    for i, ann in enumerate(data['annotations']):
        for key in ('file_name', 'image_id', 'segments_info'):
            if key not in ann:
                raise PanopticAnnotationError(
                    f'{ann_file}: annotations[{i}] has no "{key}" key')
        where = f'{ann_file}: image_id {ann["image_id"]} ({ann["file_name"]})'
        if ann['image_id'] not in image_ids:
            raise PanopticAnnotationError(
                f'{where}: no image with this id in "images"')
        seen = set()
        for seg in ann['segments_info']:
            seg_id, cat = seg.get('id'), seg.get('category_id')
            if seg_id in seen:
                raise PanopticAnnotationError(
                    f'{where}: segment id {seg_id} is listed twice')
            seen.add(seg_id)
            if cat not in cats:
                raise PanopticAnnotationError(
                    f'{where}: segment id {seg_id} has category_id {cat}, '
                    f'which is not in the file\'s categories')
            if allowed is not None and cats[cat] not in allowed:
                raise PanopticAnnotationError(
                    f'{where}: segment id {seg_id} is of category '
                    f'{cats[cat]!r} (id {cat}), which is not among the '
                    f'config\'s classes {tuple(classes)}')
        checked += len(seen)
        if seg_dir is None:
            continue
        png = osp.join(seg_dir, ann['file_name'])
        if not osp.isfile(png):
            raise PanopticAnnotationError(
                f'{where}: segment PNG not found: {png}')
        if not read_pngs:
            continue
        bgr = cv2.imread(png, cv2.IMREAD_COLOR)
        if bgr is None:
            raise PanopticAnnotationError(
                f'{where}: cannot read the segment PNG {png}')
        in_png = set(np.unique(_rgb2id(bgr[..., ::-1])).tolist()) - {0}
        missing = sorted(seen - in_png)
        if missing:
            raise PanopticAnnotationError(
                f'{where}: segment id(s) {missing} of the json are not in '
                f'{png}')
        extra = sorted(in_png - seen)
        if extra:
            raise PanopticAnnotationError(
                f'{where}: {png} holds segment id(s) {extra} that the json '
                'does not list')
    return checked


@DATASETS.register_module()
class CocoPanopticDataset(MMDetCocoPanopticDataset):
    """mmdet's ``CocoPanopticDataset`` that checks its annotations first.

    Before loading (so before training or testing starts), the json and
    every PNG are checked with :func:`check_panoptic_annotations` against
    ``metainfo.classes``; a problem raises :class:`PanopticAnnotationError`
    naming the file and the segment id, instead of a ``KeyError`` deep in
    mmdet or a silently empty mask. Nothing is written.

    Use it as ``type='mmdetr.CocoPanopticDataset'``; arguments are mmdet's,
    plus:

    Args:
        read_pngs (bool): Compare every PNG's ids with the json (False: only
            check that the PNGs exist). Defaults to True.
    """

    def __init__(self, *args, read_pngs: bool = True, **kwargs) -> None:
        self.read_pngs = read_pngs
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        if '://' not in self.ann_file:  # remote storage: the backend reports
            seg_dir = self.data_prefix.get('seg') or None
            if seg_dir is not None and '://' in seg_dir:
                seg_dir = None
            check_panoptic_annotations(self.ann_file, seg_dir,
                                       self.metainfo.get('classes'),
                                       self.read_pngs)
        return super().load_data_list()
