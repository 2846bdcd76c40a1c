# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet 2.x DETR configs mapped onto mmdetr's classes.

mmdet 2.x described DETR's transformer with mmcv 1.x building blocks::

    dict(type='Transformer',
         encoder=dict(type='DetrTransformerEncoder', num_layers=6,
                      transformerlayers=dict(
                          type='BaseTransformerLayer',
                          attn_cfgs=[dict(type='MultiheadAttention',
                                          embed_dims=256, num_heads=8,
                                          dropout=0.1)],
                          feedforward_channels=2048, ffn_dropout=0.1,
                          operation_order=('self_attn', 'norm',
                                           'ffn', 'norm'))),
         decoder=dict(type='DetrTransformerDecoder',
                      return_intermediate=True, ...))

:func:`translate_transformer` turns it into the keyword arguments of
:class:`~mmdetr.models.DetrTransformer` (the same network, the same outputs
for the same weights). What mmdetr cannot express (another
operation order, another attention, two different dropout rates ...) raises
:class:`Mmdet2ConfigError` naming the field and the value: a 2.x config never
silently builds a different network.
"""
import copy
from typing import Any, Dict, Optional, Sequence

# mmcv 1.x BaseTransformerLayer's FFN when no ffn_cfgs is given
_MMCV_DEFAULT_FFN = dict(
    type='FFN',
    feedforward_channels=1024,
    num_fcs=2,
    ffn_drop=0.,
    act_cfg=dict(type='ReLU', inplace=True))

_ORDERS = {
    # (layer kind, operation order) -> normalize_before
    ('encoder', ('self_attn', 'norm', 'ffn', 'norm')): False,
    ('encoder', ('norm', 'self_attn', 'norm', 'ffn')): True,
    ('decoder', ('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')):
    False,
    ('decoder', ('norm', 'self_attn', 'norm', 'cross_attn', 'norm', 'ffn')):
    True,
}
_ACTIVATIONS = {'ReLU': 'relu', 'GELU': 'gelu'}
_LAYER_TYPES = {
    'encoder': ('BaseTransformerLayer', ),
    'decoder': ('DetrTransformerDecoderLayer', 'BaseTransformerLayer'),
}
_SEQUENCE_TYPES = {
    'encoder': 'DetrTransformerEncoder',
    'decoder': 'DetrTransformerDecoder'
}


class Mmdet2ConfigError(ValueError):
    """An mmdet 2.x config asks for something mmdetr cannot build exactly."""


def _fail(path: str, value: Any, why: str) -> None:
    raise Mmdet2ConfigError(
        f'mmdet 2.x transformer config: {path}={value!r}: {why}')


def _type_name(cfg: dict) -> str:
    # 'mmdet.Transformer' and 'Transformer' name the same 2.x class
    return str(cfg.get('type', '')).split('.')[-1]


def is_mmdet2_transformer(cfg: Optional[dict]) -> bool:
    """Whether ``cfg`` is an mmdet 2.x ``Transformer`` spec (rather than an
    mmdetr ``DetrTransformer`` config)."""
    return isinstance(cfg, dict) and (_type_name(cfg) == 'Transformer'
                                      or 'encoder' in cfg or 'decoder' in cfg)


def _check_keys(cfg: dict, allowed: Sequence[str], path: str) -> None:
    for key in cfg:
        if key not in allowed:
            _fail(f'{path}.{key}', cfg[key],
                  f'not supported (supported keys: {sorted(allowed)})')


def _check_norm(cfg: Optional[dict], path: str) -> None:
    # mmdetr's LayerNorms are nn.LayerNorm(embed_dims) with its defaults
    if cfg is None or dict(cfg) != dict(type='LN'):
        _fail(path, cfg, "only dict(type='LN') (nn.LayerNorm) is supported")


def _attention(cfg: dict, path: str, layer_batch_first: bool) -> dict:
    """Heads, dims and the one dropout rate of an mmcv MultiheadAttention."""
    _check_keys(cfg, ('type', 'embed_dims', 'num_heads', 'dropout',
                      'attn_drop', 'proj_drop', 'dropout_layer',
                      'batch_first', 'init_cfg'), path)
    if _type_name(cfg) != 'MultiheadAttention':
        _fail(f'{path}.type', cfg.get('type'),
              "only 'MultiheadAttention' is supported")
    batch_first = cfg.get('batch_first', layer_batch_first)
    if batch_first or layer_batch_first:
        # 2.x's Transformer feeds (seq, batch, dims); batch_first=True
        # would attend across the batch instead of the sequence
        _fail(f'{path}.batch_first', batch_first,
              "2.x's Transformer passes (seq, batch, dims) tensors; only "
              'batch_first=False describes the 2.x network')
    if 'dropout' in cfg:
        # mmcv's deprecated alias: sets attn_drop and the output dropout
        attn_drop = out_drop = cfg['dropout']
        proj_drop = cfg.get('proj_drop', 0.)
    else:
        attn_drop = cfg.get('attn_drop', 0.)
        proj_drop = cfg.get('proj_drop', 0.)
        layer = cfg.get('dropout_layer', dict(type='Dropout', drop_prob=0.))
        if layer is None:
            out_drop = 0.
        elif _type_name(layer) == 'Dropout':
            out_drop = layer.get('drop_prob', 0.5)
        else:
            _fail(f'{path}.dropout_layer', layer,
                  "only dict(type='Dropout', drop_prob=...) is supported")
    # mmdetr has one dropout after the attention output; mmcv has two in a
    # row (proj_drop, dropout_layer): at most one of them may be active
    if proj_drop and out_drop:
        _fail(f'{path}.proj_drop', proj_drop,
              'proj_drop and dropout_layer are both non-zero; mmdetr has one '
              'dropout on the attention output')
    out_drop = out_drop or proj_drop
    if attn_drop != out_drop:
        _fail(f'{path}.attn_drop', attn_drop,
              f'differs from the output dropout {out_drop}; mmdetr uses one '
              'dropout rate for both')
    for key in ('embed_dims', 'num_heads'):
        if key not in cfg:
            _fail(f'{path}.{key}', None, 'is required')
    return dict(
        embed_dims=cfg['embed_dims'],
        num_heads=cfg['num_heads'],
        dropout=attn_drop)


def _ffn(layer: dict, path: str) -> dict:
    """FFN channels, dropout and activation of a 2.x transformer layer."""
    ffn_cfgs = layer.get('ffn_cfgs', _MMCV_DEFAULT_FFN)
    ffn_path = f'{path}.ffn_cfgs'
    if isinstance(ffn_cfgs, (list, tuple)):
        if len(ffn_cfgs) != 1:
            _fail(ffn_path, ffn_cfgs, 'a DETR layer has exactly one FFN')
        ffn_cfgs = ffn_cfgs[0]
        ffn_path += '[0]'
    ffn = copy.deepcopy(dict(ffn_cfgs))
    # mmcv's deprecated aliases of FFN arguments
    if 'dropout' in ffn:
        ffn['ffn_drop'] = ffn.pop('dropout')
    if 'add_residual' in ffn:
        ffn['add_identity'] = ffn.pop('add_residual')
    # BaseTransformerLayer's deprecated layer-level arguments override
    for old, new in (('feedforward_channels', 'feedforward_channels'),
                     ('ffn_dropout', 'ffn_drop'), ('ffn_num_fcs', 'num_fcs')):
        if old in layer:
            ffn[new] = layer[old]
    _check_keys(ffn, ('type', 'embed_dims', 'feedforward_channels',
                      'num_fcs', 'act_cfg', 'ffn_drop', 'dropout_layer',
                      'add_identity', 'init_cfg', 'layer_scale_init_value'),
                ffn_path)
    if _type_name(ffn) not in ('FFN', ''):
        _fail(f'{ffn_path}.type', ffn['type'], "only 'FFN' is supported")
    if ffn.get('num_fcs', 2) != 2:
        _fail(f'{ffn_path}.num_fcs', ffn['num_fcs'],
              "DETR's FFN has two linear layers")
    if not ffn.get('add_identity', True):
        _fail(f'{ffn_path}.add_identity', False,
              'the residual connection around the FFN is always there')
    drop_layer = ffn.get('dropout_layer')
    if drop_layer is not None and drop_layer.get('drop_prob', 0.5) != 0:
        _fail(f'{ffn_path}.dropout_layer', drop_layer,
              'an extra dropout after the FFN is not supported')
    if ffn.get('layer_scale_init_value', 0.) > 0:
        _fail(f'{ffn_path}.layer_scale_init_value',
              ffn['layer_scale_init_value'], 'layer scale is not supported')
    act_cfg = ffn.get('act_cfg', dict(type='ReLU', inplace=True))
    activation = _ACTIVATIONS.get(_type_name(act_cfg))
    if activation is None:
        _fail(f'{ffn_path}.act_cfg', act_cfg,
              f'supported activations: {sorted(_ACTIVATIONS)}')
    # mmcv's BaseTransformerLayer ignores a layer-level act_cfg (it only
    # reads ffn_cfgs); a different one would be silently dropped
    if 'act_cfg' in layer and _ACTIVATIONS.get(_type_name(
            layer['act_cfg'])) != activation:
        _fail(f'{path}.act_cfg', layer['act_cfg'],
              'mmcv ignores a layer-level act_cfg and uses the FFN\'s '
              f'{act_cfg!r}; put the activation into ffn_cfgs')
    if 'feedforward_channels' not in ffn:
        _fail(f'{ffn_path}.feedforward_channels', None, 'is required')
    return dict(
        feedforward_channels=ffn['feedforward_channels'],
        dropout=ffn.get('ffn_drop', 0.),
        activation=activation,
        embed_dims=ffn.get('embed_dims'))


def _layer(layer: dict, kind: str, path: str) -> dict:
    """Settings of one 2.x encoder/decoder layer, as DetrTransformer args."""
    _check_keys(layer, ('type', 'attn_cfgs', 'ffn_cfgs', 'operation_order',
                        'norm_cfg', 'init_cfg', 'batch_first',
                        'feedforward_channels', 'ffn_dropout', 'ffn_num_fcs',
                        'act_cfg'), path)
    if _type_name(layer) not in _LAYER_TYPES[kind]:
        _fail(f'{path}.type', layer.get('type'),
              f'supported {kind} layers: {list(_LAYER_TYPES[kind])}')
    order = tuple(layer.get('operation_order') or ())
    if (kind, order) not in _ORDERS:
        supported = [o for k, o in _ORDERS if k == kind]
        _fail(f'{path}.operation_order', order,
              f'supported {kind} orders: {supported}')
    _check_norm(layer.get('norm_cfg', dict(type='LN')), f'{path}.norm_cfg')
    num_attn = order.count('self_attn') + order.count('cross_attn')
    attn_cfgs = layer.get('attn_cfgs')
    if isinstance(attn_cfgs, dict):
        attn_cfgs = [attn_cfgs] * num_attn
    if not isinstance(attn_cfgs, (list, tuple)) or len(attn_cfgs) != num_attn:
        _fail(f'{path}.attn_cfgs', attn_cfgs,
              f'needs {num_attn} attention config(s) (or one dict) for '
              f'operation_order {order}')
    batch_first = layer.get('batch_first', False)
    attns = [
        _attention(dict(cfg), f'{path}.attn_cfgs[{i}]', batch_first)
        for i, cfg in enumerate(attn_cfgs)
    ]
    for i, attn in enumerate(attns[1:], 1):
        if attn != attns[0]:
            _fail(f'{path}.attn_cfgs[{i}]', attn_cfgs[i],
                  f'differs from attn_cfgs[0] ({attns[0]}); mmdetr builds '
                  'every attention of the transformer alike')
    ffn = _ffn(layer, path)
    embed_dims = attns[0]['embed_dims']
    if ffn.pop('embed_dims') not in (None, embed_dims):
        _fail(f'{path}.ffn_cfgs.embed_dims', layer['ffn_cfgs'],
              f'differs from the attention embed_dims {embed_dims}')
    if ffn['dropout'] != attns[0]['dropout']:
        _fail(f'{path}.ffn_dropout', ffn['dropout'],
              f"differs from the attention dropout {attns[0]['dropout']}; "
              'mmdetr uses one dropout rate in a layer')
    return dict(
        embed_dims=embed_dims,
        num_heads=attns[0]['num_heads'],
        feedforward_channels=ffn['feedforward_channels'],
        dropout=ffn['dropout'],
        activation=ffn['activation'],
        normalize_before=_ORDERS[(kind, order)])


def _sequence(cfg: Optional[dict], kind: str, path: str) -> tuple:
    """(layer settings, number of layers, return_intermediate) of a 2.x
    encoder or decoder."""
    if not isinstance(cfg, dict):
        _fail(path, cfg, f'a {_SEQUENCE_TYPES[kind]} config is required')
    allowed = ['type', 'num_layers', 'transformerlayers', 'post_norm_cfg',
               'init_cfg']
    if kind == 'decoder':
        allowed.append('return_intermediate')
    _check_keys(cfg, allowed, path)
    if _type_name(cfg) != _SEQUENCE_TYPES[kind]:
        _fail(f'{path}.type', cfg.get('type'),
              f"only '{_SEQUENCE_TYPES[kind]}' is supported")
    layers = cfg.get('transformerlayers')
    num_layers = cfg.get('num_layers')
    if isinstance(layers, dict):
        if num_layers is None:
            _fail(f'{path}.num_layers', None,
                  'is required when transformerlayers is one dict')
        layers = [layers] * num_layers
    elif not isinstance(layers, (list, tuple)):
        _fail(f'{path}.transformerlayers', layers,
              'must be a dict or a list of dicts')
    elif num_layers is not None and num_layers != len(layers):
        _fail(f'{path}.num_layers', num_layers,
              f'differs from the {len(layers)} transformerlayers given')
    settings = [
        _layer(dict(layer), kind, f'{path}.transformerlayers[{i}]')
        for i, layer in enumerate(layers)
    ]
    for i, s in enumerate(settings[1:], 1):
        if s != settings[0]:
            _fail(f'{path}.transformerlayers[{i}]', layers[i],
                  'differs from transformerlayers[0]; mmdetr builds every '
                  f'{kind} layer alike')
    post_norm = cfg.get('post_norm_cfg', dict(type='LN'))
    pre_norm = bool(settings) and settings[0]['normalize_before']
    # 2.x: the decoder always ends with its LayerNorm (applied to every
    # intermediate output); the encoder only when pre-norm
    if kind == 'decoder' or pre_norm:
        _check_norm(post_norm, f'{path}.post_norm_cfg')
    return (settings[0] if settings else None, len(settings),
            cfg.get('return_intermediate', False))


def translate_transformer(cfg: dict) -> Dict[str, Any]:
    """Keyword arguments of mmdetr's ``DetrTransformer`` for an mmdet 2.x
    ``Transformer`` config.

    Args:
        cfg (dict): ``dict(type='Transformer', encoder=..., decoder=...)``
            as in mmdet 2.x's DETR configs.

    Returns:
        dict: ``dict(type='DetrTransformer', embed_dims=..., ...)``.

    Raises:
        Mmdet2ConfigError: a field whose value mmdetr cannot express, named
            with its path, e.g. ``encoder.transformerlayers[0].
            operation_order``.
    """
    cfg = dict(cfg)
    # init_cfg is dropped: 2.x's Transformer.init_weights ignored it too
    # (Xavier-uniform on every weight matrix, as DetrTransformer does)
    _check_keys(cfg, ('type', 'encoder', 'decoder', 'init_cfg'), 'transformer')
    if _type_name(cfg) != 'Transformer':
        _fail('transformer.type', cfg.get('type'),
              "only mmdet 2.x's DETR 'Transformer' is supported")
    enc, num_enc, _ = _sequence(cfg.get('encoder'), 'encoder',
                                'transformer.encoder')
    dec, num_dec, return_intermediate = _sequence(cfg.get('decoder'),
                                                  'decoder',
                                                  'transformer.decoder')
    if dec is None:
        _fail('transformer.decoder.num_layers', 0,
              'the decoder needs at least one layer')
    if enc is not None and enc != dec:
        diff = {k: (enc[k], dec[k]) for k in enc if enc[k] != dec[k]}
        _fail('transformer.decoder', diff,
              '(encoder, decoder) settings differ; mmdetr builds both alike')
    return dict(
        type='DetrTransformer',
        num_encoder_layers=num_enc,
        num_decoder_layers=num_dec,
        return_intermediate=bool(return_intermediate),
        **dec)
