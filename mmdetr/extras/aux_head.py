# Copyright (c) mmdetr contributors. All rights reserved.
"""Training-only dense heads on the encoder output (Co-DETR's auxiliary
one-to-many heads).

Co-DETR (Zong et al., "DETRs with Collaborative Hybrid Assignments
Training", ICCV 2023) trains the encoder with dense detection heads (ATSS,
Faster R-CNN, FCOS) beside DETR's one-to-one set loss. Each object then has
many positive locations per step instead of one matched query, so the
backbone and the encoder learn where objects are much sooner; the heads are
discarded after training.

``dict(type='AuxHeadDETR', aux_head=dict(type='mmdet.FCOSHead', ...), ...)``
(a :class:`~mmdetr.models.DETR` with one more key) puts any mmdet dense head
(anything with ``loss(x, batch_data_samples)``) on the encoder memory, the
(bs, embed_dims, h, w) map that :meth:`DETR.forward_outputs` returns. Its
losses are added to DETR's as ``aux.<name>``. Inference never runs it: the
predictions, the exported graph and the converted checkpoints are those of
plain DETR (its parameters, ``aux_head.*``, are skipped when loaded into a
model without it, and dropped by the converter).

Not done: Co-DETR also feeds the auxiliary heads' positive boxes to the
decoder as extra training queries.
"""
from typing import Dict, List

from torch import Tensor

from mmdetr.models.detr import DETR, register_training_only
from mmdetr.models.precision import float32_region, to_float32
from mmdetr.registry import MODELS, build_model


@MODELS.register_module()
class AuxHeadDETR(DETR):
    """:class:`DETR` trained with a dense head on its encoder memory.

    Args:
        aux_head (dict): An mmdet dense head config (e.g.
            ``mmdet.FCOSHead`` with ``in_channels`` = the transformer's
            ``embed_dims`` and one stride, the feature map's).
        aux_loss_weight (float): Scale of its losses. Defaults to 1.0.
        **kwargs: :class:`DETR`'s.
    """

    def __init__(self,
                 aux_head: dict,
                 aux_loss_weight: float = 1.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.aux_head = build_model(aux_head)
        if not callable(getattr(self.aux_head, 'loss', None)):
            raise TypeError(
                f'model.aux_head: {type(self.aux_head).__name__} has no '
                'loss(x, batch_data_samples); use an mmdet dense head such '
                'as mmdet.FCOSHead')
        embed_dims = self.bbox_head.embed_dims
        in_channels = getattr(self.aux_head, 'in_channels', embed_dims)
        if in_channels != embed_dims:
            raise ValueError(
                f'model.aux_head.in_channels={in_channels}, but the encoder '
                'memory it reads has the transformer\'s embed_dims='
                f'{embed_dims} channels')
        if isinstance(aux_loss_weight, bool) or not isinstance(
                aux_loss_weight, (int, float)) or not aux_loss_weight > 0:
            raise ValueError('model.aux_loss_weight must be a positive '
                             f'number, got {aux_loss_weight!r}')
        self.aux_loss_weight = aux_loss_weight

    def loss_by_outputs(self, outputs: Dict[str, Tensor], batch_data_samples,
                        img_metas: List[dict]) -> Dict[str, Tensor]:
        """DETR's losses and the auxiliary head's on ``outputs['memory']``
        (bs, embed_dims, h, w), scaled and named ``aux.<name>``."""
        losses = super().loss_by_outputs(outputs, batch_data_samples,
                                         img_metas)
        memory = outputs['memory']
        # float32 under mixed precision, as DETR's own losses: mmdet's dense
        # heads compute their losses in the dtype they get (a Python focal
        # loss on CPU); the head is small, so it runs in float32 whole
        with float32_region(memory):
            aux = self.aux_head.loss((to_float32(memory), ),
                                     batch_data_samples)
        losses.update({f'aux.{name}': _scaled(value, self.aux_loss_weight)
                       for name, value in aux.items()})
        return losses


def _scaled(value, weight: float):
    if isinstance(value, (list, tuple)):  # per-level losses
        return [v * weight for v in value]
    return value * weight


register_training_only('aux_head.')
