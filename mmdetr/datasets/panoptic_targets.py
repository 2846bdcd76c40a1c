# Copyright (c) mmdetr contributors. All rights reserved.
"""Every COCO panoptic segment as a DETR training target."""
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.fileio import get

from mmdetr.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadPanopticTargets(BaseTransform):
    """Load one box, label and mask per panoptic segment, things and stuff
    alike, as official DETR trains panoptic segmentation.

    mmdet's ``LoadPanopticAnnotations`` gives boxes and masks of the
    non-crowd *things* only (stuff goes to the semantic map); DETR predicts
    every segment as a set element. This transform reads the segment PNG
    (``seg_map_path``, panopticapi's ``R + 256 G + 256^2 B`` ids) and, for
    every entry of ``segments_info`` (from mmdet's ``CocoPanopticDataset``:
    ``id``, ``category``), adds its mask, its contiguous label and the box
    around its mask. Official DETR keeps crowd segments as ordinary targets;
    so does this transform (mmdet lists them with ``is_thing=False``).

    Boxes are ``[x_min, y_min, x_max + 1, y_max + 1]`` of the mask's pixels
    (the COCO ``bbox`` convention); official DETR's ``masks_to_boxes`` ends
    at ``x_max, y_max``, one pixel less.

    Required Keys: ``seg_map_path``, ``segments_info``, ``ori_shape``.

    Added Keys: ``gt_bboxes`` (HorizontalBoxes), ``gt_bboxes_labels``
    (np.int64), ``gt_masks`` (BitmapMasks), ``gt_ignore_flags`` (bool,
    all False).

    Args:
        backend_args (dict, optional): File backend arguments. Defaults to
            None.
    """

    def __init__(self, backend_args: dict = None) -> None:
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        """Add the targets of every segment.

        Args:
            results (dict): From mmdet's ``CocoPanopticDataset`` (after
                ``LoadImageFromFile``).

        Returns:
            dict: ``results`` with the added keys.
        """
        h, w = results['ori_shape']
        png = mmcv.imfrombytes(
            get(results['seg_map_path'], backend_args=self.backend_args),
            flag='color',
            channel_order='rgb').astype(np.int64)
        ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
        masks, boxes, labels = [], [], []
        for seg in results['segments_info']:
            mask = ids == seg['id']
            ys, xs = np.nonzero(mask)
            if len(ys) == 0:
                continue
            masks.append(mask.astype(np.uint8))
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(seg['category'])
        results['gt_bboxes'] = HorizontalBoxes(
            np.array(boxes, dtype=np.float32).reshape(-1, 4))
        results['gt_bboxes_labels'] = np.array(labels, dtype=np.int64)
        results['gt_masks'] = BitmapMasks(masks, h, w)
        results['gt_ignore_flags'] = np.zeros(len(labels), dtype=bool)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(backend_args={self.backend_args})'
