# Copyright (c) mmdetr contributors. All rights reserved.
"""Panoptic merging of DETR's per-query classes and masks, as official
DETR's ``PostProcessPanoptic``, into mmdet's panoptic encoding."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmdetr.registry import MODELS

# mmdet's panoptic encoding: label + instance_id * INSTANCE_OFFSET, the
# label num_classes meaning VOID (mmdet.evaluation.functional.INSTANCE_OFFSET)
INSTANCE_OFFSET = 1000


def nearest_resize_ids(id_map: Tensor, out_shape: Tuple[int, int]) -> Tensor:
    """Resize an integer map with nearest neighbour exactly as PIL's
    ``Image.resize(..., NEAREST)``, which official DETR applies to its id
    map.

    PIL samples pixel centres: output pixel ``i`` reads input pixel
    ``floor(x_i)`` with ``x_0 = s / 2`` and ``x_{i+1} = x_i + s``,
    ``s = in / out``, accumulated in float64 one step at a time (a direct
    ``(i + 0.5) * s`` lands on the other side of an integer for some
    sizes, e.g. 640 -> 427). torch's ``'nearest'`` reads ``floor(i * s)``
    instead and differs by a pixel on most sizes.

    Args:
        id_map (Tensor): Has shape (h, w).
        out_shape (tuple[int, int]): (H, W) of the result.

    Returns:
        Tensor: Has shape (H, W), the dtype of ``id_map``.
    """
    h, w = id_map.shape
    out_h, out_w = out_shape
    if (h, w) == (out_h, out_w):
        return id_map

    def index(n_in: int, n_out: int) -> Tensor:
        step = n_in / n_out
        steps = np.full(n_out, step)
        steps[0] = step * 0.5
        # np.cumsum adds in order, as PIL's loop does
        pos = np.minimum(np.cumsum(steps).astype(np.int64), n_in - 1)
        return torch.from_numpy(pos).to(id_map.device)

    return id_map[index(h, out_h)[:, None], index(w, out_w)[None, :]]


def panoptic_merge(cls_logits: Tensor,
                   mask_logits: Tensor,
                   is_thing: Sequence[bool],
                   img_shape: Tuple[int, int],
                   out_shape: Optional[Tuple[int, int]] = None,
                   canvas: Optional[Tuple[int, int]] = None,
                   threshold: float = 0.85,
                   min_area: int = 4) -> Tuple[Tensor, List[Dict]]:
    """One image's panoptic segmentation from its queries.

    Official DETR's ``PostProcessPanoptic``, step by step:

    1. keep the queries whose most likely class (no-object included) is a
       real class with probability ``> threshold``;
    2. upsample their mask logits (bilinear) to the image size;
    3. give every pixel to the kept query with the highest mask logit;
    4. stuff: the queries of one stuff class become one segment;
    5. resize the id map to ``out_shape`` (nearest, pixel centres) and count
       the segments' areas there;
    6. drop the segments of area ``<= min_area`` (after step 4 this includes
       every stuff query but the first of its class), reassign their pixels
       by step 3 among the rest, without step 4, and repeat until none is
       that small.

    No kept query (or none left) leaves every pixel void.

    Step 2 on a padded batch: official DETR resizes the whole padded
    stride-4 map to the image size (``canvas=None``), so an image smaller
    than the batch sees its masks squeezed by the padding's share. With
    ``canvas`` (the padded batch's (H, W)) the logits are upsampled to the
    canvas and the image's region is cropped, as official DETR's instance
    masks are, and the result does not depend on the batch.

    Args:
        cls_logits (Tensor): Class logits of the last decoder layer, has
            shape (num_query, num_classes + 1), no-object last.
        mask_logits (Tensor): Mask logits, has shape (num_query, h_4, w_4).
        is_thing (sequence[bool]): Per class label, whether it is a thing.
        img_shape (tuple[int, int]): (h, w) of the image before padding.
        out_shape (tuple[int, int], optional): Size of the result (the
            original image to evaluate). Defaults to ``img_shape``.
        canvas (tuple[int, int], optional): (H, W) of the padded batch; see
            above. Defaults to None (official).
        threshold (float): Class probability threshold. Defaults to 0.85
            (official for COCO panoptic).
        min_area (int): Segments of at most this many pixels (at
            ``out_shape``) are dropped. Defaults to 4 (official).

    Returns:
        tuple[Tensor, list[dict]]: the segment index of every pixel, -1 for
        void, has shape ``out_shape`` (long); and the segments, in query
        order, each ``dict(label=int, is_thing=bool, area=int, query=int,
        score=float)``.
    """
    num_classes = cls_logits.shape[-1] - 1
    if len(is_thing) != num_classes:
        raise ValueError(f'panoptic_merge: is_thing has {len(is_thing)} '
                         f'entries for {num_classes} classes')
    h, w = img_shape
    out_shape = tuple(img_shape if out_shape is None else out_shape)
    scores, labels = cls_logits.softmax(-1).max(-1)
    keep = (labels != num_classes) & (scores > threshold)
    queries = keep.nonzero()[:, 0]
    scores, labels = scores[keep], labels[keep]
    masks = mask_logits[keep][:, None]
    if len(queries):
        if canvas is None:
            masks = F.interpolate(masks, size=(h, w), mode='bilinear',
                                  align_corners=False)
        else:
            masks = F.interpolate(
                masks, size=tuple(canvas), mode='bilinear',
                align_corners=False)[..., :h, :w]
    masks = masks.flatten(1)  # (k, h*w)
    thing = [bool(is_thing[int(c)]) for c in labels]

    def assign(alive: Tensor, merge_stuff: bool) -> Tensor:
        """Per pixel, the position in ``alive`` of its query, at
        ``out_shape``; -1 when ``alive`` is empty."""
        if len(alive) == 0:
            return torch.full(out_shape, -1, dtype=torch.long,
                              device=masks.device)
        # softmax over the queries first, as official (it only matters for
        # ties, which argmax breaks towards the lower index)
        ids = masks[alive].t().softmax(-1).argmax(-1).view(h, w)
        if merge_stuff:
            first_of: Dict[int, int] = {}
            for pos, k in enumerate(alive.tolist()):
                if not thing[k]:
                    label = int(labels[k])
                    first = first_of.setdefault(label, pos)
                    if first != pos:
                        ids[ids == pos] = first
        return nearest_resize_ids(ids, out_shape)

    alive = torch.arange(len(queries), device=masks.device)
    ids = assign(alive, merge_stuff=True)
    while len(alive):
        area = torch.bincount(ids.flatten() + 1,
                              minlength=len(alive) + 1)[1:]
        small = area <= min_area
        if not small.any():
            break
        alive = alive[~small]
        ids = assign(alive, merge_stuff=False)
    area = torch.bincount(ids.flatten() + 1, minlength=len(alive) + 1)[1:]
    segments = [
        dict(label=int(labels[k]), is_thing=thing[k], area=int(a),
             query=int(queries[k]), score=float(scores[k]))
        for k, a in zip(alive.tolist(), area.tolist())
    ]
    return ids, segments


def panoptic_to_sem_seg(segment_map: Tensor, segments: Sequence[Dict],
                        num_classes: int) -> Tensor:
    """mmdet's panoptic encoding of :func:`panoptic_merge`'s result.

    A stuff segment's pixels hold its label, the ``i``-th thing segment's
    (``i`` from 1, in query order) ``label + i * INSTANCE_OFFSET``, void
    pixels ``num_classes`` (what mmdet's ``CocoPanopticMetric`` and
    visualiser read from ``pred_panoptic_seg.sem_seg``). As in mmdet, the
    classes must list things before stuff: a stuff segment of label 0 would
    be encoded 0, which panopticapi reads as void.

    Args:
        segment_map (Tensor): Segment index per pixel, -1 for void, has
            shape (H, W).
        segments (sequence[dict]): With ``label`` and ``is_thing``.
        num_classes (int): Things + stuff classes.

    Returns:
        Tensor: Long, has shape (1, H, W).
    """
    values = []
    instance = 0
    for seg in segments:
        value = seg['label']
        if seg['is_thing']:
            instance += 1
            value += instance * INSTANCE_OFFSET
        values.append(value)
    lut = torch.tensor(values + [num_classes], dtype=torch.long,
                       device=segment_map.device)
    # -1 (void) indexes the last entry
    return lut[segment_map][None]


@MODELS.register_module()
class DETRPanopticPostProcess:
    """:func:`panoptic_merge` with its settings from a config.

    Args:
        threshold (float): Class probability threshold. Defaults to 0.85.
        min_area (int): Drop segments of at most this many pixels.
            Defaults to 4.
        crop_padding (bool): Upsample to the padded canvas and crop the image
            (batch-independent) instead of official DETR's resizing of the
            whole padded map. Defaults to False (official).
    """

    def __init__(self,
                 threshold: float = 0.85,
                 min_area: int = 4,
                 crop_padding: bool = False) -> None:
        self.threshold = threshold
        self.min_area = min_area
        self.crop_padding = crop_padding

    def __call__(self, cls_logits: Tensor, mask_logits: Tensor,
                 is_thing: Sequence[bool], img_shape: Tuple[int, int],
                 out_shape: Tuple[int, int],
                 canvas: Tuple[int, int]) -> Tensor:
        """mmdet's ``sem_seg`` of one image.

        Args:
            cls_logits (Tensor): Has shape (num_query, num_classes + 1).
            mask_logits (Tensor): Has shape (num_query, h_4, w_4).
            is_thing (sequence[bool]): Per class label.
            img_shape (tuple[int, int]): (h, w) before padding.
            out_shape (tuple[int, int]): (H, W) of the result.
            canvas (tuple[int, int]): (H, W) of the padded batch.

        Returns:
            Tensor: Long, has shape (1, *out_shape), in mmdet's encoding.
        """
        segment_map, segments = panoptic_merge(
            cls_logits, mask_logits, is_thing, img_shape, out_shape,
            canvas if self.crop_padding else None, self.threshold,
            self.min_area)
        return panoptic_to_sem_seg(segment_map, segments, len(is_thing))
