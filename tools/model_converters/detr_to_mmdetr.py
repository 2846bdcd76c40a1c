# Copyright (c) mmdetr contributors. All rights reserved.
"""Convert a DETR checkpoint between layouts (official, mmdet 2.x/3.x,
Hugging Face transformers, mmdetr).

    python tools/model_converters/detr_to_mmdetr.py SRC DST \\
        [--from auto|official|official_panoptic|mmdet3|mmdet2|mmdetr|hf] \\
        [--to mmdetr|mmdet3|hf] [--config CONFIG]

SRC is loaded with ``weights_only=True`` (nothing in it is executed); a
transformers DETR is a directory (or its ``model.safetensors`` /
``pytorch_model.bin`` with ``config.json`` beside it), its architecture read
from ``config.json`` (:mod:`mmdetr.checkpoints.hf`). With ``--from auto``
(the default) the layout is detected from the files and keys. The converted
weights are then loaded strictly into the target model, built from
``--config`` (default: mmdetr's R50 config, or mmdet 3.x's for
``--to mmdet3``; for a transformers source, mmdetr's R50 config changed to
the architecture of its ``config.json``); DST is written, atomically, only if
no key is missing, unexpected or of the wrong shape. With ``--to hf`` DST is
a directory for ``DetrForObjectDetection.from_pretrained`` and
``pipeline('object-detection')``.

The classifier is the exception: when the config's classes differ from the
checkpoint's (fine-tuning COCO weights on your own classes), its rows are
rebuilt by class name (:mod:`mmdetr.checkpoints.classifier_remap`): rows of
classes in both are copied, the others freshly initialised (seed 0, so the
output is reproducible), the no-object row kept; one line says what was
done. The config's classes are its dataset's ``metainfo.classes`` (or the
dataset type's default classes); DST records them in
``meta['dataset_meta']``.

Official panoptic checkpoints (``detr-r50-panoptic`` ...: ``detr.*``,
``bbox_attention.*``, ``mask_head.*``) are the ``official_panoptic``
layout; their default config is ``configs/detr_r50_8x2_panoptic_coco.py``
(a ``PanopticDETR``: pass ``--config`` for the DC5 and R101 ones).
"""
import argparse
import copy
import os
import os.path as osp
import sys


def _import_mmdet_without_transformers() -> None:
    """Import mmdet's models as if transformers were not installed.

    When it is, importing mmdet.models imports transformers' BERT (for
    mmdet's GLIP and Grounding DINO): 2-3 s of this tool's run on 2 cores.
    The tool never uses it: a transformers DETR is read and written with
    safetensors alone. ``import transformers`` works again afterwards.
    """
    if 'transformers' in sys.modules:
        return
    sys.modules['transformers'] = None  # its import raises ImportError
    try:
        import mmdet.models  # noqa: F401
    finally:
        del sys.modules['transformers']


if __name__ == '__main__':
    _import_mmdet_without_transformers()

import torch  # noqa: E402

from mmdetr.checkpoints import load_checkpoint_file  # noqa: E402
from mmdetr.checkpoints.class_names import (  # noqa: E402
    config_classes, source_classes)
from mmdetr.checkpoints.classifier_remap import remap_classifier  # noqa
from mmdetr.checkpoints.convert import (  # noqa: E402
    LAYOUTS, SOURCES, TARGETS, CheckpointLayoutError, convert_state_dict,
    detect_layout, extract_state_dict)
from mmdetr.checkpoints.hf import (  # noqa: E402
    CONFIG_FILE, HFConversionError, apply_arch, arch_from_model,
    arch_mismatches, export_hf, hf_files, load_hf_checkpoint, looks_like_hf)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIGS = {
    'mmdetr': osp.join(ROOT, 'configs', 'detr_r50_8x2_150e_coco.py'),
    'mmdet3': 'mmdet::detr/detr_r50_8xb2-150e_coco.py',
}
HF = 'hf'  # Hugging Face transformers' DETR, as --from and --to
# the model of a panoptic checkpoint (mask_head.* keys) without --config
PANOPTIC_CONFIG = osp.join(ROOT, 'configs', 'detr_r50_8x2_panoptic_coco.py')


def default_config(layout: str) -> str:
    """The config of the model a ``--to layout`` result must load into when
    no ``--config`` is given (an export to transformers starts from
    mmdetr's model)."""
    return DEFAULT_CONFIGS['mmdetr' if layout == HF else layout]


# Fields of the official ``args`` that the weights do not show but a config
# must match (heads, dilation) or that say which config fits.
OFFICIAL_ARGS = ('backbone', 'dilation', 'position_embedding', 'hidden_dim',
                 'nheads', 'dim_feedforward', 'enc_layers', 'dec_layers',
                 'num_queries', 'pre_norm')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a DETR checkpoint between the official, mmdet '
        '2.x/3.x, Hugging Face transformers and mmdetr layouts')
    parser.add_argument(
        'src', help='source checkpoint file, or a transformers DETR '
        'directory')
    parser.add_argument(
        'dst', help='where to write the converted checkpoint (a directory '
        'with --to hf)')
    parser.add_argument(
        '--from',
        dest='src_layout',
        default='auto',
        choices=('auto', ) + SOURCES + (HF, ),
        help='layout of SRC (default: detect it from the files and keys)')
    parser.add_argument(
        '--to',
        dest='dst_layout',
        default='mmdetr',
        choices=TARGETS + (HF, ),
        help='layout of DST (default: mmdetr)')
    parser.add_argument(
        '--config',
        help='config whose model the result must load into strictly '
        '(default: configs/detr_r50_8x2_150e_coco.py for mmdetr and hf, '
        'changed to the architecture of config.json for a transformers '
        'source; mmdet\'s detr/detr_r50_8xb2-150e_coco.py for mmdet3)')
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
    model_cfg = copy.deepcopy(cfg.model)
    if model_cfg.get('type') == 'mmdetr.DETR' or (
            model_cfg.get('_scope_') == 'mmdetr'
            and model_cfg.get('type') == 'DETR'):
        # the model only receives the weights: a channels-last layout would
        # convert each of them twice for nothing
        model_cfg['speedups'] = [
            s for s in model_cfg.get('speedups', [])
            if str(s.get('type', '')).split('.')[-1] != 'ChannelsLast'
        ]
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet')):
        return MODELS.build(model_cfg)


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


def config_delta(before: dict, after: dict) -> dict:
    """The entries of config dict ``after`` that differ from ``before``
    (nested dicts of one type compared entry by entry)."""
    delta = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and \
                value.get('type') == old.get('type'):
            inner = config_delta(old, value)
            if inner:
                delta[key] = inner
        elif value != old:
            delta[key] = value
    return delta


def read_source(args, notes: list):
    """SRC in mmdetr's layout (or mmdet 3.x's for ``--to mmdet3``).

    Returns:
        tuple: the checkpoint's weights, its class names (None if unknown),
        its layout, and the :class:`DetrArch` of a transformers source
        (None for the others).
    """
    if args.src_layout == HF or (args.src_layout == 'auto'
                                 and hf_files(args.src)):
        if args.dst_layout not in ('mmdetr', HF):
            sys.exit('detr_to_mmdetr: a transformers DETR converts to '
                     'mmdetr or hf; convert the result again with '
                     f'--to {args.dst_layout}')
        if args.src_layout == 'auto':
            print(f'detected layout: {HF} (Hugging Face transformers DETR)')
        converted, classes, arch = load_hf_checkpoint(args.src, notes)
        return converted, classes, HF, arch
    if not osp.isfile(args.src):
        sys.exit(f'detr_to_mmdetr: no such file: {args.src}')
    checkpoint = load_checkpoint_file(args.src)
    state_dict = extract_state_dict(checkpoint)
    if not isinstance(state_dict, dict):
        sys.exit(f'detr_to_mmdetr: {args.src} holds no state dict')
    src_layout = args.src_layout
    if src_layout == 'auto':
        if looks_like_hf(state_dict):
            raise HFConversionError(
                f'transformers DETR weights need their {CONFIG_FILE} '
                '(heads, activation, dilation, class names) beside them')
        src_layout = detect_layout(state_dict)
        print(f'detected layout: {src_layout} '
              f'({LAYOUTS[src_layout].title})')
    classes = source_classes(checkpoint, state_dict, src_layout, notes)
    model_layout = 'mmdetr' if args.dst_layout == HF else args.dst_layout
    converted = convert_state_dict(state_dict, src_layout, model_layout,
                                   notes)
    official_args = isinstance(checkpoint, dict) and checkpoint.get('args')
    if src_layout.startswith('official') and official_args is not None:
        hints = {k: getattr(official_args, k) for k in OFFICIAL_ARGS
                 if hasattr(official_args, k)}
        notes.append(f'official training args (the config must match): '
                     f'{hints}')
    return converted, classes, src_layout, None


def fit_hf_model(args, cfg, hf_arch, classes):
    """The model for a transformers source: without ``--config``, the
    default config's changed to the checkpoint's architecture and classes
    (what a config needs is printed); with it, the config's, which must
    agree with ``config.json``.

    Returns:
        tuple: the model and where its config came from (for messages).
    """
    config = args.config or default_config(args.dst_layout)
    if args.config:
        model = build_target_model(cfg)
        try:
            mismatches = arch_mismatches(hf_arch, arch_from_model(model))
        except HFConversionError as e:
            mismatches = [str(e)]
        if mismatches:
            sys.exit(f'detr_to_mmdetr: {args.src} does not fit the model of '
                     f'{config}: ' + '; '.join(mismatches))
        return model, config
    default_model = cfg.model.to_dict()
    cfg.model = apply_arch(default_model, hf_arch, len(classes))
    delta = config_delta(default_model, cfg.model.to_dict())
    if classes != config_classes(cfg)[0]:
        print(f'their classes are not the config\'s: a config for them '
              f'needs metainfo=dict(classes={tuple(classes)}) in its '
              'datasets')
    base = osp.relpath(config, ROOT)
    print(f'a config for these weights is {base} with model = {delta}'
          if delta else f'{base} fits these weights')
    return build_target_model(cfg), \
        f'{config} changed to the {CONFIG_FILE} of {args.src}'


def main(argv=None) -> int:
    args = parse_args(argv)
    if osp.abspath(args.src) == osp.abspath(args.dst):
        sys.exit('detr_to_mmdetr: SRC and DST are the same file; refusing to '
                 'overwrite the source')
    if not osp.exists(args.src):
        sys.exit(f'detr_to_mmdetr: no such file: {args.src}')
    notes = []
    try:
        converted, ckpt_classes, src_layout, hf_arch = read_source(
            args, notes)
    except CheckpointLayoutError as e:
        sys.exit(f'detr_to_mmdetr: {args.src}: {e}')
    for note in notes:
        print(note)
    if not args.config and any(k.startswith('mask_head.') for k in converted):
        args.config = PANOPTIC_CONFIG  # a panoptic checkpoint: PanopticDETR

    cfg = load_target_config(args.config or default_config(args.dst_layout))
    if hf_arch is not None:
        model, config = fit_hf_model(args, cfg, hf_arch, ckpt_classes)
    else:
        config = args.config or default_config(args.dst_layout)
        model = build_target_model(cfg)
    if hf_arch is not None and not args.config:
        model_classes = ckpt_classes  # the model was made for them
    else:
        converted, model_classes, line = fit_classifier(
            model, converted, ckpt_classes, cfg)
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

    if args.dst_layout == HF:
        classes = model_classes or ckpt_classes
        if classes is None:
            sys.exit('detr_to_mmdetr: no class names for id2label: pass '
                     '--config whose dataset names the classes')
        notes = []
        try:
            export_hf(model, cfg, converted, classes, args.dst, notes)
        except HFConversionError as e:
            sys.exit(f'detr_to_mmdetr: {args.src} cannot be written as a '
                     f'transformers DETR: {e}')
        for note in notes:
            print(note)
        print(f'wrote a transformers DETR ({src_layout} -> {HF}, '
              f'{len(classes)} classes): {args.dst}')
        return 0

    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = dict(
        converted_from=src_layout,
        converted_to=args.dst_layout,
        source=osp.basename(osp.normpath(args.src)))
    if model_classes is not None:
        # what the classifier now holds: later loads match rows by name
        meta['dataset_meta'] = dict(classes=tuple(model_classes))
    save_atomic(dict(state_dict=converted, meta=meta), args.dst)
    print(f'converted {len(converted)} tensors ({src_layout} -> '
          f'{args.dst_layout}): {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
