# Copyright (c) mmdetr contributors. All rights reserved.
"""Positional encodings of a 2-D feature map for DETR."""
import math

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmdetr.registry import MODELS


@MODELS.register_module()
class SinePositionalEncoding(BaseModule):
    """Sine/cosine position encoding of the paper (section A.4).

    Positions are counted over the valid (unpadded) pixels only: the cumulative
    sum of the inverted padding mask gives each valid pixel its 1-based row and
    column, so padding an image to a larger batch shape does not move the
    encoding of its pixels. With ``normalize`` the positions are divided by the
    image's own height/width and multiplied by ``scale``::

        y = (row + offset) / (valid_rows + eps) * scale
        PE[..., 2i]   = sin(y / temperature ** (2i / num_feats))
        PE[..., 2i+1] = cos(y / temperature ** (2i / num_feats))

    and the same for x. The y half comes first in the channel dimension.

    Args:
        num_feats (int): Channels per axis; the output has ``2 * num_feats``.
        temperature (int): Base of the wavelengths. Defaults to 10000.
        normalize (bool): Normalise positions by the valid size.
            Defaults to False.
        scale (float): Range of the normalised positions. Defaults to 2*pi.
        eps (float): Added to the denominator of the normalisation.
            Defaults to 1e-6.
        offset (float): Added to the positions before normalising.
            Defaults to 0.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 num_feats: int,
                 temperature: int = 10000,
                 normalize: bool = False,
                 scale: float = 2 * math.pi,
                 eps: float = 1e-6,
                 offset: float = 0.,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if normalize and not isinstance(scale, (float, int)):
            raise TypeError('SinePositionalEncoding: with normalize=True, '
                            f'scale must be a number, got {scale!r}')
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps
        self.offset = offset

    def forward(self, mask: Tensor) -> Tensor:
        """Encode the positions of a padded batch.

        Args:
            mask (Tensor): Padding mask, has shape (bs, h, w); non-zero (True)
                marks padded pixels.

        Returns:
            Tensor: Encoding, has shape (bs, 2 * num_feats, h, w).
        """
        not_mask = (~mask.bool()).to(torch.float32)
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        if self.normalize:
            y_embed = (y_embed + self.offset) / \
                (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / \
                (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(
            self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature**(2 * torch.div(dim_t, 2, rounding_mode='floor')
                                   / self.num_feats)
        pos_x = x_embed[..., None] / dim_t
        pos_y = y_embed[..., None] / dim_t
        bs, h, w = mask.shape
        # interleave sin of even channels with cos of odd channels
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()),
                            dim=4).view(bs, h, w, -1)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()),
                            dim=4).view(bs, h, w, -1)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f'num_feats={self.num_feats}, temperature={self.temperature}, '
                f'normalize={self.normalize}, scale={self.scale}, '
                f'eps={self.eps}, offset={self.offset}')


@MODELS.register_module()
class LearnedPositionalEncoding(BaseModule):
    """Learned absolute position embedding: one table per axis.

    The encoding of pixel (r, c) is ``cat(col_embed[c], row_embed[r])``; it
    does not depend on the padding.

    Args:
        num_feats (int): Channels per axis; the output has ``2 * num_feats``.
        row_num_embed (int): Largest feature-map height. Defaults to 50.
        col_num_embed (int): Largest feature-map width. Defaults to 50.
        init_cfg (dict): Initialisation config. Defaults to uniform
            initialisation of the embeddings, as in the paper's code.
    """

    def __init__(self,
                 num_feats: int,
                 row_num_embed: int = 50,
                 col_num_embed: int = 50,
                 init_cfg=dict(type='Uniform', layer='Embedding')) -> None:
        super().__init__(init_cfg=init_cfg)
        self.row_embed = nn.Embedding(row_num_embed, num_feats)
        self.col_embed = nn.Embedding(col_num_embed, num_feats)
        self.num_feats = num_feats

    def forward(self, mask: Tensor) -> Tensor:
        """Look up the encoding for a feature map of the mask's size.

        Args:
            mask (Tensor): Padding mask, has shape (bs, h, w); only its shape
                and device are used.

        Returns:
            Tensor: Encoding, has shape (bs, 2 * num_feats, h, w).
        """
        bs, h, w = mask.shape
        if h > self.row_embed.num_embeddings or \
                w > self.col_embed.num_embeddings:
            raise ValueError(
                f'LearnedPositionalEncoding: feature map {h}x{w} is larger '
                f'than the tables ({self.row_embed.num_embeddings}x'
                f'{self.col_embed.num_embeddings}); raise row_num_embed / '
                'col_num_embed in the config')
        x_embed = self.col_embed(torch.arange(w, device=mask.device))
        y_embed = self.row_embed(torch.arange(h, device=mask.device))
        pos = torch.cat((x_embed[None].expand(h, w, -1),
                         y_embed[:, None].expand(h, w, -1)), dim=-1)
        return pos.permute(2, 0, 1)[None].expand(bs, -1, -1, -1)
