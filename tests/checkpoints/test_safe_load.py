# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr's checkpoint loader runs nothing from the file on every supported
torch: with torch's ``weights_only`` allowlist where torch has one (>= 2.4),
through :class:`AllowlistUnpickler` where it has not (both paths are tested
here, on the installed torch)."""
import os
from collections import Counter

import numpy as np
import pytest
import torch

from helpers import official_checkpoint
from mmdetr.checkpoints import UnsafeCheckpointError, load_checkpoint_file


@pytest.fixture(params=['torch_allowlist', 'allowlist_unpickler'])
def loader_path(request, monkeypatch):
    """Which way load_checkpoint_file loads: as on torch >= 2.4, or as on
    torch < 2.4 (no ``torch.serialization.add_safe_globals``)."""
    if request.param == 'torch_allowlist':
        if not hasattr(torch.serialization, 'add_safe_globals'):
            pytest.skip('this torch has no torch.serialization allowlist '
                        f'({torch.__version__})')
    else:
        monkeypatch.delattr(torch.serialization, 'add_safe_globals',
                            raising=False)
    return request.param


def _mmengine_checkpoint(path):
    """What mmengine writes: tensors, its HistoryBuffer, numpy scalars,
    arrays and dtypes in the meta."""
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    for v in (0.5, 0.25, 0.125):
        buffer.update(v)
    ckpt = dict(
        meta=dict(epoch=3, iter=12, seed=np.int64(7),
                  dtype=np.dtype('float32'), arr=np.arange(4.),
                  message_hub=dict(log_scalars={'train/loss': buffer}),
                  # what torch's own weights_only allows (newer torch)
                  counts=Counter(a=2), kinds={'x'}, cast=torch.bfloat16,
                  device=torch.device('cpu')),
        state_dict={'w': torch.randn(3, 2), 'n': torch.tensor(5)},
        optimizer=dict(state={0: dict(step=torch.tensor(4.))},
                       param_groups=[dict(lr=1e-4, params=[0])]))
    torch.save(ckpt, path)
    return ckpt


def test_mmengine_checkpoints_load(tmp_path, loader_path):
    want = _mmengine_checkpoint(tmp_path / 'epoch_3.pth')
    got = load_checkpoint_file(str(tmp_path / 'epoch_3.pth'))
    assert torch.equal(got['state_dict']['w'], want['state_dict']['w'])
    assert got['meta']['seed'] == 7 and got['meta']['dtype'] == np.float32
    assert np.array_equal(got['meta']['arr'], np.arange(4.))
    buffer = got['meta']['message_hub']['log_scalars']['train/loss']
    assert buffer.mean() == pytest.approx((0.5 + 0.25 + 0.125) / 3)
    assert got['optimizer']['param_groups'][0]['lr'] == 1e-4
    assert got['meta']['counts'] == Counter(a=2)
    assert got['meta']['kinds'] == {'x'}
    assert got['meta']['cast'] is torch.bfloat16
    assert got['meta']['device'] == torch.device('cpu')
    mapped = load_checkpoint_file(str(tmp_path / 'epoch_3.pth'), mmap=True)
    assert torch.equal(mapped['state_dict']['w'], want['state_dict']['w'])


def test_numpy_values_load_across_numpy_1_and_2(tmp_path, loader_path):
    """numpy 2 pickles its arrays and scalars as ``numpy._core.multiarray``
    functions, numpy 1 as ``numpy.core.multiarray``: a checkpoint written
    with either loads with either (here: written with the other name)."""
    path = tmp_path / 'legacy.pth'
    torch.save(dict(meta=dict(arr=np.arange(3.), seed=np.int64(5))), path,
               _use_new_zipfile_serialization=False)  # one plain pickle
    data = path.read_bytes()
    new, old = b'numpy._core.multiarray\n', b'numpy.core.multiarray\n'
    this, other = (new, old) if new in data else (old, new)
    assert this in data
    path.write_bytes(data.replace(this, other))
    got = load_checkpoint_file(str(path))
    assert np.array_equal(got['meta']['arr'], np.arange(3.))
    assert got['meta']['seed'] == 5


def test_official_detr_checkpoints_load(tmp_path, loader_path):
    path, state = official_checkpoint(tmp_path)
    got = load_checkpoint_file(str(path))
    assert got['model'].keys() == state.keys()
    assert all(torch.equal(got['model'][k], v) for k, v in state.items())
    assert got['args'].lr == 1e-4 and got['args'].backbone == 'resnet18'


class _Evil:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, loader_path):
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': {}, 'meta': {'x': _Evil(marker)}},
               tmp_path / 'evil.pth')
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        load_checkpoint_file(str(tmp_path / 'evil.pth'))
    assert not marker.exists()


def test_getattr_is_allowed_only_for_the_history_buffer_statistics(
        tmp_path, loader_path):
    """mmengine's HistoryBuffer pickles ``getattr(HistoryBuffer, 'mean')``;
    any other ``getattr`` (a way to reach what is not allowlisted) is
    refused."""
    from mmengine.logging import HistoryBuffer

    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    torch.save({'x': Sneaky()}, tmp_path / 'sneaky.pth')
    with pytest.raises(UnsafeCheckpointError, match='sneaky.pth'):
        load_checkpoint_file(str(tmp_path / 'sneaky.pth'))
