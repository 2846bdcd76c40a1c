# Copyright (c) mmdetr contributors. All rights reserved.
"""The DETR detector: backbone -> DETRHead."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from torch import Tensor

from mmdetr.models.set_targets import SetTargets
from mmdetr.registry import MODELS, build_model

#: State-dict key prefixes (relative to the detector) of parameters that
#: only training extras have (an auxiliary head, extra query groups); a
#: model built without them skips these keys when it loads a checkpoint.
#: The extras add theirs (:func:`register_training_only`).
TRAINING_ONLY_PREFIXES: List[str] = []


def register_training_only(prefix: str) -> None:
    """Declare the state-dict keys under ``prefix`` (e.g. ``'aux_head.'``)
    training-only: inference never reads them, and a model without them
    loads a checkpoint that has them."""
    if prefix not in TRAINING_ONLY_PREFIXES:
        TRAINING_ONLY_PREFIXES.append(prefix)


@MODELS.register_module()
class DETR(BaseDetector):
    """End-to-End Object Detection with Transformers (Carion et al., 2020).

    A single-stage detector: the backbone's last feature map goes to
    :class:`DETRHead`, which owns the projection, the transformer, the
    predictors and the set loss. Works with mmdet 3.x data samples and
    ``DetDataPreprocessor``, in the runner's ``loss``, ``predict`` and
    ``tensor`` modes.

    Both ``loss`` and ``predict`` go through :meth:`forward_outputs`, which
    returns everything the network computed (backbone features, encoder
    memory, padding mask, decoder states, predictions): a subclass that
    adds a head or a loss reads what it needs there
    (:meth:`loss_by_outputs`, :meth:`predict_by_outputs`).

    Args:
        backbone (dict): Backbone config, e.g. mmdet's ``ResNet`` with
            ``out_indices=(3, )``.
        bbox_head (dict): :class:`DETRHead` config.
        neck (dict, optional): A neck between backbone and head; DETR has
            none. Defaults to None.
        train_cfg (dict, optional): Passed to the head (``assigner``).
        test_cfg (dict, optional): Passed to the head (``max_per_img``).
        data_preprocessor (dict, optional): e.g. ``DetDataPreprocessor``.
        speedups (list[dict]): Model transforms that change how, not what,
            the model computes, applied in order once it is built, e.g.
            ``dict(type='FusedAttention')`` (:mod:`mmdetr.speed`).
            Defaults to none: plain PyTorch.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 bbox_head: dict,
                 neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 speedups: Sequence[dict] = (),
                 init_cfg=None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = build_model(backbone)
        self.neck = build_model(neck) if neck is not None else None
        bbox_head = dict(bbox_head)
        if train_cfg is not None:
            bbox_head['train_cfg'] = train_cfg
        if test_cfg is not None:
            bbox_head['test_cfg'] = test_cfg
        self.bbox_head = build_model(bbox_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        for speedup in speedups:
            build_model(speedup)(self)

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone (and neck) features, each (bs, c, h, w)."""
        x = self.backbone(batch_inputs)
        if self.neck is not None:
            x = self.neck(x)
        return x

    def forward_outputs(self, batch_inputs: Tensor,
                        img_metas: List[dict]) -> Dict[str, Tensor]:
        """Backbone, then the head on the last feature map.

        Args:
            batch_inputs (Tensor): Padded images, has shape (bs, 3, H, W).
            img_metas (list[dict]): Per image, ``img_shape`` and
                ``batch_input_shape``.

        Returns:
            dict: ``feats``, the tuple of backbone (and neck) feature maps;
            what :meth:`DETRHead.forward_transformer` returns for the last
            one (``proj_feat``, ``memory_mask``, ``pos_embed``, ``memory``,
            ``hidden_states``); and every decoder layer's ``cls_scores``
            (L, bs, num_query, C + 1) and ``bbox_preds`` (L, bs, num_query,
            4), normalised (cx, cy, w, h).
        """
        head = self.bbox_head
        feats = self.extract_feat(batch_inputs)
        outputs = head.forward_transformer(
            feats[-1], head.padding_mask(feats[-1], img_metas))
        outputs['cls_scores'], outputs['bbox_preds'] = head.predict_layers(
            outputs['hidden_states'])
        outputs['feats'] = feats
        return outputs

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        """Losses of a batch.

        Args:
            batch_inputs (Tensor): Padded images, has shape (bs, 3, H, W).
            batch_data_samples (list[DetDataSample]): With ``gt_instances``
                and the meta set by ``DetDataPreprocessor``
                (``img_shape``, ``batch_input_shape``).

        Returns:
            dict[str, Tensor]: see :meth:`DETRHead.loss`.
        """
        img_metas = [s.metainfo for s in batch_data_samples]
        outputs = self.forward_outputs(batch_inputs, img_metas)
        return self.loss_by_outputs(outputs, batch_data_samples, img_metas)

    def loss_by_outputs(self, outputs: Dict[str, Tensor], batch_data_samples,
                        img_metas: List[dict]) -> Dict[str, Tensor]:
        """The set loss of :meth:`forward_outputs`' predictions against the
        batch's targets, built once here."""
        gts = [s.gt_instances for s in batch_data_samples]
        targets = SetTargets.build([gt.bboxes for gt in gts],
                                   [gt.labels for gt in gts], img_metas)
        return self.bbox_head.loss(outputs['cls_scores'],
                                   outputs['bbox_preds'], targets)[0]

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples,
                rescale: bool = True):
        """Detections of a batch, written into ``pred_instances`` of each
        data sample (boxes in original-image pixels when ``rescale``), under
        ``torch.inference_mode`` (no autograd bookkeeping at all)."""
        with torch.inference_mode():
            img_metas = [s.metainfo for s in batch_data_samples]
            outputs = self.forward_outputs(batch_inputs, img_metas)
            results = self.predict_by_outputs(outputs, img_metas, rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def predict_by_outputs(self, outputs: Dict[str, Tensor],
                           img_metas: List[dict], rescale: bool) -> list:
        """Detections (``InstanceData`` per image) from the last decoder
        layer of :meth:`forward_outputs`."""
        return self.bbox_head.predict_by_feat(
            [outputs['cls_scores']], [outputs['bbox_preds']], img_metas,
            rescale=rescale)

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        """Raw head outputs: per level, all-layer class scores and boxes."""
        if batch_data_samples is None:
            raise ValueError('DETR needs data samples (with img_shape and '
                             'batch_input_shape) to build its padding mask')
        img_metas = [s.metainfo for s in batch_data_samples]
        return self.bbox_head(self.extract_feat(batch_inputs), img_metas)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint trained with training-only parts (an auxiliary head,
        # extra query groups) loads into a model without them, e.g. a test,
        # deployment or fine-tuning config: inference never reads them
        own = self.state_dict(keep_vars=True).keys()
        for key in [k for k in state_dict if k.startswith(prefix)]:
            name = key[len(prefix):]
            if name not in own and any(
                    name.startswith(p) for p in TRAINING_ONLY_PREFIXES):
                state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
