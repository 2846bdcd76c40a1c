# Copyright (c) mmdetr contributors. All rights reserved.
"""A frozen reference of official DETR's panoptic parts, written from the
paper (section 4.4, figure 8) and the official code's observed behaviour,
reading the official checkpoint's keys directly.

Nothing here uses mmdetr or mmdet. Keys (facebookresearch/detr
``DETRsegm``): ``bbox_attention.{q_linear,k_linear}.{weight,bias}``;
``mask_head.lay{1..5}``, ``mask_head.gn{1..5}``, ``mask_head.out_lay``,
``mask_head.adapter{1..3}``, all ``{weight,bias}``; the detector's weights
under ``detr.``.

Behaviour reproduced (including the quirks):

- attention maps: one softmax per query over all heads and pixels jointly;
  padded pixels -inf; queries scaled by 1/sqrt(d/heads) before the product;
- mask head: every conv 3x3 (adapters 1x1), GroupNorm(8), ReLU; the coarse
  map upsampled with torch ``'nearest'`` to each backbone level and added;
- panoptic: class max over all logits incl. no-object; masks resized
  (bilinear) from the *padded* stride-4 map to the image size; per-pixel
  argmax of a softmax over queries; stuff duplicates merged into their
  first query in the first pass only; the id map resized with PIL NEAREST
  through its RGB encoding; areas counted at the output size; segments of
  area <= 4 dropped and everything recomputed until none is.
"""
import math
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


# ----------------------------------------------------------- random weights
def official_mask_state_dict(d: int, heads: int, fpn_dims: Sequence[int],
                             seed: int = 0) -> 'OrderedDict[str, Tensor]':
    """Random ``bbox_attention.*`` and ``mask_head.*`` weights, every tensor
    random (biases and GroupNorm affine too, so a swap shows)."""
    gen = torch.Generator().manual_seed(seed)
    sd = OrderedDict()

    def rand(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=gen) * std + mean

    for name in ('q_linear', 'k_linear'):
        sd[f'bbox_attention.{name}.weight'] = rand(d, d, std=d**-0.5)
        sd[f'bbox_attention.{name}.bias'] = rand(d, std=0.1)
    dim = d + heads
    widths = [dim, dim, d // 2, d // 4, d // 8, d // 16]
    for i in range(1, 6):
        c_in, c_out = widths[i - 1], widths[i]
        sd[f'mask_head.lay{i}.weight'] = rand(c_out, c_in, 3, 3,
                                              std=(9 * c_in)**-0.5)
        sd[f'mask_head.lay{i}.bias'] = rand(c_out, std=0.1)
        sd[f'mask_head.gn{i}.weight'] = rand(c_out, std=0.1, mean=1.0)
        sd[f'mask_head.gn{i}.bias'] = rand(c_out, std=0.1)
    sd['mask_head.out_lay.weight'] = rand(1, widths[5], 3, 3,
                                          std=(9 * widths[5])**-0.5)
    sd['mask_head.out_lay.bias'] = rand(1, std=0.1)
    for i, c_in in enumerate(fpn_dims, start=1):
        sd[f'mask_head.adapter{i}.weight'] = rand(widths[i + 1], c_in, 1, 1,
                                                  std=c_in**-0.5)
        sd[f'mask_head.adapter{i}.bias'] = rand(widths[i + 1], std=0.1)
    return sd


# ------------------------------------------------------------------ forward
def attention_maps(sd: Dict[str, Tensor], hs: Tensor, memory: Tensor,
                   mask: Tensor, heads: int) -> Tensor:
    """hs (bs, nq, d), memory (bs, d, h, w), mask (bs, h, w) True = pad ->
    (bs, nq, heads, h, w), summing to 1 over (heads, h, w)."""
    bs, nq, d = hs.shape
    h, w = memory.shape[-2:]
    c = d // heads
    q = hs @ sd['bbox_attention.q_linear.weight'].T + \
        sd['bbox_attention.q_linear.bias']
    k = torch.einsum('bdhw,ed->behw', memory,
                     sd['bbox_attention.k_linear.weight']) + \
        sd['bbox_attention.k_linear.bias'][None, :, None, None]
    q = q.view(bs, nq, heads, c) / math.sqrt(c)
    k = k.view(bs, heads, c, h, w)
    logits = torch.einsum('bqnc,bnchw->bqnhw', q, k)
    logits = logits.masked_fill(mask[:, None, None], float('-inf'))
    return logits.flatten(2).softmax(-1).view(bs, nq, heads, h, w)


def mask_head(sd: Dict[str, Tensor], src_proj: Tensor, maps: Tensor,
              fpns: Sequence[Tensor]) -> Tensor:
    """src_proj (bs, d, h, w), maps (bs, nq, heads, h, w), fpns at strides
    16, 8, 4 -> mask logits (bs, nq, H/4, W/4)."""
    bs, nq = maps.shape[:2]

    def conv(name, x, pad):
        return F.conv2d(x, sd[f'mask_head.{name}.weight'],
                        sd[f'mask_head.{name}.bias'], padding=pad)

    def gn_relu(i, x):
        return F.relu(F.group_norm(x, 8, sd[f'mask_head.gn{i}.weight'],
                                   sd[f'mask_head.gn{i}.bias']))

    def repeat(t):
        # every image's map once per query, image-major
        return torch.stack([t[b] for b in range(bs) for _ in range(nq)])

    x = torch.cat([repeat(src_proj), maps.reshape(bs * nq, *maps.shape[2:])],
                  1)
    x = gn_relu(1, conv('lay1', x, 1))
    x = gn_relu(2, conv('lay2', x, 1))
    for i, fpn in enumerate(fpns, start=1):
        lateral = repeat(conv(f'adapter{i}', fpn, 0))
        x = lateral + F.interpolate(x, size=lateral.shape[-2:],
                                    mode='nearest')
        x = gn_relu(i + 2, conv(f'lay{i + 2}', x, 1))
    x = conv('out_lay', x, 1)
    return x.view(bs, nq, *x.shape[-2:])


def official_masks(sd: Dict[str, Tensor], hs_last: Tensor, memory: Tensor,
                   mask: Tensor, src_proj: Tensor, fpns: Sequence[Tensor],
                   heads: int) -> Tensor:
    """``DETRsegm``'s ``pred_masks`` from the detector's tensors."""
    maps = attention_maps(sd, hs_last, memory, mask, heads)
    return mask_head(sd, src_proj, maps, fpns)


# -------------------------------------------------------------- panoptic
def _id2rgb(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic colour encoding: id = R + 256 G + 256^2 B."""
    return np.stack([(ids >> (8 * c)) & 255 for c in range(3)],
                    -1).astype(np.uint8)


def _rgb2id(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def official_panoptic(logits: Tensor, masks: Tensor, is_thing: Sequence[bool],
                      size: Tuple[int, int], target_size: Tuple[int, int],
                      threshold: float = 0.85,
                      crop_to: Tuple[int, int] = None
                      ) -> Tuple[np.ndarray, List[dict]]:
    """``PostProcessPanoptic`` for one image.

    Args:
        logits: (nq, C + 1), no-object last; is_thing per class 0..C-1.
        masks: (nq, h4, w4) mask logits of the padded batch.
        size: (h, w) of the image before padding; target_size: output size.
        crop_to: None for official; (H, W) of the padded batch to upsample
            there and crop ``size`` instead (the batch-independent variant).

    Returns:
        The id map at ``target_size`` (int64; ids index the segments, and
        with no segment at all, 0 means void) and the segments
        ``[{'id', 'category_id', 'area'}]``.
    """
    no_object = logits.shape[-1] - 1
    prob = logits.softmax(-1)
    scores, classes = prob.max(-1)
    keep = (classes != no_object) & (scores > threshold)
    scores, classes, masks = scores[keep], classes[keep], masks[keep]
    h, w = size
    if crop_to is None:
        masks = F.interpolate(masks[:, None], size=(h, w), mode='bilinear',
                              align_corners=False)[:, 0]
    else:
        masks = F.interpolate(masks[:, None], size=tuple(crop_to),
                              mode='bilinear',
                              align_corners=False)[:, 0, :h, :w]
    masks = masks.flatten(1)
    # the same stuff class predicted by several queries
    equiv = {}
    for k, c in enumerate(classes.tolist()):
        if not is_thing[c]:
            equiv.setdefault(c, []).append(k)

    def ids_and_areas(masks, n, dedup):
        if n == 0:
            m = torch.zeros(h, w, dtype=torch.long)
        else:
            m = masks.transpose(0, 1).softmax(-1).argmax(-1).view(h, w)
        if dedup:
            for members in equiv.values():
                for k in members[1:]:
                    m[m == k] = members[0]
        img = Image.fromarray(_id2rgb(m.numpy()))
        img = img.resize((target_size[1], target_size[0]),
                         resample=Image.NEAREST)
        m = _rgb2id(np.asarray(img))
        return m, [int((m == i).sum()) for i in range(n)]

    m, area = ids_and_areas(masks, len(scores), True)
    while len(classes):
        small = torch.tensor([a <= 4 for a in area], dtype=torch.bool)
        if not small.any():
            break
        scores, classes, masks = scores[~small], classes[~small], masks[~small]
        m, area = ids_and_areas(masks, len(scores), False)
    segments = [dict(id=i, category_id=int(classes[i]), area=a)
                for i, a in enumerate(area)]
    return m, segments


# ------------------------------------------------------------------- segm
def official_segm(masks: Tensor, sizes: Sequence[Tuple[int, int]],
                  orig_sizes: Sequence[Tuple[int, int]],
                  threshold: float = 0.5) -> List[Tensor]:
    """``PostProcessSegm`` for a batch: masks (bs, nq, h4, w4) -> per image
    uint8 masks (nq, 1, *orig_size): upsampled to the largest image,
    thresholded, cropped to the image, nearest-resized to its original
    size."""
    big_h = max(h for h, _ in sizes)
    big_w = max(w for _, w in sizes)
    up = F.interpolate(masks, size=(big_h, big_w), mode='bilinear',
                       align_corners=False)
    up = (up.sigmoid() > threshold)
    out = []
    for m, (h, w), orig in zip(up, sizes, orig_sizes):
        m = m[:, :h, :w].unsqueeze(1)
        out.append(F.interpolate(m.float(), size=tuple(orig),
                                 mode='nearest').byte())
    return out


# ------------------------------------------------------------------- loss
def official_mask_losses(pred_masks: Tensor, gt_masks: Sequence[Tensor],
                         indices: Sequence[Tuple[Tensor, Tensor]],
                         num_boxes: float) -> Dict[str, float]:
    """``SetCriterion.loss_masks``: pred_masks (bs, nq, h4, w4); gt_masks per
    image (n_i, h_i, w_i); indices per image (query ids, gt ids). Targets
    are zero-padded to the largest (h, w) of the batch; predictions are
    upsampled (bilinear) to it; focal (alpha 0.25, gamma 2, mean over
    pixels) and dice (+1 smoothing) are summed over masks / num_boxes."""
    big_h = max(m.shape[-2] for m in gt_masks)
    big_w = max(m.shape[-1] for m in gt_masks)
    src, tgt = [], []
    for b, (q, g) in enumerate(indices):
        for qi, gi in zip(q.tolist(), g.tolist()):
            src.append(pred_masks[b, qi])
            m = gt_masks[b][gi].float()
            padded = torch.zeros(big_h, big_w)
            padded[:m.shape[0], :m.shape[1]] = m
            tgt.append(padded)
    x = F.interpolate(torch.stack(src)[:, None], size=(big_h, big_w),
                      mode='bilinear', align_corners=False)[:, 0].flatten(1)
    t = torch.stack(tgt).flatten(1)
    p = x.sigmoid()
    ce = -(t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = 0.25 * t + 0.75 * (1 - t)
    focal = (alpha_t * ce * (1 - p_t)**2).mean(1).sum() / num_boxes
    dice = (1 - (2 * (p * t).sum(1) + 1) /
            (p.sum(1) + t.sum(1) + 1)).sum() / num_boxes
    return dict(loss_mask=float(focal), loss_dice=float(dice))


# ------------------------------------------------------ the whole DETRsegm
def official_segm_forward(sd: Dict[str, Tensor], images: Tensor,
                          img_shapes: Sequence[Tuple[int, int]],
                          num_heads: int) -> Tuple[Tensor, Tensor]:
    """``DETRsegm`` on a padded batch, from its official state dict
    (``detr.*``, ``bbox_attention.*``, ``mask_head.*``).

    The detector is :func:`reference_detr.official_forward`; the mask head
    (with the transformer's ``num_heads`` attention maps) reads its last
    decoder layer, encoder memory, padding mask, input
    projection and the ResNet's layer3, layer2 and layer1 outputs (strides
    16, 8, 4; each computed by the reference ResNet stopped after that
    layer).

    Returns:
        tuple[Tensor, Tensor]: the last layer's logits (bs, queries,
        num_logits) and mask logits (bs, queries, H/4, W/4).
    """
    from .reference_detr import _resnet, official_forward
    detr = {k[len('detr.'):]: v for k, v in sd.items()
            if k.startswith('detr.')}
    internals = {}
    logits, _ = official_forward(detr, images, img_shapes, num_heads,
                                 internals=internals)

    def up_to(layer):
        deeper = tuple(f'backbone.0.body.layer{i}.'
                       for i in range(layer + 1, 5))
        return _resnet({k: v for k, v in detr.items()
                        if not k.startswith(deeper)}, images)

    fpns = [up_to(3), up_to(2), up_to(1)]
    mask = internals['mask']
    bs, (h, w) = len(images), mask.shape[-2:]
    memory = internals['memory'].transpose(1, 2).reshape(bs, -1, h, w)
    masks = official_masks(sd, internals['hs'][-1], memory, mask,
                           internals['src'], fpns, num_heads)
    return logits[-1], masks
