# Copyright (c) mmdetr contributors. All rights reserved.
"""What a transformers DETR directory holds: its files and the keys of its
weights, and the keys renamed to and from mmdetr's layout
(:mod:`mmdetr.checkpoints.convert`).

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
"""
import re
from collections import OrderedDict
from typing import Dict

import torch
from torch import Tensor

from ..convert import CheckpointLayoutError, Rules, layer_rules

CONFIG_FILE = 'config.json'
SAFETENSORS_FILE = 'model.safetensors'
SAFETENSORS_INDEX = 'model.safetensors.index.json'
BIN_FILE = 'pytorch_model.bin'
PREPROCESSOR_FILE = 'preprocessor_config.json'


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

#: the rules of each backbone layout: ``'resnet'`` (transformers' own ResNet)
#: and ``'timm'``
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


def saved_names(state_dict: Dict[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """The keys ``save_pretrained`` writes, for the names of a state dict
    saved from memory (5.x) or by 4.x (its learned encoding)."""
    out = OrderedDict()
    for key, value in state_dict.items():
        for pattern, repl in _ALIASES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def merge_qkv(state_dict: Dict[str, Tensor]) -> 'OrderedDict[str, Tensor]':
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


def split_qkv(state_dict: Dict[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """The inverse of :func:`merge_qkv` (each part a copy, not a view of
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
