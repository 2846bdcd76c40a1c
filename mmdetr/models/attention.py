# Copyright (c) mmdetr contributors. All rights reserved.
"""Multi-head attention of the transformer layers.

Every attention of :class:`DetrTransformer` is an ``nn.MultiheadAttention``
(its parameters and state-dict keys), called through
:func:`multi_head_attention`, which picks how to compute it:

- by default, ``nn.MultiheadAttention`` with ``need_weights=False``: torch's
  fused scaled-dot-product kernels (flash / memory-efficient on GPUs, with
  attention dropout inside the kernel; flash on CPUs), no attention map kept;
- when training on a CPU with attention dropout, where torch has no fused
  kernel with dropout and falls back to a chain of separate operations
  (scores, mask, softmax, Bernoulli noise, its division, the product, each a
  new full-size map, and as many again backward),
  :class:`SoftmaxDropoutAttention`: the same function in one pass that
  writes two maps (the softmax and its dropped-out copy, which the backward
  pass needs anyway) and computes its backward in place in one more.

The attention maps dominate DETR's encoder at training resolution (8 heads
x (h*w)^2 per image, e.g. 46 MB per layer for two 800x1066 images).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from mmdetr.models.precision import (autocast_dtype, autocast_enabled_for,
                                     cached_cast, cached_weights_dtype)


class SoftmaxDropoutAttention(torch.autograd.Function):
    """``dropout(softmax(q @ k^T + bias)) @ v`` with its own backward.

    Forward keeps the softmax ``P`` and the dropped-out map
    ``D = P * keep / (1 - p)`` (``keep``: uniform noise ``>= p``, so each
    element is kept with probability ``1 - p``, as ``nn.Dropout``). Backward
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
        dropped = torch.empty_like(probs).uniform_(0, 1, generator=generator)
        dropped.ge_(p).mul_(1 / (1 - p)).mul_(probs)
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


def _use_softmax_dropout_attention(mha: nn.MultiheadAttention,
                                   query: Tensor) -> bool:
    return (mha.training and mha.dropout > 0 and query.device.type == 'cpu'
            and torch.is_grad_enabled()
            and query.dtype in (torch.float32, torch.float64)
            and not autocast_enabled_for('cpu') and mha.batch_first
            and mha._qkv_same_embed_dim and mha.bias_k is None
            and not mha.add_zero_attn and mha.in_proj_bias is not None)


def _plain(mha: nn.MultiheadAttention) -> bool:
    return (mha.batch_first and mha._qkv_same_embed_dim
            and mha.bias_k is None and not mha.add_zero_attn
            and mha.in_proj_bias is not None)


def _attention_with_cached_weights(mha: nn.MultiheadAttention,
                                   query: Tensor, key: Tensor, value: Tensor,
                                   key_padding_mask: Optional[Tensor]
                                   ) -> Tensor:
    """What ``mha(..., need_weights=False)[0]`` computes under autocast in
    inference (torch's own path there: its fused fast path is off under
    autocast), with the projection weights in autocast's dtype kept between
    calls (:func:`~mmdetr.models.precision.cached_cast`) instead of cast
    at every call."""
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


def _in_autocast_dtype(*inputs: Tensor) -> Tuple[Tensor, ...]:
    """Under autocast, float32 ``inputs`` in autocast's dtype (the same
    tensor once for all its places), as the in-projection casts them
    anyway: torch 2.1's attention makes the padding mask a float mask of
    the inputs' dtype and then refuses it beside bfloat16 queries."""
    if not autocast_enabled_for(inputs[0].device.type) or \
            inputs[0].dtype != torch.float32:
        return inputs
    dtype = autocast_dtype(inputs[0].device.type)
    cast = {}
    for x in inputs:
        if id(x) not in cast:
            cast[id(x)] = x.to(dtype)
    return tuple(cast[id(x)] for x in inputs)


def multi_head_attention(mha: nn.MultiheadAttention,
                         query: Tensor,
                         key: Tensor,
                         value: Tensor,
                         key_padding_mask: Optional[Tensor] = None,
                         generator: Optional[torch.Generator] = None
                         ) -> Tensor:
    """``mha(query, key, value, key_padding_mask, need_weights=False)[0]``,
    computed with :class:`SoftmaxDropoutAttention` when training on a CPU
    with attention dropout (see the module's notes).

    Args:
        mha (nn.MultiheadAttention): With ``batch_first=True``.
        query (Tensor): has shape (bs, lq, dims).
        key (Tensor): has shape (bs, lk, dims).
        value (Tensor): has shape (bs, lk, dims).
        key_padding_mask (Tensor, optional): True at keys to ignore, has
            shape (bs, lk). Every query must have at least one key left.
        generator (torch.Generator, optional): Dropout noise of the CPU
            training path (tests); the default generator otherwise.

    Returns:
        Tensor: has shape (bs, lq, dims).
    """
    if key_padding_mask is not None:
        query, key, value = _in_autocast_dtype(query, key, value)
    if cached_weights_dtype(query) is not None and _plain(mha):
        return _attention_with_cached_weights(mha, query, key, value,
                                              key_padding_mask)
    if not _use_softmax_dropout_attention(mha, query):
        return mha(
            query, key, value, key_padding_mask=key_padding_mask,
            need_weights=False)[0]
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
        bias = query.new_zeros(bs, 1, 1, lk).masked_fill_(
            key_padding_mask.view(bs, 1, 1, lk),
            torch.finfo(query.dtype).min).expand(bs, heads, 1, lk).reshape(
                bs * heads, 1, lk)
    out = SoftmaxDropoutAttention.apply(q, k, v, bias, mha.dropout,
                                        generator)
    out = out.view(bs, heads, lq, head_dims).transpose(1, 2).reshape(
        bs, lq, dims)
    return mha.out_proj(out)
