# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's head: padding mask, input projection, positional encoding,
transformer, class and box predictors, the set loss of every decoder layer
(:mod:`~mmdetr.models.set_criterion`) and the conversion to detections.

The padding mask and the post-processing are plain tensor functions
(:func:`~mmdetr.models.padding_mask.feature_padding_mask`,
:func:`top_detections`), so the exported ONNX graph (:mod:`mmdetr.deploy`)
computes them with the same code.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.utils import multi_apply
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdetr.models.padding_mask import feature_padding_mask, image_sizes
from mmdetr.models.precision import float32_region, to_float32
from mmdetr.models.set_criterion import SetCriterion, SetMatches
from mmdetr.registry import MODELS, build_model

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
    """The ``num_dets`` best detections of each image, best first.

    Softmax classifier: each query's best real class ("no object" is never
    a detection); sigmoid: the best (query, class) pairs.

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
    one); ``loss`` matches every decoder layer at once and runs
    :meth:`loss_single` on each (:class:`SetCriterion` matches and scores);
    :meth:`predict_by_feat` gives ``InstanceData`` detections.

    Args:
        num_classes (int): Object classes, without "no object".
        in_channels (int): Channels of the backbone feature map.
        num_query (int): Object queries. Defaults to 100.
        num_reg_fcs (int): Hidden layers of the box MLP. Defaults to 2.
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
                 num_reg_fcs: int = 2,
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
        self.num_reg_fcs = num_reg_fcs
        self.use_sigmoid = loss_cls.get('use_sigmoid', False)
        self.cls_out_channels = num_classes if self.use_sigmoid \
            else num_classes + 1
        self.criterion = SetCriterion(
            num_classes, (train_cfg or {}).get('assigner', DEFAULT_ASSIGNER),
            loss_cls, loss_bbox, loss_iou, sync_cls_avg_factor)
        self.positional_encoding = build_model(positional_encoding)
        self.transformer = build_model(transformer)
        self.embed_dims = self.transformer.embed_dims
        num_feats = getattr(self.positional_encoding, 'num_feats', None)
        if num_feats is not None and num_feats * 2 != self.embed_dims:
            raise ValueError(
                'DETRHead: positional_encoding.num_feats * 2 must equal the '
                f'transformer embed_dims, got num_feats={num_feats} and '
                f'embed_dims={self.embed_dims}')
        self.input_proj = nn.Conv2d(
            self.in_channels, self.embed_dims, kernel_size=1)
        self.query_embedding = nn.Embedding(self.num_query, self.embed_dims)
        self.fc_cls = nn.Linear(self.embed_dims, self.cls_out_channels)
        reg_layers = []
        for _ in range(self.num_reg_fcs):
            reg_layers += [
                nn.Linear(self.embed_dims, self.embed_dims),
                nn.ReLU(inplace=True)
            ]
        self.reg_ffn = nn.Sequential(*reg_layers)
        self.fc_reg = nn.Linear(self.embed_dims, 4)

    def init_weights(self) -> None:
        """Transformer: Xavier; the rest: torch defaults, as the paper."""
        super().init_weights()
        self.transformer.init_weights()

    # ------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor],
                img_metas: List[dict]) -> Tuple[List[Tensor], List[Tensor]]:
        """Run :meth:`forward_single` on every feature level.

        Args:
            feats (tuple[Tensor]): Per level, has shape (bs, c, h, w).
            img_metas (list[dict]): Per-image meta.

        Returns:
            tuple[list[Tensor], list[Tensor]]: per level, class scores and
            boxes as returned by :meth:`forward_single`.
        """
        img_metas_list = [img_metas for _ in range(len(feats))]
        return multi_apply(self.forward_single, feats, img_metas_list)

    def forward_single(self, x: Tensor,
                       img_metas: List[dict]) -> Tuple[Tensor, Tensor]:
        """Predict from one feature level.

        Args:
            x (Tensor): Features, has shape (bs, in_channels, h, w).
            img_metas (list[dict]): Per-image meta with ``img_shape`` and
                ``batch_input_shape``.

        Returns:
            tuple[Tensor, Tensor]: logits (num_decoder_layers, bs,
            num_query, cls_out_channels) and normalised (cx, cy, w, h)
            boxes (num_decoder_layers, bs, num_query, 4).
        """
        outputs = self.forward_outputs(x, img_metas)
        return outputs['cls_scores'], outputs['bbox_preds']

    def forward_outputs(self, x: Tensor,
                        img_metas: List[dict]) -> Dict[str, Tensor]:
        """Everything the head computes from one feature level.

        Args:
            x (Tensor): Features, has shape (bs, in_channels, h, w).
            img_metas (list[dict]): Per-image meta.

        Returns:
            dict[str, Tensor]: :meth:`forward_transformer`'s outputs and
            ``cls_scores`` (num_decoder_layers, bs, num_query,
            cls_out_channels), ``bbox_preds`` (num_decoder_layers, bs,
            num_query, 4) normalised (cx, cy, w, h).
        """
        outputs = self.forward_transformer(x, self.padding_mask(x, img_metas))
        outputs['cls_scores'], outputs['bbox_preds'] = self.predict_layers(
            outputs['hidden_states'])
        return outputs

    def padding_mask(self, x: Tensor, img_metas: List[dict]) -> Tensor:
        """True at the feature pixels that lie in an image's padding.

        Args:
            x (Tensor): Features, has shape (bs, c, h, w).
            img_metas (list[dict]): Per image, ``img_shape`` (h, w) and
                ``batch_input_shape`` (H, W).

        Returns:
            Tensor: bool, has shape (bs, h, w).
        """
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
        """Class logits and normalised (cx, cy, w, h) boxes of each query.

        Args:
            hidden_states (Tensor): has shape (..., num_query, embed_dims).

        Returns:
            tuple[Tensor, Tensor]: (..., num_query, cls_out_channels) and
            (..., num_query, 4), float32 also under mixed precision.
        """
        # float32 under mixed precision (mmdetr.models.precision): boxes
        # and scores to full precision, at the cost of a few small layers
        with float32_region(hidden_states):
            hidden_states = to_float32(hidden_states)
            cls_scores = self.fc_cls(hidden_states)
            bbox_preds = self.fc_reg(self.reg_ffn(hidden_states)).sigmoid()
        return cls_scores, bbox_preds

    # --------------------------------------------------------------- loss
    def loss(self,
             all_cls_scores_list: List[Tensor],
             all_bbox_preds_list: List[Tensor],
             gt_bboxes_list: List[Tensor],
             gt_labels_list: List[Tensor],
             img_metas: List[dict],
             gt_bboxes_ignore: Optional[List[Tensor]] = None
             ) -> Dict[str, Tensor]:
        """Set loss of every decoder layer.

        Every decoder layer and image is matched in one pass
        (:meth:`SetCriterion.match`: the one wait for the device), then
        :meth:`loss_single` scores each layer against its matches.
        Matching and losses run in float32 with autocast off, so mixed
        precision changes neither the assignment nor the loss arithmetic.

        Args:
            all_cls_scores_list (list[Tensor]): Per level, logits of shape
                (num_decoder_layers, bs, num_query, cls_out_channels); only
                the last level is used.
            all_bbox_preds_list (list[Tensor]): Per level, normalised
                (cx, cy, w, h) of shape (num_decoder_layers, bs, num_query, 4).
            gt_bboxes_list (list[Tensor]): Per image, absolute
                (x1, y1, x2, y2) of shape (num_gts, 4).
            gt_labels_list (list[Tensor]): Per image, shape (num_gts, ).
            img_metas (list[dict]): Per-image meta.
            gt_bboxes_ignore (None): Not supported; must be None.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` of
            the last decoder layer and ``d{i}.loss_*`` of the others.
        """
        return self.loss_and_matches(all_cls_scores_list, all_bbox_preds_list,
                                     gt_bboxes_list, gt_labels_list,
                                     img_metas, gt_bboxes_ignore)[0]

    def loss_and_matches(self,
                         all_cls_scores_list: List[Tensor],
                         all_bbox_preds_list: List[Tensor],
                         gt_bboxes_list: List[Tensor],
                         gt_labels_list: List[Tensor],
                         img_metas: List[dict],
                         gt_bboxes_ignore: Optional[List[Tensor]] = None
                         ) -> Tuple[Dict[str, Tensor], SetMatches]:
        """:meth:`loss`, and the matching it scored: one set per decoder
        layer (``matches.sets()[-1]``: the last layer's), for a loss of
        the matched queries' own outputs (e.g. masks) without matching
        again. Arguments as :meth:`loss`.

        Returns:
            tuple[dict[str, Tensor], SetMatches]: :meth:`loss`'s losses and
            the matches.
        """
        if gt_bboxes_ignore is not None:
            raise NotImplementedError(
                'DETRHead: gt_bboxes_ignore is not supported')
        all_cls_scores = all_cls_scores_list[-1]
        with torch.autocast(all_cls_scores.device.type, enabled=False):
            all_cls_scores = all_cls_scores.float()
            all_bbox_preds = all_bbox_preds_list[-1].float()
            gt_bboxes_list = [b.float() for b in gt_bboxes_list]
            matches = self.criterion.match(all_cls_scores, all_bbox_preds,
                                           gt_bboxes_list, gt_labels_list,
                                           img_metas)
            num_layers = len(matches)
            losses_cls, losses_bbox, losses_iou = multi_apply(
                self.loss_single, list(all_cls_scores), list(all_bbox_preds),
                [gt_bboxes_list] * num_layers, [gt_labels_list] * num_layers,
                [img_metas] * num_layers, [None] * num_layers, matches.sets())
        loss_dict = dict(
            loss_cls=losses_cls[-1],
            loss_bbox=losses_bbox[-1],
            loss_iou=losses_iou[-1])
        for i, (loss_cls, loss_bbox, loss_iou) in enumerate(
                zip(losses_cls[:-1], losses_bbox[:-1], losses_iou[:-1])):
            loss_dict[f'd{i}.loss_cls'] = loss_cls
            loss_dict[f'd{i}.loss_bbox'] = loss_bbox
            loss_dict[f'd{i}.loss_iou'] = loss_iou
        return loss_dict, matches

    def loss_single(self,
                    cls_scores: Tensor,
                    bbox_preds: Tensor,
                    gt_bboxes_list: List[Tensor],
                    gt_labels_list: List[Tensor],
                    img_metas: List[dict],
                    gt_bboxes_ignore_list: Optional[list] = None,
                    matches: Optional[SetMatches] = None
                    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Loss of one decoder layer's output.

        Args:
            cls_scores (Tensor): has shape (bs, num_query, cls_out_channels).
            bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
                (bs, num_query, 4).
            gt_bboxes_list, gt_labels_list, img_metas: as :meth:`loss`.
            gt_bboxes_ignore_list (None): Not supported; must be None.
            matches (SetMatches, optional): This layer's matches (from
                :meth:`loss`); None: matched here.

        Returns:
            tuple[Tensor, Tensor, Tensor]: loss_cls, loss_bbox, loss_iou.
        """
        if gt_bboxes_ignore_list is not None:
            raise NotImplementedError(
                'DETRHead: gt_bboxes_ignore is not supported')
        if matches is None:
            matches = self.criterion.match(cls_scores[None], bbox_preds[None],
                                           gt_bboxes_list, gt_labels_list,
                                           img_metas)
        return self.criterion.loss(cls_scores, bbox_preds, matches,
                                   self.label_weights(bbox_preds, matches))

    def label_weights(self, bbox_preds: Tensor,
                      matches: SetMatches) -> Optional[Tensor]:
        """Weight of each prediction's classification term, shape
        (bs * num_query, ); None for DETR's (every term 1, "no object"
        weighed by ``bg_cls_weight`` inside the loss)."""
        return None

    # --------------------------------------------------------- prediction
    def predict_by_feat(self,
                        all_cls_scores_list: List[Tensor],
                        all_bbox_preds_list: List[Tensor],
                        img_metas: List[dict],
                        rescale: bool = False) -> List[InstanceData]:
        """Detections from the last decoder layer of the last level.

        Args:
            all_cls_scores_list, all_bbox_preds_list: as :meth:`loss`.
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
            cls_scores = to_float32(cls_scores)
            bbox_preds = to_float32(bbox_preds)
            bboxes, scores, labels = top_detections(
                cls_scores, bbox_preds, image_sizes(img_metas, bbox_preds),
                self.num_detections(), self.use_sigmoid)
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
