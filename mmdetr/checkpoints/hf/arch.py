# Copyright (c) mmdetr contributors. All rights reserved.
"""The architecture of a DETR as transformers' ``config.json`` describes it
(:class:`DetrArch`): read from a built mmdetr model (from ``config.json``:
:func:`~mmdetr.checkpoints.hf.read.arch_from_hf`), two of them compared,
and an mmdetr model config changed to one.

What the weights of a DETR do not say (heads, activation, dilation) both
sides must agree on: :func:`arch_from_model` refuses, naming the part, an
mmdetr model that transformers' DETR cannot hold.
"""
import copy
import math
from dataclasses import dataclass, fields
from typing import List, Optional, Sequence

import torch

from .layout import HFConversionError


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
RESNET_DEPTHS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}


def _refuse(what: str, why: str):
    raise HFConversionError(f'the model\'s {what}: {why}')


def _backbone_dc5(backbone) -> bool:
    """Whether a plain mmdet ResNet is DETR's DC5 (last stage dilated as
    timm and torchvision dilate it) rather than stride 32."""
    from mmdet.models.backbones import ResNet
    from mmdet.models.backbones.resnet import BasicBlock, Bottleneck

    # mmdet's plain blocks only: ResNeXt, Res2Net, ResNeSt ... are ResNet
    # subclasses with blocks of their own
    if not isinstance(backbone, ResNet) or type(
            backbone.layer1[0]) not in (BasicBlock, Bottleneck):
        _refuse('backbone', f'{type(backbone).__name__}: transformers\' DETR '
                'holds a plain ResNet (transformers\' own or timm\'s) only')
    for attr, want in (('num_stages', 4), ('out_indices', (3, )),
                       ('style', 'pytorch'), ('deep_stem', False),
                       ('avg_down', False), ('dcn', None), ('plugins', None)):
        value = getattr(backbone, attr, want)
        if (tuple(value) if isinstance(value, list) else value) != want:
            _refuse(f'backbone.{attr}', f'{value!r}; transformers\' ResNet '
                    f'has {want!r} only')
    strides, dilations = tuple(backbone.strides), tuple(backbone.dilations)
    if (strides, dilations) == ((1, 2, 2, 2), (1, 1, 1, 1)):
        return False
    if (strides, dilations) != ((1, 2, 2, 1), (1, 1, 1, 2)):
        _refuse('backbone strides/dilations', f'{strides}/{dilations}: '
                'transformers has stride 32 or DC5 (1, 2, 2, 1)/(1, 1, 1, 2)')
    first = backbone.layer4[0]
    if not isinstance(first, Bottleneck) or first.conv2.dilation != (1, 1):
        _refuse('backbone', 'mmdet\'s ResNet dilates the first block of its '
                'last stage too; timm (transformers\' DC5) does not: use '
                'DilatedResNet')
    return True


def _encoding(pos, embed_dims: int) -> str:
    """``'sine'`` or ``'learned'``: mmdetr's ``SinePositionalEncoding`` or
    ``LearnedPositionalEncoding`` as transformers computes them, known by
    their parameters (mmdetr.checkpoints does not import mmdetr.models)."""
    if hasattr(pos, 'temperature'):
        sine = dict(num_feats=embed_dims // 2, temperature=10000,
                    normalize=True, scale=2 * math.pi, eps=1e-6, offset=0.)
        if any(getattr(pos, k) != v for k, v in sine.items()):
            _refuse('positional_encoding', f'{pos.extra_repr()}; '
                    f'transformers computes {sine}')
        return 'sine'
    if hasattr(pos, 'row_embed') and hasattr(pos, 'col_embed'):
        if pos.num_feats != embed_dims // 2 or \
                pos.row_embed.num_embeddings != 50 or \
                pos.col_embed.num_embeddings != 50:
            _refuse('positional_encoding', 'transformers\' learned encoding '
                    f'has 50x50 entries of {embed_dims // 2} channels per '
                    'axis')
        return 'learned'
    _refuse('positional_encoding', f'{type(pos).__name__}: transformers '
            'has sine or learned')


def arch_from_model(model) -> DetrArch:
    """The :class:`DetrArch` of a built mmdetr DETR.

    Raises:
        HFConversionError: naming the part transformers' DETR cannot hold:
            pre-norm, a backbone other than a torchvision-style ResNet, a
            sigmoid classifier, another positional encoding ...
    """
    backbone, head = model.backbone, model.bbox_head
    dc5 = _backbone_dc5(backbone)
    transformer = head.transformer
    if transformer.encoder_norm is not None:
        _refuse('transformer', 'pre-norm (normalize_before=True); '
                'transformers\' DETR is post-norm')
    if head.use_sigmoid:
        _refuse('classifier', 'sigmoid (use_sigmoid=True); transformers\' '
                'DETR has a softmax over the classes and no-object')
    if len(head.reg_ffn) != 4:
        _refuse('box head', f'num_reg_fcs={head.num_reg_fcs}; '
                'transformers\' box MLP has 3 layers (num_reg_fcs=2)')
    layer = transformer.encoder_layers[0] if transformer.encoder_layers \
        else transformer.decoder_layers[0]
    activation = {
        torch.nn.functional.relu: 'relu',
        torch.nn.functional.gelu: 'gelu'
    }.get(layer.activation)
    if activation is None:
        _refuse('activation', f'{layer.activation}; transformers has relu '
                'or gelu')
    d = transformer.embed_dims
    return DetrArch(
        depth=backbone.depth, stem_channels=backbone.stem_channels,
        base_channels=backbone.base_channels, dc5=dc5, embed_dims=d,
        num_heads=layer.self_attn.num_heads,
        feedforward_channels=layer.linear1.out_features,
        num_encoder_layers=len(transformer.encoder_layers),
        num_decoder_layers=len(transformer.decoder_layers),
        num_queries=head.num_query, activation=activation,
        positional_encoding=_encoding(head.positional_encoding, d))


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
