# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/model_converters/detr_to_mmdetr.py on checkpoints the test makes."""
import os.path as osp
import runpy
import zipfile

import pytest
import torch

from helpers import (build_mmdet, build_mmdetr, make_batch, mmdet_cfg,
                     mmdetr_cfg, official_checkpoint, run_script)
from mmdetr.checkpoints import load_checkpoint_file
from mmdetr.checkpoints.convert import convert_state_dict
from references.reference_detr import official_state_dict

from helpers import ROOT  # noqa: E402
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'detr_to_mmdetr.py')


def write_config(tmp_path, model_cfg, name='tiny_detr.py'):
    """A config file holding only ``model``, as the tool's --config."""
    path = tmp_path / name
    path.write_text(f'model = {model_cfg!r}\n')
    return path


def run_tool(*args):
    return run_script(TOOL, *args)


def test_mmdet3_checkpoint_converts_and_loads_strictly(tmp_path, capsys):
    torch.manual_seed(0)
    ref = build_mmdet()
    src = tmp_path / 'mmdet3_detr.pth'
    # as mmengine's runner saves it: meta, state_dict, message hub ...
    from mmengine.logging import HistoryBuffer
    import numpy as np
    history = HistoryBuffer()
    history.update(1.5)
    torch.save(dict(meta=dict(epoch=3, seed=np.int64(7)),
                    state_dict=ref.state_dict(),
                    message_hub=dict(log=history)), src)
    dst = tmp_path / 'out' / 'mmdetr_detr.pth'
    assert run_tool(src, dst, '--from', 'mmdet3', '--config',
                    write_config(tmp_path, mmdetr_cfg())) == 0
    assert 'mmdet3 -> mmdetr' in capsys.readouterr().out

    ours = build_mmdetr()
    ckpt = load_checkpoint_file(str(dst))
    ours.load_state_dict(ckpt['state_dict'], strict=True)
    for key, value in convert_state_dict(ref.state_dict(), 'mmdet3').items():
        assert torch.equal(ours.state_dict()[key], value), key

    # and the converted model predicts what the source does
    data = make_batch(num_boxes=(1, 2))
    ref.eval(), ours.eval()
    with torch.no_grad():
        r = ref.test_step(data)[0].pred_instances
        o = ours.test_step(data)[0].pred_instances
    torch.testing.assert_close(o.bboxes, r.bboxes, rtol=1e-4, atol=1e-4)


def test_unknown_keys_are_named(tmp_path):
    src = tmp_path / 'odd.pth'
    torch.save({'state_dict': {'foo.bar.weight': torch.zeros(1)}}, src)
    code = run_tool(src, tmp_path / 'x.pth')
    assert 'foo.bar.weight' in str(code)
    assert not (tmp_path / 'x.pth').exists()


def test_refuses_to_overwrite_source_and_missing_file(tmp_path):
    src = tmp_path / 'a.pth'
    torch.save({}, src)
    assert 'same file' in str(run_tool(src, src))
    assert 'no such file' in str(run_tool(tmp_path / 'nope.pth',
                                          tmp_path / 'b.pth'))


def test_malicious_checkpoint_is_refused_and_not_run(tmp_path):
    marker = tmp_path / 'pwned'

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f'touch {marker}', ))

    src = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'x': Evil()}}, src)
    from mmdetr.checkpoints import UnsafeCheckpointError
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        load_checkpoint_file(str(src))
    assert not marker.exists()


def test_official_checkpoint_converts_to_mmdetr_and_mmdet3(tmp_path, capsys):
    src, official = official_checkpoint(tmp_path)
    # the Namespace is really in there, as in the official files (allowed
    # since import mmdetr registers it with the other trusted classes)
    with zipfile.ZipFile(src) as archive:
        data = [n for n in archive.namelist() if n.endswith('data.pkl')]
        assert b'argparse\nNamespace' in archive.read(data[0])

    dst = tmp_path / 'mmdetr.pth'
    cfg = mmdetr_cfg(num_classes=80)
    assert run_tool(src, dst, '--config', write_config(tmp_path, cfg)) == 0
    out = capsys.readouterr().out
    assert 'detected layout: official' in out
    assert 'the 80 COCO classes' in out
    assert "'nheads': 4" in out and "'dilation': False" in out
    assert 'loads strictly' in out
    saved = load_checkpoint_file(str(dst))
    assert saved['meta']['converted_from'] == 'official'
    model = build_mmdetr(cfg)
    model.load_state_dict(saved['state_dict'], strict=True)
    for key, value in convert_state_dict(official, 'official').items():
        assert torch.equal(saved['state_dict'][key], value), key

    dst3 = tmp_path / 'mmdet3.pth'
    assert run_tool(src, dst3, '--to', 'mmdet3', '--config',
                    write_config(tmp_path, mmdet_cfg(num_classes=80),
                                 'mmdet.py')) == 0
    assert 'official -> mmdet3' in capsys.readouterr().out
    build_mmdet(num_classes=80).load_state_dict(
        load_checkpoint_file(str(dst3))['state_dict'], strict=True)


def test_keys_that_do_not_load_strictly_are_named(tmp_path):
    src, _ = official_checkpoint(tmp_path)
    dst = tmp_path / 'x.pth'
    # 5 classes and 3 decoder layers in the config, 80 and 2 in the weights
    code = run_tool(src, dst, '--config',
                    write_config(tmp_path, mmdetr_cfg(num_classes=5, dec=3)))
    assert 'does not load strictly' in str(code)
    assert 'missing' in str(code)
    assert 'decoder_layers.2.' in str(code)
    # the classifier is no longer a mismatch: it is rebuilt for the
    # config's classes (tests/tools/test_finetune.py); the rest is still named
    assert 'bbox_head.fc_cls' not in str(code)
    assert not dst.exists()


@pytest.mark.slow
def test_full_size_official_r50_loads_into_the_default_configs():
    """The real checkpoint's shapes (R50, 6+6 layers, 256 dims, 100 queries,
    92 logits) load strictly into the tool's default targets:
    configs/detr_r50_8x2_150e_coco.py and mmdet's detr_r50_8xb2-150e_coco.py
    (in process: the file handling is tested above on small files)."""
    tool = runpy.run_path(TOOL)
    official = official_state_dict(
        depth=50, d=256, ffn=2048, enc=6, dec=6, queries=100)
    for target, config in tool['DEFAULT_CONFIGS'].items():
        model = tool['build_target_model'](config)
        converted = convert_state_dict(official, 'official', target)
        assert tool['strict_load_problems'](model, converted) == [], target
        assert torch.equal(model.state_dict()['backbone.layer4.2.bn3.bias'],
                           official['backbone.0.body.layer4.2.bn3.bias'])
