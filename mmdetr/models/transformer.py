# Copyright (c) mmdetr contributors. All rights reserved.
"""The DETR encoder-decoder transformer (paper section 3.2 and A.3).

Layout follows the official code: each layer owns ``self_attn`` (and
``cross_attn`` in the decoder), ``nn.MultiheadAttention`` called without
returning its attention weights, a two-layer FFN ``linear1``/``linear2`` and
LayerNorms ``norm1..3``. Queries and keys of every attention get the
positional encoding added; values do not.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmdetr.models.precision import autocast_dtype, autocast_enabled_for
from mmdetr.registry import MODELS

_ACTIVATIONS = {'relu': F.relu, 'gelu': F.gelu}


def _attention(mha: nn.MultiheadAttention, query: Tensor, key: Tensor,
               value: Tensor, key_padding_mask: Optional[Tensor] = None
               ) -> Tensor:
    if key_padding_mask is not None and query.dtype == torch.float32 and \
            autocast_enabled_for(query.device.type):
        # cast as the in-projection would: torch 2.1 wants its float padding
        # mask in the queries' dtype (a tensor given twice stays one)
        cast = {id(x): x.to(autocast_dtype(query.device.type))
                for x in {id(x): x for x in (query, key, value)}.values()}
        query, key, value = (cast[id(x)] for x in (query, key, value))
    return mha(query, key, value, key_padding_mask=key_padding_mask,
               need_weights=False)[0]


class _Layer(BaseModule):
    """What both layer types have: their attentions (``attentions``, by
    name), the two-layer FFN, and a LayerNorm and a dropout per residual
    sub-layer (``norm1``, ``dropout1`` ...).

    Args:
        embed_dims (int): Feature channels. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 8.
        feedforward_channels (int): Hidden channels of the FFN.
            Defaults to 2048.
        dropout (float): Dropout on attention weights, on the attention and
            FFN outputs and inside the FFN. Defaults to 0.1.
        activation (str): 'relu' or 'gelu'. Defaults to 'relu'.
        normalize_before (bool): Pre-norm instead of post-norm.
            Defaults to False.
    """

    attentions = ('self_attn', )

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 feedforward_channels: int = 2048,
                 dropout: float = 0.1,
                 activation: str = 'relu',
                 normalize_before: bool = False) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f'DetrTransformer: activation={activation!r} '
                             f'is not one of {sorted(_ACTIVATIONS)}')
        for name in self.attentions:
            setattr(self, name, nn.MultiheadAttention(
                embed_dims, num_heads, dropout=dropout, batch_first=True))
        self.linear1 = nn.Linear(embed_dims, feedforward_channels)
        self.linear2 = nn.Linear(feedforward_channels, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.activation = _ACTIVATIONS[activation]
        num_sublayers = len(self.attentions) + 1
        for i in range(1, num_sublayers + 1):
            setattr(self, f'norm{i}', nn.LayerNorm(embed_dims))
        for i in range(1, num_sublayers + 1):
            setattr(self, f'dropout{i}', nn.Dropout(dropout))
        self.normalize_before = normalize_before

    def sublayer(self, i: int, x: Tensor, fn) -> Tensor:
        """Residual sub-layer i: ``norm_i(x + dropout_i(fn(x)))`` (the
        paper's post-norm) or ``x + dropout_i(fn(norm_i(x)))`` (pre-norm)."""
        norm, dropout = getattr(self, f'norm{i}'), getattr(self, f'dropout{i}')
        if self.normalize_before:
            return x + dropout(fn(norm(x)))
        return norm(x + dropout(fn(x)))

    def ffn(self, x: Tensor) -> Tensor:
        """The position-wise feed-forward network."""
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class DetrTransformerEncoderLayer(_Layer):
    """Self-attention + FFN, each a residual sub-layer with a LayerNorm
    after (post-norm) or before (pre-norm) it; arguments as
    :class:`_Layer`."""

    def forward(self, src: Tensor, pos: Optional[Tensor],
                key_padding_mask: Optional[Tensor]) -> Tensor:
        """
        Args:
            src (Tensor): Flattened features, has shape (bs, hw, dims).
            pos (Tensor, optional): Positional encoding, same shape as src.
            key_padding_mask (Tensor, optional): True at padded pixels,
                has shape (bs, hw).

        Returns:
            Tensor: has shape (bs, hw, dims).
        """

        def self_attention(x):
            q = k = x if pos is None else x + pos
            return _attention(self.self_attn, q, k, x, key_padding_mask)

        src = self.sublayer(1, src, self_attention)
        return self.sublayer(2, src, self.ffn)


class DetrTransformerDecoderLayer(_Layer):
    """Self-attention over the queries, cross-attention to the encoder memory,
    FFN; arguments as :class:`_Layer`."""

    attentions = ('self_attn', 'cross_attn')

    def forward(self, tgt: Tensor, memory: Tensor, memory_with_pos: Tensor,
                query_pos: Tensor,
                memory_key_padding_mask: Optional[Tensor]) -> Tensor:
        """
        Args:
            tgt (Tensor): Decoder state, has shape (bs, num_queries, dims).
            memory (Tensor): Encoder output, has shape (bs, hw, dims).
            memory_with_pos (Tensor): ``memory + pos``, the cross-attention
                keys; computed once by the decoder for all its layers.
            query_pos (Tensor): Query embedding, has shape
                (bs, num_queries, dims).
            memory_key_padding_mask (Tensor, optional): True at padded
                pixels, has shape (bs, hw).

        Returns:
            Tensor: has shape (bs, num_queries, dims).
        """

        def self_attention(x):
            q = k = x + query_pos
            return self.self_attention(q, k, x)

        def cross_attention(x):
            return _attention(self.cross_attn, x + query_pos, memory_with_pos,
                              memory, memory_key_padding_mask)

        tgt = self.sublayer(1, tgt, self_attention)
        tgt = self.sublayer(2, tgt, cross_attention)
        return self.sublayer(3, tgt, self.ffn)

    def self_attention(self, query: Tensor, key: Tensor,
                       value: Tensor) -> Tensor:
        """Self-attention among the queries, each (bs, num_queries, dims);
        every query sees every other (an extra may group them)."""
        return _attention(self.self_attn, query, key, value)


@MODELS.register_module()
class DetrTransformer(BaseModule):
    """DETR's encoder-decoder.

    The decoder's final LayerNorm (``decoder_norm``) is applied to the output
    of every decoder layer, so each of them can feed the prediction heads
    (auxiliary losses). With ``normalize_before`` (pre-norm) the encoder also
    ends with a LayerNorm (``encoder_norm``), as in the official code.

    Args:
        embed_dims (int): Feature channels. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 8.
        num_encoder_layers (int): Defaults to 6.
        num_decoder_layers (int): Defaults to 6.
        feedforward_channels (int): FFN hidden channels. Defaults to 2048.
        dropout (float): Dropout everywhere. Defaults to 0.1.
        activation (str): FFN activation. Defaults to 'relu'.
        normalize_before (bool): Pre-norm layers. Defaults to False.
        return_intermediate (bool): Return the normalised output of every
            decoder layer instead of the last only. Defaults to True.
        init_cfg (dict, optional): Defaults to None, which gives the paper's
            Xavier-uniform initialisation of every weight matrix.
    """

    #: the class of the decoder layers (a subclass may swap it)
    decoder_layer_type = DetrTransformerDecoderLayer

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6,
                 feedforward_channels: int = 2048,
                 dropout: float = 0.1,
                 activation: str = 'relu',
                 normalize_before: bool = False,
                 return_intermediate: bool = True,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        layer_args = dict(
            embed_dims=embed_dims,
            num_heads=num_heads,
            feedforward_channels=feedforward_channels,
            dropout=dropout,
            activation=activation,
            normalize_before=normalize_before)
        self.encoder_layers = nn.ModuleList(
            DetrTransformerEncoderLayer(**layer_args)
            for _ in range(num_encoder_layers))
        self.encoder_norm = nn.LayerNorm(
            embed_dims) if normalize_before else None
        self.decoder_layers = nn.ModuleList(
            self.decoder_layer_type(**layer_args)
            for _ in range(num_decoder_layers))
        self.decoder_norm = nn.LayerNorm(embed_dims)
        self.embed_dims = embed_dims
        self.num_decoder_layers = num_decoder_layers
        self.return_intermediate = return_intermediate

    def init_weights(self) -> None:
        """Xavier-uniform on every weight matrix, as the official code."""
        if self.init_cfg is not None:
            return super().init_weights()
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self._is_init = True

    def encode(self, src: Tensor, pos: Tensor,
               mask: Optional[Tensor]) -> Tensor:
        """Run the encoder on flattened features (bs, hw, dims)."""
        for layer in self.encoder_layers:
            src = layer(src, pos, mask)
        if self.encoder_norm is not None:
            src = self.encoder_norm(src)
        return src

    def decode(self, memory: Tensor, pos: Tensor, mask: Optional[Tensor],
               query_pos: Tensor) -> Tensor:
        """Run the decoder on the encoder memory (bs, hw, dims): the output
        of every layer (num_out_layers, bs, num_queries, dims)."""
        memory_with_pos = memory + pos
        tgt = torch.zeros_like(query_pos)
        outputs = []
        for layer in self.decoder_layers:
            tgt = layer(tgt, memory, memory_with_pos, query_pos, mask)
            if self.return_intermediate:
                outputs.append(self.decoder_norm(tgt))
        if not self.return_intermediate:
            outputs.append(self.decoder_norm(tgt))
        return torch.stack(outputs)

    def forward(self, x: Tensor, mask: Tensor, query_embed: Tensor,
                pos_embed: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            x (Tensor): Projected features, has shape (bs, dims, h, w).
            mask (Tensor): True at padded pixels, has shape (bs, h, w).
            query_embed (Tensor): Learned object queries, has shape
                (num_queries, dims).
            pos_embed (Tensor): Positional encoding, has shape
                (bs, dims, h, w).

        Returns:
            tuple[Tensor, Tensor]:
                - out_dec: has shape (num_decoder_layers, bs, num_queries,
                  dims), or (1, bs, num_queries, dims) without
                  ``return_intermediate``.
                - memory: encoder output, has shape (bs, dims, h, w).
        """
        bs, c, h, w = x.shape
        src = x.flatten(2).transpose(1, 2)  # (bs, hw, c)
        pos = pos_embed.flatten(2).transpose(1, 2)
        key_mask = mask.flatten(1)
        query_pos = query_embed.unsqueeze(0).expand(bs, -1, -1)
        memory = self.encode(src, pos, key_mask)
        out_dec = self.decode(memory, pos, key_mask, query_pos)
        return out_dec, memory.transpose(1, 2).reshape(bs, c, h, w)
