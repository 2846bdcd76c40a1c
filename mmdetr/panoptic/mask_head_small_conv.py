# Copyright (c) mmdetr contributors. All rights reserved.
"""The small FPN-style convolutional mask head of DETR panoptic."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmdetr.registry import MODELS

GN_GROUPS = 8  # official DETR's GroupNorm groups, every layer


@MODELS.register_module()
class MaskHeadSmallConv(BaseModule):
    """Per-query mask logits at stride 4 from stride-32 features, attention
    maps and three backbone levels (paper section 4.4, figure 8).

    For every query, the stride-32 input projection of the backbone is
    concatenated with the query's attention maps (:class:`MHAttentionMap`),
    then five 3x3 conv + GroupNorm + ReLU blocks halve the channels while,
    between them, the map is upsampled (nearest) to the next backbone level
    (stride 16, 8, 4) and the level, through a 1x1 adapter conv, is added:
    an FPN whose top-down path is per query. A last 3x3 conv gives one logit
    per pixel.

    Channel widths, with ``c = context_dim``: ``dim`` -> ``dim`` (lay1) ->
    ``c/2`` (lay2) -> + level 1 -> ``c/4`` (lay3) -> + level 2 -> ``c/8``
    (lay4) -> + level 3 -> ``c/16`` (lay5) -> 1 (out_lay).

    Parameter names follow official DETR (``lay1..5``, ``gn1..5``,
    ``adapter1..3``, ``out_lay``), so its ``mask_head.*`` weights load by a
    prefix rename.

    Args:
        dim (int): Input channels: the projection's channels plus the number
            of attention heads (256 + 8 in official DETR).
        fpn_dims (sequence[int]): Channels of the three backbone levels, in
            the order they are added: stride 16, 8, 4 (ResNet-50:
            ``(1024, 512, 256)``).
        context_dim (int): Width the layers are derived from (the
            transformer's d, 256). ``dim`` and ``context_dim // 2, 4, 8, 16``
            must be multiples of 8 (GroupNorm with 8 groups).
        init_cfg (dict, optional): Initialisation config. Defaults to None
            (official init: Kaiming-uniform with ``a=1``, zero biases, applied
            at construction).
    """

    def __init__(self,
                 dim: int,
                 fpn_dims: Sequence[int],
                 context_dim: int,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(fpn_dims) != 3:
            raise ValueError('MaskHeadSmallConv: fpn_dims needs the channels '
                             'of 3 backbone levels (strides 16, 8, 4), got '
                             f'{tuple(fpn_dims)}')
        widths = [dim] + [context_dim // 2**k for k in (1, 2, 3, 4)]
        bad = [c for c in widths if c == 0 or c % GN_GROUPS]
        if bad:
            raise ValueError(
                f'MaskHeadSmallConv: layer widths {widths} (dim={dim}, '
                f'context_dim={context_dim}) must be positive multiples of '
                f'{GN_GROUPS} for GroupNorm({GN_GROUPS}); {bad} are not')
        self.dim = dim
        # lay1 keeps dim; lay2..lay5 step down the widths
        self.lay1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.gn1 = nn.GroupNorm(GN_GROUPS, dim)
        for i in range(2, 6):
            setattr(self, f'lay{i}',
                    nn.Conv2d(widths[i - 2], widths[i - 1], 3, padding=1))
            setattr(self, f'gn{i}', nn.GroupNorm(GN_GROUPS, widths[i - 1]))
        self.out_lay = nn.Conv2d(widths[4], 1, 3, padding=1)
        for i, c_in in enumerate(fpn_dims, start=1):
            # adapter i feeds the input of lay(i + 2), of width widths[i]
            setattr(self, f'adapter{i}', nn.Conv2d(c_in, widths[i], 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def _block(self, i: int, x: Tensor) -> Tensor:
        """conv ``lay{i}`` -> GroupNorm ``gn{i}`` -> ReLU."""
        x = getattr(self, f'lay{i}')(x)
        return F.relu(getattr(self, f'gn{i}')(x))

    def forward(self,
                x: Tensor,
                attention_maps: Tensor,
                fpn_feats: Sequence[Tensor],
                image_index: Optional[Tensor] = None) -> Tensor:
        """Mask logits of every query, or of some queries.

        Args:
            x (Tensor): Input projection of the last backbone level, has
                shape (bs, d, h, w).
            attention_maps (Tensor): Per-query attention maps, has shape
                (bs, num_query, num_heads, h, w); with ``image_index``, the
                maps of ``n`` chosen queries, (n, num_heads, h, w).
                ``d + num_heads == dim``.
            fpn_feats (sequence[Tensor]): Backbone levels at strides 16, 8
                and 4 (in that order), each has shape (bs, fpn_dims[i],
                h_i, w_i).
            image_index (Tensor, optional): The image of each chosen query,
                long, has shape (n, ). Defaults to None (every query of
                every image).

        Returns:
            Tensor: Mask logits at the size of ``fpn_feats[2]``, has shape
            (bs, num_query, h_4, w_4), or (n, h_4, w_4) with
            ``image_index``.
        """
        if image_index is None:
            bs, num_query = attention_maps.shape[:2]
            # image-major: query q of image b is row b * num_query + q
            image_index = torch.arange(
                bs, device=x.device).repeat_interleave(num_query)
            out_shape = (bs, num_query)
            attention_maps = attention_maps.flatten(0, 1)
        else:
            out_shape = (len(image_index), )

        def per_query(t: Tensor) -> Tensor:
            # (bs, c, h, w) -> (n, c, h, w): each query's image
            return t[image_index]

        x = torch.cat([per_query(x), attention_maps], dim=1)
        x = self._block(2, self._block(1, x))
        for i, feat in enumerate(fpn_feats, start=1):
            # the adapter runs once per image, then is shared by its queries
            lateral = per_query(getattr(self, f'adapter{i}')(feat))
            x = lateral + F.interpolate(
                x, size=lateral.shape[-2:], mode='nearest')
            x = self._block(i + 2, x)
        x = self.out_lay(x)
        return x.view(*out_shape, *x.shape[-2:])
