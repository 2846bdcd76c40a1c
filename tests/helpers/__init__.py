# Copyright (c) mmdetr contributors. All rights reserved.
"""Helpers the tests import (``from helpers import make_batch``); pytest's
fixtures stay in ``tests/conftest.py``.

- ``models``: tiny DETR configs for mmdetr and mmdet 3.x and their builders;
- ``batches``: synthetic model input in memory (random boxes, padded
  batches);
- ``datasets``: tiny COCO-format datasets on disk and a training config for
  them;
- ``tools``: the repository's tools run as subprocesses or loaded as
  modules, and readers of what they write;
- ``parity``: mmdetr's DETR against a reference model, outputs and losses;
- ``checkpoints``: checkpoints in other codebases' layouts;
- ``panoptic``: a tiny COCO panoptic dataset on disk and its config, a
  tiny PanopticDETR, ground-truth masks for synthetic batches;
- ``steps``: one training step as the runner runs it, with its host
  syncs counted; the host-sync profiler of the benchmark
  (``HostSyncCounter``, ``count_host_syncs``);
- ``resume``: the demo model on a small generated dataset, for runs that
  are interrupted and resumed, and the comparison with an uninterrupted
  run (weights bit for bit, logged losses);
- ``kill_hook``: hooks that kill or poison a training run (imported by
  training subprocesses through ``custom_imports``, not here);
- ``versions``: skips for features that need a newer torch or
  transformers than the installed ones.
"""
from .batches import (head_outputs_and_targets, make_batch, preprocess,
                      random_boxes)
from .checkpoints import mmdet2_state_dict, official_checkpoint
from .datasets import CLASSES, write_coco_split, write_tiny_train_config
from .models import (SPEEDUPS, TINY, build_mmdet, build_mmdetr, mmdet_cfg,
                     mmdetr_cfg)
from .panoptic import (PANOPTIC_CLASSES, PANOPTIC_TINY, panoptic_detr_cfg,
                       shapes_panoptic_cfg, with_box_masks,
                       write_shapes_panoptic)
from .parity import (assert_identical_predictions, assert_same_losses,
                     assert_same_predictions, randomize_)
from .resume import (assert_same_training, logged_losses,
                     write_demo_config, write_shapes)
from .steps import (HostSyncCounter, count_host_syncs, count_step,
                    training_step)
from .versions import import_transformers, requires_torch, torch_older_than
from .tools import (ROOT, TESTS, copypaste_ap, kill_group, load_ckpt,
                    load_tool, run, run_distributed, run_script, scalars,
                    train)

__all__ = [
    'assert_identical_predictions', 'assert_same_losses',
    'assert_same_predictions', 'mmdet2_state_dict', 'run_distributed',
    'kill_group', 'import_transformers', 'requires_torch', 'torch_older_than',
    'official_checkpoint', 'randomize_',
    'CLASSES', 'ROOT', 'SPEEDUPS', 'TESTS', 'TINY', 'build_mmdet',
    'build_mmdetr', 'HostSyncCounter', 'count_host_syncs',
    'copypaste_ap', 'count_step', 'head_outputs_and_targets', 'load_ckpt', 'load_tool', 'make_batch', 'mmdet_cfg',
    'mmdetr_cfg', 'preprocess', 'random_boxes', 'run', 'run_script',
    'scalars', 'train',
    'training_step', 'write_coco_split', 'write_tiny_train_config',
    'PANOPTIC_CLASSES', 'PANOPTIC_TINY', 'panoptic_detr_cfg',
    'shapes_panoptic_cfg', 'with_box_masks', 'write_shapes_panoptic',
    'assert_same_training', 'logged_losses', 'write_demo_config',
    'write_shapes'
]
