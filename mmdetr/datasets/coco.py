# Copyright (c) mmdetr contributors. All rights reserved.
"""COCO-format dataset that says what it drops and names broken files."""
import json
import math
import os.path as osp
from collections import Counter
from typing import List

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.logging import print_log

from mmdetr.registry import DATASETS


class AnnotationFileError(ValueError):
    """The annotation file is missing, not JSON, or not COCO-shaped."""


def load_coco_json(ann_file: str,
                   error: type = AnnotationFileError,
                   kind: str = 'annotation file',
                   fmt: str = 'COCO format') -> dict:
    """Read a COCO-style json, failing with ``error`` naming the file when
    it is missing, not JSON, or lacks images/annotations/categories.

    Args:
        ann_file (str): Local path of the json.
        error (type): The exception class to raise. Defaults to
            :class:`AnnotationFileError`.
        kind (str): What the messages call the file. Defaults to
            ``'annotation file'``.
        fmt (str): The format named in the message on a missing key.
            Defaults to ``'COCO format'``.

    Returns:
        dict: The parsed json.
    """
    if not osp.isfile(ann_file):
        raise error(f'{kind} not found: {ann_file}')
    try:
        with open(ann_file) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f'{kind} {ann_file} is not valid JSON: {e}') from e
    if not isinstance(data, dict):
        raise error(f'{kind} {ann_file}: expected a JSON object with '
                    f'"images", "annotations" and "categories", got '
                    f'{type(data).__name__}')
    for key in ('images', 'annotations', 'categories'):
        if key not in data:
            raise error(f'{kind} {ann_file} has no "{key}" key ({fmt} '
                        'needs images, annotations and categories)')
    return data


@DATASETS.register_module()
class CocoDataset(MMDetCocoDataset):
    """mmdet's ``CocoDataset`` with loud data checks.

    Differences, all about bad input (clean COCO loads exactly as in mmdet):

    - a missing, unparsable or non-COCO annotation file raises
      :class:`AnnotationFileError` naming the file (and the missing key);
    - boxes with a non-finite coordinate, zero or negative width/height, or
      no overlap with the image are dropped, boxes crossing the image border
      are clipped to it; annotations of categories outside
      ``metainfo['classes']`` (training on a subset of classes) are dropped.
      Each kind is counted and reported once, as a warning, after loading;
    - an image that fails to load raises an error naming the file;
    - ``metainfo['classes']`` listed in another order than the file's
      categories (or with one missing before others) raises
      :class:`AnnotationFileError`: mmdet would number labels in the file's
      order and name them wrongly.

    Use it as ``type='mmdetr.CocoDataset'``; arguments are mmdet's.
    """

    def load_data_list(self) -> List[dict]:
        self._dropped = Counter()
        self._check_annotation_file()
        data_list = super().load_data_list()
        self._report_dropped()
        return data_list

    def _check_annotation_file(self) -> None:
        """Fail early, naming the file, instead of deep inside pycocotools."""
        ann_file = self.ann_file
        if '://' in ann_file:
            return  # remote storage: let the backend report
        data = load_coco_json(ann_file)
        for i, ann in enumerate(data['annotations']):
            for key in ('image_id', 'bbox', 'category_id'):
                if key not in ann:
                    raise AnnotationFileError(
                        f'annotation file {ann_file}: annotations[{i}] '
                        f'(id={ann.get("id")}) has no "{key}" key')
        self._check_class_order(data['categories'])

    def _check_class_order(self, categories: List[dict]) -> None:
        """Label ``i`` must be ``metainfo['classes'][i]``.

        mmdet numbers labels by the file's categories whose names are in
        ``metainfo['classes']``, in the file's order (and CocoMetric maps
        them back the same way). When the classes are listed in another
        order, or one in the middle has no category in the file, every
        label after it carries another class's name: in predictions, in
        drawn boxes, and when a checkpoint's classifier rows are matched by
        name for fine-tuning. Refuse that, naming both lists.
        """
        classes = tuple(self.metainfo.get('classes') or ())
        names = [c.get('name') for c in categories if isinstance(c, dict)]
        found = tuple(n for n in names if n in classes)
        if found == classes[:len(found)]:
            return  # labels follow metainfo (absent classes only at the end)
        if found == tuple(c for c in classes if c in names):
            missing = [c for c in classes if c not in names]
            why = (f'it has no category named {missing}, so the classes '
                   'listed after it would be numbered too low')
        else:
            why = f'its categories list them in the order {found}'
        raise AnnotationFileError(
            f'annotation file {self.ann_file} does not fit metainfo.classes '
            f'{classes}: {why}. mmdet numbers labels in the file\'s '
            'category order, so label names would be wrong; list '
            'metainfo.classes in the file\'s order (fine-tuning matches '
            'checkpoint rows by name whatever the order)')

    def parse_data_info(self, raw_data_info: dict):
        img_info = raw_data_info['raw_img_info']
        raw_data_info['raw_ann_info'] = [
            ann for ann in (self._sanitize(ann, img_info)
                            for ann in raw_data_info['raw_ann_info'])
            if ann is not None
        ]
        return super().parse_data_info(raw_data_info)

    def _sanitize(self, ann: dict, img_info: dict):
        """A cleaned copy of ``ann``, or None (and a count) to drop it."""
        if ann['category_id'] not in self.cat_ids:
            self._dropped['of categories not in metainfo classes'] += 1
            return None
        try:
            x, y, w, h = (float(v) for v in ann['bbox'])
        except (TypeError, ValueError):
            self._dropped['with a malformed bbox'] += 1
            return None
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            self._dropped['with a NaN or infinite coordinate'] += 1
            return None
        if w <= 0 or h <= 0:
            self._dropped['with zero or negative width/height'] += 1
            return None
        if w < 1 or h < 1 or ann.get('area', w * h) <= 0:
            # mmdet drops these too, silently
            self._dropped['smaller than a pixel or with area <= 0'] += 1
            return None
        img_w, img_h = img_info['width'], img_info['height']
        x1, y1 = max(x, 0.), max(y, 0.)
        x2, y2 = min(x + w, img_w), min(y + h, img_h)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            self._dropped['entirely outside their image'] += 1
            return None
        if (x1, y1, x2, y2) != (x, y, x + w, y + h):
            self._dropped['clipped to their image (kept)'] += 1
            ann = dict(ann, bbox=[x1, y1, x2 - x1, y2 - y1])
        return ann

    def _report_dropped(self) -> None:
        if not self._dropped:
            return
        parts = ', '.join(f'{n} {what}'
                          for what, n in sorted(self._dropped.items()))
        print_log(
            f'{self.ann_file}: annotations dropped or fixed: {parts}',
            logger='current',
            level=30)  # logging.WARNING

    def prepare_data(self, idx: int):
        try:
            return super().prepare_data(idx)
        except Exception as e:
            path = self.get_data_info(idx).get('img_path', f'index {idx}')
            raise RuntimeError(
                f'failed to load sample {idx} ({path}): '
                f'{type(e).__name__}: {e}') from e
