# Copyright (c) mmdetr contributors. All rights reserved.
"""The class names of a checkpoint, a config and COCO: what a converted
checkpoint records (``meta['dataset_meta']['classes']``) and what
fine-tuning matches classifier rows by (:mod:`.classifier_remap`).

A checkpoint's names are those it records (mmengine's
``meta['dataset_meta']``, mmdet 2.x's ``meta['CLASSES']``) or, for the
official and mmdet layouts, COCO's when its classifier has COCO's size; a
config's are its dataset's.
"""
from typing import Optional, Tuple

from .convert import (CLASSIFIER, OFFICIAL_COCO_LOGITS,
                      OFFICIAL_PANOPTIC_LOGITS)


def coco_classes() -> Tuple[str, ...]:
    """COCO's 80 class names, in COCO's order (mmdet's ``CocoDataset``)."""
    from mmdet.datasets import CocoDataset
    return tuple(CocoDataset.METAINFO['classes'])


def coco_panoptic_classes() -> Tuple[str, ...]:
    """COCO panoptic's 133 class names, things then stuff (mmdet's
    ``CocoPanopticDataset``)."""
    from mmdet.datasets import CocoPanopticDataset
    return tuple(CocoPanopticDataset.METAINFO['classes'])


def checkpoint_classes(checkpoint) -> Optional[Tuple[str, ...]]:
    """The class names a loaded checkpoint records, or None.

    Args:
        checkpoint (dict): As loaded: ``meta['dataset_meta']['classes']``
            (mmengine) or ``meta['CLASSES']`` (mmdet 2.x / mmcv 1.x).
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return None
    dataset_meta = meta.get('dataset_meta')
    classes = dataset_meta.get('classes') if isinstance(
        dataset_meta, dict) else None
    if classes is None:
        classes = meta.get('CLASSES')
    if isinstance(classes, str):
        classes = (classes, )
    return tuple(classes) if classes else None


def config_classes(cfg) -> Tuple[Optional[Tuple[str, ...]], str]:
    """The class names of a config's dataset, without building it.

    Reads the first of ``train_dataloader``, ``test_dataloader`` and
    ``val_dataloader`` that has a dataset: its ``metainfo.classes``, or else
    the default ``METAINFO['classes']`` of its dataset type (mmdet's
    ``CocoDataset``: COCO's 80). Dataset wrappers (``RepeatDataset``,
    ``ConcatDataset`` ...) are looked through.

    Returns:
        tuple: the names (None if not found) and where they were found, for
        messages (``'train_dataloader.dataset.metainfo.classes'`` ...).
    """
    for loader in ('train_dataloader', 'test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        where = f'{loader}.dataset'
        while isinstance(dataset, dict) and ('dataset' in dataset
                                             or 'datasets' in dataset):
            if 'dataset' in dataset:
                dataset, where = dataset['dataset'], where + '.dataset'
            else:
                dataset, where = dataset['datasets'][0], \
                    where + '.datasets[0]'
        if not isinstance(dataset, dict):
            continue
        classes = (dataset.get('metainfo') or {}).get('classes')
        if classes:
            return tuple(classes), f'{where}.metainfo.classes'
        dataset_type = _dataset_type(dataset.get('type'),
                                     cfg.get('default_scope', 'mmdet'))
        classes = getattr(dataset_type, 'METAINFO', {}).get('classes')
        if classes:
            return tuple(classes), \
                f'{where}: {dataset_type.__name__}.METAINFO'
    return None, 'the config (it names no dataset)'


def _dataset_type(name, scope: str):
    """The dataset class registered as ``name`` (None if not found), looked
    up as the runner would: in mmdet's registry (mmdetr's is its child, so
    ``'mmdetr.CocoDataset'`` resolves too) under the config's scope."""
    if not isinstance(name, str):
        return name  # already a class (lazy-import configs)
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope

    import mmdetr.datasets  # noqa: F401  registers mmdetr's datasets
    with DefaultScope.overwrite_default_scope(scope):
        try:
            return DATASETS.get(name)
        except KeyError:
            return None


def source_classes(checkpoint, state_dict, layout: str, notes: list):
    """The class names of a checkpoint's classifier, or None.

    Recorded names (mmengine's ``meta['dataset_meta']``, mmdet 2.x's
    ``meta['CLASSES']``) win; an official checkpoint with COCO's 92 logits
    is COCO's (the converter keeps its 80 classes, in COCO's order), an
    official panoptic one with 251 logits COCO panoptic's 133; an
    mmdet checkpoint with 80 classes and no names is taken for COCO's, as
    mmdet's ``init_detector`` does (mmdet's released DETRs are COCO's).

    Args:
        checkpoint: The loaded file.
        state_dict (dict): Its weights, in ``layout``'s keys (before
            conversion).
        layout (str): The detected layout.
        notes (list): Receives one line saying where the names came from.
    """
    classes = checkpoint_classes(checkpoint)
    if classes is not None:
        notes.append(f'class names: {len(classes)} recorded in the '
                     f'checkpoint\'s meta')
        return classes
    weight = state_dict.get('class_embed.weight' if layout == 'official'
                            else f'{CLASSIFIER}.weight')
    if layout == 'official' and weight is not None and \
            len(weight) == OFFICIAL_COCO_LOGITS:
        notes.append('class names: COCO\'s 80 (official DETR with COCO\'s '
                     '92 logits)')
        return coco_classes()
    panoptic = state_dict.get('detr.class_embed.weight')
    if layout == 'official_panoptic' and panoptic is not None and \
            len(panoptic) == OFFICIAL_PANOPTIC_LOGITS:
        notes.append('class names: COCO panoptic\'s 133 (official panoptic '
                     'DETR with its 251 logits)')
        return coco_panoptic_classes()
    if layout in ('mmdet2', 'mmdet3') and weight is not None and \
            len(weight) == len(coco_classes()) + 1:
        notes.append('class names: not recorded; 80 classes + no-object, '
                     'taken for COCO\'s 80 (as mmdet\'s init_detector does)')
        return coco_classes()
    notes.append('class names: not recorded in the checkpoint')
    return None
