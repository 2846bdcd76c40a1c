# Copyright (c) mmdetr contributors. All rights reserved.
"""Multi-head attention computed faster, with the same numbers.

:class:`FastMultiheadAttention` is an ``nn.MultiheadAttention`` (its
parameters and state-dict keys) that, for the call the transformer makes
(``need_weights=False``, no ``attn_mask``), picks how to compute it:

- training on a CPU with attention dropout (``fused_dropout``), in float32
  or under bfloat16 autocast (then the maps in bfloat16): torch has
  no fused kernel with dropout there and falls back to a chain of separate
  operations (scores, mask, softmax, Bernoulli noise, its division, the
  product, each a new full-size map, and as many again backward);
  :class:`SoftmaxDropoutAttention` computes the same function in one pass
  that writes two maps (the softmax and its dropped-out copy, which the
  backward pass needs anyway) and its backward in place in one more. The
  maps dominate DETR's encoder at training resolution (8 heads x (h*w)^2
  per image, e.g. 46 MB per layer for two 800x1066 images);
- autocast inference (``cache_weights``): the projection weights in
  autocast's dtype kept between calls
  (:func:`~mmdetr.speed.weight_cache.cached_cast`);
- otherwise ``nn.MultiheadAttention`` itself (torch's fused kernels).

The dropout noise differs from ``nn.MultiheadAttention``'s (another draw
of the same distribution): a training run with dropout is not the same run
with and without :class:`~mmdetr.speed.transforms.FusedAttention`.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from mmdetr.models.precision import (autocast_dtype, autocast_enabled_for,
                                     float32_region)
from .dropout import keep_mask, quantised
from .weight_cache import cached_cast, cached_weights_dtype


class SoftmaxDropoutAttention(torch.autograd.Function):
    """``dropout(softmax(q @ k^T + bias)) @ v`` with its own backward.

    Forward keeps the softmax ``P`` and the dropped-out map
    ``D = P * keep / (1 - p')`` (``keep``:
    :func:`~mmdetr.speed.dropout.keep_mask`, each element kept with
    probability ``1 - p'``, ``p'`` the drop probability ``p`` rounded to a
    multiple of 2**-15). Backward
    needs nothing else: with ``G = dOut @ v^T``, the softmax input's gradient
    is ``G * D - P * rowsum(G * D)``, since ``P * dP = G * D``, computed in
    place in ``G``.

    Args (of ``apply``):
        q (Tensor): Scaled queries, has shape (n, lq, d).
        k (Tensor): Keys, has shape (n, lk, d).
        v (Tensor): Values, has shape (n, lk, dv).
        bias (Tensor, optional): Added to the scores (padding mask),
            broadcastable to (n, lq, lk); no gradient.
        p (float): Dropout probability, in [0, 1).
        generator (torch.Generator, optional): For the dropout noise.

    Returns:
        Tensor: has shape (n, lq, dv).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor],
                p: float, generator: Optional[torch.Generator]) -> Tensor:
        kt = k.transpose(1, 2)
        scores = torch.bmm(q, kt) if bias is None else torch.baddbmm(
            bias, q, kt)
        probs = torch.softmax(scores, -1, out=scores)  # in place
        keep = keep_mask(probs.shape, p, probs.device, generator)
        dropped = torch.mul(probs, keep).mul_(1 / (1 - quantised(p)))
        ctx.save_for_backward(q, k, v, probs, dropped)
        return torch.bmm(dropped, v)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        q, k, v, probs, dropped = ctx.saved_tensors
        grad_v = torch.bmm(dropped.transpose(1, 2), grad_out)
        grad = torch.bmm(grad_out, v.transpose(1, 2))  # d loss / d dropped
        grad.mul_(dropped)  # = probs * d loss / d probs
        grad.addcmul_(probs, grad.sum(-1, keepdim=True), value=-1)
        grad_q = torch.bmm(grad, k)
        grad_k = torch.bmm(grad.transpose(1, 2), q)
        return grad_q, grad_k, grad_v, None, None, None


def softmax_dropout_attention(mha: nn.MultiheadAttention,
                              query: Tensor,
                              key: Tensor,
                              value: Tensor,
                              key_padding_mask: Optional[Tensor] = None,
                              generator: Optional[torch.Generator] = None
                              ) -> Tensor:
    """What ``mha(query, key, value, key_padding_mask,
    need_weights=False)[0]`` computes in training, with
    :class:`SoftmaxDropoutAttention` for the attention maps.

    Args:
        mha (nn.MultiheadAttention): With ``batch_first=True``.
        query (Tensor): has shape (bs, lq, dims).
        key (Tensor): has shape (bs, lk, dims).
        value (Tensor): has shape (bs, lk, dims).
        key_padding_mask (Tensor, optional): True at keys to ignore, has
            shape (bs, lk).
        generator (torch.Generator, optional): Of the dropout noise.

    Returns:
        Tensor: has shape (bs, lq, dims).
    """
    bs, lq, dims = query.shape
    lk = key.shape[1]
    heads = mha.num_heads
    head_dims = dims // heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    if key is query:  # self-attention: one projection for q and k
        q, k = F.linear(query, w[:2 * dims], b[:2 * dims]).chunk(2, dim=-1)
    else:
        q = F.linear(query, w[:dims], b[:dims])
        k = F.linear(key, w[dims:2 * dims], b[dims:2 * dims])
    v = F.linear(value, w[2 * dims:], b[2 * dims:])

    def heads_first(x: Tensor, length: int) -> Tensor:
        # (bs, l, dims) -> (bs * heads, l, head_dims)
        return x.reshape(bs, length, heads, head_dims).transpose(
            1, 2).reshape(bs * heads, length, head_dims)

    q = heads_first(q * head_dims**-0.5, lq)
    k = heads_first(k, lk)
    v = heads_first(v, lk)
    bias = None
    if key_padding_mask is not None:
        # a finite minimum, not -inf: a fully masked row stays finite
        bias = q.new_zeros(bs, 1, 1, lk).masked_fill_(
            key_padding_mask.view(bs, 1, 1, lk),
            torch.finfo(q.dtype).min).expand(bs, heads, 1, lk).reshape(
                bs * heads, 1, lk)
    # under autocast the projections gave autocast's dtype: the maps are
    # computed in it, as autocast computes bmm, with autocast off inside
    # (softmax and its backward on the reduced dtype, accumulated in float)
    with float32_region(q):
        out = SoftmaxDropoutAttention.apply(q, k, v, bias, mha.dropout,
                                            generator)
    out = out.view(bs, heads, lq, head_dims).transpose(1, 2).reshape(
        bs, lq, dims)
    return mha.out_proj(out)


def attention_with_cached_weights(mha: nn.MultiheadAttention, query: Tensor,
                                  key: Tensor, value: Tensor,
                                  key_padding_mask: Optional[Tensor]
                                  ) -> Tensor:
    """What ``mha(..., need_weights=False)[0]`` computes under autocast in
    inference (torch's own path there: its fused fast path is off under
    autocast), with the projection weights in autocast's dtype kept
    between calls."""
    dtype = cached_weights_dtype(query)
    in_w, in_b, out_w, out_b = cached_cast(
        mha, 'attention', (mha.in_proj_weight, mha.in_proj_bias,
                           mha.out_proj.weight, mha.out_proj.bias),
        lambda: (mha.in_proj_weight.to(dtype), mha.in_proj_bias.to(dtype),
                 mha.out_proj.weight.to(dtype),
                 mha.out_proj.bias.to(dtype)))
    key_padding_mask = F._canonical_mask(
        mask=key_padding_mask, mask_name='key_padding_mask',
        other_type=None, other_name='attn_mask', target_type=query.dtype)
    # (bs, l, dims) -> (l, bs, dims), keeping which inputs are the same
    if key is value:
        if query is key:
            query = key = value = query.transpose(1, 0)
        else:
            query, key = (x.transpose(1, 0) for x in (query, key))
            value = key
    else:
        query, key, value = (x.transpose(1, 0) for x in (query, key, value))
    out, _ = F.multi_head_attention_forward(
        query, key, value, mha.embed_dim, mha.num_heads, in_w, in_b, None,
        None, False, mha.dropout, out_w, out_b, training=mha.training,
        key_padding_mask=key_padding_mask, need_weights=False)
    return out.transpose(1, 0)


class FastMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` with the faster paths of the module
    docstring, each on where its transform set it (``fused_dropout``:
    :class:`~mmdetr.speed.transforms.FusedAttention`; ``cache_weights``:
    :class:`~mmdetr.speed.transforms.AutocastWeightCache`)."""

    fused_dropout = False
    cache_weights = False
    #: the dropout noise's generator (tests); the default one if None
    generator: Optional[torch.Generator] = None

    def _plain(self) -> bool:
        return (self.batch_first and self._qkv_same_embed_dim
                and self.bias_k is None and not self.add_zero_attn
                and self.in_proj_bias is not None)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = True, **kwargs):
        if need_weights or kwargs.get('attn_mask') is not None or \
                kwargs.get('is_causal') or not self._plain():
            return super().forward(query, key, value, key_padding_mask,
                                   need_weights, **kwargs)
        if self.cache_weights and cached_weights_dtype(query) is not None:
            return attention_with_cached_weights(self, query, key, value,
                                                 key_padding_mask), None
        if (self.fused_dropout and self.training and self.dropout > 0
                and query.device.type == 'cpu' and torch.is_grad_enabled()
                and (query.dtype in (torch.float32, torch.float64)
                     if not autocast_enabled_for('cpu') else
                     autocast_dtype('cpu') == torch.bfloat16
                     and query.dtype in (torch.float32, torch.bfloat16))):
            return softmax_dropout_attention(self, query, key, value,
                                             key_padding_mask,
                                             self.generator), None
        return super().forward(query, key, value, key_padding_mask,
                               need_weights, **kwargs)
