# Copyright (c) mmdetr contributors. All rights reserved.
"""Key layouts of DETR checkpoints and conversion between them.

mmdetr's layout (the model's ``state_dict``)::

    backbone.*                                   mmdet ResNet
    bbox_head.input_proj.{weight,bias}           1x1 conv to embed_dims
    bbox_head.transformer.encoder_layers.i.{self_attn,linear1,linear2,
                                            norm1,norm2}.*
    bbox_head.transformer.decoder_layers.i.{self_attn,cross_attn,linear1,
                                            linear2,norm1,norm2,norm3}.*
    bbox_head.transformer.decoder_norm.*         (encoder_norm.* if pre-norm)
    bbox_head.query_embedding.weight
    bbox_head.positional_encoding.*              (learned encoding only)
    bbox_head.fc_cls.*, bbox_head.reg_ffn.{0,2}.*, bbox_head.fc_reg.*
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

from torch import Tensor

# (mmdet 3.x pattern, mmdetr replacement), tried in order; first match wins.
_MMDET3_RULES: List[Tuple[str, str]] = [
    (r'^backbone\.', 'backbone.'),
    (r'^neck\.convs\.0\.conv\.', 'bbox_head.input_proj.'),
    (r'^positional_encoding\.', 'bbox_head.positional_encoding.'),
    (r'^query_embedding\.', 'bbox_head.query_embedding.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.(self_attn|cross_attn)\.attn\.',
     r'bbox_head.transformer.\1_layers.\2.\3.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.ffn\.layers\.0\.0\.',
     r'bbox_head.transformer.\1_layers.\2.linear1.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.ffn\.layers\.1\.',
     r'bbox_head.transformer.\1_layers.\2.linear2.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.norms\.(\d)\.',
     lambda m: f'bbox_head.transformer.{m[1]}_layers.{m[2]}.'
     f'norm{int(m[3]) + 1}.'),
    (r'^decoder\.post_norm\.', 'bbox_head.transformer.decoder_norm.'),
    # mmcv FFN: layers.j.0 (Linear inside Sequential) for hidden layers,
    # layers.n-1 for the last; ours is a flat Sequential(Linear, ReLU, ...)
    (r'^bbox_head\.reg_ffn\.layers\.(\d+)(\.0)?\.',
     lambda m: f'bbox_head.reg_ffn.{2 * int(m[1])}.'),
    (r'^bbox_head\.(fc_cls|fc_reg)\.', r'bbox_head.\1.'),
]

LAYOUTS = ('mmdet3', )


def _apply_rules(key: str, rules) -> str:
    for pattern, repl in rules:
        new_key, n = re.subn(pattern, repl, key, count=1)
        if n:
            return new_key
    return None


def convert_state_dict(state_dict: Dict[str, Tensor],
                       src: str) -> 'OrderedDict[str, Tensor]':
    """Rename the keys of a ``src``-layout state dict to mmdetr's.

    Args:
        state_dict (dict): Model weights in the source layout.
        src (str): One of :data:`LAYOUTS`.

    Returns:
        OrderedDict: the same tensors under mmdetr's keys.

    Raises:
        KeyError: some keys have no place in mmdetr's layout; the message
            names a few of them.
    """
    rules = {'mmdet3': _MMDET3_RULES}.get(src)
    if rules is None:
        raise ValueError(f'unknown checkpoint layout {src!r}; expected one '
                         f'of {LAYOUTS}')
    converted, unplaced = OrderedDict(), []
    for key, value in state_dict.items():
        new_key = _apply_rules(key, rules)
        if new_key is None:
            unplaced.append(key)
        else:
            converted[new_key] = value
    if unplaced:
        raise KeyError(
            f'{len(unplaced)} keys of the {src} checkpoint have no place in '
            f'mmdetr\'s DETR, e.g. {unplaced[:5]}')
    return converted


def extract_state_dict(checkpoint) -> Dict[str, Tensor]:
    """The weights of a loaded checkpoint file (``state_dict``, ``model``
    or the bare dict)."""
    if isinstance(checkpoint, dict):
        for key in ('state_dict', 'model'):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
    return checkpoint
