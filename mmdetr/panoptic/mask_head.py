# Copyright (c) mmdetr contributors. All rights reserved.
"""DETR's mask head: attention maps + FPN-style upsampling, per query."""
from typing import Optional, Sequence, Tuple

from mmengine.model import BaseModule
from torch import Tensor

from mmdetr.registry import MODELS
from .attention_map import MHAttentionMap
from .mask_head_small_conv import MaskHeadSmallConv


@MODELS.register_module()
class DETRMaskHead(BaseModule):
    """Per-query mask logits at stride 4, as official DETR's ``DETRsegm``
    computes them from the detector's intermediate outputs.

    It reads plain tensors (the detector's explicit outputs) and holds the
    only trainable parameters of panoptic training on a frozen detector:

    1. ``bbox_attention`` (:class:`MHAttentionMap`): attention maps of the
       last decoder layer's output over the encoder memory, masked at padding;
    2. ``conv_head`` (:class:`MaskHeadSmallConv`): the input projection of
       the last backbone level concatenated with those maps, upsampled with
       the stride 16, 8 and 4 backbone levels into one logit map per query.

    Official DETR (``DETRsegm``) -> mmdetr keys, with this head at
    ``mask_head`` in the detector (:mod:`mmdetr.checkpoints.convert`)::

        bbox_attention.{q,k}_linear.*   mask_head.bbox_attention.{q,k}_linear.*
        mask_head.*                     mask_head.conv_head.*

    Args:
        embed_dims (int): The transformer's width d. Defaults to 256.
        num_heads (int): Attention heads of the maps (official: the
            transformer's, 8). Defaults to 8.
        in_channels (sequence[int]): Channels of the backbone levels at
            strides 16, 8 and 4, in that order. Defaults to ResNet-50's
            ``(1024, 512, 256)``.
        dropout (float): Dropout on the attention maps. Defaults to 0.0
            (official).
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 in_channels: Sequence[int] = (1024, 512, 256),
                 dropout: float = 0.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = tuple(in_channels)
        self.bbox_attention = MHAttentionMap(
            embed_dims, embed_dims, num_heads, dropout=dropout)
        self.conv_head = MaskHeadSmallConv(embed_dims + num_heads,
                                           tuple(in_channels), embed_dims)

    def forward(self,
                hidden_state: Tensor,
                memory: Tensor,
                memory_mask: Tensor,
                proj_feat: Tensor,
                fpn_feats: Sequence[Tensor],
                queries: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
        """Mask logits of every query, or of the chosen ones.

        Args:
            hidden_state (Tensor): The last decoder layer's output (after the
                decoder's final norm), has shape (bs, num_query, d).
            memory (Tensor): Encoder output, has shape (bs, d, h, w).
            memory_mask (Tensor): True at padding, has shape (bs, h, w).
            proj_feat (Tensor): Input projection of the last backbone level,
                has shape (bs, d, h, w).
            fpn_feats (sequence[Tensor]): Backbone levels at strides 16, 8,
                4 (with ``out_indices=(0, 1, 2, 3)``: ``feats[2], feats[1],
                feats[0]``), each has shape (bs, in_channels[i], h_i, w_i).
            queries (tuple[Tensor, Tensor], optional): ``(image, query)``
                indices (long, each (n, )) of the queries to compute, e.g.
                the matched ones in training (image and query of
                :class:`SetMatches`' ``indices``). Defaults to None (all).

        Returns:
            Tensor: Mask logits at the size of ``fpn_feats[2]`` (the padded
            batch at stride 4), has shape (bs, num_query, h_4, w_4), or
            (n, h_4, w_4) for ``queries``; each query's logits do not depend
            on which others are computed.
        """
        maps = self.bbox_attention(hidden_state, memory, memory_mask)
        if queries is None:
            return self.conv_head(proj_feat, maps, fpn_feats)
        image, query = queries
        return self.conv_head(proj_feat, maps[image, query], fpn_feats,
                              image_index=image)
