# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR with official DETR's mask head: panoptic segmentation (paper
section 4.4)."""
from typing import Dict, List, Sequence

import torch
from mmengine.structures import PixelData
from torch import Tensor

from mmdetr.extras.group_detr import GroupDETRHead
from mmdetr.models.detr import DETR
from mmdetr.models.set_targets import SetTargets
from mmdetr.registry import MODELS, build_model
from .instance_masks import instance_masks
from .mask_loss import matched_mask_targets
from .postprocess import DETRPanopticPostProcess

#: test_cfg keys of :class:`PanopticDETR` and their defaults (official)
DEFAULT_TEST_CFG = dict(
    panoptic_on=True,
    instance_on=True,
    mask_thr=0.5,
    panoptic=dict(threshold=0.85, min_area=4, crop_padding=False))


@MODELS.register_module()
class PanopticDETR(DETR):
    """DETR that also predicts one mask per query, as official DETR's
    ``DETRsegm``: boxes and classes (``pred_instances``), instance masks
    (``pred_instances.masks``, for COCO ``segm``) and a panoptic
    segmentation (``pred_panoptic_seg``, for ``CocoPanopticMetric``).

    The mask head (:class:`DETRMaskHead`) reads what
    :meth:`DETR.forward_outputs` returns: the last decoder layer's
    ``hidden_states``, the encoder ``memory`` with its ``memory_mask``, the
    input projection ``proj_feat`` and three backbone levels of ``feats``
    (strides 16, 8 and 4: ``mask_feat_indices``; the backbone must return
    them, e.g. ResNet with ``out_indices=(0, 1, 2, 3)``; the transformer
    still reads the last).

    Training, as official ``--masks --frozen_weights``: the detector
    (backbone, neck, head) is loaded from a trained box model and frozen
    (``freeze_detector``): no gradients, the backbone's normalisation in
    evaluation mode; only the mask head learns. The losses are DETR's box
    losses on every decoder layer (constants for a frozen detector, logged)
    and, on the last layer's matched queries, the sigmoid focal and dice
    losses of their masks (:class:`DETRMaskLoss`, normalised by the number
    of ground truths as the box losses), from the same matching: the head
    matches once (:meth:`DETRHead.loss` returns the losses with the
    matching they were scored against) and only the matched queries' masks
    are computed.

    Classes are things first, then stuff (mmdet's ``CocoPanopticDataset``
    order): labels ``0 .. num_things_classes - 1`` are things.

    ``test_cfg`` (besides DETR's ``max_per_img``):

    - ``panoptic_on`` (bool): fill ``pred_panoptic_seg`` (default True);
    - ``instance_on`` (bool): add ``masks`` to ``pred_instances``, one per
      thing detection (default True);
    - ``mask_thr`` (float): the instance masks' probability threshold
      (official 0.5);
    - ``panoptic`` (dict): :class:`DETRPanopticPostProcess`'s arguments
      (official: ``threshold=0.85, min_area=4``).

    Args:
        mask_head (dict): :class:`DETRMaskHead` config; its ``embed_dims``
            and ``num_heads`` those of the transformer, its
            ``in_channels`` those of the ``mask_feat_indices`` levels.
        num_things_classes (int): Thing classes among ``bbox_head``'s
            ``num_classes``.
        loss_mask (dict): Mask loss config. Defaults to
            ``DETRMaskLoss`` with official weights (focal 1, dice 1).
        mask_feat_indices (sequence[int]): Indices in the backbone's
            outputs of the stride 16, 8 and 4 levels. Defaults to
            ``(2, 1, 0)``.
        freeze_detector (bool): Train the mask head alone. Defaults to True.
        **kwargs: :class:`DETR`'s.
    """

    def __init__(self,
                 mask_head: dict,
                 num_things_classes: int,
                 loss_mask: dict = dict(type='DETRMaskLoss'),
                 mask_feat_indices: Sequence[int] = (2, 1, 0),
                 freeze_detector: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        head = self.bbox_head
        if head.use_sigmoid:
            raise ValueError(
                'PanopticDETR: bbox_head.loss_cls must be a softmax '
                'classifier (use_sigmoid=False): the panoptic merge reads '
                '"no object" as the last class, as official DETR')
        if isinstance(head, GroupDETRHead):
            raise TypeError(
                f'PanopticDETR: bbox_head type {type(head).__name__} has a '
                'loss of its own: it matches its query groups as extra '
                "images, and the mask loss reads the matching of the batch's "
                'images (use DETRHead)')
        num_classes = head.num_classes
        if isinstance(num_things_classes, bool) or not isinstance(
                num_things_classes, int) or not \
                0 <= num_things_classes <= num_classes:
            raise ValueError(
                'PanopticDETR: num_things_classes must be an integer in '
                f'[0, bbox_head.num_classes={num_classes}], got '
                f'{num_things_classes!r}')
        indices = tuple(mask_feat_indices)
        if len(indices) != 3:
            raise ValueError(
                'PanopticDETR: mask_feat_indices names the backbone outputs '
                'at strides 16, 8 and 4 (3 of them), got '
                f'{mask_feat_indices!r}')
        out_indices = getattr(self.backbone, 'out_indices', None)
        if self.neck is None and out_indices is not None and \
                max(indices) >= len(out_indices):
            raise ValueError(
                f'PanopticDETR: model.backbone.out_indices={out_indices} '
                f'gives {len(out_indices)} feature maps, but the mask head '
                f'reads maps {indices} (mask_feat_indices, strides 16, 8, '
                '4): set out_indices=(0, 1, 2, 3) on a ResNet')
        self.num_things_classes = num_things_classes
        self.mask_feat_indices = indices
        self.mask_head = build_model(mask_head)
        self.loss_mask = build_model(loss_mask)
        self.freeze_detector = freeze_detector
        if freeze_detector:
            for name, module in self.named_children():
                if name != 'mask_head':
                    module.requires_grad_(False)
        test_cfg = dict(DEFAULT_TEST_CFG, **(self.test_cfg or {}))
        self.panoptic_cfg = test_cfg
        self.panoptic_postprocess = DETRPanopticPostProcess(
            **dict(DEFAULT_TEST_CFG['panoptic'], **test_cfg['panoptic']))

    def train(self, mode: bool = True) -> 'PanopticDETR':
        """Set the training mode; a frozen detector's backbone (and neck)
        stays in evaluation mode: its normalisation layers neither use nor
        update batch statistics (official DETR's backbone has frozen
        BatchNorm). The transformer follows ``mode`` (dropout on in
        training, as official DETR keeps it while training the masks)."""
        super().train(mode)
        if self.freeze_detector:
            self.backbone.train(False)
            if self.neck is not None:
                self.neck.train(False)
        return self

    # ------------------------------------------------------------ masks
    def mask_logits(self, outputs: Dict[str, Tensor],
                    queries=None) -> Tensor:
        """The mask head on :meth:`forward_outputs`' last decoder layer.

        Args:
            outputs (dict): :meth:`forward_outputs`' dict.
            queries (tuple[Tensor, Tensor], optional): ``(image, query)``
                indices of the queries to compute. Defaults to None (all).

        Returns:
            Tensor: Mask logits at stride 4 of the padded batch, has shape
            (bs, num_query, h_4, w_4), or (n, h_4, w_4) for ``queries``.
        """
        feats = outputs['feats']
        fpn_feats = [feats[i] for i in self.mask_feat_indices]
        expected = getattr(self.mask_head, 'in_channels', None)
        got = tuple(f.shape[1] for f in fpn_feats)
        if expected is not None and tuple(expected) != got:
            raise ValueError(
                f'PanopticDETR: model.mask_head.in_channels={tuple(expected)}'
                f' but the backbone levels {self.mask_feat_indices} '
                f'(mask_feat_indices) have {got} channels')
        return self.mask_head(outputs['hidden_states'][-1],
                              outputs['memory'], outputs['memory_mask'],
                              outputs['proj_feat'], fpn_feats, queries)

    # ------------------------------------------------------------- loss
    def loss_by_outputs(self, outputs: Dict[str, Tensor], batch_data_samples,
                        img_metas: List[dict]) -> Dict[str, Tensor]:
        """DETR's set loss on every decoder layer, and the mask losses of
        the last layer's matched queries.

        Args:
            outputs (dict): :meth:`forward_outputs`' dict.
            batch_data_samples (list[DetDataSample]): ``gt_instances`` with
                ``bboxes``, ``labels`` and ``masks`` (one per segment,
                things and stuff: ``LoadPanopticTargets``), at the image's
                size (``img_shape``) or padded to the batch.
            img_metas (list[dict]): Per image, ``img_shape`` and
                ``batch_input_shape``.

        Returns:
            dict[str, Tensor]: :meth:`DETRHead.loss`'s and ``loss_mask``
            (focal), ``loss_dice``.
        """
        gts = [ds.gt_instances for ds in batch_data_samples]
        missing = [i for i, gt in enumerate(gts) if 'masks' not in gt]
        if missing:
            raise KeyError(
                f'PanopticDETR: the data samples {missing} of the batch have '
                'no gt_instances.masks; load them in the train pipeline '
                "(dict(type='mmdetr.LoadPanopticTargets'))")
        targets = SetTargets.build([gt.bboxes for gt in gts],
                                   [gt.labels for gt in gts], img_metas)
        losses, matches = self.bbox_head.loss(outputs['cls_scores'],
                                              outputs['bbox_preds'], targets)
        # the last decoder layer's matches
        img, query, gt_index = matches.indices[-1]
        preds = self.mask_logits(outputs, (img, query))
        device = preds.device
        gt_masks = [
            gt.masks.to_tensor(dtype=torch.bool, device=device)
            if hasattr(gt.masks, 'to_tensor') else gt.masks.to(device)
            for gt in gts
        ]
        canvas = tuple(img_metas[0]['batch_input_shape'][:2])
        with torch.autocast(device.type, enabled=False):
            mask_targets = matched_mask_targets(gt_masks, img, gt_index,
                                                canvas)
            losses.update(
                self.loss_mask(preds.float(), mask_targets,
                               matches.num_boxes[-1]))
        return losses

    # ------------------------------------------------------- prediction
    def predict_by_outputs(self, outputs: Dict[str, Tensor],
                           img_metas: List[dict], rescale: bool) -> list:
        """Detections with their masks, and the panoptic segmentation.

        Returns:
            list[dict]: per image, ``ins_results`` (``InstanceData``:
            DETR's detections of thing classes, with ``masks`` (n, H, W)
            bool when ``instance_on``) and, when ``panoptic_on``,
            ``pan_results``
            (``PixelData`` whose ``sem_seg`` (1, H, W) holds mmdet's
            panoptic encoding); (H, W) is the original image size with
            ``rescale``, else ``img_shape``.
        """
        detections = super().predict_by_outputs(outputs, img_metas, rescale)
        cfg = self.panoptic_cfg
        cls_scores = outputs['cls_scores'][-1]
        # the queries of the detections, in their order (the ranking of
        # DETRHead.predict_by_feat)
        scores = cls_scores.softmax(-1)[..., :-1].max(-1)[0]
        det_queries = scores.topk(self.bbox_head.num_detections(), dim=1)[1]
        masks = self.mask_logits(outputs) if (
            cfg['instance_on'] or cfg['panoptic_on']) else None
        canvas = tuple(img_metas[0]['batch_input_shape'][:2])
        is_thing = [label < self.num_things_classes
                    for label in range(self.bbox_head.num_classes)]
        results = []
        for i, meta in enumerate(img_metas):
            img_shape = tuple(meta['img_shape'][:2])
            out_shape = tuple(meta['ori_shape'][:2]) if rescale else img_shape
            # instances are things (COCO's instances json has no stuff)
            things = detections[i].labels < self.num_things_classes
            instances = detections[i][things]
            result = dict(ins_results=instances)
            if cfg['instance_on']:
                instances.masks = instance_masks(
                    masks[i, det_queries[i][things]], img_shape, canvas,
                    out_shape, cfg['mask_thr'])
            if cfg['panoptic_on']:
                result['pan_results'] = PixelData(
                    sem_seg=self.panoptic_postprocess(
                        cls_scores[i], masks[i], is_thing, img_shape,
                        out_shape, canvas))
            results.append(result)
        return results

    def add_pred_to_datasample(self, data_samples, results_list: list):
        """Write :meth:`predict_by_outputs`' results into the data samples:
        ``pred_instances`` and ``pred_panoptic_seg``."""
        for data_sample, result in zip(data_samples, results_list):
            data_sample.pred_instances = result['ins_results']
            if 'pan_results' in result:
                data_sample.pred_panoptic_seg = result['pan_results']
        return data_samples
