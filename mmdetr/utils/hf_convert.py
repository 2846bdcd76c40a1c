# Copyright (c) mmdetr contributors. All rights reserved.
"""Hugging Face transformers' DETR (``DetrForObjectDetection``), in and out.

A transformers DETR is a directory: ``config.json`` (the architecture and
``id2label``), the weights (``model.safetensors``; ``pytorch_model.bin``
from older versions) and, for ``pipeline``, ``preprocessor_config.json``.
This module reads and writes the three and converts the weights to and from
mmdetr's layout (:mod:`mmdetr.utils.convert`).

Key layout, as ``save_pretrained`` writes it (4.x and 5.x alike)::

    model.backbone.conv_encoder.model.*      the ResNet, in one of two layouts:
        timm's (conv1, bn1, layerS.B.{convK,bnK,downsample.0/1}; the hub's
        facebook/detr-resnet-* models) or transformers' own ResNet
        (embedder.embedder.{convolution,normalization},
        encoder.stages.S.layers.B.{layer.K,shortcut}.{convolution,
        normalization}); both with frozen BN (no num_batches_tracked)
    model.input_projection, model.query_position_embeddings
    model.position_embedding.{row,column}_embeddings   (learned only)
    model.encoder.layers.i.{self_attn.{q,k,v,out}_proj, self_attn_layer_norm,
                            fc1, fc2, final_layer_norm}
    model.decoder.layers.i.{self_attn, self_attn_layer_norm, encoder_attn,
                            encoder_attn_layer_norm, fc1, fc2,
                            final_layer_norm}
    model.decoder.layernorm, class_labels_classifier, bbox_predictor.layers.k

transformers 5.x names some modules otherwise in memory
(``model.backbone.model``, ``o_proj``, ``mlp.fc1``), so a state dict saved
from memory (``torch.save(model.state_dict())``) has those names; 4.x kept
the learned encoding under ``model.backbone.position_embedding``. All are
read; ``save_pretrained``'s names are written.

What the weights do not say (heads, activation, dilation) comes from
``config.json``; whatever mmdetr's DETR cannot compute the way transformers
does is refused with the field and its value (:class:`HFConversionError`).
"""
import copy
import json
import math
import os
import os.path as osp
import re
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .convert import (CheckpointLayoutError, Rules, add_bn_counters,
                      drop_training_only, keep_classifier_rows, layer_rules,
                      rename_keys)

CONFIG_FILE = 'config.json'
SAFETENSORS_FILE = 'model.safetensors'
SAFETENSORS_INDEX = 'model.safetensors.index.json'
BIN_FILE = 'pytorch_model.bin'
PREPROCESSOR_FILE = 'preprocessor_config.json'
# id2label's name for COCO category ids no image uses (the hub's COCO models
# keep one logit per id 0..90, as official DETR)
PLACEHOLDER_LABEL = 'N/A'


class HFConversionError(CheckpointLayoutError):
    """A transformers DETR that mmdetr cannot compute as transformers does,
    or an mmdetr model transformers' DETR cannot hold."""


# ------------------------------------------------------------- key layouts
_BACKBONE = 'model.backbone.conv_encoder.model.'


def _hf_resnet_rules() -> Rules:
    """mmdet's ResNet <-> transformers' ResNet: stem, then per stage S
    (mmdet's ``layerS``, transformers' ``stages.{S-1}``) each block's convK/
    bnK (``layer.{K-1}``) and downsample (``shortcut``)."""
    stem = _BACKBONE + 'embedder.embedder.'
    rules = [('backbone.conv1.{p}', stem + 'convolution.{p}'),
             ('backbone.bn1.{p}', stem + 'normalization.{p}')]
    for stage in range(1, 5):
        ours = f'backbone.layer{stage}.{{i}}.'
        theirs = f'{_BACKBONE}encoder.stages.{stage - 1}.layers.{{i}}.'
        parts = {f'downsample.{j}': f'shortcut.{name}'
                 for j, name in enumerate(('convolution', 'normalization'))}
        for k in (1, 2, 3):
            parts[f'conv{k}'] = f'layer.{k - 1}.convolution'
            parts[f'bn{k}'] = f'layer.{k - 1}.normalization'
        rules += [(f'{ours}{a}.{{p}}', f'{theirs}{b}.{{p}}')
                  for a, b in parts.items()]
    return tuple(rules)


_TRANSFORMER: Rules = (
    ('bbox_head.input_proj.{p}', 'model.input_projection.{p}'),
    ('bbox_head.query_embedding.{p}', 'model.query_position_embeddings.{p}'),
    ('bbox_head.positional_encoding.row_embed.{p}',
     'model.position_embedding.row_embeddings.{p}'),
    ('bbox_head.positional_encoding.col_embed.{p}',
     'model.position_embedding.column_embeddings.{p}'),
    # attention: q/k/v_proj are merged into (split from) in_proj_* first
    *layer_rules(
        'model.encoder.layers.{i}.', 'model.decoder.layers.{i}.', {
            'self_attn': 'self_attn',
            'cross_attn': 'encoder_attn',
            'linear1': 'fc1',
            'linear2': 'fc2',
            'norm1': 'self_attn_layer_norm',
            'norm2': 'final_layer_norm',
        }, {
            'norm2': 'encoder_attn_layer_norm',
            'norm3': 'final_layer_norm'
        }),
    ('bbox_head.transformer.decoder_norm.{p}', 'model.decoder.layernorm.{p}'),
    ('bbox_head.fc_cls.{p}', 'class_labels_classifier.{p}'),
    ('bbox_head.reg_ffn.0.{p}', 'bbox_predictor.layers.0.{p}'),
    ('bbox_head.reg_ffn.2.{p}', 'bbox_predictor.layers.1.{p}'),
    ('bbox_head.fc_reg.{p}', 'bbox_predictor.layers.2.{p}'),
)

#: the two backbone layouts: transformers' own ResNet and timm's
BACKBONE_LAYOUTS = ('resnet', 'timm')
HF_RULES: Dict[str, Rules] = {
    'resnet': _hf_resnet_rules() + _TRANSFORMER,
    # timm's ResNet names its parts as torchvision's and mmdet's do
    'timm': (('backbone.{p}', _BACKBONE + '{p}'), ) + _TRANSFORMER,
}

# names of a state dict saved from a 5.x model in memory, or by 4.x for the
# learned encoding -> the names save_pretrained writes
_ALIASES = (
    (re.compile(r'^model\.backbone\.model\.'), _BACKBONE),
    (re.compile(r'^model\.backbone\.position_embedding\.'),
     'model.position_embedding.'),
    (re.compile(r'\.o_proj\.'), '.out_proj.'),
    (re.compile(r'\.mlp\.(fc[12])\.'), r'.\1.'),
)
_QKV = re.compile(r'^(?P<base>.*\.)(?P<x>[qkv])_proj\.(?P<kind>weight|bias)$')


def looks_like_hf(state_dict: Dict[str, Tensor]) -> bool:
    """Whether the keys are a transformers ``DetrForObjectDetection``'s."""
    return any(k.startswith('class_labels_classifier.') for k in state_dict)


def _saved_names(state_dict: Dict[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    out = OrderedDict()
    for key, value in state_dict.items():
        for pattern, repl in _ALIASES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def _merge_qkv(state_dict: Dict[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """Each attention's ``q_proj``, ``k_proj``, ``v_proj`` -> one
    ``in_proj_weight`` / ``in_proj_bias`` (rows q, k, v), as
    ``nn.MultiheadAttention`` holds them, at q_proj's place."""
    groups = {}
    for key in state_dict:
        match = _QKV.match(key)
        if match:
            groups.setdefault((match['base'], match['kind']),
                              set()).add(match['x'])
    for (base, kind), found in groups.items():
        if found != set('qkv'):
            raise HFConversionError(
                f'{base}: has {sorted(x + "_proj" for x in found)} '
                f'{kind}, not all of q_proj, k_proj, v_proj')
    out = OrderedDict()
    for key, value in state_dict.items():
        match = _QKV.match(key)
        if not match:
            out[key] = value
        elif match['x'] == 'q':
            base, kind = match['base'], match['kind']
            out[f'{base}in_proj_{kind}'] = torch.cat(
                [state_dict[f'{base}{x}_proj.{kind}'] for x in 'qkv'])
    return out


def _split_qkv(state_dict: Dict[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """The inverse of :func:`_merge_qkv` (each part a copy, not a view of
    ``in_proj_*``)."""
    out = OrderedDict()
    for key, value in state_dict.items():
        match = re.match(r'^(.*\.)in_proj_(weight|bias)$', key)
        if not match:
            out[key] = value
            continue
        for x, part in zip('qkv', value.chunk(3)):
            out[f'{match[1]}{x}_proj.{match[2]}'] = part.clone()
    return out


def backbone_layout(state_dict: Dict[str, Tensor]) -> str:
    """``'resnet'`` (transformers' ResNet) or ``'timm'``, from the keys
    (save_pretrained's names)."""
    if any(k.startswith(_BACKBONE + 'embedder.') for k in state_dict):
        return 'resnet'
    if any(k.startswith(_BACKBONE + 'conv1.') for k in state_dict):
        return 'timm'
    keys = [k for k in state_dict if k.startswith('model.backbone.')][:3]
    raise HFConversionError(
        'the backbone is neither timm\'s ResNet (model.backbone.conv_encoder.'
        'model.conv1.*) nor transformers\' ResNet (model.backbone.'
        f'conv_encoder.model.embedder.*): its keys start {keys}')


# --------------------------------------------------------------- the model
@dataclass(frozen=True)
class DetrArch:
    """What a DETR computes beyond what the shapes of its weights say, and
    what both sides must agree on.

    Attributes:
        depth (int): ResNet depth (18, 34, 50, 101, 152).
        stem_channels (int): Channels of the ResNet stem (64).
        base_channels (int): Channels of the first stage's blocks (64).
        dc5 (bool): The last stage dilated instead of strided (stride 16).
        embed_dims (int): Transformer width (``d_model``).
        num_heads (int): Attention heads.
        feedforward_channels (int): FFN hidden width.
        num_encoder_layers (int): Encoder layers.
        num_decoder_layers (int): Decoder layers.
        num_queries (int): Object queries.
        activation (str): FFN activation, ``'relu'`` or ``'gelu'``.
        positional_encoding (str): ``'sine'`` or ``'learned'``.
    """
    depth: int
    stem_channels: int
    base_channels: int
    dc5: bool
    embed_dims: int
    num_heads: int
    feedforward_channels: int
    num_encoder_layers: int
    num_decoder_layers: int
    num_queries: int
    activation: str
    positional_encoding: str


# DetrArch field -> where config.json says it, for messages
HF_FIELDS = dict(
    depth='backbone', stem_channels='backbone_config.embedding_size',
    base_channels='backbone_config.hidden_sizes', dc5='dilation',
    embed_dims='d_model', num_heads='encoder_attention_heads',
    feedforward_channels='encoder_ffn_dim',
    num_encoder_layers='encoder_layers',
    num_decoder_layers='decoder_layers', num_queries='num_queries',
    activation='activation_function',
    positional_encoding='position_embedding_type')
# (blocks per stage, bottleneck) -> depth, as mmdet's ResNet.arch_settings
_RESNETS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}
_ACTIVATIONS = ('relu', 'gelu')
_TIMM_RESNET = re.compile(r'^(?:timm/)?resnet(\d+)(?:\.[\w-]+)?$')


def _resnet_of_weights(state_dict: Dict[str, Tensor]) -> Tuple[int, int, int]:
    """(depth, stem_channels, base_channels) of the backbone in ``state_dict``
    (mmdetr's keys), as mmdet's ResNet would need them.

    Raises:
        HFConversionError: blocks or widths mmdet's ResNet has no setting
            for.
    """
    blocks = []
    for stage in range(1, 5):
        n = 0
        while f'backbone.layer{stage}.{n}.conv1.weight' in state_dict:
            n += 1
        blocks.append(n)
    bottleneck = 'backbone.layer1.0.conv3.weight' in state_dict
    depth = _RESNETS.get((tuple(blocks), bottleneck))
    kind = 'bottleneck' if bottleneck else 'basic'
    if depth is None:
        raise HFConversionError(
            f'backbone: {kind} blocks per stage {blocks} are none of '
            f'mmdet\'s ResNets ({sorted(set(_RESNETS.values()))})')
    stem = state_dict['backbone.conv1.weight'].shape[0]
    base = state_dict['backbone.layer1.0.conv1.weight'].shape[0]
    for stage in range(1, 5):
        width = state_dict[f'backbone.layer{stage}.0.conv1.weight'].shape[0]
        if width != base * 2**(stage - 1):
            raise HFConversionError(
                f'backbone: stage {stage} is {width} channels wide; mmdet\'s '
                f'ResNet doubles the first stage\'s {base} at every stage '
                '(backbone_config.hidden_sizes)')
    return depth, stem, base


def _refuse(field: str, value, why: str):
    raise HFConversionError(f'config.json: {field}={value!r}: {why}')


def _check_backbone_config(config: dict, layout: str, depth: int,
                           notes: List[str]) -> bool:
    """Check what config.json says about the backbone; return whether it is
    dilated (DC5) as transformers builds it."""
    backbone_cfg = config.get('backbone_config') or {}
    dilation = bool(config.get('dilation', False))
    if config.get('num_channels', 3) != 3:
        _refuse('num_channels', config['num_channels'],
                'mmdetr\'s DETR reads 3-channel images')
    if layout == 'resnet':
        model_type = backbone_cfg.get('model_type', 'resnet')
        if model_type != 'resnet':
            _refuse('backbone_config.model_type', model_type,
                    'the weights are transformers\' ResNet\'s')
        for key, want in (('hidden_act', 'relu'),
                          ('downsample_in_first_stage', False),
                          ('downsample_in_bottleneck', False)):
            if backbone_cfg.get(key, want) != want:
                _refuse(f'backbone_config.{key}', backbone_cfg[key],
                        f'mmdet\'s ResNet has {key}={want!r} only')
        out = backbone_cfg.get('out_features') or ['stage4']
        if out[-1] != 'stage4':
            _refuse('backbone_config.out_features', out,
                    'DETR reads the last stage (stage4) in mmdetr')
        if dilation:
            notes.append(
                'config.json has dilation=true, which transformers ignores '
                'for its own ResNet backbone (it builds a dilated ResNet '
                'only through timm): converted undilated, stride 32, as '
                'transformers computes it')
        return False
    # timm: 4.x stores use_timm_backbone + backbone; 5.x a timm_backbone
    # backbone_config
    if backbone_cfg:
        model_type = backbone_cfg.get('model_type')
        if model_type != 'timm_backbone':
            _refuse('backbone_config.model_type', model_type,
                    'the weights are timm\'s ResNet\'s (timm_backbone)')
        name = backbone_cfg.get('backbone', 'resnet50')
        field = 'backbone_config.backbone'
        stride = backbone_cfg.get('output_stride')
        if stride not in (None, 16, 32):
            _refuse('backbone_config.output_stride', stride,
                    'mmdetr builds stride 32 or 16 (DC5) only')
        dilation = dilation or stride == 16
    else:
        name, field = config.get('backbone', 'resnet50'), 'backbone'
    match = _TIMM_RESNET.match(str(name))
    if match is None:
        _refuse(field, name, 'mmdetr\'s DETR holds timm\'s plain ResNets '
                '(resnet18/34/50/101/152) only')
    if int(match[1]) != depth:
        _refuse(field, name, f'the weights are a ResNet-{depth}')
    if dilation and depth < 50:
        _refuse('dilation', True, 'torchvision and timm dilate bottleneck '
                'ResNets (50 and deeper) only')
    return dilation


def arch_from_hf(config: dict, layout: str, state_dict: Dict[str, Tensor],
                 notes: List[str]) -> DetrArch:
    """The architecture of a transformers DETR.

    Args:
        config (dict): Its ``config.json``.
        layout (str): Its backbone layout, one of :data:`BACKBONE_LAYOUTS`.
        state_dict (dict): Its weights converted to mmdetr's keys (the
            ResNet's depth and widths are read from them).
        notes (list): Receives a line for what is converted other than
            transformers stores it.

    Raises:
        HFConversionError: naming the field of ``config.json`` and its
            value that mmdetr cannot compute as transformers does.
    """
    model_type = config.get('model_type', 'detr')
    if model_type != 'detr':
        _refuse('model_type', model_type,
                'not DETR (DetrForObjectDetection)')
    if config.get('auxiliary_loss', False):
        _refuse('auxiliary_loss', True,
                'with it, transformers applies the decoder\'s final '
                'LayerNorm inside the layer loop: every decoder layer then '
                'reads the normalised output of the one before, and the '
                'last output is normalised twice. Official DETR and mmdetr '
                'normalise only the outputs, so the converted model would '
                'compute something else than this checkpoint was trained '
                'to; it is not converted')
    activation = config.get('activation_function', 'relu')
    if activation not in _ACTIVATIONS:
        _refuse('activation_function', activation,
                f'mmdetr\'s transformer has {_ACTIVATIONS}')
    position = config.get('position_embedding_type', 'sine')
    if position not in ('sine', 'learned'):
        _refuse('position_embedding_type', position,
                'mmdetr has sine and learned encodings')
    learned_weights = 'bbox_head.positional_encoding.row_embed.weight' in \
        state_dict
    if learned_weights != (position == 'learned'):
        _refuse('position_embedding_type', position,
                'the weights ' + ('have' if learned_weights else 'lack') +
                ' a learned position embedding')
    for enc, dec, default in (('encoder_attention_heads',
                               'decoder_attention_heads', 8),
                              ('encoder_ffn_dim', 'decoder_ffn_dim', 2048)):
        if config.get(enc, default) != config.get(dec, default):
            _refuse(dec, config.get(dec, default),
                    f'differs from {enc}={config.get(enc, default)}; '
                    'mmdetr\'s encoder and decoder layers share one setting')
    if config.get('encoder_layerdrop') or config.get('decoder_layerdrop'):
        notes.append('encoder/decoder_layerdrop is training-only in '
                     'transformers; mmdetr has none')
    depth, stem, base = _resnet_of_weights(state_dict)
    dc5 = _check_backbone_config(config, layout, depth, notes)
    d_model = config.get('d_model', 256)
    return DetrArch(
        depth=depth, stem_channels=stem, base_channels=base, dc5=dc5,
        embed_dims=d_model,
        num_heads=config.get('encoder_attention_heads', 8),
        feedforward_channels=config.get('encoder_ffn_dim', 2048),
        num_encoder_layers=config.get('encoder_layers', 6),
        num_decoder_layers=config.get('decoder_layers', 6),
        num_queries=config.get('num_queries', 100),
        activation=activation, positional_encoding=position)


def hf_classes(config: dict, num_logits: int) -> List[str]:
    """The class names of the ``num_logits - 1`` labels, from ``id2label``.

    Raises:
        HFConversionError: ``id2label`` does not name every label.
    """
    id2label = {int(k): v for k, v in (config.get('id2label') or {}).items()}
    num_labels = num_logits - 1
    if sorted(id2label) != list(range(num_labels)):
        _refuse('id2label', config.get('id2label'),
                f'the classifier has {num_labels} labels + no-object; '
                f'id2label must name labels 0..{num_labels - 1}')
    return [str(id2label[i]) for i in range(num_labels)]


def hf_to_mmdetr(state_dict: Dict[str, Tensor], config: dict,
                 notes: List[str]
                 ) -> Tuple['OrderedDict[str, Tensor]', Tuple[str, ...],
                            DetrArch]:
    """A transformers DETR's weights in mmdetr's layout.

    Args:
        state_dict (dict): ``DetrForObjectDetection`` weights (4.x or 5.x
            names, either backbone layout).
        config (dict): Its ``config.json``.
        notes (list): Receives one line per change that is more than a
            renaming.

    Returns:
        tuple: the state dict (the same tensors; attention q/k/v
        concatenated; the classifier without the rows of ``'N/A'`` labels),
        the class names of its classifier rows, and its
        :class:`DetrArch`.

    Raises:
        HFConversionError: keys that have no place in mmdetr's DETR, or a
            config mmdetr cannot compute as transformers does.
    """
    hf = _merge_qkv(_saved_names(state_dict))
    layout = backbone_layout(hf)
    notes.append('backbone layout: ' + (
        'transformers\' ResNet' if layout == 'resnet' else 'timm\'s ResNet'))
    ours, unplaced = rename_keys(hf, HF_RULES[layout], to_mmdetr=True)
    if unplaced:
        raise HFConversionError(
            f'{len(unplaced)} of {len(state_dict)} keys of the transformers '
            f'DETR have no place in mmdetr\'s DETR, e.g. {unplaced[:5]}')
    arch = arch_from_hf(config, layout, ours, notes)
    labels = hf_classes(config, len(ours['bbox_head.fc_cls.weight']))
    keep = [i for i, name in enumerate(labels) if name != PLACEHOLDER_LABEL]
    classes = tuple(labels[i] for i in keep)
    if len(keep) < len(labels):
        ours = keep_classifier_rows(ours, keep + [len(labels)])
        notes.append(
            f'classifier: {len(labels)} labels + no-object -> {len(keep)} + '
            f'no-object (the {len(labels) - len(keep)} labelled '
            f'{PLACEHOLDER_LABEL!r} in id2label, COCO\'s unused category '
            'ids, dropped)')
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        _refuse('id2label', duplicates, 'class names must be unique')
    return add_bn_counters(ours, notes, 'transformers'), classes, arch


def mmdetr_to_hf(state_dict: Dict[str, Tensor], layout: str,
                 notes: List[str]) -> 'OrderedDict[str, Tensor]':
    """mmdetr's weights under the keys ``save_pretrained`` writes.

    Args:
        state_dict (dict): mmdetr's DETR weights.
        layout (str): The backbone layout to write, one of
            :data:`BACKBONE_LAYOUTS`.
        notes (list): Receives a line for what is dropped.

    Returns:
        OrderedDict: contiguous tensors that share no memory (as safetensors
        requires), attention ``in_proj_*`` split into q/k/v_proj.
    """
    state_dict = drop_training_only(state_dict, notes)
    state_dict = OrderedDict((k, v) for k, v in state_dict.items()
                             if not k.endswith('.num_batches_tracked'))
    theirs, unplaced = rename_keys(state_dict, HF_RULES[layout],
                                   to_mmdetr=False)
    if unplaced:
        raise HFConversionError(
            f'{len(unplaced)} keys have no place in transformers\' DETR, '
            f'e.g. {unplaced[:5]}')
    # safetensors wants contiguous tensors that share no memory (the q/k/v
    # chunks are copies already)
    return OrderedDict(
        (k, v.detach().contiguous()) for k, v in _split_qkv(theirs).items())


# ------------------------------------------------------- mmdetr's model side
def arch_from_model(model) -> DetrArch:
    """The :class:`DetrArch` of a built mmdetr DETR.

    Raises:
        HFConversionError: naming the part transformers' DETR cannot hold:
            pre-norm, a backbone other than a torchvision-style ResNet, a
            sigmoid classifier, another positional encoding ...
    """
    from mmdet.models.backbones import ResNet
    from mmdet.models.backbones.resnet import BasicBlock, Bottleneck

    def refuse(what, why):
        raise HFConversionError(f'the model\'s {what}: {why}')

    backbone = model.backbone
    # mmdet's plain blocks only: ResNeXt, Res2Net, ResNeSt ... are ResNet
    # subclasses with blocks of their own
    if not isinstance(backbone, ResNet) or type(
            backbone.layer1[0]) not in (BasicBlock, Bottleneck):
        refuse('backbone', f'{type(backbone).__name__}: transformers\' DETR '
               'holds a plain ResNet (transformers\' own or timm\'s) only')
    for attr, want in (('num_stages', 4), ('out_indices', (3, )),
                       ('style', 'pytorch'), ('deep_stem', False),
                       ('avg_down', False), ('dcn', None), ('plugins', None)):
        value = getattr(backbone, attr, want)
        if (tuple(value) if isinstance(value, list) else value) != want:
            refuse(f'backbone.{attr}', f'{value!r}; transformers\' ResNet '
                   f'has {want!r} only')
    strides, dilations = tuple(backbone.strides), tuple(backbone.dilations)
    if (strides, dilations) == ((1, 2, 2, 2), (1, 1, 1, 1)):
        dc5 = False
    elif (strides, dilations) == ((1, 2, 2, 1), (1, 1, 1, 2)):
        first = backbone.layer4[0]
        if not isinstance(first, Bottleneck) or \
                first.conv2.dilation != (1, 1):
            refuse('backbone', 'mmdet\'s ResNet dilates the first block of '
                   'its last stage too; timm (transformers\' DC5) does not: '
                   'use DilatedResNet')
        dc5 = True
    else:
        refuse('backbone strides/dilations', f'{strides}/{dilations}: '
               'transformers has stride 32 or DC5 (1, 2, 2, 1)/(1, 1, 1, 2)')
    head = model.bbox_head
    transformer = head.transformer
    if transformer.encoder_norm is not None:
        refuse('transformer', 'pre-norm (normalize_before=True); '
               'transformers\' DETR is post-norm')
    if head.use_sigmoid:
        refuse('classifier', 'sigmoid (use_sigmoid=True); transformers\' '
               'DETR has a softmax over the classes and no-object')
    if len(head.reg_ffn) != 4:
        refuse('box head', f'num_reg_fcs={head.num_reg_fcs}; transformers\' '
               'box MLP has 3 layers (num_reg_fcs=2)')
    layer = transformer.encoder_layers[0] if transformer.encoder_layers \
        else transformer.decoder_layers[0]
    activation = {
        torch.nn.functional.relu: 'relu',
        torch.nn.functional.gelu: 'gelu'
    }.get(layer.activation)
    if activation is None:
        refuse('activation', f'{layer.activation}; transformers has relu or '
               'gelu')
    d = transformer.embed_dims
    pos = head.positional_encoding
    # mmdetr's SinePositionalEncoding / LearnedPositionalEncoding, known by
    # their parameters (mmdetr.models is not imported by mmdetr.utils)
    if hasattr(pos, 'temperature'):
        sine = dict(num_feats=d // 2, temperature=10000, normalize=True,
                    scale=2 * math.pi, eps=1e-6, offset=0.)
        if any(getattr(pos, k) != v for k, v in sine.items()):
            refuse('positional_encoding', f'{pos.extra_repr()}; '
                   f'transformers computes {sine}')
        encoding = 'sine'
    elif hasattr(pos, 'row_embed') and hasattr(pos, 'col_embed'):
        if pos.num_feats != d // 2 or pos.row_embed.num_embeddings != 50 or \
                pos.col_embed.num_embeddings != 50:
            refuse('positional_encoding', 'transformers\' learned encoding '
                   f'has 50x50 entries of {d // 2} channels per axis')
        encoding = 'learned'
    else:
        refuse('positional_encoding', f'{type(pos).__name__}: transformers '
               'has sine or learned')
    return DetrArch(
        depth=backbone.depth, stem_channels=backbone.stem_channels,
        base_channels=backbone.base_channels, dc5=dc5, embed_dims=d,
        num_heads=layer.self_attn.num_heads,
        feedforward_channels=layer.linear1.out_features,
        num_encoder_layers=len(transformer.encoder_layers),
        num_decoder_layers=len(transformer.decoder_layers),
        num_queries=head.num_query, activation=activation,
        positional_encoding=encoding)


def arch_mismatches(hf: DetrArch,
                    model: DetrArch,
                    names: Optional[Sequence[str]] = None) -> List[str]:
    """One line per field (of ``names``, default all) in which the
    transformers model and mmdetr's model differ."""
    names = names or [f.name for f in fields(DetrArch)]
    return [
        f'config.json says {name}={getattr(hf, name)!r} '
        f'({HF_FIELDS[name]}), the model has {getattr(model, name)!r}'
        for name in names if getattr(hf, name) != getattr(model, name)
    ]


def apply_arch(model_cfg: dict, arch: DetrArch, num_classes: int) -> dict:
    """A copy of an mmdetr DETR model config (``configs/_base_/models/
    detr_r50.py``'s structure) changed to ``arch`` and ``num_classes``;
    entries already right (explicitly or by default) are left as they
    are."""

    def update(cfg: dict, defaults: dict, **values):
        for key, value in values.items():
            if cfg.get(key, defaults.get(key)) != value:
                cfg[key] = value

    cfg = copy.deepcopy(model_cfg)
    backbone = cfg['backbone']
    update(backbone, dict(base_channels=64, strides=(1, 2, 2, 2),
                          dilations=(1, 1, 1, 1)),
           depth=arch.depth, base_channels=arch.base_channels,
           strides=(1, 2, 2, 1) if arch.dc5 else (1, 2, 2, 2),
           dilations=(1, 1, 1, 2) if arch.dc5 else (1, 1, 1, 1))
    update(backbone, dict(stem_channels=backbone.get('base_channels', 64)),
           stem_channels=arch.stem_channels)
    if arch.dc5:
        backbone['type'] = 'DilatedResNet'
    expansion = 4 if arch.depth >= 50 else 1
    head = cfg['bbox_head']
    update(head, {}, num_classes=num_classes, num_query=arch.num_queries,
           in_channels=arch.base_channels * 8 * expansion)
    update(head['transformer'], dict(activation='relu'),
           embed_dims=arch.embed_dims, num_heads=arch.num_heads,
           num_encoder_layers=arch.num_encoder_layers,
           num_decoder_layers=arch.num_decoder_layers,
           feedforward_channels=arch.feedforward_channels,
           activation=arch.activation, normalize_before=False)
    encoding = dict(
        type='SinePositionalEncoding', num_feats=arch.embed_dims // 2,
        normalize=True) if arch.positional_encoding == 'sine' else dict(
            type='LearnedPositionalEncoding', num_feats=arch.embed_dims // 2)
    if head.get('positional_encoding', {}).get('type') == encoding['type']:
        update(head['positional_encoding'], {}, **encoding)
    else:
        head['positional_encoding'] = encoding
    test_cfg = cfg.get('test_cfg') or {}
    max_per_img = test_cfg.get('max_per_img', 100)
    if max_per_img > arch.num_queries:
        cfg['test_cfg'] = dict(test_cfg, max_per_img=arch.num_queries)
    return cfg


# -------------------------------------------------------------- the files
def hf_files(path: str) -> Optional[Tuple[str, str]]:
    """``(weights file, config.json)`` if ``path`` is a transformers DETR,
    else None.

    ``path`` is a directory holding ``config.json`` of a ``detr`` model, or
    a weights file (``*.safetensors``, ``*.bin``) with such a
    ``config.json`` beside it.

    Raises:
        HFConversionError: a DETR ``config.json`` without weights.
    """
    folder = path if osp.isdir(path) else osp.dirname(osp.abspath(path))
    config = osp.join(folder, CONFIG_FILE)
    if not osp.isfile(config):
        return None
    try:
        with open(config) as f:
            model_type = json.load(f).get('model_type')
    except (OSError, ValueError, AttributeError):
        return None
    if model_type != 'detr':
        return None
    if not osp.isdir(path):
        return (path, config) if path.endswith(
            ('.safetensors', '.bin', SAFETENSORS_INDEX)) else None
    for name in (SAFETENSORS_FILE, SAFETENSORS_INDEX, BIN_FILE):
        if osp.isfile(osp.join(path, name)):
            return osp.join(path, name), config
    raise HFConversionError(
        f'{path}: has a DETR {CONFIG_FILE} but none of {SAFETENSORS_FILE}, '
        f'{SAFETENSORS_INDEX}, {BIN_FILE}')


def read_hf_config(path: str) -> dict:
    """``config.json`` as a dict (``model_type`` must be ``detr``)."""
    with open(path) as f:
        config = json.load(f)
    if not isinstance(config, dict) or config.get('model_type') != 'detr':
        raise HFConversionError(
            f'{path}: model_type={config.get("model_type")!r}, not detr')
    return config


def load_hf_weights(path: str) -> Dict[str, Tensor]:
    """The tensors of ``model.safetensors`` (or of every shard its index
    names) or of ``pytorch_model.bin`` (loaded with ``weights_only``)."""
    if path.endswith('.bin'):
        from .checkpoint import load_checkpoint_file
        from .convert import extract_state_dict
        return extract_state_dict(load_checkpoint_file(path))
    try:
        from safetensors.torch import load_file
    except ImportError as e:  # pragma: no cover - listed in requirements
        raise HFConversionError(
            f'{path}: reading safetensors needs `pip install safetensors`'
        ) from e
    if not path.endswith(SAFETENSORS_INDEX):
        return load_file(path)
    with open(path) as f:
        shards = sorted(set(json.load(f)['weight_map'].values()))
    state_dict = {}
    for shard in shards:
        state_dict.update(load_file(osp.join(osp.dirname(path), shard)))
    return state_dict


def load_hf_checkpoint(path: str, notes: List[str]):
    """Read a transformers DETR (see :func:`hf_files`) in mmdetr's layout.

    Returns:
        tuple: the state dict, the class names and the :class:`DetrArch`
        (see :func:`hf_to_mmdetr`).

    Raises:
        HFConversionError: ``path`` is not a transformers DETR, or one
            mmdetr cannot convert (the message names why).
    """
    found = hf_files(path)
    if found is None:
        raise HFConversionError(
            f'{path}: not a transformers DETR (a directory with a DETR '
            f'{CONFIG_FILE}, or its weights file with the {CONFIG_FILE} '
            'beside it)')
    weights, config_path = found
    return hf_to_mmdetr(load_hf_weights(weights), read_hf_config(config_path),
                        notes)


def hf_config(arch: DetrArch, classes: Sequence[str]) -> dict:
    """``config.json`` of a transformers DETR with ``arch`` and ``classes``.

    The backbone is transformers' own ResNet, which loads without timm; a
    DC5 model gets timm's (transformers dilates only timm's ResNet, so
    loading it needs timm installed).
    """
    config = dict(
        model_type='detr', architectures=['DetrForObjectDetection'],
        d_model=arch.embed_dims, encoder_layers=arch.num_encoder_layers,
        decoder_layers=arch.num_decoder_layers,
        encoder_attention_heads=arch.num_heads,
        decoder_attention_heads=arch.num_heads,
        encoder_ffn_dim=arch.feedforward_channels,
        decoder_ffn_dim=arch.feedforward_channels,
        num_queries=arch.num_queries, activation_function=arch.activation,
        position_embedding_type=arch.positional_encoding,
        auxiliary_loss=False, dilation=arch.dc5, num_channels=3,
        id2label={str(i): name for i, name in enumerate(classes)},
        label2id={name: i for i, name in enumerate(classes)})
    if arch.dc5:
        # what 4.x writes; 5.x reads it into a timm_backbone config with
        # output_stride 16
        config.update(use_timm_backbone=True, backbone=f'resnet{arch.depth}',
                      use_pretrained_backbone=False, backbone_config=None)
    else:
        bottleneck = arch.depth >= 50
        config.update(
            use_timm_backbone=False, backbone=None,
            use_pretrained_backbone=False,
            backbone_config=dict(
                model_type='resnet', num_channels=3,
                embedding_size=arch.stem_channels,
                hidden_sizes=[
                    arch.base_channels * (4 if bottleneck else 1) * 2**i
                    for i in range(4)
                ],
                depths=list(next(blocks for (blocks, b), depth in
                                 _RESNETS.items()
                                 if depth == arch.depth and b == bottleneck)),
                layer_type='bottleneck' if bottleneck else 'basic',
                hidden_act='relu', downsample_in_first_stage=False,
                downsample_in_bottleneck=False, out_features=['stage4']))
    return config


def preprocessor_config(cfg) -> Tuple[dict, List[str]]:
    """``preprocessor_config.json`` of transformers' ``DetrImageProcessor``
    doing what the config's test pipeline and data preprocessor do: resize
    (shorter side, longer side at most), scale to [0, 1] and normalise with
    the same mean and std, pad at the bottom/right.

    Returns:
        tuple: the dict and notes on what could not be carried over.
    """
    notes = []
    preprocessor = cfg.model.get('data_preprocessor') or {}
    mean = preprocessor.get('mean') or [0., 0., 0.]
    std = preprocessor.get('std') or [1., 1., 1.]
    if not preprocessor.get('bgr_to_rgb', False):
        raise HFConversionError(
            'the model\'s data_preprocessor has bgr_to_rgb=False: the model '
            'reads BGR images; transformers feeds RGB')
    size = dict(shortest_edge=800, longest_edge=1333)
    pipeline = (cfg.get('test_dataloader') or {}).get('dataset', {}).get(
        'pipeline') or cfg.get('test_pipeline') or []
    resizes = [t for t in pipeline if t.get('type') in ('Resize',
                                                        'mmdet.Resize')]
    if resizes and resizes[0].get('keep_ratio') and resizes[0].get('scale'):
        scale = resizes[0]['scale']
        scale = (scale, scale) if isinstance(scale, int) else scale
        size = dict(shortest_edge=min(scale), longest_edge=max(scale))
    else:
        notes.append('preprocessor: no keep-ratio Resize with a scale in the '
                     'test pipeline; wrote transformers\' default (shorter '
                     'side 800, longer at most 1333)')
    config = dict(
        image_processor_type='DetrImageProcessor', format='coco_detection',
        do_resize=True, size=size, resample=2, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True,
        image_mean=[m / 255 for m in mean], image_std=[s / 255 for s in std],
        do_pad=True, do_convert_annotations=True)
    return config, notes


def write_hf_dir(dst: str, state_dict: Dict[str, Tensor], config: dict,
                 preprocessor: dict, metadata: Optional[dict] = None) -> None:
    """Write ``config.json``, ``model.safetensors`` and
    ``preprocessor_config.json`` into directory ``dst`` (made if needed);
    each file is written beside its place and renamed over it, so an
    interrupted export never leaves a truncated file. Other files in
    ``dst`` stay."""
    from safetensors.torch import save_file
    if osp.exists(dst) and not osp.isdir(dst):
        raise HFConversionError(f'{dst}: exists and is not a directory')
    os.makedirs(dst, exist_ok=True)

    def write_json(obj):
        return lambda tmp: _dump_json(obj, tmp)

    writers = {
        SAFETENSORS_FILE: lambda tmp: save_file(
            dict(state_dict), tmp, metadata=dict(format='pt', **(
                metadata or {}))),
        CONFIG_FILE: write_json(config),
        PREPROCESSOR_FILE: write_json(preprocessor),
    }
    for name, write in writers.items():
        path = osp.join(dst, name)
        tmp = osp.join(dst, f'.{name}.tmp.{os.getpid()}')
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)


def _dump_json(obj, path):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write('\n')


def export_hf(model, cfg, state_dict: Dict[str, Tensor],
              classes: Sequence[str], dst: str, notes: List[str]) -> DetrArch:
    """Write an mmdetr DETR as a transformers DETR directory
    (:func:`write_hf_dir`) that ``DetrForObjectDetection.from_pretrained``
    and ``pipeline('object-detection')`` load.

    Args:
        model (nn.Module): The DETR built from ``cfg``, holding
            ``state_dict``; its architecture is read from it.
        cfg (Config): Its config (test pipeline and data preprocessor for
            ``preprocessor_config.json``).
        state_dict (dict): Its weights, mmdetr's keys.
        classes (sequence[str]): Its class names, written as ``id2label``.
        dst (str): The directory.
        notes (list): Receives a line for what is dropped or needs care.

    Returns:
        DetrArch: what was written.

    Raises:
        HFConversionError: the model is one transformers' DETR cannot hold
            (the message says why); nothing is written then.
    """
    arch = arch_from_model(model)
    if len(classes) != model.bbox_head.num_classes:
        raise HFConversionError(
            f'{len(classes)} class names for a classifier of '
            f'{model.bbox_head.num_classes} classes')
    layout = 'resnet'
    if arch.dc5:
        if (arch.stem_channels, arch.base_channels) != (64, 64):
            raise HFConversionError(
                'a DC5 model is written with timm\'s ResNet, which has 64 '
                f'stem and base channels, not {arch.stem_channels}/'
                f'{arch.base_channels}')
        layout = 'timm'
        notes.append(
            'DC5: written with timm\'s ResNet (transformers dilates only '
            'timm\'s ResNet): from_pretrained needs timm installed')
    tensors = mmdetr_to_hf(state_dict, layout, notes)
    preprocessor, more_notes = preprocessor_config(cfg)
    notes.extend(more_notes)
    write_hf_dir(dst, tensors, hf_config(arch, classes), preprocessor)
    return arch


# Fields in which a checkpoint and a model can differ without any key or
# shape showing it (mmengine's non-strict load_from would not say).
SILENT_FIELDS = ('num_heads', 'activation', 'dc5')


def silent_mismatches(arch: dict, model) -> List[str]:
    """Lines for the :data:`SILENT_FIELDS` in which a converted transformers
    DETR (its :class:`DetrArch` as a dict, from the checkpoint's meta) and
    ``model`` differ; empty if none, or if ``model`` is not one
    transformers' DETR could be."""
    try:
        model_arch = arch_from_model(model)
    except HFConversionError:
        return []
    return arch_mismatches(DetrArch(**arch), model_arch, SILENT_FIELDS)
