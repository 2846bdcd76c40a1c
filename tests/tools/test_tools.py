# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/train.py, tools/test.py and the distributed scripts, end to end on a
tiny model and a dataset the tests write."""
import json
import os
import os.path as osp
import pickle
import re
import sys

import pytest
import torch

from helpers import (copypaste_ap, load_ckpt, run, run_distributed, scalars,
                     train, write_tiny_train_config)


@pytest.fixture(scope='module')
def trained(coco_root, tmp_path_factory):
    """One 3-epoch training run everything else reuses."""
    tmp = tmp_path_factory.mktemp('trained')
    cfg = write_tiny_train_config(tmp / 'tiny.py', coco_root, max_epochs=3,
                                  val_interval=1)
    work_dir = tmp / 'work'
    proc = train(cfg, work_dir)
    return dict(cfg=cfg, work_dir=str(work_dir), output=proc.stdout +
                proc.stderr)


@pytest.mark.slow
def test_train_writes_checkpoints_logs_and_validates(trained):
    work_dir = trained['work_dir']
    for epoch in (1, 2, 3):
        assert osp.isfile(osp.join(work_dir, f'epoch_{epoch}.pth'))
    logs = scalars(work_dir)
    train_rows = [r for r in logs if 'loss' in r]
    assert train_rows and all('loss_cls' in r for r in train_rows)
    val_rows = [r for r in logs if 'coco/bbox_mAP' in r]
    assert len(val_rows) == 3
    ckpt = load_ckpt(osp.join(work_dir, 'epoch_3.pth'))
    assert 'bbox_head.transformer.decoder_norm.weight' in ckpt['state_dict']


@pytest.mark.slow
def test_killed_run_resumes_at_the_right_point(trained, coco_root, tmp_path):
    """SIGKILL after epoch 2's checkpoint; --resume finishes epoch 3 and ends
    with the same iteration, lr, optimizer state and weights as the run
    that was never interrupted."""
    cfg = write_tiny_train_config(
        tmp_path / 'tiny_kill.py', coco_root, max_epochs=3,
        extra="custom_imports = dict(imports=['mmdetr', 'helpers.kill_hook'], "
        'allow_failed_imports=False)\n'
        "custom_hooks = [dict(type='KillTrainingHook', epoch=2)]\n")
    work_dir = tmp_path / 'work'
    proc = train(cfg, work_dir, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert osp.isfile(work_dir / 'epoch_2.pth')
    assert not osp.isfile(work_dir / 'epoch_3.pth')

    resume_cfg = write_tiny_train_config(tmp_path / 'tiny_resume.py',
                                         coco_root, max_epochs=3)
    proc = train(resume_cfg, work_dir, '--resume')
    out = proc.stdout + proc.stderr
    assert re.search(r'resumed epoch: 2, iter: 6', out), out[-3000:]

    ours = load_ckpt(str(work_dir / 'epoch_3.pth'))
    ref = load_ckpt(osp.join(trained['work_dir'], 'epoch_3.pth'))
    assert ours['meta']['iter'] == ref['meta']['iter'] == 9
    assert ours['meta']['epoch'] == 3
    ours_groups = ours['optimizer']['param_groups']
    ref_groups = ref['optimizer']['param_groups']
    assert [g['lr'] for g in ours_groups] == [g['lr'] for g in ref_groups]
    # lr 1e-3 (backbone x0.1), x0.1 at the last epoch's milestone
    assert max(g['lr'] for g in ours_groups) == pytest.approx(1e-4)
    assert min(g['lr'] for g in ours_groups) == pytest.approx(1e-5)
    for k, state in ref['optimizer']['state'].items():
        torch.testing.assert_close(ours['optimizer']['state'][k]['exp_avg'],
                                   state['exp_avg'], rtol=1e-4, atol=1e-6)
    for key, value in ref['state_dict'].items():
        torch.testing.assert_close(ours['state_dict'][key], value,
                                   rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.slow
def test_resume_from_explicit_checkpoint(trained, tmp_path):
    ckpt = osp.join(trained['work_dir'], 'epoch_2.pth')
    proc = train(trained['cfg'], tmp_path / 'work', '--resume', ckpt)
    assert re.search(r'resumed epoch: 2, iter: 6', proc.stdout + proc.stderr)
    assert osp.isfile(tmp_path / 'work' / 'epoch_3.pth')


@pytest.mark.slow
def test_resume_missing_checkpoint_is_named(trained, tmp_path):
    proc = train(trained['cfg'], tmp_path / 'w', '--resume',
                 tmp_path / 'nope.pth', check=False)
    assert proc.returncode != 0 and 'nope.pth' in proc.stderr


@pytest.mark.slow
def test_test_eval_bbox_prints_the_coco_table(trained, tmp_path):
    ckpt = osp.join(trained['work_dir'], 'epoch_3.pth')
    out_pkl = tmp_path / 'results.pkl'
    proc = run(sys.executable, 'tools/test.py', trained['cfg'], ckpt,
               '--eval', 'bbox', '--out', out_pkl, '--work-dir',
               tmp_path / 'test')
    out = proc.stdout + proc.stderr
    assert out.count('Average Precision') == 6
    assert out.count('Average Recall') == 6
    ap = copypaste_ap(out)
    assert len(ap.split()) == 6
    with open(out_pkl, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 3  # val images
    assert results[0]['pred_instances']['bboxes'].shape[1] == 4


@pytest.mark.slow
def test_test_format_only_writes_coco_results_json(trained, coco_root,
                                                   tmp_path):
    ckpt = osp.join(trained['work_dir'], 'epoch_3.pth')
    prefix = tmp_path / 'submit' / 'detr'
    run(sys.executable, 'tools/test.py', trained['cfg'], ckpt,
        '--format-only', '--eval-options', f'jsonfile_prefix={prefix}',
        '--work-dir', tmp_path / 'test')
    with open(f'{prefix}.bbox.json') as f:
        dets = json.load(f)
    assert dets and {'image_id', 'bbox', 'score', 'category_id'} <= set(
        dets[0])
    from pycocotools.coco import COCO
    gt = COCO(str(coco_root / 'annotations' / 'val.json'))
    results = gt.loadRes(f'{prefix}.bbox.json')  # what test-dev accepts
    assert set(results.getImgIds()) <= set(gt.getImgIds())


@pytest.mark.slow
def test_test_show_dir_draws_images(trained, tmp_path):
    ckpt = osp.join(trained['work_dir'], 'epoch_3.pth')
    show_dir = tmp_path / 'vis'
    run(sys.executable, 'tools/test.py', trained['cfg'], ckpt, '--show-dir',
        show_dir, '--show-score-thr', '0.0', '--work-dir', tmp_path / 'test')
    files = sorted(os.listdir(show_dir))
    assert len(files) == 3 and all(f.endswith('.jpg') for f in files)


@pytest.mark.slow
def test_test_rejects_missing_files(trained, tmp_path):
    proc = run(sys.executable, 'tools/test.py', trained['cfg'],
               tmp_path / 'missing.pth', '--eval', 'bbox', check=False)
    assert proc.returncode != 0 and 'missing.pth' in proc.stderr


@pytest.mark.slow
def test_two_process_ddp_train_and_dist_test_match_single(
        trained, coco_root, tmp_path):
    cfg = write_tiny_train_config(tmp_path / 'ddp.py', coco_root,
                                  max_epochs=1)
    work_dir = tmp_path / 'ddp'
    proc = run_distributed(
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        '--master_port=29531', 'tools/train.py', cfg, '--work-dir', work_dir,
        '--launcher', 'pytorch')
    out = proc.stdout + proc.stderr
    assert 'coco/bbox_mAP' in out
    assert osp.isfile(work_dir / 'epoch_1.pth')

    ckpt = osp.join(trained['work_dir'], 'epoch_3.pth')
    single = run(sys.executable, 'tools/test.py', trained['cfg'], ckpt,
                 '--eval', 'bbox', '--work-dir', tmp_path / 't1')
    dist = run_distributed('bash', 'tools/dist_test.sh', trained['cfg'],
                           ckpt, 2, '--eval', 'bbox', '--work-dir',
                           tmp_path / 't2', env=dict(PORT='29533'))
    assert copypaste_ap(dist.stdout + dist.stderr) == copypaste_ap(
        single.stdout + single.stderr)
