# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/model_converters/detr_to_mmdetr.py on checkpoints the test makes."""
import os.path as osp
import runpy
import sys

import pytest
import torch

from conftest import build_mmdet, build_mmdetr, make_batch
from mmdetr.utils import load_checkpoint_file
from mmdetr.utils.convert import convert_state_dict

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'detr_to_mmdetr.py')


def run_tool(*args):
    argv = sys.argv
    sys.argv = [TOOL, *map(str, args)]
    try:
        runpy.run_path(TOOL, run_name='__main__')
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = argv
    return 0


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
    assert run_tool(src, dst, '--from', 'mmdet3') == 0
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
    from mmdetr.utils import UnsafeCheckpointError
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        load_checkpoint_file(str(src))
    assert not marker.exists()
