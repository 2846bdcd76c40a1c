# Copyright (c) mmdetr contributors. All rights reserved.
"""A frozen reference of official DETR, written from the paper's equations
and reading the official checkpoint's keys directly.

Nothing here uses mmdetr, mmdet or the converter: the tests convert an
official-layout state dict with mmdetr's converter and compare mmdetr's model
with this reference on the *unconverted* weights, so a misplaced tensor shows.

Key names follow facebookresearch/detr (models/detr.py, transformer.py,
backbone.py): ``backbone.0.body.*`` is a torchvision ResNet with
``FrozenBatchNorm2d`` (weight, bias, running_mean, running_var; no
``num_batches_tracked``), ``input_proj``, ``query_embed``,
``transformer.{encoder,decoder}.layers.i.*`` (decoder cross-attention is
``multihead_attn``), ``transformer.decoder.norm``, ``class_embed`` (92 logits
for COCO: category ids 0..90 and no-object) and ``bbox_embed.layers.0..2``.
"""
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

# The official demo's class names, indexed by COCO category id ('N/A' where
# COCO uses no id); index 91 of the classifier is no-object.
OFFICIAL_COCO_NAMES = [
    'N/A', 'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus',
    'train', 'truck', 'boat', 'traffic light', 'fire hydrant', 'N/A',
    'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse',
    'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'N/A', 'backpack',
    'umbrella', 'N/A', 'N/A', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis',
    'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove',
    'skateboard', 'surfboard', 'tennis racket', 'bottle', 'N/A', 'wine glass',
    'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich',
    'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake',
    'chair', 'couch', 'potted plant', 'bed', 'N/A', 'dining table', 'N/A',
    'N/A', 'toilet', 'N/A', 'tv', 'laptop', 'mouse', 'remote', 'keyboard',
    'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator',
    'N/A', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
    'toothbrush'
]

# torchvision ResNets: blocks per stage, bottleneck or basic block
RESNETS = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
}


# ----------------------------------------------------------- random weights
def official_state_dict(depth: int = 18,
                        d: int = 64,
                        ffn: int = 128,
                        enc: int = 2,
                        dec: int = 2,
                        queries: int = 20,
                        num_logits: int = 92,
                        seed: int = 0,
                        width: int = 64) -> 'OrderedDict[str, Tensor]':
    """Random weights under the official keys, every tensor random (norms
    and BN statistics too, so that swapping any two shows).

    ``width`` is the ResNet's stem and first-stage width (torchvision's is
    64; a narrower one keeps tests of deep ResNets fast).

    The logits of the 11 COCO ids no image uses (0, 12, 26, ...) get a bias
    of -1e4, as a trained model (they were never a target) gives them
    negligible probability; with that, the official 92-way softmax equals the
    81-way one over the kept logits.
    """
    gen = torch.Generator().manual_seed(seed)
    sd = OrderedDict()

    def rand(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=gen) * std + mean

    def conv(name, c_out, c_in, k):
        sd[f'{name}.weight'] = rand(c_out, c_in, k, k,
                                    std=math.sqrt(1.0 / (c_in * k * k)))

    def frozen_bn(name, c):
        sd[f'{name}.weight'] = rand(c, std=0.1, mean=1.0)
        sd[f'{name}.bias'] = rand(c, std=0.1)
        sd[f'{name}.running_mean'] = rand(c, std=0.1)
        sd[f'{name}.running_var'] = torch.rand(c, generator=gen) + 0.5

    def linear(name, c_out, c_in):
        sd[f'{name}.weight'] = rand(c_out, c_in, std=math.sqrt(1.0 / c_in))
        sd[f'{name}.bias'] = rand(c_out, std=0.1)

    def layer_norm(name):
        sd[f'{name}.weight'] = rand(d, std=0.1, mean=1.0)
        sd[f'{name}.bias'] = rand(d, std=0.1)

    def attention(name):
        sd[f'{name}.in_proj_weight'] = rand(3 * d, d, std=math.sqrt(1.0 / d))
        sd[f'{name}.in_proj_bias'] = rand(3 * d, std=0.1)
        linear(f'{name}.out_proj', d, d)

    body = 'backbone.0.body'
    conv(f'{body}.conv1', width, 3, 7)
    frozen_bn(f'{body}.bn1', width)
    blocks, bottleneck = RESNETS[depth]
    expansion = 4 if bottleneck else 1
    in_c = width
    for stage, num_blocks in enumerate(blocks):
        planes = width * 2**stage
        for b in range(num_blocks):
            p = f'{body}.layer{stage + 1}.{b}'
            if bottleneck:
                conv(f'{p}.conv1', planes, in_c, 1)
                frozen_bn(f'{p}.bn1', planes)
                conv(f'{p}.conv2', planes, planes, 3)
                frozen_bn(f'{p}.bn2', planes)
                conv(f'{p}.conv3', planes * 4, planes, 1)
                frozen_bn(f'{p}.bn3', planes * 4)
            else:
                conv(f'{p}.conv1', planes, in_c, 3)
                frozen_bn(f'{p}.bn1', planes)
                conv(f'{p}.conv2', planes, planes, 3)
                frozen_bn(f'{p}.bn2', planes)
            if b == 0 and (stage > 0 or in_c != planes * expansion):
                conv(f'{p}.downsample.0', planes * expansion, in_c, 1)
                frozen_bn(f'{p}.downsample.1', planes * expansion)
            in_c = planes * expansion
    for i in range(enc):
        p = f'transformer.encoder.layers.{i}'
        attention(f'{p}.self_attn')
        linear(f'{p}.linear1', ffn, d)
        linear(f'{p}.linear2', d, ffn)
        layer_norm(f'{p}.norm1')
        layer_norm(f'{p}.norm2')
    for i in range(dec):
        p = f'transformer.decoder.layers.{i}'
        attention(f'{p}.self_attn')
        attention(f'{p}.multihead_attn')
        linear(f'{p}.linear1', ffn, d)
        linear(f'{p}.linear2', d, ffn)
        for k in (1, 2, 3):
            layer_norm(f'{p}.norm{k}')
    layer_norm('transformer.decoder.norm')
    linear('class_embed', num_logits, d)
    if num_logits == 92:
        used = [name != 'N/A' for name in OFFICIAL_COCO_NAMES] + [True]
        sd['class_embed.bias'][~torch.tensor(used)] = -1e4
    linear('bbox_embed.layers.0', d, d)
    linear('bbox_embed.layers.1', d, d)
    linear('bbox_embed.layers.2', 4, d)
    sd['query_embed.weight'] = rand(queries, d)
    conv('input_proj', d, in_c, 1)
    sd['input_proj.bias'] = rand(d, std=0.1)
    return sd


# ------------------------------------------------------------------ forward
def _frozen_bn(sd, name, x):
    # FrozenBatchNorm2d: y = (x - mean) / sqrt(var + 1e-5) * w + b
    scale = sd[f'{name}.weight'] * (sd[f'{name}.running_var'] + 1e-5).rsqrt()
    shift = sd[f'{name}.bias'] - sd[f'{name}.running_mean'] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def _resnet(sd, x, dilation=False):
    """torchvision ResNet up to layer4 (stride in the 3x3 conv, v1.5).

    With ``dilation`` (official ``--dilation``, DC5), layer4 trades its
    stride for a dilation of 2 as torchvision's
    ``replace_stride_with_dilation`` does: no stride anywhere in the stage,
    the first block's 3x3 conv keeps dilation 1, the others use 2 (padding
    equal to the dilation). Bottleneck blocks only, as in torchvision.
    """
    body = 'backbone.0.body'
    x = F.relu(_frozen_bn(sd, f'{body}.bn1',
                          F.conv2d(x, sd[f'{body}.conv1.weight'], stride=2,
                                   padding=3)))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    stage = 1
    while f'{body}.layer{stage}.0.conv1.weight' in sd:
        dilated = dilation and stage == 4
        b = 0
        while f'{body}.layer{stage}.{b}.conv1.weight' in sd:
            p = f'{body}.layer{stage}.{b}'
            stride = 2 if stage > 1 and b == 0 and not dilated else 1
            dil = 2 if dilated and b > 0 else 1
            bottleneck = f'{p}.conv3.weight' in sd
            if bottleneck:
                y = F.relu(_frozen_bn(sd, f'{p}.bn1',
                                      F.conv2d(x, sd[f'{p}.conv1.weight'])))
                y = F.relu(_frozen_bn(sd, f'{p}.bn2', F.conv2d(
                    y, sd[f'{p}.conv2.weight'], stride=stride, padding=dil,
                    dilation=dil)))
                y = _frozen_bn(sd, f'{p}.bn3',
                               F.conv2d(y, sd[f'{p}.conv3.weight']))
            else:
                if dilated:
                    raise NotImplementedError(
                        'torchvision dilates bottleneck blocks only')
                y = F.relu(_frozen_bn(sd, f'{p}.bn1', F.conv2d(
                    x, sd[f'{p}.conv1.weight'], stride=stride, padding=1)))
                y = _frozen_bn(sd, f'{p}.bn2', F.conv2d(
                    y, sd[f'{p}.conv2.weight'], padding=1))
            if f'{p}.downsample.0.weight' in sd:
                x = _frozen_bn(sd, f'{p}.downsample.1', F.conv2d(
                    x, sd[f'{p}.downsample.0.weight'], stride=stride))
            x = F.relu(x + y)
            b += 1
        stage += 1
    return x


def _sine_encoding(mask: Tensor, num_feats: int) -> Tensor:
    """Paper A.4, normalised: positions count valid pixels only, divided by
    the valid extent and scaled to 2*pi. Returns (bs, 2*num_feats, h, w),
    the y half first."""
    not_mask = (~mask).float()
    y = not_mask.cumsum(1)
    x = not_mask.cumsum(2)
    y = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi
    x = x / (x[:, :, -1:] + 1e-6) * 2 * math.pi
    i = torch.arange(num_feats, dtype=torch.float32)
    dim_t = 10000**(2 * (i // 2) / num_feats)
    pos_x, pos_y = x[..., None] / dim_t, y[..., None] / dim_t
    # channel 2k: sin, channel 2k+1: cos
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()),
                        dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()),
                        dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def _attention(sd, name, q, k, v, num_heads, key_padding_mask=None):
    """softmax(Q K^T / sqrt(d_head)) V per head; inputs (bs, n, d)."""
    w_q, w_k, w_v = sd[f'{name}.in_proj_weight'].chunk(3)
    b_q, b_k, b_v = sd[f'{name}.in_proj_bias'].chunk(3)
    bs, n_q, d = q.shape
    d_head = d // num_heads

    def heads(t, w, b):
        return (t @ w.T + b).view(bs, -1, num_heads, d_head).transpose(1, 2)

    q, k, v = heads(q, w_q, b_q), heads(k, w_k, b_k), heads(v, w_v, b_v)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d_head)
    if key_padding_mask is not None:
        logits = logits.masked_fill(key_padding_mask[:, None, None],
                                    float('-inf'))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(bs, n_q, d)
    return out @ sd[f'{name}.out_proj.weight'].T + sd[f'{name}.out_proj.bias']


def _layer_norm(sd, name, x):
    return F.layer_norm(x, x.shape[-1:], sd[f'{name}.weight'],
                        sd[f'{name}.bias'])


def _ffn(sd, p, x):
    x = F.relu(x @ sd[f'{p}.linear1.weight'].T + sd[f'{p}.linear1.bias'])
    return x @ sd[f'{p}.linear2.weight'].T + sd[f'{p}.linear2.bias']


def official_forward(sd: Dict[str, Tensor], images: Tensor,
                     img_shapes: Sequence[Tuple[int, int]],
                     num_heads: int,
                     dilation: bool = False,
                     internals: Optional[dict] = None
                     ) -> Tuple[Tensor, Tensor]:
    """Post-norm DETR on a padded batch.

    Args:
        sd (dict): Official-layout weights.
        images (Tensor): Normalised images padded at the bottom/right, has
            shape (bs, 3, H, W).
        img_shapes (list[tuple]): Each image's (h, w) before padding.
        num_heads (int): Attention heads (not stored in the weights).
        dilation (bool): Official ``--dilation`` (DC5): layer4 dilated
            instead of strided. Not stored in the weights either.
        internals (dict, optional): Receives what official ``DETRsegm``
            reads besides: ``mask`` (bs, h, w) True at padding, ``src``
            the input projection (bs, d, h, w), ``memory`` the encoder
            output (bs, h*w, d) and ``hs`` every decoder layer's normalised
            output (num_dec, bs, queries, d).

    Returns:
        tuple[Tensor, Tensor]: logits (num_dec, bs, queries, num_logits) and
        normalised (cx, cy, w, h) boxes (num_dec, bs, queries, 4).
    """
    bs, _, big_h, big_w = images.shape
    mask = torch.ones(bs, big_h, big_w, dtype=torch.bool)
    for i, (h, w) in enumerate(img_shapes):
        mask[i, :h, :w] = False
    feat = _resnet(sd, images, dilation)
    mask = F.interpolate(mask[None].float(), size=feat.shape[-2:])[0].bool()
    src = F.conv2d(feat, sd['input_proj.weight'], sd['input_proj.bias'])
    d = src.shape[1]
    pos = _sine_encoding(mask, d // 2).flatten(2).transpose(1, 2)
    memory = src.flatten(2).transpose(1, 2)  # (bs, hw, d)
    key_mask = mask.flatten(1)

    i = 0
    while f'transformer.encoder.layers.{i}.norm1.weight' in sd:
        p = f'transformer.encoder.layers.{i}'
        qk = memory + pos
        memory = _layer_norm(sd, f'{p}.norm1', memory + _attention(
            sd, f'{p}.self_attn', qk, qk, memory, num_heads, key_mask))
        memory = _layer_norm(sd, f'{p}.norm2', memory + _ffn(sd, p, memory))
        i += 1

    query_pos = sd['query_embed.weight'][None].expand(bs, -1, -1)
    tgt = torch.zeros_like(query_pos)
    outputs = []
    i = 0
    while f'transformer.decoder.layers.{i}.norm1.weight' in sd:
        p = f'transformer.decoder.layers.{i}'
        qk = tgt + query_pos
        tgt = _layer_norm(sd, f'{p}.norm1', tgt + _attention(
            sd, f'{p}.self_attn', qk, qk, tgt, num_heads))
        tgt = _layer_norm(sd, f'{p}.norm2', tgt + _attention(
            sd, f'{p}.multihead_attn', tgt + query_pos, memory + pos, memory,
            num_heads, key_mask))
        tgt = _layer_norm(sd, f'{p}.norm3', tgt + _ffn(sd, p, tgt))
        outputs.append(_layer_norm(sd, 'transformer.decoder.norm', tgt))
        i += 1
    hs = torch.stack(outputs)
    if internals is not None:
        internals.update(mask=mask, src=src, memory=memory, hs=hs)

    logits = hs @ sd['class_embed.weight'].T + sd['class_embed.bias']
    x = hs
    for k in range(3):
        x = x @ sd[f'bbox_embed.layers.{k}.weight'].T + \
            sd[f'bbox_embed.layers.{k}.bias']
        if k < 2:
            x = F.relu(x)
    return logits, x.sigmoid()


# -------------------------------------------------------------------- loss
def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def generalized_iou(a: Tensor, b: Tensor) -> Tensor:
    """GIoU of every x1y1x2y2 box in ``a`` (n, 4) with every one in ``b``
    (m, 4): IoU - |C \\ (A u B)| / |C|, C the smallest enclosing box."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = (torch.min(a[:, None, 2:], b[None, :, 2:]) -
          torch.max(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None] - inter
    wh_c = (torch.max(a[:, None, 2:], b[None, :, 2:]) -
            torch.min(a[:, None, :2], b[None, :, :2]))
    area_c = wh_c[..., 0] * wh_c[..., 1]
    return inter / union - (area_c - union) / area_c


def official_losses(logits: Tensor, boxes: Tensor, targets: List[dict],
                    eos_coef: float = 0.1) -> Dict[str, Tensor]:
    """The paper's set loss on every decoder layer, weighted as the paper
    (CE 1, L1 5, GIoU 2) and named as mmdet names them.

    Args:
        logits (Tensor): (num_dec, bs, queries, C); class C-1 is no-object.
        boxes (Tensor): Normalised (cx, cy, w, h), (num_dec, bs, queries, 4).
        targets (list[dict]): Per image ``labels`` (n, ) in 0..C-2 and
            ``boxes`` (n, 4) normalised (cx, cy, w, h).

    Returns:
        dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` of the
        last layer, ``d{i}.loss_*`` of the others.
    """
    num_dec, bs, _, num_logits = logits.shape
    no_object = num_logits - 1
    num_boxes = max(sum(len(t['labels']) for t in targets), 1)
    class_weight = torch.ones(num_logits)
    class_weight[no_object] = eos_coef
    losses = {}
    for layer in range(num_dec):
        ce_num = ce_den = l1 = giou = 0
        for i, t in enumerate(targets):
            prob = logits[layer, i].softmax(-1)
            pred = boxes[layer, i]
            # Hungarian matching: cost = -p(class) + 5 L1 - 2 GIoU
            cost = (-prob[:, t['labels']] +
                    5 * torch.cdist(pred, t['boxes'], p=1) -
                    2 * generalized_iou(cxcywh_to_xyxy(pred),
                                        cxcywh_to_xyxy(t['boxes'])))
            rows, cols = linear_sum_assignment(cost.detach().numpy())
            rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
            target_class = torch.full((len(pred), ), no_object)
            target_class[rows] = t['labels'][cols]
            # weighted mean of -log p(target class), no-object weighs 0.1
            nll = -logits[layer, i].log_softmax(-1).gather(
                1, target_class[:, None])[:, 0]
            w = class_weight[target_class]
            ce_num = ce_num + (w * nll).sum()
            ce_den = ce_den + w.sum()
            l1 = l1 + (pred[rows] - t['boxes'][cols]).abs().sum()
            giou = giou + (1 - torch.diag(generalized_iou(
                cxcywh_to_xyxy(pred[rows]),
                cxcywh_to_xyxy(t['boxes'][cols])))).sum()
        prefix = '' if layer == num_dec - 1 else f'd{layer}.'
        losses[f'{prefix}loss_cls'] = ce_num / ce_den
        losses[f'{prefix}loss_bbox'] = 5 * l1 / num_boxes
        losses[f'{prefix}loss_iou'] = 2 * giou / num_boxes
    return losses
