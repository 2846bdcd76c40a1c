# Copyright (c) mmdetr contributors. All rights reserved.
"""Attention maps from each object query to the encoder memory (DETR
panoptic, paper section 4.4)."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmdetr.registry import MODELS


@MODELS.register_module()
class MHAttentionMap(BaseModule):
    """Multi-head attention *weights* of every query over every pixel.

    Only the softmax is computed (no values, no output projection): for each
    query the result is ``num_heads`` low-resolution heat maps, which the mask
    head upsamples into the query's mask. As official DETR does, the softmax
    runs over all heads and pixels of a query *jointly* (one distribution of
    ``num_heads * h * w`` entries, not one per head), padded pixels get zero
    weight, and the keys are the memory projected by a 1x1 linear map
    (no positional encoding on either side).

    Parameter names follow official DETR (``q_linear``, ``k_linear``), so
    its ``bbox_attention.*`` weights load by a prefix rename.

    Args:
        query_dim (int): Channels of the queries and of the memory.
        hidden_dim (int): Channels of the projected queries and keys, split
            into ``num_heads`` heads.
        num_heads (int): Heads; must divide ``hidden_dim``.
        dropout (float): Dropout on the attention weights. Official DETR
            builds it with 0.0. Defaults to 0.0.
        bias (bool): Whether the projections have a bias. Defaults to True.
        init_cfg (dict, optional): Initialisation config. Defaults to None
            (official init: Xavier-uniform weights, zero biases, applied at
            construction).
    """

    def __init__(self,
                 query_dim: int,
                 hidden_dim: int,
                 num_heads: int,
                 dropout: float = 0.0,
                 bias: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if hidden_dim % num_heads:
            raise ValueError(f'MHAttentionMap: hidden_dim={hidden_dim} is not '
                             f'divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.q_linear = nn.Linear(query_dim, hidden_dim, bias=bias)
        self.k_linear = nn.Linear(query_dim, hidden_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)
        # 1 / sqrt(channels per head), as in scaled dot-product attention
        self.scale = (hidden_dim // num_heads)**-0.5
        for linear in (self.q_linear, self.k_linear):
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def forward(self,
                query: Tensor,
                memory: Tensor,
                memory_mask: Optional[Tensor] = None) -> Tensor:
        """Attention weights of every query over heads and pixels.

        Args:
            query (Tensor): Decoder outputs, has shape (bs, num_query, d).
            memory (Tensor): Encoder output as a feature map, has shape
                (bs, d, h, w).
            memory_mask (Tensor, optional): True at padded pixels, has shape
                (bs, h, w). Defaults to None (no padding).

        Returns:
            Tensor: Weights that sum to 1 over (num_heads, h, w) for every
            query, has shape (bs, num_query, num_heads, h, w).
        """
        bs, num_query = query.shape[:2]
        h, w = memory.shape[-2:]
        head_dim = self.hidden_dim // self.num_heads
        # (bs, heads, num_query, head_dim)
        q = self.q_linear(query).view(bs, num_query, self.num_heads,
                                      head_dim).transpose(1, 2)
        # the 1x1 key projection, applied to every pixel: (bs, heads,
        # head_dim, h*w)
        k = self.k_linear(memory.flatten(2).transpose(1, 2))
        k = k.view(bs, h * w, self.num_heads, head_dim).permute(0, 2, 3, 1)
        logits = torch.matmul(q * self.scale, k)  # (bs, heads, nq, h*w)
        logits = logits.transpose(1, 2)  # (bs, nq, heads, h*w)
        if memory_mask is not None:
            logits = logits.masked_fill(
                memory_mask.flatten(1).bool()[:, None, None, :],
                float('-inf'))
        weights = logits.reshape(bs, num_query, -1).softmax(-1)
        weights = self.dropout(weights)
        return weights.view(bs, num_query, self.num_heads, h, w)
