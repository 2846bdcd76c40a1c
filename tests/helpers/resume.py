# Copyright (c) mmdetr contributors. All rights reserved.
"""Runs of the demo model that are interrupted and resumed, and what they
are compared by: a small generated shapes dataset, the demo config shrunk
to a few iterations with periodic resume checkpoints, the final weights and
every logged loss."""
import glob
import json
import os.path as osp

import torch

from .datasets import logged_run_text, pipelines_text, write_text
from .tools import ROOT, load_ckpt, load_tool


def write_shapes(root, num_train=8, num_val=2, img_size=64):
    """The demo's generated dataset (tools/misc/make_shapes_dataset.py),
    small."""
    tool = load_tool('tools/misc/make_shapes_dataset.py', 'make_shapes')
    assert tool.main([str(root), '--num-train', str(num_train), '--num-val',
                      str(num_val), '--img-size', str(img_size)]) == 0
    return str(root)


def write_demo_config(path, data_root, num_workers=0, hooks=(), extra=''):
    """configs/detr_r18_shapes_demo.py on ``data_root`` (64 px images),
    batch 2, 2 epochs, dropout 0.1 (so dropout draws are resumed too), a
    by-iteration warm-up and a by-epoch lr step, validation every epoch
    (its draws must not move training's), resume checkpoints every 3
    iterations, the epoch checkpoint at the end, every loss logged.

    Args:
        hooks (Sequence[str]): Extra ``custom_hooks`` entries, as source
            (the hooks of ``helpers.kill_hook`` are importable).
        extra (str): Config lines appended at the end.
    """
    root = str(data_root) + '/'
    text = f'''
_base_ = {osp.join(ROOT, 'configs', 'detr_r18_shapes_demo.py')!r}
custom_imports = dict(imports=['mmdetr', 'helpers.kill_hook'],
                      allow_failed_imports=False)
data_root = {root!r}
model = dict(bbox_head=dict(transformer=dict(dropout=0.1)))
{pipelines_text((64, 64), flip=True)}
train_dataloader = dict(
    batch_size=2, num_workers={num_workers},
    persistent_workers={num_workers > 0},
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='CocoMetric', metric='bbox',
                      ann_file=data_root + 'annotations/instances_val.json')]
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=2, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
    dict(type='MultiStepLR', begin=0, end=2, by_epoch=True, milestones=[1],
         gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=2, max_keep_ckpts=-1),
    resume_checkpoint=dict(interval=3, interval_minutes=None))
custom_hooks = [{", ".join(hooks)}]
''' + logged_run_text() + extra
    return write_text(path, text)


def logged_losses(work_dir):
    """``{iteration: {key: value}}`` of every loss and lr logged by every
    run in ``work_dir`` (a resumed run adds a folder). An iteration that was
    trained twice (after a kill) must have logged the same both times."""
    rows = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if 'loss' not in row:
                    continue
                kept = {k: v for k, v in row.items()
                        if 'loss' in k or k in ('lr', 'base_lr', 'epoch')}
                it = row['iter']
                assert rows.setdefault(it, kept) == kept, (
                    f'iteration {it} logged differently when trained again')
    return rows


def assert_same_training(work_dir, ref_dir, name='epoch_2.pth'):
    """The checkpoint ``name`` of both runs holds bit-identical weights and
    optimizer state, and both logged the same losses at every iteration."""
    ours, ref = (load_ckpt(osp.join(d, name)) for d in (work_dir, ref_dir))
    assert ours['meta']['iter'] == ref['meta']['iter']
    assert ours['state_dict'].keys() == ref['state_dict'].keys()
    for key, value in ref['state_dict'].items():
        assert torch.equal(ours['state_dict'][key], value), key
    for i, state in ref['optimizer']['state'].items():
        for key, value in state.items():
            assert torch.equal(ours['optimizer']['state'][i][key], value)
    ours_logged, ref_logged = logged_losses(work_dir), logged_losses(ref_dir)
    assert sorted(ours_logged) == list(range(1, ref['meta']['iter'] + 1))
    assert ours_logged == ref_logged
