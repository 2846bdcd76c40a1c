# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet's detection visualiser, drawing small images larger."""
import math

import mmcv
import numpy as np
from mmdet.visualization import DetLocalVisualizer as MMDetLocalVisualizer
from mmengine.structures import PixelData

from mmdetr.registry import VISUALIZERS


@VISUALIZERS.register_module()
class DetLocalVisualizer(MMDetLocalVisualizer):
    """mmdet's ``DetLocalVisualizer`` that first scales small images up.

    mmdet sizes labels and line widths for images of a few hundred pixels
    and more; on a 160-pixel image its labels cover the objects. An image
    whose shorter side is under ``min_size`` is enlarged by the smallest
    integer factor that reaches it, and every drawn box, mask and panoptic
    segmentation (ground truth and prediction) with it; the data sample
    itself is left unchanged.

    Args:
        min_size (int): Draw images at least this large on their shorter
            side; 0 draws them as they are. Defaults to 480.
        name, *args, **kwargs: mmdet's ``DetLocalVisualizer`` arguments.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 *args,
                 min_size: int = 480,
                 **kwargs) -> None:
        super().__init__(name, *args, **kwargs)
        if min_size < 0:
            raise ValueError(f'DetLocalVisualizer: min_size must be >= 0, '
                             f'got {min_size}')
        self.min_size = min_size

    def draw_scale(self, image: np.ndarray) -> int:
        """The integer factor ``image`` is drawn at (1: as it is)."""
        short = min(image.shape[:2])
        if short == 0 or short >= self.min_size:
            return 1
        return math.ceil(self.min_size / short)

    def add_datasample(self, name, image: np.ndarray, data_sample=None,
                       *args, **kwargs) -> None:
        scale = self.draw_scale(image)
        if scale > 1:
            image = mmcv.imrescale(image, scale, interpolation='nearest')
            if data_sample is not None:
                # clone() copies the fields' references: scale new
                # instances, never the caller's
                data_sample = data_sample.clone()
                for field in ('gt_instances', 'pred_instances'):
                    if field in data_sample and \
                            'bboxes' in data_sample.get(field):
                        instances = data_sample.get(field).clone()
                        instances.bboxes = instances.bboxes * scale
                        if 'masks' in instances:
                            instances.masks = _enlarged(instances.masks,
                                                        scale)
                        data_sample.set_field(instances, field)
                for field in ('gt_panoptic_seg', 'pred_panoptic_seg'):
                    if field in data_sample:
                        seg = data_sample.get(field)
                        data_sample.set_field(
                            PixelData(metainfo=seg.metainfo,
                                      sem_seg=_enlarged(seg.sem_seg, scale)),
                            field)
        super().add_datasample(name, image, data_sample, *args, **kwargs)


def _enlarged(maps, scale: int):
    """Masks or a segment map, (..., H, W), each pixel repeated ``scale``
    times along both axes (``BitmapMasks``, tensors, arrays)."""
    if hasattr(maps, 'masks'):  # mmdet's BitmapMasks
        return type(maps)(_enlarged(maps.masks, scale),
                          maps.height * scale, maps.width * scale)
    if isinstance(maps, np.ndarray):
        return maps.repeat(scale, axis=-2).repeat(scale, axis=-1)
    return maps.repeat_interleave(scale, dim=-2).repeat_interleave(
        scale, dim=-1)
