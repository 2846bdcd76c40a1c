# Copyright (c) mmdetr contributors. All rights reserved.
"""Training-only dense heads on the encoder output (Co-DETR's auxiliary
one-to-many heads).

Co-DETR (Zong et al., "DETRs with Collaborative Hybrid Assignments
Training", ICCV 2023) trains the encoder with dense detection heads (ATSS,
Faster R-CNN, FCOS) beside DETR's one-to-one set loss. Each object then has
many positive locations per step instead of one matched query, so the
backbone and the encoder learn where objects are much sooner; the heads are
discarded after training.

``DETR(aux_head=dict(type='mmdet.FCOSHead', ...))`` puts any mmdet dense head
(anything with ``loss(x, batch_data_samples)``) on the encoder memory of each
feature level, reshaped to (bs, embed_dims, h, w). Its losses are added to
DETR's as ``aux.<name>``. Inference never runs it: the predictions, the
exported graph and the converted checkpoints are those of plain DETR (its
parameters, ``aux_head.*``, are dropped when loaded into a model without it
and by the converter).

Not done: Co-DETR also feeds the auxiliary heads' positive boxes to the
decoder as extra training queries.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence

from torch import Tensor, nn

#: the detector attribute (and state-dict prefix) of the auxiliary head
AUX_HEAD_PREFIX = 'aux_head.'


@contextmanager
def encoder_memory(transformer: nn.Module) -> Iterator[List[Tensor]]:
    """Collect the encoder memory of every transformer call inside the
    block (one per feature level), as (bs, embed_dims, h, w).

    The transformer returns ``(out_dec, memory)``; a forward hook reads the
    second, so the head's ``forward`` keeps its mmdet 2.x return values. The
    hook is removed on exit.
    """
    memories: List[Tensor] = []

    def keep(module, args, output):
        memories.append(output[1])

    handle = transformer.register_forward_hook(keep)
    try:
        yield memories
    finally:
        handle.remove()


def check_aux_head(aux_head: nn.Module, embed_dims: int,
                   aux_loss_weight) -> None:
    """Refuse, naming the config key, an auxiliary head that could not be
    trained on the encoder memory."""
    if not callable(getattr(aux_head, 'loss', None)):
        raise TypeError(
            f'model.aux_head: {type(aux_head).__name__} has no '
            'loss(x, batch_data_samples); use an mmdet dense head such as '
            'mmdet.FCOSHead')
    in_channels = getattr(aux_head, 'in_channels', embed_dims)
    if in_channels != embed_dims:
        raise ValueError(
            f'model.aux_head.in_channels={in_channels}, but the encoder '
            f'memory it reads has the transformer\'s embed_dims='
            f'{embed_dims} channels')
    if isinstance(aux_loss_weight, bool) or not isinstance(
            aux_loss_weight, (int, float)) or not aux_loss_weight > 0:
        raise ValueError('model.aux_loss_weight must be a positive number, '
                         f'got {aux_loss_weight!r}')


def aux_head_losses(aux_head: nn.Module, memories: Sequence[Tensor],
                    batch_data_samples, weight: float) -> Dict[str, Tensor]:
    """The auxiliary head's losses on the encoder memories, scaled by
    ``weight`` and named ``aux.<name>``."""
    losses = aux_head.loss(tuple(memories), batch_data_samples)
    return {f'aux.{name}': _scaled(value, weight)
            for name, value in losses.items()}


def _scaled(value, weight: float):
    if isinstance(value, (list, tuple)):  # per-level losses
        return [v * weight for v in value]
    return value * weight
