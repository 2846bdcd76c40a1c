# Copyright (c) mmdetr contributors. All rights reserved.
"""Key layouts of DETR checkpoints and conversion between them.

Five layouts are known; every conversion goes through mmdetr's:

=====================  ====================================================
``mmdetr``             this package's ``DETR.state_dict()`` (and
                       ``PanopticDETR``'s, with ``mask_head.*``)
``mmdet3``             mmdet 3.x ``DETR`` (``neck.convs.0.conv``,
                       ``encoder.layers``)
``mmdet2``             mmdet 2.x ``DETR``
                       (``bbox_head.transformer.encoder.layers``)
``official``           facebookresearch/detr (``backbone.0.body``,
                       ``class_embed``)
``official_panoptic``  facebookresearch/detr ``DETRsegm`` (``detr.*``,
                       ``bbox_attention.*``, ``mask_head.*``)
=====================  ====================================================

mmdetr's layout::

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
    mask_head.{bbox_attention,conv_head}.*       PanopticDETR's mask head

Each layout is a table of key templates, ``(mmdetr's, the layout's)``, read
left to right to convert to mmdetr and right to left to convert back. In a
template ``{i}`` stands for a layer index and ``{p}`` for the rest of the key
(``weight``, ``in_proj_bias``, ``out_proj.weight`` ...). Renaming never changes
a tensor; the official layouts also need two changes of content
(:func:`_official_to_mmdetr`, :func:`_official_panoptic_to_mmdetr`).
"""
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

# The 80 category ids COCO uses, in COCO's class order (the order of mmdet's
# CocoDataset classes). The official classifier has one logit per id 0..90
# (11 of them never used) and a last one for no-object.
COCO_CATEGORY_IDS: Tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42,
    43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90)
OFFICIAL_COCO_LOGITS = 92  # ids 0..90 + no-object

_ENC = 'bbox_head.transformer.encoder_layers.{i}.'
_DEC = 'bbox_head.transformer.decoder_layers.{i}.'
_ENC_PARTS = ('self_attn', 'linear1', 'linear2', 'norm1', 'norm2')
_DEC_PARTS = ('self_attn', 'cross_attn', 'linear1', 'linear2', 'norm1',
              'norm2', 'norm3')

Rules = Tuple[Tuple[str, str], ...]


def layer_rules(encoder: str,
                decoder: str,
                parts: Dict[str, str],
                decoder_parts: Optional[Dict[str, str]] = None) -> Rules:
    """Rules for the parts of every encoder and decoder layer.

    Args:
        encoder, decoder (str): The layout's prefix of layer ``{i}``.
        parts (dict): mmdetr's part name -> the layout's (``'self_attn'`` ->
            ``'self_attn.attn'`` ...).
        decoder_parts (dict, optional): Names that differ in the decoder's
            layers (Hugging Face's ``norm2`` is ``final_layer_norm`` in the
            encoder, ``encoder_attn_layer_norm`` in the decoder).
    """
    dec_parts = dict(parts, **(decoder_parts or {}))
    return tuple((_ENC + f'{part}.{{p}}', encoder + f'{parts[part]}.{{p}}')
                 for part in _ENC_PARTS) + tuple(
                     (_DEC + f'{part}.{{p}}',
                      decoder + f'{dec_parts[part]}.{{p}}')
                     for part in _DEC_PARTS)


# mmcv's FFN: layers.0.0 is the hidden Linear (inside a Sequential with the
# activation), layers.1 the output Linear.
_MMCV_FFN = {'linear1': 'ffn.layers.0.0', 'linear2': 'ffn.layers.1'}
_MMCV_NORMS = {'norm1': 'norms.0', 'norm2': 'norms.1', 'norm3': 'norms.2'}
# DETR's box MLP: our flat Sequential (Linear, ReLU, Linear, ReLU) + fc_reg
# is mmcv's FFN (layers.0.0, layers.1) + fc_reg in mmdet 2.x and 3.x.
_MMDET_BOX_HEAD: Rules = (
    ('bbox_head.fc_cls.{p}', 'bbox_head.fc_cls.{p}'),
    ('bbox_head.reg_ffn.0.{p}', 'bbox_head.reg_ffn.layers.0.0.{p}'),
    ('bbox_head.reg_ffn.2.{p}', 'bbox_head.reg_ffn.layers.1.{p}'),
    ('bbox_head.fc_reg.{p}', 'bbox_head.fc_reg.{p}'),
)

_MMDET3: Rules = (
    ('backbone.{p}', 'backbone.{p}'),
    ('bbox_head.input_proj.{p}', 'neck.convs.0.conv.{p}'),
    ('bbox_head.positional_encoding.{p}', 'positional_encoding.{p}'),
    ('bbox_head.query_embedding.{p}', 'query_embedding.{p}'),
    *layer_rules(
        'encoder.layers.{i}.', 'decoder.layers.{i}.', {
            'self_attn': 'self_attn.attn',
            'cross_attn': 'cross_attn.attn',
            **_MMCV_FFN,
            **_MMCV_NORMS
        }),
    ('bbox_head.transformer.decoder_norm.{p}', 'decoder.post_norm.{p}'),
    *_MMDET_BOX_HEAD,
)

_MMDET2: Rules = (
    ('backbone.{p}', 'backbone.{p}'),
    ('bbox_head.input_proj.{p}', 'bbox_head.input_proj.{p}'),
    ('bbox_head.positional_encoding.{p}',
     'bbox_head.positional_encoding.{p}'),
    ('bbox_head.query_embedding.{p}', 'bbox_head.query_embedding.{p}'),
    *layer_rules(
        'bbox_head.transformer.encoder.layers.{i}.',
        'bbox_head.transformer.decoder.layers.{i}.', {
            'self_attn': 'attentions.0.attn',
            'cross_attn': 'attentions.1.attn',
            'linear1': 'ffns.0.layers.0.0',
            'linear2': 'ffns.0.layers.1',
            **_MMCV_NORMS
        }),
    ('bbox_head.transformer.decoder_norm.{p}',
     'bbox_head.transformer.decoder.post_norm.{p}'),
    *_MMDET_BOX_HEAD,
)

_OFFICIAL: Rules = (
    # torchvision's ResNet names its parts as mmdet's does (conv1, bn1,
    # layerX.Y.convZ/bnZ, downsample.0/1); only the prefix differs.
    ('backbone.{p}', 'backbone.0.body.{p}'),
    ('bbox_head.input_proj.{p}', 'input_proj.{p}'),
    ('bbox_head.query_embedding.{p}', 'query_embed.{p}'),
    *layer_rules(
        'transformer.encoder.layers.{i}.', 'transformer.decoder.layers.{i}.',
        {
            **{part: part
               for part in _DEC_PARTS},
            'cross_attn': 'multihead_attn',
        }),
    ('bbox_head.transformer.encoder_norm.{p}', 'transformer.encoder.norm.{p}'),
    ('bbox_head.transformer.decoder_norm.{p}', 'transformer.decoder.norm.{p}'),
    ('bbox_head.fc_cls.{p}', 'class_embed.{p}'),
    ('bbox_head.reg_ffn.0.{p}', 'bbox_embed.layers.0.{p}'),
    ('bbox_head.reg_ffn.2.{p}', 'bbox_embed.layers.1.{p}'),
    ('bbox_head.fc_reg.{p}', 'bbox_embed.layers.2.{p}'),
)

# Official panoptic DETR (``DETRsegm``: detr-r50-panoptic, -dc5-, -r101-):
# the detector under ``detr.``, the mask head (mmdetr.panoptic.DETRMaskHead,
# at ``mask_head`` in PanopticDETR) beside it: ``bbox_attention.*`` are its
# attention maps, ``mask_head.*`` its convolutions.
_MASK_HEAD: Rules = (
    ('mask_head.bbox_attention.{p}', 'bbox_attention.{p}'),
    ('mask_head.conv_head.{p}', 'mask_head.{p}'),
)
_OFFICIAL_PANOPTIC: Rules = tuple(
    (ours, 'detr.' + theirs) for ours, theirs in _OFFICIAL) + _MASK_HEAD
# The 53 COCO panoptic stuff category ids, in id order: with the 80 thing
# ids, mmdet's CocoPanopticDataset classes (things, then stuff).
COCO_PANOPTIC_STUFF_IDS: Tuple[int, ...] = (
    92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138,
    141, 144, 145, 147, 148, 149, 151, 154, 155, 156, 159, 161, 166, 168,
    171, 175, 176, 177, 178, 180, 181, 184, 185, 186, 187, 188, 189, 190,
    191, 192, 193, 194, 195, 196, 197, 198, 199, 200)
OFFICIAL_PANOPTIC_LOGITS = 251  # num_classes=250 + no-object


def _official_panoptic_to_mmdetr(state_dict: 'OrderedDict[str, Tensor]',
                                 notes: List[str]
                                 ) -> 'OrderedDict[str, Tensor]':
    """official panoptic -> mmdetr (keys already renamed): the detector's
    changes (:func:`_official_to_mmdetr`), but the classifier is
    panoptic: 251 logits, one per COCO panoptic category id 0..249 and
    no-object last; mmdet's COCO panoptic classes are the 133 ids in use,
    things (80) then stuff (53), in id order. Keep those rows and the
    no-object row. Any other size is kept as is."""
    weight = state_dict.get('bbox_head.fc_cls.weight')
    if weight is None or len(weight) != OFFICIAL_PANOPTIC_LOGITS:
        return _official_to_mmdetr(state_dict, notes)
    rows = [*COCO_CATEGORY_IDS, *COCO_PANOPTIC_STUFF_IDS,
            OFFICIAL_PANOPTIC_LOGITS - 1]
    out = OrderedDict(
        (k, v[rows] if k.startswith('bbox_head.fc_cls.') else v)
        for k, v in state_dict.items())
    detector_notes: List[str] = []
    out = _official_to_mmdetr(out, detector_notes)
    # its classifier line would describe the 134 rows kept here
    notes.extend(n for n in detector_notes if not n.startswith('classifier:'))
    notes.append(
        'classifier: 251 official panoptic logits (COCO panoptic category '
        'ids 0..249 + no-object) -> the 133 COCO panoptic classes (80 '
        'things, 53 stuff, in id order) + no-object')
    return out


#: mmdetr's classifier (one row per class, no-object last), as mmdet's
CLASSIFIER = 'bbox_head.fc_cls'

# Parameters that only training reads (the extra query groups of
# DETRHead(num_query_groups=K), the auxiliary dense head of DETR(aux_head=)):
# mmdetr's checkpoints may hold them; no other layout has a place for them,
# and inference never needs them.
TRAINING_ONLY_KEYS: Tuple[str, ...] = (
    'bbox_head.group_query_embedding.{p}', 'aux_head.{p}')

# mmdetr's own keys: the left side of the tables (identity rules).
_MMDETR: Rules = tuple(
    (ours, ours)
    for ours in dict.fromkeys([
        *(ours for table in (_MMDET3, _OFFICIAL, _MASK_HEAD)
          for ours, _ in table),
        *TRAINING_ONLY_KEYS
    ]))


class CheckpointLayoutError(ValueError):
    """A state dict does not fit the layout it is converted from or to."""


def keep_classifier_rows(state_dict: 'OrderedDict[str, Tensor]',
                         rows: List[int]) -> 'OrderedDict[str, Tensor]':
    """``state_dict`` (mmdetr's keys) with only ``rows`` of the classifier
    ``bbox_head.fc_cls`` (weight and bias), in that order."""
    out = OrderedDict(state_dict)
    for key in ('bbox_head.fc_cls.weight', 'bbox_head.fc_cls.bias'):
        if key in out:
            out[key] = out[key][rows]
    return out


def add_bn_counters(state_dict: 'OrderedDict[str, Tensor]', notes: List[str],
                    source: str) -> 'OrderedDict[str, Tensor]':
    """Frozen BatchNorm: ``FrozenBatchNorm2d`` (official DETR, Hugging Face
    transformers) has no ``num_batches_tracked``; mmdet's ResNet uses
    ``nn.BatchNorm2d``, which has it. Add it as 0, right after each
    ``running_var`` of the backbone, so the result loads strictly. Harmless:
    it is read only in training mode with ``momentum=None``, and DETR's
    backbone BN is frozen (eval mode, ``norm_eval=True``); it never changes
    the output.

    Args:
        state_dict (OrderedDict): mmdetr's keys.
        notes (list): Receives one line if any counter was added.
        source (str): Who wrote the frozen BN layers, for the note.
    """
    out = OrderedDict()
    added = 0
    for key, value in state_dict.items():
        out[key] = value
        if key.startswith('backbone.') and key.endswith('.running_var'):
            tracked = key[:-len('running_var')] + 'num_batches_tracked'
            if tracked not in state_dict:
                out[tracked] = torch.tensor(0, dtype=torch.long)
                added += 1
    if added:
        notes.append(
            f'backbone: added num_batches_tracked=0 to {added} frozen '
            f'BatchNorm layers (the FrozenBatchNorm2d of {source} has '
            'none; frozen BN never reads it)')
    return out


def _official_to_mmdetr(state_dict: 'OrderedDict[str, Tensor]',
                        notes: List[str]) -> 'OrderedDict[str, Tensor]':
    """The two content changes of official -> mmdetr (keys already renamed).

    1. COCO classifier: official DETR has 92 logits, one per COCO category id
       0..90 plus no-object; mmdet's COCO classes are the 80 ids in use, in
       order. Keep those rows and the no-object row. Any other size (a model
       fine-tuned on another dataset) is kept as is.
    2. Frozen BatchNorm counters (:func:`add_bn_counters`).
    """
    num_logits = len(state_dict['bbox_head.fc_cls.weight']) \
        if 'bbox_head.fc_cls.weight' in state_dict else None
    if num_logits == OFFICIAL_COCO_LOGITS:
        state_dict = keep_classifier_rows(
            state_dict, list(COCO_CATEGORY_IDS) + [OFFICIAL_COCO_LOGITS - 1])
        notes.append(
            'classifier: 92 official logits (COCO category ids 0..90 + '
            'no-object) -> the 80 COCO classes in COCO\'s order + no-object')
    elif num_logits is not None:
        notes.append(
            f'classifier: {num_logits} logits, not COCO\'s 92: kept as they '
            f'are (num_classes={num_logits - 1}, no-object last)')
    return add_bn_counters(state_dict, notes, 'official DETR')


@dataclass(frozen=True)
class Layout:
    """A checkpoint key layout.

    Attributes:
        name (str): As given to ``--from`` / ``--to``.
        title (str): Who writes checkpoints in this layout.
        rules (tuple): ``(mmdetr template, this layout's template)`` pairs;
            the first whose template matches the whole key is used.
        to_mmdetr (callable, optional): Content changes after renaming to
            mmdetr's keys: ``(state_dict, notes) -> state_dict``.
        can_target (bool): Whether mmdetr's keys can be converted to this
            layout.
    """
    name: str
    title: str
    rules: Rules
    to_mmdetr: Optional[Callable] = None
    can_target: bool = True


LAYOUTS: Dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout('official', 'facebookresearch/detr', _OFFICIAL,
               _official_to_mmdetr, can_target=False),
        Layout('official_panoptic', 'facebookresearch/detr panoptic',
               _OFFICIAL_PANOPTIC, _official_panoptic_to_mmdetr,
               can_target=False),
        Layout('mmdet3', 'mmdet 3.x DETR', _MMDET3),
        Layout('mmdet2', 'mmdet 2.x DETR', _MMDET2, can_target=False),
        Layout('mmdetr', 'mmdetr DETR', _MMDETR),
    )
}
SOURCES = tuple(LAYOUTS)
TARGETS = tuple(name for name, layout in LAYOUTS.items() if layout.can_target)


def _template_regex(template: str) -> 're.Pattern':
    """``'a.{i}.b.{p}'`` -> ``^a\\.(?P<i>\\d+)\\.b\\.(?P<p>.+)$``."""
    groups = {'{i}': r'(?P<i>\d+)', '{p}': r'(?P<p>.+)'}
    parts = re.split(r'(\{[ip]\})', template)
    return re.compile('^' + ''.join(
        groups.get(part, re.escape(part)) for part in parts) + '$')


@lru_cache(maxsize=None)
def _compile(rules: Rules, to_mmdetr: bool) -> List[Tuple['re.Pattern', str]]:
    """Source-side regexes and target-side templates of a table."""
    return [(_template_regex(theirs if to_mmdetr else ours),
             ours if to_mmdetr else theirs) for ours, theirs in rules]


def rename_keys(
        state_dict: Dict[str, Tensor], rules: Rules,
        to_mmdetr: bool) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Rename every key by the first rule that matches it.

    Returns:
        tuple: the renamed state dict and the keys no rule matched.
    """
    compiled = _compile(rules, to_mmdetr)
    renamed, unplaced = OrderedDict(), []
    for key, value in state_dict.items():
        for pattern, target in compiled:
            match = pattern.match(key)
            if match:
                new_key = target.format(**match.groupdict())
                if new_key in renamed:
                    raise CheckpointLayoutError(
                        f'two keys map to {new_key!r}; the second is {key!r}')
                renamed[new_key] = value
                break
        else:
            unplaced.append(key)
    return renamed, unplaced


def detect_layout(state_dict: Dict[str, Tensor]) -> str:
    """The one known layout that places every key of ``state_dict``.

    Raises:
        CheckpointLayoutError: no layout places every key (the message names
            the closest layout and a few keys it cannot place), or several
            do.
    """
    if not state_dict:
        raise CheckpointLayoutError('the checkpoint holds no weights')
    unplaced = {
        name: rename_keys(state_dict, layout.rules, to_mmdetr=True)[1]
        for name, layout in LAYOUTS.items()
    }
    fits = [name for name, keys in unplaced.items() if not keys]
    if len(fits) == 1:
        return fits[0]
    if len(fits) > 1:
        raise CheckpointLayoutError(
            f'the keys fit several layouts ({", ".join(fits)}); name one '
            'with --from')
    closest = min(unplaced, key=lambda name: len(unplaced[name]))
    keys = unplaced[closest]
    raise CheckpointLayoutError(
        f'unknown checkpoint layout: none of {", ".join(LAYOUTS)} places '
        f'every key. Closest is {closest}, which cannot place {len(keys)} of '
        f'{len(state_dict)} keys, e.g. {keys[:5]}')


def convert_state_dict(state_dict: Dict[str, Tensor],
                       src: str,
                       dst: str = 'mmdetr',
                       notes: Optional[List[str]] = None
                       ) -> 'OrderedDict[str, Tensor]':
    """Convert a state dict from layout ``src`` to layout ``dst``.

    Args:
        state_dict (dict): Model weights in the ``src`` layout.
        src (str): One of :data:`SOURCES`, or ``'auto'``
            (:func:`detect_layout`).
        dst (str): One of :data:`TARGETS`. Defaults to ``'mmdetr'``.
        notes (list, optional): Receives one line per change that is more than
            a renaming (and the detected layout with ``'auto'``).

    Returns:
        OrderedDict: the same tensors (the official classifier: a selection of
        its rows) under ``dst``'s keys.

    Raises:
        CheckpointLayoutError: an unknown layout name, or keys that have no
            place in the source or target layout (the message names a few).
    """
    notes = [] if notes is None else notes
    if src == 'auto':
        src = detect_layout(state_dict)
        notes.append(f'detected layout: {src} ({LAYOUTS[src].title})')
    if src not in LAYOUTS:
        raise CheckpointLayoutError(
            f'unknown source layout {src!r}; expected auto or one of '
            f'{SOURCES}')
    if dst not in TARGETS:
        raise CheckpointLayoutError(
            f'cannot convert to {dst!r}; expected one of {TARGETS}')
    source = LAYOUTS[src]
    ours, unplaced = rename_keys(state_dict, source.rules, to_mmdetr=True)
    if unplaced:
        raise CheckpointLayoutError(
            f'{len(unplaced)} of {len(state_dict)} keys of the {src} '
            f'checkpoint have no place in mmdetr\'s DETR, e.g. '
            f'{unplaced[:5]}')
    if source.to_mmdetr is not None:
        ours = source.to_mmdetr(ours, notes)
    if dst == 'mmdetr':
        return ours
    ours = drop_training_only(ours, notes)
    theirs, unplaced = rename_keys(ours, LAYOUTS[dst].rules, to_mmdetr=False)
    if unplaced:
        raise CheckpointLayoutError(
            f'{len(unplaced)} keys have no place in {LAYOUTS[dst].title}, '
            f'e.g. {unplaced[:5]}')
    return theirs


def drop_training_only(state_dict: 'OrderedDict[str, Tensor]',
                       notes: List[str]) -> 'OrderedDict[str, Tensor]':
    """mmdetr's weights without :data:`TRAINING_ONLY_KEYS`."""
    patterns = [_template_regex(key) for key in TRAINING_ONLY_KEYS]
    dropped = [k for k in state_dict if any(p.match(k) for p in patterns)]
    if dropped:
        named = ', '.join(dropped[:3]) + (', ...' if len(dropped) > 3 else '')
        notes.append(f'dropped {len(dropped)} training-only tensors '
                     f'({named}): inference does not read them')
    return OrderedDict(
        (k, v) for k, v in state_dict.items() if k not in dropped)


def extract_state_dict(checkpoint) -> Dict[str, Tensor]:
    """The weights of a loaded checkpoint file (``state_dict``, ``model``
    or the bare dict)."""
    if isinstance(checkpoint, dict):
        for key in ('state_dict', 'model'):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
    return checkpoint
