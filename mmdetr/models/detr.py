# Copyright (c) mmdetr contributors. All rights reserved.
"""The DETR detector: backbone -> DETRHead."""
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from torch import Tensor

from mmdetr.models.frozen_batch_norm import (fold_frozen_batch_norms,
                                             freeze_batch_norms,
                                             frozen_norm_slots,
                                             restore_frozen_batch_norms)
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
    :class:`DETRHead`, which owns the projection, the transformer and the
    predictors. Works with mmdet 3.x data samples and
    ``DetDataPreprocessor``, in the runner's ``loss``, ``predict`` and
    ``tensor`` modes.

    Both ``loss`` and ``predict`` go through :meth:`forward_outputs`, which
    returns everything the network computed (backbone features, encoder
    memory, padding mask, decoder states, predictions): a subclass that
    adds a head or a loss reads what it needs there
    (:meth:`loss_by_outputs`, :meth:`predict_by_outputs`).

    Two choices of how, not what, the backbone computes:

    - its BatchNorm layers become :class:`FrozenBatchNorm2d`: while frozen
      (evaluation mode, no trainable affine parameters, as DETR trains them)
      they do not keep their inputs for the backward pass; otherwise they
      are plain BatchNorm; with ``fold_frozen_bn``, each one that follows a
      convolution is applied by that convolution (scaled weight plus bias)
      instead of as a separate pass over the activation. A SyncBatchNorm
      conversion (``sync_bn='torch'``, ``convert_sync_batchnorm``) converts
      the trainable ones and leaves the frozen ones as they are (undone at
      the next forward), so the outputs do not change;
    - with ``channels_last``, its weights and input use the channels-last
      memory format, the native layout of oneDNN (CPU) and of tensor-core
      convolutions (GPU, mixed precision): no layout conversion around every
      convolution. The features then flatten to (bs, h*w, c) without a copy.

    Args:
        backbone (dict): Backbone config, e.g. mmdet's ``ResNet`` with
            ``out_indices=(3, )``.
        bbox_head (dict): :class:`DETRHead` config.
        neck (dict, optional): A neck between backbone and head; DETR has
            none. Defaults to None.
        train_cfg (dict, optional): Passed to the head (``assigner``).
        test_cfg (dict, optional): Passed to the head (``max_per_img``).
        data_preprocessor (dict, optional): e.g. ``DetDataPreprocessor``.
        channels_last (bool): Run the backbone in channels-last memory
            format. Defaults to True.
        fold_frozen_bn (bool): Fold the backbone's frozen BatchNorm layers
            into the convolutions before them (same outputs up to float
            rounding; forward hooks on those convolutions then see the
            normalised output). Defaults to True.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 bbox_head: dict,
                 neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 channels_last: bool = True,
                 fold_frozen_bn: bool = True,
                 init_cfg=None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = build_model(backbone)
        # frozen BN (DETR's backbone) as a fixed affine map: same numbers,
        # half the backbone's activation memory in training
        freeze_batch_norms(self.backbone)
        if fold_frozen_bn:
            fold_frozen_batch_norms(self.backbone)
        # where the frozen BatchNorms sit, to undo a SyncBatchNorm
        # conversion of the permanently frozen ones (see extract_feat)
        permanent = bool(getattr(self.backbone, 'norm_eval', False))
        self._frozen_norm_slots = [
            (*slot, permanent) for slot in frozen_norm_slots(self.backbone)
        ]
        self.channels_last = channels_last
        if channels_last:
            # loading weights copies into these tensors, keeping the layout
            self.backbone.to(memory_format=torch.channels_last)
        self.neck = build_model(neck) if neck is not None else None
        bbox_head = dict(bbox_head)
        if train_cfg is not None:
            bbox_head['train_cfg'] = train_cfg
        if test_cfg is not None:
            bbox_head['test_cfg'] = test_cfg
        self.bbox_head = build_model(bbox_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone (and neck) features, each (bs, c, h, w)."""
        # sync_bn='torch' (multi-GPU configs) converts every BatchNorm, the
        # frozen ones too; those have no batch statistics to synchronise and
        # their folded convolutions would apply them twice: put them back
        restore_frozen_batch_norms(self._frozen_norm_slots)
        if self.channels_last:
            batch_inputs = batch_inputs.contiguous(
                memory_format=torch.channels_last)
        x = self.backbone(batch_inputs)
        if self.neck is not None:
            x = self.neck(x)
        return x

    @staticmethod
    def _img_metas(batch_data_samples) -> List[dict]:
        return [data_sample.metainfo for data_sample in batch_data_samples]

    def forward_outputs(self, batch_inputs: Tensor,
                        img_metas: List[dict]) -> Dict[str, Tensor]:
        """Backbone, then the head on the last feature map.

        Args:
            batch_inputs (Tensor): Padded images, has shape (bs, 3, H, W).
            img_metas (list[dict]): Per image, ``img_shape`` and
                ``batch_input_shape``.

        Returns:
            dict: ``feats``, the tuple of backbone (and neck) feature maps,
            and what :meth:`DETRHead.forward_outputs` returns for the last
            one: ``proj_feat``, ``memory_mask``, ``pos_embed``, ``memory``,
            ``hidden_states``, ``cls_scores``, ``bbox_preds``.
        """
        feats = self.extract_feat(batch_inputs)
        outputs = self.bbox_head.forward_outputs(feats[-1], img_metas)
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
        img_metas = self._img_metas(batch_data_samples)
        outputs = self.forward_outputs(batch_inputs, img_metas)
        return self.loss_by_outputs(outputs, batch_data_samples, img_metas)

    def loss_by_outputs(self, outputs: Dict[str, Tensor], batch_data_samples,
                        img_metas: List[dict]) -> Dict[str, Tensor]:
        """The set loss of :meth:`forward_outputs`' predictions."""
        return self.bbox_head.loss(
            [outputs['cls_scores']], [outputs['bbox_preds']],
            [ds.gt_instances.bboxes for ds in batch_data_samples],
            [ds.gt_instances.labels for ds in batch_data_samples], img_metas)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples,
                rescale: bool = True):
        """Detections of a batch, written into ``pred_instances`` of each
        data sample (boxes in original-image pixels when ``rescale``).

        Runs under ``torch.inference_mode``: no autograd bookkeeping at all
        (stricter and cheaper than the test loop's ``no_grad``); the
        detections are inference tensors, read-only for autograd.
        """
        with torch.inference_mode():
            img_metas = self._img_metas(batch_data_samples)
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
        img_metas = self._img_metas(batch_data_samples)
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
