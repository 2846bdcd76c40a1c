# Copyright (c) mmdetr contributors. All rights reserved.
"""Convert a DETR checkpoint between layouts (official, mmdet 2.x/3.x, mmdetr).

    python tools/model_converters/detr_to_mmdetr.py SRC DST \\
        [--from auto|official|mmdet3|mmdet2|mmdetr] [--to mmdetr|mmdet3] \\
        [--config CONFIG]

SRC is loaded with ``weights_only=True`` (nothing in it is executed). With
``--from auto`` (the default) the layout is detected from the keys. The
converted weights are then loaded strictly into the target model, built from
``--config`` (default: mmdetr's R50 config, or mmdet 3.x's for
``--to mmdet3``); DST is written, atomically, only if no key is missing,
unexpected or of the wrong shape.

The classifier is the exception: when the config's classes differ from the
checkpoint's (fine-tuning COCO weights on your own classes), its rows are
rebuilt by class name (:mod:`mmdetr.utils.classifier_remap`): rows of
classes in both are copied, the others freshly initialised (seed 0, so the
output is reproducible), the no-object row kept; one line says what was
done. The config's classes are its dataset's ``metainfo.classes`` (or the
dataset type's default classes); DST records them in
``meta['dataset_meta']``.
"""
import argparse
import copy
import os
import os.path as osp
import sys

import torch

from mmdetr.utils import load_checkpoint_file
from mmdetr.utils.checkpoint_scheme import source_classes
from mmdetr.utils.classifier_remap import config_classes, remap_classifier
from mmdetr.utils.convert import (LAYOUTS, SOURCES, TARGETS,
                                  CheckpointLayoutError, convert_state_dict,
                                  detect_layout, extract_state_dict)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIGS = {
    'mmdetr': osp.join(ROOT, 'configs', 'detr_r50_8x2_150e_coco.py'),
    'mmdet3': 'mmdet::detr/detr_r50_8xb2-150e_coco.py',
}
# Fields of the official ``args`` that the weights do not show but a config
# must match (heads, dilation) or that say which config fits.
OFFICIAL_ARGS = ('backbone', 'dilation', 'position_embedding', 'hidden_dim',
                 'nheads', 'dim_feedforward', 'enc_layers', 'dec_layers',
                 'num_queries', 'pre_norm')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a DETR checkpoint between the official, mmdet '
        '2.x/3.x and mmdetr layouts')
    parser.add_argument('src', help='source checkpoint file')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument(
        '--from',
        dest='src_layout',
        default='auto',
        choices=('auto', ) + SOURCES,
        help='layout of SRC (default: detect it from the keys)')
    parser.add_argument(
        '--to',
        dest='dst_layout',
        default='mmdetr',
        choices=TARGETS,
        help='layout of DST (default: mmdetr)')
    parser.add_argument(
        '--config',
        help='config whose model the result must load into strictly '
        '(default: configs/detr_r50_8x2_150e_coco.py for mmdetr, mmdet\'s '
        'detr/detr_r50_8xb2-150e_coco.py for mmdet3)')
    return parser.parse_args(argv)


def save_atomic(obj, path: str) -> None:
    """Write to a temporary file beside ``path``, then rename over it."""
    tmp = f'{path}.tmp.{os.getpid()}'
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def load_target_config(config: str):
    """``config`` (a file, or ``mmdet::`` for one of mmdet's)."""
    from mmengine.config import Config
    if config.startswith('mmdet::'):
        from mmengine.hub import get_config
        return get_config(config)
    return Config.fromfile(config)


def build_target_model(cfg):
    """The model of config ``cfg`` (a Config or a path for
    :func:`load_target_config`), built as the runner builds it (weights not
    initialised: nothing is downloaded; torch's default initialisation,
    seeded, as DETR's classifier uses)."""
    from mmengine.registry import MODELS, DefaultScope
    import mmdet.models  # noqa: F401  registers mmdet's modules
    if isinstance(cfg, str):
        cfg = load_target_config(cfg)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet')):
        return MODELS.build(copy.deepcopy(cfg.model))


def fit_classifier(model, state_dict, ckpt_classes, cfg):
    """Rebuild the classifier of ``state_dict`` for the classes of ``cfg``.

    Returns:
        tuple: the state dict, the model's class names (None if unknown)
        and the line saying what was done (None: no classifier to fit).
    """
    model_classes, where = config_classes(cfg)
    head = getattr(model, 'bbox_head', None)
    num_classes = getattr(head, 'num_classes', None)
    if num_classes is None:
        return state_dict, model_classes, None
    own = model.state_dict()
    fitted, line, _ = remap_classifier(state_dict, own, num_classes,
                                       ckpt_classes, model_classes)
    if line is not None:
        line += f' [model classes from {where}]'
    return fitted, model_classes, line


def strict_load_problems(model, state_dict) -> list:
    """Lines naming the keys that keep ``state_dict`` from loading strictly
    into ``model`` (none: it has loaded)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f'{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}'
        for k, v in state_dict.items() if k in own and v.shape != own[k].shape
    ]
    problems = []
    for what, keys in (('missing', missing), ('unexpected', unexpected),
                       ('of another shape', shapes)):
        if keys:
            problems.append(f'{len(keys)} keys {what}, e.g. {keys[:5]}')
    if not problems:
        model.load_state_dict(state_dict, strict=True)
    return problems


def main(argv=None) -> int:
    args = parse_args(argv)
    if osp.abspath(args.src) == osp.abspath(args.dst):
        sys.exit('detr_to_mmdetr: SRC and DST are the same file; refusing to '
                 'overwrite the source')
    if not osp.isfile(args.src):
        sys.exit(f'detr_to_mmdetr: no such file: {args.src}')
    checkpoint = load_checkpoint_file(args.src)
    state_dict = extract_state_dict(checkpoint)
    if not isinstance(state_dict, dict):
        sys.exit(f'detr_to_mmdetr: {args.src} holds no state dict')
    notes = []
    try:
        src_layout = args.src_layout
        if src_layout == 'auto':
            src_layout = detect_layout(state_dict)
            print(f'detected layout: {src_layout} '
                  f'({LAYOUTS[src_layout].title})')
        ckpt_classes = source_classes(checkpoint, state_dict, src_layout,
                                      notes)
        converted = convert_state_dict(state_dict, src_layout,
                                       args.dst_layout, notes)
    except CheckpointLayoutError as e:
        sys.exit(f'detr_to_mmdetr: {args.src}: {e}')
    for note in notes:
        print(note)
    official_args = isinstance(checkpoint, dict) and checkpoint.get('args')
    if src_layout == 'official' and official_args is not None:
        hints = {k: getattr(official_args, k) for k in OFFICIAL_ARGS
                 if hasattr(official_args, k)}
        print(f'official training args (the config must match): {hints}')

    config = args.config or DEFAULT_CONFIGS[args.dst_layout]
    cfg = load_target_config(config)
    model = build_target_model(cfg)
    converted, model_classes, line = fit_classifier(model, converted,
                                                    ckpt_classes, cfg)
    if line is not None:
        print(line)
    problems = strict_load_problems(model, converted)
    if problems:
        sys.exit(f'detr_to_mmdetr: the converted {args.src} does not load '
                 f'strictly into the model of {config}: ' +
                 '; '.join(problems) +
                 '. Pass --config with the architecture of the checkpoint '
                 '(depth, layers, dims, queries, classes).')
    print(f'loads strictly into the model of {config}')

    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = dict(
        converted_from=src_layout,
        converted_to=args.dst_layout,
        source=osp.basename(args.src))
    if model_classes is not None:
        # what the classifier now holds: later loads match rows by name
        meta['dataset_meta'] = dict(classes=tuple(model_classes))
    save_atomic(dict(state_dict=converted, meta=meta), args.dst)
    print(f'converted {len(converted)} tensors ({src_layout} -> '
          f'{args.dst_layout}): {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
