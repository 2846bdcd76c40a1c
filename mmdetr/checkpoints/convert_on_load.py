# Copyright (c) mmdetr contributors. All rights reserved.
"""``load_from = 'mmdetr-convert://PATH'``: DETR checkpoints converted on load.

Importing mmdetr (``custom_imports = dict(imports=['mmdetr'])`` in a config)
registers the prefix with mmengine's ``CheckpointLoader``, which the runner
uses for ``load_from`` (and ``mmengine.runner.load_checkpoint`` for any
model). ``PATH`` is a local file or an ``http(s)://`` URL; it is loaded with
``weights_only=True`` (official DETR files hold an ``argparse.Namespace``,
which is allowlisted), its layout detected from its keys (official box or
panoptic, mmdet 2.x/3.x or mmdetr) and its weights returned in mmdetr's
layout::

    load_from = ('mmdetr-convert://'
                 'https://dl.fbaipublicfiles.com/detr/detr-r50-e632da11.pth')

``PATH`` may also be a local Hugging Face transformers DETR: its directory,
or its ``model.safetensors`` / ``pytorch_model.bin`` with ``config.json``
beside it (:mod:`mmdetr.checkpoints.hf`); the class names come from
``id2label``, and the architecture of ``config.json`` is recorded in
``meta['hf_architecture']``, which mmdetr's runner checks against the model.
"""
import os
import os.path as osp
import re
from urllib.parse import urlparse

from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from .class_names import source_classes
from .convert import (LAYOUTS, convert_state_dict, detect_layout,
                      extract_state_dict)
from .hf import hf_files, load_hf_checkpoint
from .safe_load import load_checkpoint_file

PREFIX = 'mmdetr-convert://'
# 'detr-r50-e632da11.pth', '..._153551-436d03e8.pth': the first hex digits of
# the file's sha256 (torch.hub's and OpenMMLab's naming); 8 or more, so that
# a name like 'detr-dec.pth' is not taken for one.
_HASH_IN_NAME = re.compile(r'-([a-f0-9]{8,})\.')


def _local_copy(path: str) -> str:
    """``path`` itself, or for an URL its copy in torch's hub cache
    (downloaded once; checked against the sha256 prefix in its name, if it
    has one)."""
    if not re.match(r'https?://', path):
        return osp.expanduser(path)
    from torch.hub import download_url_to_file, get_dir
    filename = osp.basename(urlparse(path).path)
    cached = osp.join(get_dir(), 'checkpoints', filename)
    if not osp.exists(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        match = _HASH_IN_NAME.search(filename)
        print_log(f'downloading {path} to {cached}', logger='current')
        download_url_to_file(path, cached, match.group(1) if match else None)
    return cached


@CheckpointLoader.register_scheme(prefixes=PREFIX)
def load_from_converted(filename: str, map_location=None) -> dict:
    """Load ``mmdetr-convert://PATH`` and return mmdetr's state dict.

    Returns:
        dict: ``state_dict`` in mmdetr's layout and ``meta`` with the
        source layout and, when known, ``dataset_meta['classes']``: the
        checkpoint's own record, ``id2label`` of a transformers DETR, or
        COCO's 80 names for an official COCO checkpoint (so fine-tuning
        copies classifier rows by class name).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds objects outside the allowlist.
        CheckpointLayoutError: the keys fit no known layout, or a
            transformers DETR mmdetr cannot compute as transformers does.
    """
    path = _local_copy(filename[len(PREFIX):])
    if hf_files(path):
        return _load_hf(filename, path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{filename}: no such file: {path}')
    checkpoint = load_checkpoint_file(path, map_location=map_location or 'cpu')
    state_dict = extract_state_dict(checkpoint)
    layout = detect_layout(state_dict)
    notes = [f'detected layout: {layout} ({LAYOUTS[layout].title})']
    classes = source_classes(checkpoint, state_dict, layout, notes)
    state_dict = convert_state_dict(state_dict, layout, 'mmdetr', notes)
    for note in notes:
        print_log(f'{filename}: {note}', logger='current')
    meta = dict(converted_from=layout)
    if classes is not None:
        meta['dataset_meta'] = dict(classes=classes)
    return dict(state_dict=state_dict, meta=meta)


def _load_hf(filename: str, path: str) -> dict:
    """:func:`load_from_converted` for a transformers DETR."""
    from dataclasses import asdict
    notes = ['detected layout: hf (Hugging Face transformers DETR)']
    state_dict, classes, arch = load_hf_checkpoint(path, notes)
    for note in notes:
        print_log(f'{filename}: {note}', logger='current')
    meta = dict(converted_from='hf', dataset_meta=dict(classes=classes),
                hf_architecture=asdict(arch))
    return dict(state_dict=state_dict, meta=meta)
