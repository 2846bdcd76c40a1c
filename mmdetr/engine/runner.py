# Copyright (c) mmdetr contributors. All rights reserved.
"""mmengine's Runner with crash-safe checkpoints and safe loading."""
import glob
import logging
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Optional, Tuple

from mmengine.dist import master_only
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner as MMEngineRunner
from mmengine.runner.base_loop import BaseLoop
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model)

from mmdetr.registry import RUNNERS
from mmdetr.utils.checkpoint import (UnsafeCheckpointError,
                                     register_trusted_checkpoint_globals)
from mmdetr.utils.classifier_remap import (config_classes,
                                           remap_checkpoint_classifier)


def _is_local(path: str) -> bool:
    return '://' not in str(path)


@RUNNERS.register_module()
class Runner(MMEngineRunner):
    """mmengine's Runner, plus:

    - checkpoints are written to a temporary file and renamed into place,
      so a run killed while saving never leaves a truncated ``epoch_N.pth``
      (the previous checkpoint stays the latest);
    - checkpoints load with ``weights_only=True`` and mmdetr's allowlist; a
      checkpoint holding anything else is refused with
      :class:`UnsafeCheckpointError` naming the file, and nothing in it runs;
    - ``load_from`` a checkpoint trained on other classes (fine-tuning)
      rebuilds the classifier by class name
      (:mod:`mmdetr.utils.classifier_remap`) and logs one line saying what
      it did; every other mismatched key is listed by mmengine as before.
    """

    def __init__(self, *args, **kwargs):
        register_trusted_checkpoint_globals()
        super().__init__(*args, **kwargs)

    @master_only  # as mmengine's: only rank 0 writes
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if not _is_local(out_dir):
            return super().save_checkpoint(out_dir, filename, *args,
                                           **kwargs)
        tmp_name = f'.{filename}.tmp{os.getpid()}'
        try:
            super().save_checkpoint(out_dir, tmp_name, *args, **kwargs)
            os.replace(osp.join(out_dir, tmp_name), osp.join(out_dir,
                                                             filename))
        finally:
            if osp.exists(osp.join(out_dir, tmp_name)):
                os.remove(osp.join(out_dir, tmp_name))

    def load_checkpoint(self,
                        filename: str,
                        map_location='cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module\.', '')]):
        """mmengine's ``load_checkpoint`` (used for ``load_from``), with the
        classifier fitted to the model's classes before loading."""
        try:
            checkpoint = _load_checkpoint(filename, map_location=map_location)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(_refusal(filename, e)) from e
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(
            self.model) else self.model
        # Rename keys first ('module.' of DDP-saved weights), so the
        # classifier is found under its model name.
        checkpoint = _revise_keys(checkpoint, revise_keys)
        classes, where = self.dataset_classes()
        checkpoint, line, warn = remap_checkpoint_classifier(
            checkpoint, model, classes)
        if line is not None:
            print_log(
                f'{line} [model classes from {where}]',
                logger='current',
                level=logging.WARNING if warn else logging.INFO)
        _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=[])
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def dataset_classes(self) -> Tuple[Optional[tuple], str]:
        """The class names the model is trained or tested on.

        The dataset of the loop being run decides (train, else test, else
        val: the loops ``train()``/``test()``/``val()`` have built); before
        any loop is built, the config's dataset (its ``metainfo.classes``,
        or its type's default classes).

        Returns:
            tuple: the names (None if unknown) and where they came from.
        """
        for name in ('train', 'test', 'val'):
            loop = getattr(self, f'_{name}_loop', None)
            if isinstance(loop, BaseLoop):
                dataset = getattr(loop.dataloader, 'dataset', None)
                metainfo = getattr(dataset, 'metainfo', None) or {}
                if metainfo.get('classes'):
                    return (tuple(metainfo['classes']),
                            f'the {name} dataset\'s metainfo')
        return config_classes(self.cfg)

    def resume(self, filename: str, *args, **kwargs):
        try:
            return super().resume(filename, *args, **kwargs)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(_refusal(filename, e)) from e


def _revise_keys(checkpoint: dict, revise_keys: list) -> dict:
    """``checkpoint`` with ``re.sub(pattern, repl, key)`` applied to every
    key of its state dict, as mmengine's loader does."""
    if not revise_keys:
        return checkpoint
    state_dict = checkpoint.get('state_dict', checkpoint)
    metadata = getattr(state_dict, '_metadata', OrderedDict())
    for pattern, repl in revise_keys:
        state_dict = OrderedDict(
            (re.sub(pattern, repl, k), v) for k, v in state_dict.items())
    state_dict._metadata = metadata
    if 'state_dict' in checkpoint:
        return dict(checkpoint, state_dict=state_dict)
    return state_dict


def _refusal(filename: str, error: Exception) -> str:
    return (f'refusing to load checkpoint {filename}: it holds objects '
            'outside the trusted allowlist, so loading it could run code '
            f'(torch: {str(error).splitlines()[-1][:300]})')


def find_latest_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete checkpoint in ``work_dir``, or None.

    Trusts ``work_dir/last_checkpoint`` when it names an existing file;
    otherwise (missing, empty, or pointing at a file that is gone) takes the
    ``epoch_N.pth`` / ``iter_N.pth`` with the largest N. Temporary files of
    an interrupted save are never candidates.
    """
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            path = f.read().strip()
        if path and osp.isfile(path):
            return path
    best, best_n = None, -1
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        m = re.fullmatch(r'(epoch|iter)_(\d+)\.pth', osp.basename(path))
        if m and int(m.group(2)) > best_n:
            best, best_n = path, int(m.group(2))
    return best
