# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's head: input projection, transformer, class and box predictors, the
set loss over every decoder layer, and the conversion to detections."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.distributed as dist
import torch.nn.functional as F
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.models.utils import multi_apply
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdetr.compat.mmdet2_config import (is_mmdet2_transformer,
                                         translate_transformer)
from mmdetr.compat.mmdet2_head import Mmdet2HeadMixin
from mmdetr.models.duplicate_weight import (DUPLICATE_WEIGHT_LAYERS,
                                             duplicate_label_weights)
from mmdetr.models.hungarian_assigner import (BatchMatches, matched_labels,
                                               pad_ground_truths)
from mmdetr.models.match_cost import image_size_factors
from mmdetr.models.query_groups import groups_as_images
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
        num_query_groups (int): Training only: train with this many groups
            of ``num_query`` queries, each matched one-to-one on its own
            and blind to the others in the decoder's self-attention (Group
            DETR, :mod:`mmdetr.models.query_groups`). Inference always runs
            the first group alone, i.e. plain DETR. Defaults to 1 (DETR's
            own training).
        duplicate_cls_weight (float, optional): Training only: the
            no-object weight of unmatched predictions whose box overlaps a
            ground truth with IoU > ``duplicate_iou_thr`` (would-be
            duplicates), instead of ``bg_cls_weight``
            (:mod:`mmdetr.models.duplicate_weight`). Defaults to None
            (DETR's one weight for every unmatched prediction).
        duplicate_iou_thr (float): IoU above which an unmatched prediction
            is a would-be duplicate. Defaults to 0.5.
        duplicate_weight_layers (str): Which decoder layers' losses get
            ``duplicate_cls_weight``: ``'all'``, or ``'last'``, the layer
            whose predictions inference returns (the others keep DETR's
            weights). The one-layer calls of the mmdet 2.x interface
            (:meth:`loss_single`, :meth:`get_targets`) cannot tell which
            layer they are given and weigh it in both cases. Defaults to
            ``'all'``.
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
                 num_query_groups: int = 1,
                 duplicate_cls_weight: Optional[float] = None,
                 duplicate_iou_thr: float = 0.5,
                 duplicate_weight_layers: str = 'all',
                 init_cfg=None,
                 type: Optional[str] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_query_groups, int) or num_query_groups < 1:
            raise ValueError('DETRHead: num_query_groups must be an integer '
                             f'>= 1, got {num_query_groups!r}')
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
        self._check_duplicate_weight(duplicate_cls_weight, duplicate_iou_thr,
                                     duplicate_weight_layers)
        self.duplicate_cls_weight = duplicate_cls_weight
        self.duplicate_iou_thr = duplicate_iou_thr
        self.duplicate_weight_layers = duplicate_weight_layers

        if train_cfg:
            if 'assigner' not in train_cfg:
                raise KeyError('DETRHead: train_cfg needs an "assigner"')
            self.assigner = build_task_util(train_cfg['assigner'])
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg or {}

        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_query = num_query
        self.num_query_groups = num_query_groups
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

    def _check_duplicate_weight(self, weight, iou_thr, layers) -> None:
        if layers not in DUPLICATE_WEIGHT_LAYERS:
            raise ValueError('DETRHead: duplicate_weight_layers must be one '
                             f'of {DUPLICATE_WEIGHT_LAYERS}, got {layers!r}')
        if weight is None:
            return
        if isinstance(weight, bool) or not isinstance(
                weight, (int, float)) or not weight > 0:
            raise ValueError('DETRHead: duplicate_cls_weight must be a '
                             f'number > 0 or None, got {weight!r}')
        if self.use_sigmoid or not self.bg_cls_weight:
            raise ValueError(
                'DETRHead: duplicate_cls_weight needs the softmax '
                'classification loss with loss_cls.bg_cls_weight > 0, got '
                f'use_sigmoid={self.use_sigmoid}, bg_cls_weight='
                f'{self.bg_cls_weight!r}')
        if isinstance(iou_thr, bool) or not isinstance(
                iou_thr, (int, float)) or not 0 <= iou_thr < 1:
            raise ValueError('DETRHead: duplicate_iou_thr must be in [0, 1), '
                             f'got {iou_thr!r}')

    def _init_layers(self) -> None:
        self.input_proj = nn.Conv2d(
            self.in_channels, self.embed_dims, kernel_size=1)
        self.query_embedding = nn.Embedding(self.num_query, self.embed_dims)
        if self.num_query_groups > 1:
            # the other groups' queries: training only, never read by
            # inference (the first group is ``query_embedding`` itself)
            self.group_query_embedding = nn.Embedding(
                (self.num_query_groups - 1) * self.num_query,
                self.embed_dims)
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
                  (num_decoder_layers, bs, num_query, cls_out_channels);
                  in training with ``num_query_groups`` K > 1,
                  (num_decoder_layers, bs, K * num_query, cls_out_channels).
                - all_bbox_preds: normalised (cx, cy, w, h), has shape
                  (num_decoder_layers, bs, num_query, 4) (K * num_query
                  likewise).
        """
        masks = batch_padding_mask(x, img_metas)
        x = self.input_proj(x)
        masks = F.interpolate(
            masks[None], size=x.shape[-2:]).to(torch.bool)[0]
        pos_embed = self.positional_encoding(masks)
        queries, num_groups = self._queries()
        outs_dec, _ = self.transformer(x, masks, queries, pos_embed,
                                       num_groups)
        all_cls_scores = self.fc_cls(outs_dec)
        all_bbox_preds = self.fc_reg(self.reg_ffn(outs_dec)).sigmoid()
        return all_cls_scores, all_bbox_preds

    def _queries(self) -> Tuple[Tensor, int]:
        """The decoder's queries (n, dims) and the number of groups in them:
        every group in training, the first (DETR's own) otherwise."""
        if self.training and self.num_query_groups > 1:
            return torch.cat([
                self.query_embedding.weight,
                self.group_query_embedding.weight
            ]), self.num_query_groups
        return self.query_embedding.weight, 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint trained with query groups loads into a model without
        # them (e.g. a test or deployment config): the extra groups are
        # training-only and inference never reads them
        key = prefix + 'group_query_embedding.weight'
        if self.num_query_groups == 1:
            state_dict.pop(key, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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

        With K query groups in the predictions (training with
        ``num_query_groups``), each group is matched and scored as one more
        copy of the batch
        (:func:`~mmdetr.models.query_groups.groups_as_images`).

        Every decoder layer and image is matched in one batched pass
        (:meth:`match`), then each layer's losses are computed from its
        matches. Matching and losses run in float32 with autocast off, so
        mixed-precision training changes neither the assignment nor the loss
        arithmetic.

        The host waits for the device once here, whatever the number of
        layers and images: for the cost matrix, which scipy solves on the
        host. The matches go back in one non-blocking copy, the targets are
        gathered from them without data-dependent ops (no ``nonzero`` or
        ``unique``), and the number of matched boxes, known on the host from
        the matches, is all-reduced across processes once for all layers,
        as a tensor the losses divide by without reading it.

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
        num_groups = all_cls_scores.size(2) // self.num_query
        if num_groups > 1:
            all_cls_scores, all_bbox_preds, (
                gt_bboxes_list, gt_labels_list,
                img_metas) = groups_as_images(all_cls_scores, all_bbox_preds,
                                              num_groups, gt_bboxes_list,
                                              gt_labels_list, img_metas)
        with torch.autocast(all_cls_scores.device.type, enabled=False):
            all_cls_scores = all_cls_scores.float()
            all_bbox_preds = all_bbox_preds.float()
            gt_bboxes_list = [b.float() for b in gt_bboxes_list]
            matches = self.match(all_cls_scores, all_bbox_preds,
                                 gt_bboxes_list, gt_labels_list, img_metas)
            losses_cls, losses_bbox, losses_iou = self._set_losses(
                all_cls_scores, all_bbox_preds, gt_bboxes_list,
                gt_labels_list, img_metas, matches)

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

    def match(self, all_cls_scores: Tensor, all_bbox_preds: Tensor,
              gt_bboxes_list: List[Tensor], gt_labels_list: List[Tensor],
              img_metas: List[dict]) -> BatchMatches:
        """Match the predictions of every decoder layer and image at once.

        The one matching path of the head: :meth:`loss`,
        :meth:`loss_single`, :meth:`get_targets` and
        :meth:`_get_target_single` all come here (one layer, or one image,
        being a batch of one).

        Args:
            all_cls_scores (Tensor): Logits, has shape
                (num_sets, bs, num_query, cls_out_channels).
            all_bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
                (num_sets, bs, num_query, 4).
            gt_bboxes_list, gt_labels_list, img_metas: as :meth:`loss`.

        Returns:
            :obj:`BatchMatches`: with ``num_sets`` sets.
        """
        # the matching is a constant of the loss: no graph for it
        with torch.no_grad():
            factors = image_size_factors(img_metas, all_bbox_preds)
            bboxes = bbox_cxcywh_to_xyxy(all_bbox_preds) * factors[:, None]
            if hasattr(self.assigner, 'match'):
                return self.assigner.match(all_cls_scores, bboxes,
                                           gt_labels_list, gt_bboxes_list,
                                           img_metas)
            # an assigner with mmdet's one-image interface only: its assign
            # per layer and image, then the same structure
            results = [[
                self.assigner.assign(
                    InstanceData(scores=cls_scores[i], bboxes=layer[i]),
                    InstanceData(bboxes=gt_bboxes_list[i],
                                 labels=gt_labels_list[i]), img_metas[i])
                for i in range(len(img_metas))
            ] for cls_scores, layer in zip(all_cls_scores, bboxes)]
            return BatchMatches.from_assign_results(results,
                                                    all_cls_scores.device)

    def assign_all(self, all_cls_scores: Tensor, all_bbox_preds: Tensor,
                   gt_bboxes_list: List[Tensor], gt_labels_list: List[Tensor],
                   img_metas: List[dict]) -> List[list]:
        """:meth:`match` as mmdet's :obj:`AssignResult`, ``[layer][image]``.
        """
        matches = self.match(all_cls_scores, all_bbox_preds, gt_bboxes_list,
                             gt_labels_list, img_metas)
        gt_labels, _ = pad_ground_truths(gt_labels_list, gt_bboxes_list)
        return matches.assign_results(gt_labels)

    def _set_losses(self, cls_scores: Tensor, bbox_preds: Tensor,
                    gt_bboxes_list: List[Tensor], gt_labels_list: List[Tensor],
                    img_metas: List[dict], matches: BatchMatches
                    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Losses of every set of predictions from their matches.

        The box losses see the matched predictions only (gathered by index,
        as the official DETR): the same sums as mmdet's zero-weighted
        unmatched boxes, without mmdet's ``torch.any(weight > 0)`` check,
        which reads a device value on the host.

        Args:
            cls_scores (Tensor): (num_sets, bs, num_query, cls_out_channels).
            bbox_preds (Tensor): (num_sets, bs, num_query, 4) normalised
                (cx, cy, w, h).
            gt_bboxes_list, gt_labels_list, img_metas: as :meth:`loss`.
            matches (BatchMatches): from :meth:`match` for these sets.

        Returns:
            tuple[list[Tensor], list[Tensor], list[Tensor]]: per set,
            loss_cls, loss_bbox, loss_iou.
        """
        num_sets, bs, num_query = cls_scores.shape[:3]
        gt_labels, gt_bboxes = pad_ground_truths(gt_labels_list,
                                                 gt_bboxes_list,
                                                 bbox_preds.dtype)
        factors = image_size_factors(img_metas, bbox_preds)  # (bs, 4)
        labels = self._target_labels(matches, gt_labels)
        cls_avg_factors, box_avg_factors = self._avg_factors(
            matches, bs * num_query)
        self._class_weight_to(cls_scores.device)
        losses_cls, losses_bbox, losses_iou = [], [], []
        for n in range(num_sets):
            losses_cls.append(
                self.loss_cls(
                    cls_scores[n].reshape(-1, self.cls_out_channels),
                    labels[n].reshape(-1),
                    self._label_weights(
                        bbox_preds[n], gt_bboxes, labels[n], factors,
                        last_layer=n == num_sets - 1),
                    avg_factor=cls_avg_factors[n]))
            pos_pred = matches.pos_pred_of(n)
            pred = bbox_preds[n].reshape(-1, 4)[pos_pred]
            factor = factors[pos_pred // num_query]
            target = bbox_xyxy_to_cxcywh(
                gt_bboxes.reshape(-1, 4)[matches.pos_gt_of(n)] / factor)
            losses_iou.append(
                self.loss_iou(
                    bbox_cxcywh_to_xyxy(pred) * factor,
                    bbox_cxcywh_to_xyxy(target) * factor,
                    avg_factor=box_avg_factors[n]))
            losses_bbox.append(
                self.loss_bbox(pred, target, avg_factor=box_avg_factors[n]))
        return losses_cls, losses_bbox, losses_iou

    def _target_labels(self, matches: BatchMatches,
                       gt_labels: Tensor) -> Tensor:
        """(num_sets, bs, num_query) class targets, ``num_classes`` for
        background; ``gt_labels`` padded (bs, max_gts)."""
        labels = matched_labels(matches.gt_inds, gt_labels)
        return labels.masked_fill(labels < 0, self.num_classes)

    def _label_weights(self,
                       bbox_preds: Tensor,
                       gt_bboxes: Tensor,
                       labels: Tensor,
                       factors: Tensor,
                       last_layer: bool = True) -> Tensor:
        """(bs * num_query, ) weights of one set's classification loss: all
        1 (DETR), or heavier on would-be duplicates with
        ``duplicate_cls_weight`` (on every layer, or on the last one only
        with ``duplicate_weight_layers='last'``). ``bbox_preds`` (bs,
        num_query, 4) normalised (cx, cy, w, h), ``gt_bboxes`` padded (bs,
        max_gts, 4), ``labels`` (bs, num_query), ``factors`` (bs, 4)."""
        if self.duplicate_cls_weight is None or (
                self.duplicate_weight_layers == 'last' and not last_layer):
            return bbox_preds.new_ones(labels.numel())
        return duplicate_label_weights(
            bbox_cxcywh_to_xyxy(bbox_preds) * factors[:, None], gt_bboxes,
            labels, self.num_classes, self.bg_cls_weight,
            self.duplicate_cls_weight, self.duplicate_iou_thr)

    def _avg_factors(self, matches: BatchMatches, num_preds: int):
        """Normalisers of the classification and box losses, per set.

        The class normaliser is the total class weight of the predictions
        (matched: 1, unmatched: ``bg_cls_weight``), the box normaliser the
        number of matched boxes averaged over all processes; both at least
        1. Both are host numbers from the matches; with several processes
        the box one (and with ``sync_cls_avg_factor`` the class one) is
        all-reduced once for every set together, as a device tensor that
        the losses divide by without reading it on the host.

        Returns:
            tuple[list, list]: per set, floats or 0-dim tensors.
        """
        num_pos = matches.num_pos
        cls_factors = [
            p * 1.0 + (num_preds - p) * self.bg_cls_weight for p in num_pos
        ]
        if not (dist.is_available() and dist.is_initialized()):
            return ([max(c, 1) for c in cls_factors],
                    [float(max(p, 1)) for p in num_pos])
        num_sets = len(num_pos)
        values = matches.num_pos_device
        if self.sync_cls_avg_factor:
            values = torch.cat([
                values, values + (num_preds - values) * self.bg_cls_weight
            ])
        values = reduce_mean(values).clamp(min=1)
        box_factors = list(values[:num_sets].unbind())
        if self.sync_cls_avg_factor:
            cls_factors = list(values[num_sets:].unbind())
        else:
            cls_factors = [max(c, 1) for c in cls_factors]
        return cls_factors, box_factors

    def _class_weight_to(self, device: torch.device) -> None:
        # mmdet's CrossEntropyLoss copies its class_weight to the scores'
        # device at every call; kept there, that copy stays on the device
        weight = getattr(self.loss_cls, 'class_weight', None)
        if isinstance(weight, Tensor) and weight.device != device:
            self.loss_cls.class_weight = weight.to(device)

    def loss_single(self,
                    cls_scores: Tensor,
                    bbox_preds: Tensor,
                    gt_bboxes_list: List[Tensor],
                    gt_labels_list: List[Tensor],
                    img_metas: List[dict],
                    gt_bboxes_ignore_list: Optional[list] = None
                    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Loss of one decoder layer's output (mmdet 2.x's interface):
        matched here, as a batch of one set.

        Args:
            cls_scores (Tensor): has shape (bs, num_query, cls_out_channels).
            bbox_preds (Tensor): Normalised (cx, cy, w, h), has shape
                (bs, num_query, 4).
            gt_bboxes_list, gt_labels_list, img_metas: as :meth:`loss`.
            gt_bboxes_ignore_list (None): Not supported; must be None.

        Returns:
            tuple[Tensor, Tensor, Tensor]: loss_cls, loss_bbox, loss_iou.
        """
        if gt_bboxes_ignore_list is not None:
            raise NotImplementedError(
                'DETRHead: gt_bboxes_ignore is not supported')
        matches = self.match(cls_scores[None], bbox_preds[None],
                             gt_bboxes_list, gt_labels_list, img_metas)
        losses = self._set_losses(cls_scores[None], bbox_preds[None],
                                  gt_bboxes_list, gt_labels_list, img_metas,
                                  matches)
        return tuple(loss[0] for loss in losses)

    def get_targets(self,
                    cls_scores_list: List[Tensor],
                    bbox_preds_list: List[Tensor],
                    gt_bboxes_list: List[Tensor],
                    gt_labels_list: List[Tensor],
                    img_metas: List[dict],
                    gt_bboxes_ignore_list: Optional[list] = None,
                    *,
                    matches: Optional[BatchMatches] = None) -> tuple:
        """Dense targets of a batch for one decoder layer (mmdet 2.x's
        interface), matched here as a batch of one set unless ``matches``
        (one set, e.g. from :meth:`match`) is given.

        Args:
            cls_scores_list (list[Tensor]): Per image, (num_query, C).
            bbox_preds_list (list[Tensor]): Per image, (num_query, 4)
                normalised (cx, cy, w, h).
            gt_bboxes_list, gt_labels_list, img_metas: as :meth:`loss`.
            gt_bboxes_ignore_list (None): Not supported; must be None.
            matches (BatchMatches, optional): Keyword only.

        Returns:
            tuple: lists per image of labels (num_query, ) with
            ``num_classes`` for background, label weights (num_query, ), box
            targets (num_query, 4) normalised (cx, cy, w, h) and box weights
            (num_query, 4); then the total numbers of matched and unmatched
            predictions.
        """
        if gt_bboxes_ignore_list is not None and all(
                isinstance(r, AssignResult) for r in gt_bboxes_ignore_list):
            # NOTE transitional: before the mmdet 2.x signature came back,
            # the sixth argument was this layer's assignment per image
            # (tools/analysis_tools/benchmark.py passes it so); prefer
            # matches=head.match(...).select(layer)
            matches = BatchMatches.from_assign_results(
                [gt_bboxes_ignore_list], cls_scores_list[0].device)
            gt_bboxes_ignore_list = None
        if gt_bboxes_ignore_list is not None:
            raise NotImplementedError(
                'DETRHead: gt_bboxes_ignore is not supported')
        cls_scores = torch.stack(cls_scores_list)[None]
        bbox_preds = torch.stack(bbox_preds_list)[None]
        if matches is None:
            matches = self.match(cls_scores, bbox_preds, gt_bboxes_list,
                                 gt_labels_list, img_metas)
        gt_labels, gt_bboxes = pad_ground_truths(gt_labels_list,
                                                 gt_bboxes_list,
                                                 bbox_preds.dtype)
        labels = self._target_labels(matches, gt_labels)[0]
        pos = matches.gt_inds[0] > 0  # (bs, num_query)
        factors = image_size_factors(img_metas, bbox_preds)  # (bs, 4)
        label_weights = self._label_weights(bbox_preds[0], gt_bboxes, labels,
                                            factors).reshape(pos.shape)
        bbox_weights = pos[..., None].expand(*pos.shape, 4).to(
            bbox_preds.dtype)
        bbox_targets = torch.zeros_like(bbox_preds[0])
        if gt_bboxes.shape[1] > 0:
            # gather each prediction's ground truth (the first one for the
            # unmatched, zeroed by the weights below)
            index = (matches.gt_inds[0] - 1).clamp(min=0)
            boxes = gt_bboxes.gather(1, index[..., None].expand(
                *index.shape, 4))
            bbox_targets = bbox_xyxy_to_cxcywh(
                boxes / factors[:, None]) * bbox_weights
        num_total_pos = matches.num_pos[0]
        num_total_neg = pos.numel() - num_total_pos
        return (list(labels), list(label_weights), list(bbox_targets),
                list(bbox_weights), num_total_pos, num_total_neg)

    def _get_target_single(self,
                           cls_score: Tensor,
                           bbox_pred: Tensor,
                           gt_bboxes: Tensor,
                           gt_labels: Tensor,
                           img_meta: dict,
                           gt_bboxes_ignore: Optional[Tensor] = None) -> tuple:
        """Match one image and build its targets (mmdet 2.x's interface):
        :meth:`get_targets` on a batch of one image.

        Args:
            cls_score (Tensor): has shape (num_query, cls_out_channels).
            bbox_pred (Tensor): Normalised (cx, cy, w, h), shape (num_query, 4).
            gt_bboxes (Tensor): Absolute (x1, y1, x2, y2), shape (num_gts, 4).
            gt_labels (Tensor): has shape (num_gts, ).
            img_meta (dict): Has ``img_shape``.
            gt_bboxes_ignore (None): Not supported; must be None.

        Returns:
            tuple: labels (num_query, ) with ``num_classes`` for background,
            label_weights (num_query, ), bbox_targets (num_query, 4)
            normalised (cx, cy, w, h), bbox_weights (num_query, 4), pos_inds,
            neg_inds.
        """
        (labels, label_weights, bbox_targets, bbox_weights, _,
         _) = self.get_targets([cls_score], [bbox_pred], [gt_bboxes],
                               [gt_labels], [img_meta],
                               None if gt_bboxes_ignore is None else
                               [gt_bboxes_ignore])
        pos = bbox_weights[0][:, 0] > 0
        pos_inds = torch.nonzero(pos, as_tuple=False).squeeze(-1)
        neg_inds = torch.nonzero(~pos, as_tuple=False).squeeze(-1)
        return (labels[0], label_weights[0], bbox_targets[0], bbox_weights[0],
                pos_inds, neg_inds)

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
