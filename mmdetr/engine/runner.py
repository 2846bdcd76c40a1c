# Copyright (c) mmdetr contributors. All rights reserved.
"""mmengine's Runner with crash-safe checkpoints and safe loading."""
import logging
import os
import os.path as osp
import pickle
import re
import shutil
import tempfile
from collections import OrderedDict
from typing import Optional, Tuple

import torch.distributed as dist
from mmengine.dist import master_only
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner as MMEngineRunner
from mmengine.runner.base_loop import BaseLoop
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model)

from mmdetr.checkpoints.class_names import config_classes
from mmdetr.checkpoints.classifier_remap import remap_checkpoint_classifier
from mmdetr.checkpoints.hf import silent_mismatches
from mmdetr.checkpoints.safe_load import (UnsafeCheckpointError,
                                          load_checkpoint_file)
from mmdetr.engine.checkpoint_files import verify_checkpoint
from mmdetr.engine.resume_checks import check_model, check_optimizer
from mmdetr.registry import RUNNERS


def _is_local(path: str) -> bool:
    return '://' not in str(path)


@RUNNERS.register_module()
class Runner(MMEngineRunner):
    """mmengine's Runner, plus:

    - checkpoints are written to a temporary file, flushed to the disk and
      renamed into place, so a run killed while saving (or a machine that
      loses power just after) never leaves a truncated ``epoch_N.pth``
      (the previous checkpoint stays the latest);
    - resuming checks that the checkpoint's model and optimizer are this
      config's, and says which weights or parameter groups differ
      (:class:`~mmdetr.engine.resume_checks.ResumeMismatchError`) instead
      of loading what fits; a truncated or damaged file is named
      (:class:`~mmdetr.engine.checkpoint_files.CorruptCheckpointError`);
    - checkpoints load with ``weights_only=True`` and mmdetr's allowlist
      (registered by ``import mmdetr``); a checkpoint holding anything else
      is refused with :class:`UnsafeCheckpointError` naming the file, and
      nothing in it runs;
    - in distributed training, ranks that cannot read the checkpoint to
      resume from (node-local work dirs: only rank 0 writes checkpoints)
      receive its bytes from rank 0, so every rank resumes from the same
      state.
    - ``load_from`` a checkpoint trained on other classes (fine-tuning)
      rebuilds the classifier by class name
      (:mod:`mmdetr.checkpoints.classifier_remap`) and logs one line saying
      what it did; every other mismatched key is listed by mmengine as before.
    - ``load_from`` a Hugging Face transformers DETR
      (``mmdetr-convert://``) whose ``config.json`` differs from the model
      where no key shows it (attention heads, activation, dilation) is
      refused, naming the fields.
    """

    @master_only  # as mmengine's: only rank 0 writes
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if not _is_local(out_dir):
            return super().save_checkpoint(out_dir, filename, *args,
                                           **kwargs)
        tmp_name = f'.{filename}.tmp{os.getpid()}'
        try:
            super().save_checkpoint(out_dir, tmp_name, *args, **kwargs)
            # the bytes reach the disk before the name does: after a crash
            # the name never points at a file the page cache had not written
            _fsync(osp.join(out_dir, tmp_name))
            os.replace(osp.join(out_dir, tmp_name), osp.join(out_dir,
                                                             filename))
            _fsync(out_dir)
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
            checkpoint = _read_checkpoint(filename, map_location)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(_refusal(filename, e)) from e
        except (RuntimeError, EOFError):
            if _is_local(filename) and osp.isfile(filename):
                verify_checkpoint(filename)  # names a damaged file
            raise
        model = self.model.module if is_model_wrapper(
            self.model) else self.model
        if getattr(self, '_resuming', False):
            check_model(model, checkpoint.get('state_dict', checkpoint),
                        filename)
            if 'optimizer' in checkpoint and not isinstance(
                    self.optim_wrapper, dict):
                check_optimizer(self.optim_wrapper.optimizer,
                                checkpoint['optimizer'], filename)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        arch = (checkpoint.get('meta') or {}).get('hf_architecture')
        mismatches = silent_mismatches(arch, model) if arch else []
        if mismatches:
            raise ValueError(f'{filename} does not fit the model: ' +
                             '; '.join(mismatches))
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
        with _readable_on_every_rank(filename) as local:
            if _is_local(local) and osp.isfile(local):
                # torch.load reads flipped bytes as wrong weights without a
                # word: check every member's CRC first (on every rank, so a
                # damaged file stops all of them, none waits for the rest)
                verify_checkpoint(local)
            self._resuming = True
            try:
                return super().resume(local, *args, **kwargs)
            except pickle.UnpicklingError as e:
                raise UnsafeCheckpointError(_refusal(filename, e)) from e
            finally:
                self._resuming = False


def _read_checkpoint(filename: str, map_location):
    """A local file through :func:`~mmdetr.checkpoints.load_checkpoint_file`
    (nothing in it runs, on every supported torch: mmengine's loader would
    unpickle everything below torch 2.6); other schemes through mmengine's
    loaders."""
    if _is_local(filename) and osp.isfile(filename):
        return load_checkpoint_file(filename, map_location=map_location)
    return _load_checkpoint(filename, map_location=map_location)


def _fsync(path: str) -> None:
    """Flush ``path`` (a file, or a directory's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _readable_on_every_rank:
    """Context giving a path to ``filename`` that this rank can read.

    Every rank must enter it (it runs collectives when distributed). Ranks
    that see the file use it; if some do not, rank 0 sends its bytes to all
    and those ranks read a private temporary copy, removed on exit. The
    checkpoint is then held in memory once per rank while it is sent.

    Raises:
        FileNotFoundError: rank 0 cannot read the file either.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.tmp_dir = None

    def __enter__(self) -> str:
        if not (_is_local(self.filename) and dist.is_available()
                and dist.is_initialized() and dist.get_world_size() > 1):
            return self.filename
        seen = [None] * dist.get_world_size()
        dist.all_gather_object(seen, osp.isfile(self.filename))
        if all(seen):
            return self.filename
        if not seen[0]:
            raise FileNotFoundError(
                f'resume: rank 0 cannot read {self.filename}')
        payload = [None]
        if dist.get_rank() == 0:
            with open(self.filename, 'rb') as f:
                payload[0] = f.read()
        dist.broadcast_object_list(payload, src=0)
        if seen[dist.get_rank()]:
            return self.filename
        self.tmp_dir = tempfile.mkdtemp(prefix='mmdetr_resume_')
        local = osp.join(self.tmp_dir, osp.basename(self.filename))
        with open(local, 'wb') as f:
            f.write(payload[0])
        return local

    def __exit__(self, *exc) -> bool:
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        return False


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
