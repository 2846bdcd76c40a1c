# Copyright (c) mmdetr contributors. All rights reserved.
"""The DETR detector: backbone -> DETRHead."""
from collections import OrderedDict
from contextlib import nullcontext
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from mmdet.models.detectors.base import BaseDetector
from mmengine.logging import MessageHub
from torch import Tensor

from mmdetr.models.aux_dense_head import (AUX_HEAD_PREFIX, aux_head_losses,
                                           check_aux_head, encoder_memory)
from mmdetr.models.frozen_batch_norm import (fold_frozen_batch_norms,
                                              freeze_batch_norms,
                                              frozen_norm_slots,
                                              restore_frozen_batch_norms)
from mmdetr.registry import MODELS, build_model
from mmdetr.utils.host_sync import to_host
from mmdetr.utils.pending_grad_norm import pop_pending_grad_norm


@MODELS.register_module()
class DETR(BaseDetector):
    """End-to-End Object Detection with Transformers (Carion et al., 2020).

    A single-stage detector: the backbone's last feature map goes to
    :class:`DETRHead`, which owns the projection, the transformer and the
    predictors. Works with mmdet 3.x data samples and
    ``DetDataPreprocessor``, in the runner's ``loss``, ``predict`` and
    ``tensor`` modes.

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
        aux_head (dict, optional): A training-only mmdet dense head (e.g.
            ``mmdet.FCOSHead`` with ``in_channels`` = the transformer's
            ``embed_dims``) trained on the encoder output, as Co-DETR's
            auxiliary heads (:mod:`mmdetr.models.aux_dense_head`). Inference
            never runs it. Defaults to None (off).
        aux_loss_weight (float): Scale of the auxiliary head's losses.
            Defaults to 1.0.
        init_cfg (dict, optional): Defaults to None.
    """

    #: set by :class:`~mmdetr.engine.SkipNonFiniteAmpOptimWrapper`: a
    #: non-finite loss goes on to the loss scaler, which skips the step,
    #: instead of stopping training here
    skip_nonfinite_loss = False

    def __init__(self,
                 backbone: dict,
                 bbox_head: dict,
                 neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 channels_last: bool = True,
                 fold_frozen_bn: bool = True,
                 aux_head: Optional[dict] = None,
                 aux_loss_weight: float = 1.0,
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
        self.aux_head = build_model(aux_head) if aux_head else None
        if self.aux_head is not None:
            check_aux_head(self.aux_head, self.bbox_head.transformer.embed_dims,
                           aux_loss_weight)
        self.aux_loss_weight = aux_loss_weight
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
        feats = self.extract_feat(batch_inputs)
        gt_bboxes = [ds.gt_instances.bboxes for ds in batch_data_samples]
        gt_labels = [ds.gt_instances.labels for ds in batch_data_samples]
        # the auxiliary head (if any) reads the encoder memory of this pass
        capture = nullcontext([]) if self.aux_head is None else \
            encoder_memory(self.bbox_head.transformer)
        with capture as memories:
            outs = self.bbox_head(feats, img_metas)
        losses = self.bbox_head.loss(*outs, gt_bboxes, gt_labels, img_metas)
        if self.aux_head is not None:
            losses.update(
                aux_head_losses(self.aux_head, memories, batch_data_samples,
                                self.aux_loss_weight))
        return losses

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint trained with an auxiliary head loads into a model
        # without one (a test, deployment or fine-tuning config): inference
        # never reads it
        if self.aux_head is None:
            for key in [k for k in state_dict
                        if k.startswith(prefix + AUX_HEAD_PREFIX)]:
                state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
            outs = self.bbox_head(self.extract_feat(batch_inputs), img_metas)
            results = self.bbox_head.predict_by_feat(
                *outs, img_metas, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def parse_losses(self, losses: Dict[str, Tensor]):
        """Sum the losses as mmengine does, but stop on a non-finite one.

        Runs before ``backward`` and the optimizer step, so a NaN/inf loss
        never reaches the weights (nor, therefore, any checkpoint). In
        distributed training every rank learns of it, so none is left
        waiting in an all-reduce.

        The logged values and the non-finite flag reach the host in one
        copy (mmengine's logging would read every value on its own, each a
        wait for the device): the returned ``log_vars`` hold Python floats.
        The same copy carries the previous step's clipped-gradient norm
        when :class:`~mmdetr.engine.DeferredGradNormOptimWrapper` (or the
        AMP wrapper) left one, and logs it as ``train/grad_norm``: one
        iteration late, but without a wait of its own.

        Returns:
            tuple[Tensor, dict[str, float]]: the loss to optimise and the
            values to log.

        Under mixed precision with
        :class:`~mmdetr.engine.SkipNonFiniteAmpOptimWrapper`, a non-finite
        loss is left to the loss scaler, which skips the step.

        Raises:
            FloatingPointError: naming the iteration and the loss keys.
        """
        loss, log_vars = super().parse_losses(losses)
        # loss terms first: only they stop training (other logged values
        # may legitimately be inf); the split is known on the host
        keys = [k for k in log_vars if 'loss' in k]
        num_losses = len(keys)
        keys += [k for k in log_vars if 'loss' not in k]
        values = torch.stack([
            torch.as_tensor(log_vars[k]).detach().float().reshape(())
            for k in keys
        ])
        bad = ~torch.isfinite(values[:num_losses])
        flag = bad.any().float().reshape(1)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        # the previous step's gradient norm, left on the device unread
        pending = pop_pending_grad_norm()
        norm = [] if pending is None else \
            [pending[1].float().reshape(1).to(values.device)]
        # the one copy: values, which loss terms are bad, the pending norm,
        # any rank's flag
        host = to_host(torch.cat([values, bad.float(), *norm, flag])).tolist()
        if pending is not None:
            MessageHub.get_current_instance().update_scalar(
                f'train/{pending[0]}', host[-2])
        log_vars = OrderedDict(
            (k, host[keys.index(k)]) for k in log_vars)
        if host[-1] > 0 and not self.skip_nonfinite_loss:
            it = MessageHub.get_current_instance().get_info('iter')
            where = f'iteration {it + 1}' if it is not None else 'this step'
            named = [
                f'{k}={log_vars[k]}'
                for k, b in zip(keys, host[len(keys):len(keys) + num_losses])
                if b > 0 and k != 'loss'  # the total is bad with any term
            ]
            raise FloatingPointError(
                f'non-finite loss at {where}: '
                + (', '.join(named) or 'on another rank')
                + '. Training stopped before the optimizer step; the last '
                'checkpoint is intact: fix the cause (lr, data, AMP) and '
                'continue with tools/train.py ... --resume')
        return loss, log_vars

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        """Raw head outputs: per level, all-layer class scores and boxes."""
        if batch_data_samples is None:
            raise ValueError('DETR needs data samples (with img_shape and '
                             'batch_input_shape) to build its padding mask')
        img_metas = self._img_metas(batch_data_samples)
        return self.bbox_head(self.extract_feat(batch_inputs), img_metas)
