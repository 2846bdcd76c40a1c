# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's head: input projection, positional encoding, transformer, class
and box predictors, the set loss of every decoder layer and the conversion
to detections.

The set loss (paper section 3.1, eq. 1-2), as official DETR's
``SetCriterion``: the assigner matches every decoder layer and image of a
batch at once (:meth:`HungarianAssigner.match`), then :meth:`loss_single`
scores each layer: cross-entropy over every prediction ("no object" for
the unmatched ones), L1 and GIoU over the matched ones.

The padding mask and the post-processing are plain tensor functions
(:func:`~mmdetr.models.padding_mask.feature_padding_mask`,
:func:`top_detections`), so the exported ONNX graph (:mod:`mmdetr.deploy`)
computes them with the same code.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.utils import multi_apply
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdetr.models.padding_mask import feature_padding_mask, image_sizes
from mmdetr.models.precision import float32_region, to_float32
from mmdetr.models.set_targets import SetMatches, SetTargets
from mmdetr.registry import MODELS, build_model, build_task_util

DEFAULT_ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='ClassificationCost', weight=1.),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)
    ])


def top_detections(cls_scores: Tensor, bbox_preds: Tensor, img_hw: Tensor,
                   num_dets: int, use_sigmoid: bool
                   ) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``num_dets`` best detections of each image, best first: each
    query's best real class ("no object" is never a detection), or with a
    sigmoid classifier the best (query, class) pairs.

    Args:
        cls_scores (Tensor): Logits, has shape (bs, num_query, C).
        bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
            (bs, num_query, 4).
        img_hw (Tensor): Valid (h, w) of each image, shape (bs, 2).
        num_dets (int): Detections per image.
        use_sigmoid (bool): The classifier's activation.

    Returns:
        tuple[Tensor, Tensor, Tensor]: boxes (bs, num_dets, 4) as absolute
        (x1, y1, x2, y2) clipped to the image, scores (bs, num_dets) and
        labels (bs, num_dets).
    """
    if use_sigmoid:
        num_classes = cls_scores.shape[-1]
        scores, index = cls_scores.sigmoid().flatten(1).topk(num_dets, dim=1)
        labels = index % num_classes
        query = torch.div(index, num_classes, rounding_mode='floor')
    else:
        scores, labels = F.softmax(cls_scores, dim=-1)[..., :-1].max(-1)
        scores, query = scores.topk(num_dets, dim=1)
        labels = labels.gather(1, query)
    boxes = bbox_preds.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
    wh = img_hw.flip(-1).to(boxes.dtype)  # (bs, 2) as (w, h)
    size = torch.cat([wh, wh], dim=-1).unsqueeze(1)  # (bs, 1, 4)
    boxes = torch.minimum((bbox_cxcywh_to_xyxy(boxes) * size).clamp(min=0),
                          size)
    return boxes, scores, labels


@MODELS.register_module()
class DETRHead(BaseModule):
    """The head of DETR: from a feature map to a set of class scores and
    boxes per decoder layer, their set loss, and detections.

    ``forward`` runs :meth:`forward_single` on each feature level (DETR uses
    one); :meth:`loss` matches every decoder layer at once and runs
    :meth:`loss_single` on each; :meth:`predict_by_feat` gives
    ``InstanceData`` detections.

    Args:
        num_classes (int): Object classes, without "no object".
        in_channels (int): Channels of the backbone feature map.
        num_query (int): Object queries. Defaults to 100.
        transformer (dict): :class:`DetrTransformer` config.
        positional_encoding (dict): Positional encoding config; its
            ``num_feats * 2`` must equal the transformer's ``embed_dims``.
        loss_cls (dict): Classification loss. With softmax CE, ``class_weight``
            weighs the object classes and ``bg_cls_weight`` the "no object"
            class (the paper's 0.1).
        loss_bbox (dict): L1 loss on normalised (cx, cy, w, h).
        loss_iou (dict): IoU loss on absolute (x1, y1, x2, y2).
        sync_cls_avg_factor (bool): Average the classification normaliser over
            processes too. Defaults to False.
        train_cfg (dict): Has ``assigner``.
        test_cfg (dict): Has ``max_per_img``. Defaults to 100.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_query: int = 100,
                 transformer: dict = dict(type='DetrTransformer'),
                 positional_encoding: dict = dict(
                     type='SinePositionalEncoding',
                     num_feats=128,
                     normalize=True),
                 loss_cls: dict = dict(
                     type='CrossEntropyLoss',
                     bg_cls_weight=0.1,
                     use_sigmoid=False,
                     loss_weight=1.0,
                     class_weight=1.0),
                 loss_bbox: dict = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: dict = dict(type='GIoULoss', loss_weight=2.0),
                 sync_cls_avg_factor: bool = False,
                 train_cfg: Optional[dict] = dict(assigner=DEFAULT_ASSIGNER),
                 test_cfg: Optional[dict] = dict(max_per_img=100),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if train_cfg and 'assigner' not in train_cfg:
            raise KeyError('DETRHead: train_cfg needs an "assigner"')
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg or {}
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_query = num_query
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.assigner = build_task_util(
            (train_cfg or {}).get('assigner', DEFAULT_ASSIGNER))
        if not callable(getattr(self.assigner, 'match', None)):
            raise TypeError(
                'DETRHead: train_cfg.assigner '
                f'{type(self.assigner).__name__} has no batched match(); use '
                "HungarianAssigner (mmdet's match costs work in it)")
        # the losses
        loss_cls = dict(loss_cls)
        bg_cls_weight = loss_cls.pop('bg_cls_weight', None)
        class_weight = loss_cls.get('class_weight', None)
        self.use_sigmoid = loss_cls.get('use_sigmoid', False)
        self.cls_out_channels = num_classes if self.use_sigmoid \
            else num_classes + 1
        self.loss_cls = build_model(loss_cls)
        self.loss_bbox = build_model(loss_bbox)
        self.loss_iou = build_model(loss_iou)
        self.bg_cls_weight = 0
        if class_weight is not None and not self.use_sigmoid:
            # NOTE following the official DETR repo, "no object" gets its
            # own weight (eos_coef), the object classes share class_weight;
            # a buffer, so that it moves to the device with the model
            self.bg_cls_weight = class_weight if bg_cls_weight is None \
                else bg_cls_weight
            weight = torch.full((num_classes + 1, ), float(class_weight))
            weight[-1] = self.bg_cls_weight
            self.loss_cls.__dict__.pop('class_weight', None)
            self.loss_cls.register_buffer('class_weight', weight,
                                          persistent=False)
        # the network
        self.positional_encoding = build_model(positional_encoding)
        self.transformer = build_model(transformer)
        self.embed_dims = self.transformer.embed_dims
        num_feats = getattr(self.positional_encoding, 'num_feats', None)
        if num_feats is not None and num_feats * 2 != self.embed_dims:
            raise ValueError(
                'DETRHead: positional_encoding.num_feats * 2 must equal the '
                f'transformer embed_dims, got num_feats={num_feats} and '
                f'embed_dims={self.embed_dims}')
        self.input_proj = nn.Conv2d(in_channels, self.embed_dims, 1)
        self.query_embedding = nn.Embedding(num_query, self.embed_dims)
        self.fc_cls = nn.Linear(self.embed_dims, self.cls_out_channels)
        # the paper's box FFN: a 3-layer perceptron with ReLU
        self.reg_ffn = nn.Sequential(
            nn.Linear(self.embed_dims, self.embed_dims), nn.ReLU(inplace=True),
            nn.Linear(self.embed_dims, self.embed_dims), nn.ReLU(inplace=True))
        self.fc_reg = nn.Linear(self.embed_dims, 4)

    def init_weights(self) -> None:
        """Transformer: Xavier; the rest: torch defaults, as the paper."""
        super().init_weights()
        self.transformer.init_weights()

    # ------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor],
                img_metas: List[dict]) -> Tuple[List[Tensor], List[Tensor]]:
        """:meth:`forward_single` on every feature level (bs, c, h, w):
        per level, its class scores and boxes."""
        return multi_apply(self.forward_single, feats,
                           [img_metas] * len(feats))

    def forward_single(self, x: Tensor,
                       img_metas: List[dict]) -> Tuple[Tensor, Tensor]:
        """Every decoder layer's logits (num_decoder_layers, bs, num_query,
        cls_out_channels) and normalised (cx, cy, w, h) boxes
        (num_decoder_layers, bs, num_query, 4) from features
        (bs, in_channels, h, w) and each image's ``img_shape`` within
        ``batch_input_shape``."""
        outputs = self.forward_transformer(x, self.padding_mask(x, img_metas))
        return self.predict_layers(outputs['hidden_states'])

    def padding_mask(self, x: Tensor, img_metas: List[dict]) -> Tensor:
        """True at the feature pixels that lie in an image's padding, shape
        (bs, h, w), from each ``img_shape`` within ``batch_input_shape``."""
        input_hw = torch.tensor(img_metas[0]['batch_input_shape'][:2])
        return feature_padding_mask(image_sizes(img_metas, x), input_hw, x)

    def forward_transformer(self, x: Tensor,
                            mask: Tensor) -> Dict[str, Tensor]:
        """Input projection, positional encoding and transformer.

        Args:
            x (Tensor): Features, has shape (bs, in_channels, h, w).
            mask (Tensor): True at padding, has shape (bs, h, w).

        Returns:
            dict[str, Tensor]:
                - proj_feat: the projected features (bs, embed_dims, h, w);
                - memory_mask: ``mask``;
                - pos_embed: (bs, embed_dims, h, w);
                - memory: the encoder output (bs, embed_dims, h, w);
                - hidden_states: the normalised output of every decoder
                  layer, (num_decoder_layers, bs, num_query, embed_dims).
        """
        x = self.input_proj(x)
        pos_embed = self.positional_encoding(mask)
        hidden_states, memory = self.transformer(x, mask, self.queries(),
                                                 pos_embed)
        return dict(proj_feat=x, memory_mask=mask, pos_embed=pos_embed,
                    memory=memory, hidden_states=hidden_states)

    def queries(self) -> Tensor:
        """The decoder's object queries, shape (num_query, embed_dims)."""
        return self.query_embedding.weight

    def predict_layers(self, hidden_states: Tensor) -> Tuple[Tensor, Tensor]:
        """Class logits and normalised (cx, cy, w, h) boxes of each query,
        (..., num_query, cls_out_channels) and (..., num_query, 4), from
        ``hidden_states`` (..., num_query, embed_dims); float32 also under
        mixed precision (:mod:`~mmdetr.models.precision`)."""
        with float32_region(hidden_states):
            hidden_states = to_float32(hidden_states)
            cls_scores = self.fc_cls(hidden_states)
            bbox_preds = self.fc_reg(self.reg_ffn(hidden_states)).sigmoid()
        return cls_scores, bbox_preds

    # --------------------------------------------------------------- loss
    def loss(self, all_cls_scores: Tensor, all_bbox_preds: Tensor,
             targets: SetTargets) -> Tuple[Dict[str, Tensor], SetMatches]:
        """The set loss of every decoder layer, and the matching it scored.

        Matching and losses run in float32 with autocast off: mixed
        precision changes neither the assignment nor the loss arithmetic.

        Args:
            all_cls_scores (Tensor): Logits, has shape
                (num_decoder_layers, bs, num_query, cls_out_channels).
            all_bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
                (num_decoder_layers, bs, num_query, 4).
            targets (SetTargets): The batch's ground truths.

        Returns:
            tuple[dict[str, Tensor], SetMatches]: ``loss_cls``,
            ``loss_bbox``, ``loss_iou`` of the last decoder layer and
            ``d{i}.loss_*`` of the others; the matching of every layer.
        """
        with torch.autocast(all_cls_scores.device.type, enabled=False):
            all_cls_scores = all_cls_scores.float()
            all_bbox_preds = all_bbox_preds.float()
            # 1. every layer and image matched at once: a constant of the
            # loss, and the step's one wait for the device
            indices = self.assigner.match(all_cls_scores.detach(),
                                          all_bbox_preds.detach(), targets)
            # 2. normalisers, known on the host: the matched boxes, and the
            # total class weight (matched 1, unmatched bg_cls_weight)
            num_preds = all_cls_scores.shape[1] * all_cls_scores.shape[2]
            num_pos = [len(img) for img, _, _ in indices]
            num_boxes = [float(max(p, 1)) for p in num_pos]
            cls_factors = [
                max(p + (num_preds - p) * self.bg_cls_weight, 1)
                for p in num_pos
            ]
            if dist.is_available() and dist.is_initialized():
                # averaged over processes: one all-reduce for every layer,
                # device tensors that the losses divide by (no host wait)
                pos = torch.stack(
                    [all_cls_scores.new_full((), float(p)) for p in num_pos])
                if self.sync_cls_avg_factor:
                    pos = torch.cat(
                        [pos, pos + (num_preds - pos) * self.bg_cls_weight])
                values = reduce_mean(pos).clamp(min=1).unbind()
                num_boxes = list(values[:len(num_pos)])
                cls_factors = list(values[len(num_pos):]) or cls_factors
            # 3. each layer scored against its matches
            losses_cls, losses_bbox, losses_iou = multi_apply(
                self.loss_single, list(all_cls_scores), list(all_bbox_preds),
                indices, self.label_weights(all_bbox_preds, indices, targets),
                cls_factors, num_boxes, targets=targets)
        losses = dict(loss_cls=losses_cls[-1], loss_bbox=losses_bbox[-1],
                      loss_iou=losses_iou[-1])
        for i in range(len(indices) - 1):
            losses[f'd{i}.loss_cls'] = losses_cls[i]
            losses[f'd{i}.loss_bbox'] = losses_bbox[i]
            losses[f'd{i}.loss_iou'] = losses_iou[i]
        return losses, SetMatches(indices, num_boxes)

    def label_weights(self, all_bbox_preds: Tensor, indices: list,
                      targets: SetTargets) -> List[Optional[Tensor]]:
        """Per decoder layer, the weight of each prediction's classification
        term, shape (bs * num_query, ); None for DETR's (every term 1, "no
        object" weighed by ``bg_cls_weight`` in the loss's class weight)."""
        return [None] * len(indices)

    def loss_single(self, cls_scores: Tensor, bbox_preds: Tensor,
                    indices: Tuple[Tensor, Tensor, Tensor],
                    label_weights: Optional[Tensor], cls_avg_factor,
                    num_boxes, targets: SetTargets
                    ) -> Tuple[Tensor, Tensor, Tensor]:
        """The loss of one decoder layer.

        Args:
            cls_scores (Tensor): has shape (bs, num_query, cls_out_channels).
            bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
                (bs, num_query, 4).
            indices (tuple[Tensor, Tensor, Tensor]): Image, prediction and
                ground truth of each match.
            label_weights (Tensor, optional): See :meth:`label_weights`.
            cls_avg_factor (float | Tensor): The classification normaliser.
            num_boxes (float | Tensor): The box losses' normaliser.
            targets (SetTargets): The batch's ground truths.

        Returns:
            tuple[Tensor, Tensor, Tensor]: loss_cls, loss_bbox, loss_iou.
        """
        img, query, gt = indices
        # the matched ground truth's class, "no object" for the others
        labels = torch.full(cls_scores.shape[:2], self.num_classes,
                            dtype=torch.long, device=cls_scores.device)
        labels[img, query] = targets.labels[img, gt]
        loss_cls = self.loss_cls(
            cls_scores.reshape(-1, cls_scores.shape[-1]), labels.reshape(-1),
            label_weights, avg_factor=cls_avg_factor)
        # box losses of the matched predictions only
        pred = bbox_preds[img, query]
        loss_bbox = self.loss_bbox(pred, targets.boxes[img, gt],
                                   avg_factor=num_boxes)
        loss_iou = self.loss_iou(
            bbox_cxcywh_to_xyxy(pred) * targets.factors[img],
            targets.corners[img, gt], avg_factor=num_boxes)
        return loss_cls, loss_bbox, loss_iou

    # --------------------------------------------------------- prediction
    def predict_by_feat(self,
                        all_cls_scores_list: List[Tensor],
                        all_bbox_preds_list: List[Tensor],
                        img_metas: List[dict],
                        rescale: bool = False) -> List[InstanceData]:
        """Detections from the last decoder layer of the last level.

        Args:
            all_cls_scores_list, all_bbox_preds_list (list[Tensor]): Per
                level, as :meth:`forward_single` returns them.
            img_metas (list[dict]): Per image, ``img_shape`` and, with
                ``rescale``, ``scale_factor`` (w_scale, h_scale).
            rescale (bool): Boxes in original-image pixels.

        Returns:
            list[InstanceData]: per image, ``bboxes`` (n, 4) absolute
            (x1, y1, x2, y2), ``scores`` (n, ), ``labels`` (n, ), with
            n = :meth:`num_detections`.
        """
        cls_scores = all_cls_scores_list[-1][-1]
        bbox_preds = all_bbox_preds_list[-1][-1]
        # ranking and pixel boxes in float32, also under mixed precision
        with float32_region(bbox_preds):
            bboxes, scores, labels = top_detections(
                to_float32(cls_scores), to_float32(bbox_preds),
                image_sizes(img_metas, bbox_preds), self.num_detections(),
                self.use_sigmoid)
        results = []
        for i, img_meta in enumerate(img_metas):
            boxes = bboxes[i]
            if rescale:
                boxes = boxes / boxes.new_tensor(
                    img_meta['scale_factor']).repeat((1, 2))
            results.append(
                InstanceData(bboxes=boxes, scores=scores[i], labels=labels[i]))
        return results

    def num_detections(self) -> int:
        """Detections per image: ``test_cfg.max_per_img``, at most one per
        query with a softmax classifier."""
        max_per_img = self.test_cfg.get('max_per_img', self.num_query)
        if self.use_sigmoid:
            return max_per_img
        return min(max_per_img, self.num_query)
