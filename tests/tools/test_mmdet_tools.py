# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdet's own tools and APIs with an mmdetr model loaded through
``custom_imports``: the checkpoint allowlist comes with
``import mmdetr`` and nothing else is allowed; mmdet's tools/train.py,
tools/test.py, init_detector + inference_detector, DetInferencer,
browse_dataset.py and get_flops.py run on a tiny generated dataset."""
import glob
import os
import os.path as osp
import pickle
import sys

import mmdet
import numpy as np
import pytest
import torch

from helpers import (ROOT, copypaste_ap, requires_torch, run,
                     write_tiny_train_config)

MMDET_TOOLS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')


def doc_command(tool, **values):
    """Run the command docs/mmdet2.md gives for mmdet's ``tool`` (found in
    the installed mmdet package), its placeholders (CONFIG, WORK_DIR, OUT)
    set to ``values``."""
    with open(osp.join(ROOT, 'docs', 'mmdet2.md')) as f:
        lines = [
            line.split() for line in f
            if line.startswith(f'python $MMDET_TOOLS/{tool} ')
        ]
    assert len(lines) == 1, f'docs/mmdet2.md: no single command for {tool}'
    argv = [osp.join(MMDET_TOOLS, lines[0][1][len('$MMDET_TOOLS/'):])]
    for word in lines[0][2:]:
        for name, value in values.items():
            word = word.replace(name, str(value))
        argv.append(word)
    return run(sys.executable, *argv)


@pytest.fixture(scope='module')
def trained(coco_root, tmp_path_factory):
    """mmdet's tools/train.py, one epoch, on an mmdet-style config
    (custom_imports=['mmdetr'], _scope_='mmdetr'), as docs/mmdet2.md
    writes the command."""
    tmp = tmp_path_factory.mktemp('mmdet_tools')
    cfg = write_tiny_train_config(
        tmp / 'user.py', coco_root,
        base='mmdet_style_detr_r50_8x2_150e_coco.py', max_epochs=1)
    work_dir = tmp / 'work'
    doc_command('train.py', CONFIG=cfg, WORK_DIR=work_dir)
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()
    return dict(cfg=cfg, ckpt=str(ckpt), work_dir=work_dir, data=coco_root)


@pytest.mark.slow
@pytest.mark.skipif(
    not hasattr(torch.serialization, 'get_safe_globals'),
    reason='this torch has no process allowlist (torch.serialization.'
    'get_safe_globals); mmdetr loads through AllowlistUnpickler there')
def test_import_mmdetr_allowlists_exactly_the_trusted_classes():
    """In a fresh process, importing mmdetr adds exactly
    trusted_checkpoint_globals() to torch's allowlist."""
    code = (
        'import torch\n'
        'before = list(torch.serialization.get_safe_globals())\n'
        'import mmdetr\n'
        'from mmdetr.checkpoints import trusted_checkpoint_globals\n'
        'after = torch.serialization.get_safe_globals()\n'
        # torch.distributed.tensor (imported by mmengine) allowlists
        # torch's own DTensor classes; everything else is mmdetr's doing
        'def module(g):\n'
        '    return (g[0] if isinstance(g, tuple) else g).__module__\n'
        'added = [g for g in after if g not in before\n'
        '         and not module(g).startswith("torch.")]\n'
        'want = trusted_checkpoint_globals()\n'
        'assert len(added) == len(want) and all(g in added for g in want), '
        '(added, want)\n'
        'print("ADDED", len(added))\n')
    proc = run(sys.executable, '-c', code)
    assert 'ADDED' in proc.stdout


def test_init_detector_loads_mmengine_checkpoints(coco_root, tmp_path):
    """An mmengine-style checkpoint (a HistoryBuffer and numpy values in
    it, as a runner writes them) loads through mmdet's own API."""
    from mmdet.apis import init_detector
    from mmengine.logging import HistoryBuffer
    cfg = write_tiny_train_config(
        tmp_path / 'user.py', coco_root,
        base='mmdet_style_detr_r50_8x2_150e_coco.py', max_epochs=1)
    model = init_detector(cfg, device='cpu')
    good = tmp_path / 'good.pth'
    torch.save(
        dict(state_dict=model.state_dict(),
             message_hub=dict(
                 log_scalars={'loss': HistoryBuffer([1., 2.], [1, 1])},
                 lr=np.float64(1e-4))), good)
    loaded = init_detector(cfg, str(good), device='cpu')
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@requires_torch('2.6', "mmengine's loader (so mmdet's init_detector) "
                'refusing a pickle that runs code: it loads with torch\'s '
                'default, weights_only=True from torch 2.6 on; mmdetr\'s '
                'own tools refuse it on every torch (test_safe_load.py)')
def test_init_detector_refuses_a_checkpoint_that_would_run_code(
        coco_root, tmp_path):
    from mmdet.apis import init_detector
    cfg = write_tiny_train_config(
        tmp_path / 'user.py', coco_root,
        base='mmdet_style_detr_r50_8x2_150e_coco.py', max_epochs=1)
    marker = tmp_path / 'pwned'

    class Payload:

        def __reduce__(self):
            return (os.makedirs, (str(marker), ))

    ckpt = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Payload()}, ckpt)
    with pytest.raises(pickle.UnpicklingError,
                       match=r'(?s)Weights only load failed.*os\.makedirs'):
        init_detector(cfg, str(ckpt), device='cpu')
    assert not marker.exists()


@pytest.mark.slow
def test_mmdet_test_tool_loads_the_checkpoint(trained):
    proc = doc_command('test.py', CONFIG=trained['cfg'],
                       WORK_DIR=trained['work_dir'])
    out = proc.stdout + proc.stderr
    assert 'Weights only load failed' not in out
    assert len(copypaste_ap(out).split()) == 6


@pytest.mark.slow
def test_init_detector_and_inference_detector(trained):
    from mmdet.apis import inference_detector, init_detector
    model = init_detector(trained['cfg'], trained['ckpt'], device='cpu')
    assert type(model).__module__.startswith('mmdetr.')
    img = sorted(glob.glob(osp.join(trained['data'], 'val', '*.jpg')))[0]
    result = inference_detector(model, img)
    pred = result.pred_instances
    assert pred.bboxes.shape == (10, 4) and pred.scores.shape == (10, )
    assert torch.all((pred.scores >= 0) & (pred.scores <= 1))


@pytest.mark.slow
def test_det_inferencer_draws_into_an_output_dir(trained, tmp_path):
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(
        model=trained['cfg'], weights=trained['ckpt'], device='cpu')
    img = sorted(glob.glob(osp.join(trained['data'], 'val', '*.jpg')))[0]
    out = inferencer(img, out_dir=str(tmp_path), no_save_pred=False,
                     pred_score_thr=0.0)
    assert len(out['predictions'][0]['bboxes']) == 10
    name = osp.splitext(osp.basename(img))[0]
    assert osp.isfile(tmp_path / 'vis' / f'{name}.jpg')
    assert osp.isfile(tmp_path / 'preds' / f'{name}.json')


@pytest.mark.slow
def test_det_inferencer_under_amp_autocast(trained, monkeypatch):
    """docs/distributed.md's switch for DetInferencer: bfloat16 autocast
    (the CPU's support faked: the numbers do not depend on it), float32
    detections close to those without it."""
    import mmdetr.engine.amp as amp
    from mmdet.apis import DetInferencer
    from mmdetr.engine import amp_autocast
    monkeypatch.setattr(amp, 'cpu_bf16_support',
                        lambda: amp.CpuBf16Support(True, False))
    inferencer = DetInferencer(
        model=trained['cfg'], weights=trained['ckpt'], device='cpu')
    img = sorted(glob.glob(osp.join(trained['data'], 'val', '*.jpg')))[0]
    full = inferencer(img, return_datasamples=True)['predictions'][0]
    with amp_autocast('cpu'):
        half = inferencer(img, return_datasamples=True)['predictions'][0]
    a, b = full.pred_instances, half.pred_instances
    assert b.scores.dtype == b.bboxes.dtype == torch.float32
    assert len(a.scores) == len(b.scores) == 10
    assert (a.scores - b.scores).abs().max() < 0.05


@pytest.mark.slow
def test_browse_dataset_and_get_flops(trained, tmp_path):
    doc_command('analysis_tools/browse_dataset.py', CONFIG=trained['cfg'],
                OUT=tmp_path / 'browse')
    drawn = glob.glob(str(tmp_path / 'browse' / '*.jpg'))
    assert len(drawn) == 6  # every training image
    proc = doc_command('analysis_tools/get_flops.py', CONFIG=trained['cfg'])
    assert 'Flops:' in proc.stdout and 'Params:' in proc.stdout
