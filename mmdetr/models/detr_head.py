# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's head: input projection, transformer, class and box predictors, the
set loss over every decoder layer, and the conversion to detections."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.utils import multi_apply
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdetr.compat.mmdet2_config import (is_mmdet2_transformer,
                                         translate_transformer)
from mmdetr.compat.mmdet2_head import Mmdet2HeadMixin
from mmdetr.registry import MODELS, build_model, build_task_util


def batch_padding_mask(x: Tensor, img_metas: Sequence[dict]) -> Tensor:
    """Padding mask at input resolution: True outside each image's
    ``img_shape`` within the batch's ``batch_input_shape``.

    Args:
        x (Tensor): Any tensor of the batch, for size, dtype and device.
        img_metas (list[dict]): Per-image meta with ``img_shape`` (h, w) and
            ``batch_input_shape`` (H, W).

    Returns:
        Tensor: float mask (1 = padded), has shape (bs, H, W).
    """
    input_h, input_w = img_metas[0]['batch_input_shape']
    masks = x.new_ones((len(img_metas), input_h, input_w))
    for i, img_meta in enumerate(img_metas):
        img_h, img_w = img_meta['img_shape'][:2]
        masks[i, :img_h, :img_w] = 0
    return masks


@MODELS.register_module()
class DETRHead(Mmdet2HeadMixin, BaseModule):
    """The head of DETR, in the mmdet 2.x shape.

    ``forward`` runs :meth:`forward_single` on each feature level (DETR uses
    one); ``loss`` runs :meth:`loss_single` on each decoder layer's output and
    :meth:`get_targets` matches predictions to ground truths per image;
    :meth:`predict_by_feat` gives ``InstanceData`` detections (the runner's
    path). mmdet 2.x's ``forward_train``, ``get_bboxes`` (tuples),
    ``simple_test_bboxes`` and ``simple_test`` come from
    :class:`~mmdetr.compat.Mmdet2HeadMixin`.

    Args:
        num_classes (int): Object classes, without background.
        in_channels (int): Channels of the backbone feature map.
        num_query (int): Object queries. Defaults to 100.
        num_reg_fcs (int): Hidden layers of the box MLP. Defaults to 2.
        transformer (dict): :class:`DetrTransformer` config, or mmdet 2.x's
            ``dict(type='Transformer', encoder=..., decoder=...)``, which
            :func:`~mmdetr.compat.translate_transformer` maps onto it.
        sync_cls_avg_factor (bool): Average the classification normaliser over
            GPUs too. Defaults to False.
        positional_encoding (dict): Positional encoding config; its
            ``num_feats * 2`` must equal the transformer's ``embed_dims``.
        loss_cls (dict): Classification loss. With softmax CE, ``class_weight``
            weighs the object classes and ``bg_cls_weight`` the no-object
            class (the paper's 0.1).
        loss_bbox (dict): L1 loss on normalised (cx, cy, w, h).
        loss_iou (dict): IoU loss on absolute (x1, y1, x2, y2).
        train_cfg (dict): Has ``assigner``.
        test_cfg (dict): Has ``max_per_img``. Defaults to 100.
        init_cfg (dict, optional): Defaults to None.
        type (str, optional): Ignored, so that ``DETRHead(**cfg)`` takes a
            config dict with its ``type`` key, as mmdet 2.x's head did.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_query: int = 100,
                 num_reg_fcs: int = 2,
                 transformer: Optional[dict] = None,
                 sync_cls_avg_factor: bool = False,
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
                 train_cfg: Optional[dict] = dict(
                     assigner=dict(
                         type='HungarianAssigner',
                         match_costs=[
                             dict(type='ClassificationCost', weight=1.),
                             dict(
                                 type='BBoxL1Cost',
                                 weight=5.0,
                                 box_format='xywh'),
                             dict(
                                 type='IoUCost', iou_mode='giou', weight=2.0)
                         ])),
                 test_cfg: Optional[dict] = dict(max_per_img=100),
                 init_cfg=None,
                 type: Optional[str] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        loss_cls = copy.deepcopy(dict(loss_cls))
        self.bg_cls_weight = 0
        self.use_sigmoid = loss_cls.get('use_sigmoid', False)
        class_weight = loss_cls.get('class_weight', None)
        bg_cls_weight = loss_cls.pop('bg_cls_weight', class_weight)
        if class_weight is not None and not self.use_sigmoid:
            # NOTE following the official DETR repo, the no-object class gets
            # its own weight (eos_coef) and the rest share class_weight.
            weight = torch.ones(num_classes + 1) * class_weight
            weight[num_classes] = bg_cls_weight
            loss_cls['class_weight'] = weight
            self.bg_cls_weight = bg_cls_weight

        if train_cfg:
            if 'assigner' not in train_cfg:
                raise KeyError('DETRHead: train_cfg needs an "assigner"')
            self.assigner = build_task_util(train_cfg['assigner'])
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg or {}

        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_query = num_query
        self.num_reg_fcs = num_reg_fcs
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.cls_out_channels = num_classes if self.use_sigmoid \
            else num_classes + 1

        self.loss_cls = build_model(loss_cls)
        self.loss_bbox = build_model(loss_bbox)
        self.loss_iou = build_model(loss_iou)
        self.positional_encoding = build_model(positional_encoding)
        if is_mmdet2_transformer(transformer):
            transformer = translate_transformer(transformer)
        self.transformer = build_model(
            transformer if transformer is not None else dict(
                type='DetrTransformer'))
        self.embed_dims = self.transformer.embed_dims
        num_feats = getattr(self.positional_encoding, 'num_feats', None)
        if num_feats is not None and num_feats * 2 != self.embed_dims:
            raise ValueError(
                'DETRHead: positional_encoding.num_feats * 2 must equal the '
                f'transformer embed_dims, got num_feats={num_feats} and '
                f'embed_dims={self.embed_dims}')
        self._init_layers()

    def _init_layers(self) -> None:
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
            tuple[Tensor, Tensor]:
                - all_cls_scores: logits, has shape
                  (num_decoder_layers, bs, num_query, cls_out_channels).
                - all_bbox_preds: normalised (cx, cy, w, h), has shape
                  (num_decoder_layers, bs, num_query, 4).
        """
        masks = batch_padding_mask(x, img_metas)
        x = self.input_proj(x)
        masks = F.interpolate(
            masks[None], size=x.shape[-2:]).to(torch.bool)[0]
        pos_embed = self.positional_encoding(masks)
        outs_dec, _ = self.transformer(x, masks, self.query_embedding.weight,
                                       pos_embed)
        all_cls_scores = self.fc_cls(outs_dec)
        all_bbox_preds = self.fc_reg(self.reg_ffn(outs_dec)).sigmoid()
        return all_cls_scores, all_bbox_preds

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

        The matching of every decoder layer and image is computed first, in
        one batched pass (:meth:`assign_all`); :meth:`loss_single` then runs
        per layer with that layer's assignments. Matching and losses run in
        float32 with autocast off, so mixed-precision training changes
        neither the assignment nor the loss arithmetic.

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
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` of the
            last decoder layer and ``d{i}.loss_*`` of the others.
        """
        if gt_bboxes_ignore is not None:
            raise NotImplementedError(
                'DETRHead: gt_bboxes_ignore is not supported')
        all_cls_scores = all_cls_scores_list[-1]
        all_bbox_preds = all_bbox_preds_list[-1]
        with torch.autocast(all_cls_scores.device.type, enabled=False):
            all_cls_scores = all_cls_scores.float()
            all_bbox_preds = all_bbox_preds.float()
            gt_bboxes_list = [b.float() for b in gt_bboxes_list]
            assign_results = self.assign_all(all_cls_scores, all_bbox_preds,
                                             gt_bboxes_list, gt_labels_list,
                                             img_metas)
            num_dec_layers = len(all_cls_scores)
            losses_cls, losses_bbox, losses_iou = multi_apply(
                self.loss_single, all_cls_scores, all_bbox_preds,
                [gt_bboxes_list] * num_dec_layers,
                [gt_labels_list] * num_dec_layers,
                [img_metas] * num_dec_layers, assign_results)

        loss_dict = dict(
            loss_cls=losses_cls[-1],
            loss_bbox=losses_bbox[-1],
            loss_iou=losses_iou[-1])
        for i, (loss_cls, loss_bbox, loss_iou) in enumerate(
                zip(losses_cls[:-1], losses_bbox[:-1], losses_iou[:-1])):
            loss_dict[f'd{i}.loss_cls'] = loss_cls
            loss_dict[f'd{i}.loss_bbox'] = loss_bbox
            loss_dict[f'd{i}.loss_iou'] = loss_iou
        return loss_dict

    def assign_all(self, all_cls_scores: Tensor, all_bbox_preds: Tensor,
                   gt_bboxes_list: List[Tensor], gt_labels_list: List[Tensor],
                   img_metas: List[dict]) -> List[list]:
        """Match the predictions of every decoder layer and image at once.

        Gives what :meth:`_get_target_single` computes per image and layer
        when it gets no assignment, with one cost computation and one
        device-to-host copy for the whole batch (when the assigner has
        ``assign_batch``; otherwise it loops over ``assign``).

        Args:
            all_cls_scores (Tensor): Logits, has shape
                (num_decoder_layers, bs, num_query, cls_out_channels).
            all_bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
                (num_decoder_layers, bs, num_query, 4).
            gt_bboxes_list, gt_labels_list, img_metas: as :meth:`loss`.

        Returns:
            list[list[AssignResult]]: ``[layer][image]``.
        """
        # the matching is a constant of the loss: no graph for it
        with torch.no_grad():
            factors = torch.stack([
                self._image_factor(meta, all_bbox_preds) for meta in img_metas
            ])  # (bs, 1, 4)
            bboxes = bbox_cxcywh_to_xyxy(all_bbox_preds) * factors
            if hasattr(self.assigner, 'assign_batch'):
                return self.assigner.assign_batch(all_cls_scores, bboxes,
                                                  gt_labels_list,
                                                  gt_bboxes_list, img_metas)
            return [[
                self.assigner.assign(
                    InstanceData(scores=cls_scores[i], bboxes=layer[i]),
                    InstanceData(bboxes=gt_bboxes_list[i],
                                 labels=gt_labels_list[i]), img_metas[i])
                for i in range(len(img_metas))
            ] for cls_scores, layer in zip(all_cls_scores, bboxes)]

    def loss_single(self,
                    cls_scores: Tensor,
                    bbox_preds: Tensor,
                    gt_bboxes_list: List[Tensor],
                    gt_labels_list: List[Tensor],
                    img_metas: List[dict],
                    assign_results: Optional[list] = None
                    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Loss of one decoder layer's output.

        Args:
            cls_scores (Tensor): has shape (bs, num_query, cls_out_channels).
            bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
                (bs, num_query, 4).
            gt_bboxes_list, gt_labels_list, img_metas: as :meth:`loss`.
            assign_results (list[AssignResult], optional): This layer's
                assignment per image; None matches here, per image.

        Returns:
            tuple[Tensor, Tensor, Tensor]: loss_cls, loss_bbox, loss_iou.
        """
        num_imgs = cls_scores.size(0)
        (labels_list, label_weights_list, bbox_targets_list,
         bbox_weights_list, num_total_pos, num_total_neg) = self.get_targets(
             [cls_scores[i] for i in range(num_imgs)],
             [bbox_preds[i] for i in range(num_imgs)], gt_bboxes_list,
             gt_labels_list, img_metas, assign_results)
        labels = torch.cat(labels_list, 0)
        label_weights = torch.cat(label_weights_list, 0)
        bbox_targets = torch.cat(bbox_targets_list, 0)
        bbox_weights = torch.cat(bbox_weights_list, 0)

        # classification: normalised by the total class weight of the batch
        cls_scores = cls_scores.reshape(-1, self.cls_out_channels)
        cls_avg_factor = num_total_pos * 1.0 + \
            num_total_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(
                cls_scores.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)
        loss_cls = self.loss_cls(
            cls_scores, labels, label_weights, avg_factor=cls_avg_factor)

        # boxes: normalised by the number of matched ground truths, averaged
        # over all GPUs
        num_total_pos = loss_cls.new_tensor([num_total_pos])
        num_total_pos = torch.clamp(reduce_mean(num_total_pos), min=1).item()

        factors = torch.cat([
            self._image_factor(img_meta, bbox_preds).expand(
                bbox_preds.size(1), 4) for img_meta in img_metas
        ])
        bbox_preds = bbox_preds.reshape(-1, 4)
        bboxes = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        bboxes_gt = bbox_cxcywh_to_xyxy(bbox_targets) * factors
        loss_iou = self.loss_iou(
            bboxes, bboxes_gt, bbox_weights, avg_factor=num_total_pos)
        loss_bbox = self.loss_bbox(
            bbox_preds, bbox_targets, bbox_weights, avg_factor=num_total_pos)
        return loss_cls, loss_bbox, loss_iou

    @staticmethod
    def _image_factor(img_meta: dict, like: Tensor) -> Tensor:
        img_h, img_w = img_meta['img_shape'][:2]
        return like.new_tensor([[img_w, img_h, img_w, img_h]])

    def get_targets(self,
                    cls_scores_list: List[Tensor],
                    bbox_preds_list: List[Tensor],
                    gt_bboxes_list: List[Tensor],
                    gt_labels_list: List[Tensor],
                    img_metas: List[dict],
                    assign_results: Optional[list] = None) -> tuple:
        """Targets of a batch for one decoder layer.

        Args:
            assign_results (list[AssignResult], optional): Per image, the
                assignment to use; None matches per image here.

        Returns:
            tuple: lists per image of labels, label weights, box targets, box
            weights (as :meth:`_get_target_single`), then the total numbers
            of positive and negative predictions.
        """
        if assign_results is None:
            assign_results = [None] * len(cls_scores_list)
        (labels_list, label_weights_list, bbox_targets_list,
         bbox_weights_list, pos_inds_list, neg_inds_list) = multi_apply(
             self._get_target_single, cls_scores_list, bbox_preds_list,
             gt_bboxes_list, gt_labels_list, img_metas, assign_results)
        num_total_pos = sum(inds.numel() for inds in pos_inds_list)
        num_total_neg = sum(inds.numel() for inds in neg_inds_list)
        return (labels_list, label_weights_list, bbox_targets_list,
                bbox_weights_list, num_total_pos, num_total_neg)

    def _get_target_single(self,
                           cls_score: Tensor,
                           bbox_pred: Tensor,
                           gt_bboxes: Tensor,
                           gt_labels: Tensor,
                           img_meta: dict,
                           assign_result=None) -> tuple:
        """Match one image (unless ``assign_result`` is given) and build its
        targets.

        Args:
            cls_score (Tensor): has shape (num_query, cls_out_channels).
            bbox_pred (Tensor): Normalised (cx, cy, w, h), shape (num_query, 4).
            gt_bboxes (Tensor): Absolute (x1, y1, x2, y2), shape (num_gts, 4).
            gt_labels (Tensor): has shape (num_gts, ).
            img_meta (dict): Has ``img_shape``.
            assign_result (AssignResult, optional): This image's assignment,
                e.g. from :meth:`assign_all`; None runs the assigner.

        Returns:
            tuple: labels (num_query, ) with ``num_classes`` for background,
            label_weights (num_query, ), bbox_targets (num_query, 4)
            normalised (cx, cy, w, h), bbox_weights (num_query, 4), pos_inds,
            neg_inds.
        """
        num_bboxes = bbox_pred.size(0)
        factor = self._image_factor(img_meta, bbox_pred)
        if assign_result is None:
            pred_instances = InstanceData(
                scores=cls_score,
                bboxes=bbox_cxcywh_to_xyxy(bbox_pred) * factor)
            gt_instances = InstanceData(bboxes=gt_bboxes, labels=gt_labels)
            assign_result = self.assigner.assign(pred_instances, gt_instances,
                                                 img_meta)
        pos_inds = torch.nonzero(
            assign_result.gt_inds > 0, as_tuple=False).squeeze(-1).unique()
        neg_inds = torch.nonzero(
            assign_result.gt_inds == 0, as_tuple=False).squeeze(-1).unique()
        pos_assigned_gt_inds = assign_result.gt_inds[pos_inds] - 1

        labels = gt_bboxes.new_full((num_bboxes, ),
                                    self.num_classes,
                                    dtype=torch.long)
        labels[pos_inds] = gt_labels[pos_assigned_gt_inds]
        label_weights = gt_bboxes.new_ones(num_bboxes)

        bbox_targets = torch.zeros_like(bbox_pred)
        bbox_weights = torch.zeros_like(bbox_pred)
        bbox_weights[pos_inds] = 1.0
        bbox_targets[pos_inds] = bbox_xyxy_to_cxcywh(
            gt_bboxes[pos_assigned_gt_inds] / factor)
        return (labels, label_weights, bbox_targets, bbox_weights, pos_inds,
                neg_inds)

    # --------------------------------------------------------- prediction
    def predict_by_feat(self,
                        all_cls_scores_list: List[Tensor],
                        all_bbox_preds_list: List[Tensor],
                        img_metas: List[dict],
                        rescale: bool = False) -> List[InstanceData]:
        """Detections from the last decoder layer of the last level (the
        3.x runner's form; mmdet 2.x's tuples: :meth:`get_bboxes`).

        Returns:
            list[InstanceData]: per image, ``bboxes`` (n, 4) absolute
            (x1, y1, x2, y2), ``scores`` (n, ), ``labels`` (n, ), with
            n = ``test_cfg['max_per_img']``.
        """
        cls_scores = all_cls_scores_list[-1][-1]
        bbox_preds = all_bbox_preds_list[-1][-1]
        return [
            self._get_bboxes_single(cls_scores[i], bbox_preds[i], img_meta,
                                    rescale)
            for i, img_meta in enumerate(img_metas)
        ]

    def _get_bboxes_single(self, cls_score: Tensor, bbox_pred: Tensor,
                           img_meta: dict, rescale: bool) -> InstanceData:
        """Top-scoring detections of one image.

        Args:
            cls_score (Tensor): Logits, has shape (num_query, C).
            bbox_pred (Tensor): Normalised (cx, cy, w, h), (num_query, 4).
            img_meta (dict): Has ``img_shape`` and, with ``rescale``,
                ``scale_factor`` (w_scale, h_scale).
            rescale (bool): Map boxes back to the original image.
        """
        max_per_img = self.test_cfg.get('max_per_img', self.num_query)
        img_h, img_w = img_meta['img_shape'][:2]
        if self.use_sigmoid:
            scores, indexes = cls_score.sigmoid().view(-1).topk(max_per_img)
            labels = indexes % self.num_classes
            bbox_pred = bbox_pred[indexes // self.num_classes]
        else:
            # background is never a detection: softmax over all classes, then
            # take the best real class of each query
            scores, labels = F.softmax(cls_score, dim=-1)[..., :-1].max(-1)
            scores, keep = scores.topk(min(max_per_img, scores.numel()))
            bbox_pred = bbox_pred[keep]
            labels = labels[keep]
        bboxes = bbox_cxcywh_to_xyxy(bbox_pred)
        bboxes[:, 0::2] = (bboxes[:, 0::2] * img_w).clamp(min=0, max=img_w)
        bboxes[:, 1::2] = (bboxes[:, 1::2] * img_h).clamp(min=0, max=img_h)
        if rescale:
            bboxes /= bboxes.new_tensor(img_meta['scale_factor']).repeat(
                (1, 2))
        return InstanceData(bboxes=bboxes, scores=scores, labels=labels)
