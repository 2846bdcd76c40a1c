# Copyright (c) mmdetr contributors. All rights reserved.
"""What DETR's set loss compares: the batch's ground truths, built once in
the forms the matching and the losses read, and the matching itself.

Official DETR hands its matcher and losses per-image ``labels`` and
``boxes`` in normalised (cx, cy, w, h). :class:`SetTargets` holds them for
a whole batch, padded to its largest count: the L1 cost and loss read
``boxes``; the GIoU cost and loss read ``corners``, the boxes as the data
gives them, absolute (x1, y1, x2, y2), against the predictions scaled by
``factors`` (as mmdet 3.3; GIoU does not depend on the scale).
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


@dataclass
class SetTargets:
    """The ground truths of a batch, padded to its largest count.

    Attributes:
        labels (Tensor): Classes, has shape (bs, max_gts).
        boxes (Tensor): Normalised (cx, cy, w, h), has shape
            (bs, max_gts, 4).
        corners (Tensor): Absolute (x1, y1, x2, y2), has shape
            (bs, max_gts, 4).
        factors (Tensor): (w, h, w, h) of each image, shape (bs, 4): from
            normalised to absolute coordinates.
        num_gts (list[int]): Ground truths per image; the entries after
            ``num_gts[i]`` of image i are padding (zeros), never matched.
        img_metas (list[dict]): Per image, with ``img_shape`` (h, w), for
            match costs that take mmdet's one-image call.
    """
    labels: Tensor
    boxes: Tensor
    corners: Tensor
    factors: Tensor
    num_gts: List[int]
    img_metas: List[dict]

    @classmethod
    def build(cls, gt_bboxes: Sequence[Tensor], gt_labels: Sequence[Tensor],
              img_metas: Sequence[dict]) -> 'SetTargets':
        """The targets of a batch.

        Args:
            gt_bboxes (list[Tensor]): Per image, absolute (x1, y1, x2, y2),
                has shape (num_gts_i, 4).
            gt_labels (list[Tensor]): Per image, has shape (num_gts_i, ).
            img_metas (list[dict]): Per image, with ``img_shape`` (h, w).
        """
        if not len(gt_bboxes) == len(gt_labels) == len(img_metas):
            raise ValueError(
                f'SetTargets: {len(gt_bboxes)} box lists, {len(gt_labels)} '
                f'label lists and {len(img_metas)} img_metas for one batch')
        num_gts = [len(labels) for labels in gt_labels]
        for i, (bboxes, n) in enumerate(zip(gt_bboxes, num_gts)):
            if bboxes.reshape(-1, 4).shape[0] != n:
                raise ValueError(f'SetTargets: image {i} has {n} labels but '
                                 f'gt_bboxes of shape {tuple(bboxes.shape)}')
        corners = pad_sequence([b.reshape(-1, 4).float() for b in gt_bboxes],
                               batch_first=True)
        # filled with Python numbers (kernel arguments): no copy to the
        # device, which on a GPU would make the host wait
        factors = corners.new_empty((len(img_metas), 4))
        for i, img_meta in enumerate(img_metas):
            img_h, img_w = img_meta['img_shape'][:2]
            factors[i, 0::2] = img_w
            factors[i, 1::2] = img_h
        return cls(
            labels=pad_sequence([lab.reshape(-1) for lab in gt_labels],
                                batch_first=True),
            boxes=bbox_xyxy_to_cxcywh(corners / factors[:, None]),
            corners=corners,
            factors=factors,
            num_gts=num_gts,
            img_metas=list(img_metas))

    def __len__(self) -> int:
        return len(self.num_gts)


@dataclass
class SetMatches:
    """The matching of every decoder layer of a batch, as
    :meth:`DETRHead.loss` scored it.

    Attributes:
        indices (list[tuple[Tensor, Tensor, Tensor]]): Per decoder layer,
            the image, prediction and ground-truth index of every match,
            ascending by (image, prediction); each has shape (num_pos, ).
        num_boxes (list): Per decoder layer, the number of matches averaged
            over processes, at least 1: the box losses' normaliser. Floats,
            or 0-dim tensors in distributed training.
    """
    indices: List[Tuple[Tensor, Tensor, Tensor]]
    num_boxes: List[Union[float, Tensor]]
