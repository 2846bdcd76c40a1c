# Copyright (c) mmdetr contributors. All rights reserved.
"""Reading a transformers DETR into mmdetr's layout.

A transformers DETR is a directory: ``config.json`` (the architecture and
``id2label``), the weights (``model.safetensors``; ``pytorch_model.bin``
from older versions) and, for ``pipeline``, ``preprocessor_config.json``
(:mod:`~mmdetr.checkpoints.hf.layout`). The weights are renamed to
mmdetr's keys; what they do not say (heads, activation, dilation) comes from
``config.json``, and whatever mmdetr's DETR cannot compute the way
transformers does is refused with the field and its value
(:class:`~mmdetr.checkpoints.hf.layout.HFConversionError`).
"""
import json
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from torch import Tensor

from ..convert import (add_bn_counters, extract_state_dict,
                       keep_classifier_rows, rename_keys)
from ..safe_load import load_checkpoint_file
from .arch import RESNET_DEPTHS, DetrArch
from .layout import (BIN_FILE, CONFIG_FILE, HF_RULES, SAFETENSORS_FILE,
                     SAFETENSORS_INDEX, HFConversionError, backbone_layout,
                     merge_qkv, saved_names)

# id2label's name for COCO category ids no image uses (the hub's COCO models
# keep one logit per id 0..90, as official DETR)
PLACEHOLDER_LABEL = 'N/A'
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
    depth = RESNET_DEPTHS.get((tuple(blocks), bottleneck))
    kind = 'bottleneck' if bottleneck else 'basic'
    if depth is None:
        raise HFConversionError(
            f'backbone: {kind} blocks per stage {blocks} are none of '
            f'mmdet\'s ResNets ({sorted(set(RESNET_DEPTHS.values()))})')
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
        layout (str): Its backbone layout, ``'resnet'`` or ``'timm'``.
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
    hf = merge_qkv(saved_names(state_dict))
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
