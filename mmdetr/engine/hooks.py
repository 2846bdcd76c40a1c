# Copyright (c) mmdetr contributors. All rights reserved.
"""Checks that stop a run at its start, before hours are spent on it."""
import os.path as osp

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdetr.registry import HOOKS


class DataCheckError(ValueError):
    """The config and the data disagree."""


@HOOKS.register_module()
class DataCheckHook(Hook):
    """Before training/testing, check each dataset against the model:

    - the head's ``num_classes`` equals the number of dataset classes;
    - a panoptic model's ``num_things_classes`` (things first, then stuff)
      matches the dataset's ``thing_classes``, which come first among its
      classes;
    - every image file the dataset lists exists (local files only).

    Args:
        max_listed (int): How many missing files to name in the error.
            Defaults to 5.
    """

    priority = 'VERY_HIGH'

    def __init__(self, max_listed: int = 5) -> None:
        self.max_listed = max_listed

    def before_train(self, runner) -> None:
        self._check(runner, runner.train_dataloader.dataset, 'train')

    def before_val(self, runner) -> None:
        self._check(runner, runner.val_dataloader.dataset, 'val')

    def before_test(self, runner) -> None:
        self._check(runner, runner.test_dataloader.dataset, 'test')

    def _check(self, runner, dataset, split: str) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = getattr(model, 'bbox_head', None)
        classes = dataset.metainfo.get('classes')
        ann_file = getattr(dataset, 'ann_file', '')
        if head is not None and classes is not None and \
                getattr(head, 'num_classes', None) not in (None, len(classes)):
            raise DataCheckError(
                f'model.bbox_head.num_classes={head.num_classes} but the '
                f'{split} dataset ({ann_file}) has {len(classes)} classes '
                f'{tuple(classes)[:10]}; set model.bbox_head.num_classes to '
                f'{len(classes)} or the dataset\'s metainfo.classes')
        self._check_things(model, dataset.metainfo, split, ann_file)
        missing, total = [], 0
        for i in range(len(dataset)):
            path = dataset.get_data_info(i).get('img_path')
            if not path or '://' in path:
                continue
            total += 1
            if not osp.isfile(path):
                missing.append(path)
        if missing:
            raise DataCheckError(
                f'{len(missing)} of {total} images listed in the {split} '
                f'dataset ({ann_file}) are missing, e.g. '
                f'{missing[:self.max_listed]}')

    @staticmethod
    def _check_things(model, metainfo: dict, split: str,
                      ann_file: str) -> None:
        """A panoptic model reads labels below ``num_things_classes`` as
        things: the dataset must order its classes so."""
        num_things = getattr(model, 'num_things_classes', None)
        things = metainfo.get('thing_classes')
        classes = tuple(metainfo.get('classes') or ())
        if num_things is None or things is None:
            return
        if len(things) != num_things or classes[:num_things] != tuple(things):
            raise DataCheckError(
                f'model.num_things_classes={num_things} but the {split} '
                f'dataset ({ann_file}) has {len(things)} thing classes '
                f'{tuple(things)[:10]}, and they must be its first classes '
                f'(classes: {classes[:10]}); set model.num_things_classes to '
                f'{len(things)} and list things before stuff in '
                'metainfo.classes')
