# Copyright (c) mmdetr contributors. All rights reserved.
"""``load_from = 'mmdetr-convert://PATH'``
(mmdetr/checkpoints/convert_on_load.py): official and mmdet checkpoints
converted on load, by mmengine's ``load_checkpoint`` and by the runner."""
import os.path as osp
import shutil

import pytest
import torch
from mmengine.runner import Runner, load_checkpoint

from helpers import build_mmdet, mmdetr_cfg, official_checkpoint
from mmdetr.checkpoints import CONVERT_PREFIX, UnsafeCheckpointError
from mmdetr.checkpoints.convert import convert_state_dict


def assert_holds(model, state_dict):
    own = model.state_dict()
    assert set(own) == set(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(own[key], value), key


@pytest.fixture(scope='module')
def model():
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(mmdetr_cfg(num_classes=80))


def test_official_file_is_converted_on_load(tmp_path, model):
    src, official = official_checkpoint(tmp_path)  # with its args Namespace
    checkpoint = load_checkpoint(
        model, CONVERT_PREFIX + str(src), strict=True)
    assert checkpoint['meta']['converted_from'] == 'official'
    assert_holds(model, convert_state_dict(official, 'official'))


@pytest.mark.slow
def test_mmdet3_file_is_converted_on_load(tmp_path):
    ref = build_mmdet()
    src = tmp_path / 'mmdet3.pth'
    torch.save(dict(state_dict=ref.state_dict(), meta=dict(epoch=150)), src)
    ours = Runner(
        model=mmdetr_cfg(), work_dir=str(tmp_path / 'work'),
        load_from=CONVERT_PREFIX + str(src), default_scope='mmdet')
    ours.load_or_resume()
    assert_holds(ours.model, convert_state_dict(ref.state_dict(), 'mmdet3'))


@pytest.mark.slow
def test_runner_load_from_official(tmp_path):
    """As a config says it: ``load_from = 'mmdetr-convert://...'``."""
    src, official = official_checkpoint(tmp_path)
    runner = Runner(
        model=mmdetr_cfg(num_classes=80), work_dir=str(tmp_path / 'work'),
        load_from=CONVERT_PREFIX + str(src), default_scope='mmdet')
    runner.load_or_resume()
    assert_holds(runner.model, convert_state_dict(official, 'official'))


def test_urls_are_downloaded_once_into_the_hub_cache(tmp_path, monkeypatch,
                                                     model):
    src, official = official_checkpoint(tmp_path)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'hub'))
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        shutil.copy(src, dst)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', fake_download)
    url = 'https://example.org/detr/detr-r50-e632da11.pth'
    for _ in range(2):
        load_checkpoint(model, CONVERT_PREFIX + url, strict=True)
    # once, with the hash in the file name for torch.hub to check
    assert calls == [(url, 'e632da11')]
    assert osp.isfile(tmp_path / 'hub' / 'hub' / 'checkpoints' /
                      'detr-r50-e632da11.pth')
    assert_holds(model, convert_state_dict(official, 'official'))


def test_missing_and_unsafe_files_are_refused(tmp_path, model):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint(model, CONVERT_PREFIX + str(tmp_path / 'nope.pth'))
    marker = tmp_path / 'pwned'

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f'touch {marker}', ))

    src = tmp_path / 'evil.pth'
    torch.save({'model': {'x': Evil()}}, src)
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        load_checkpoint(model, CONVERT_PREFIX + str(src))
    assert not marker.exists()


@pytest.mark.skipif(
    not hasattr(torch.serialization, 'get_safe_globals'),
    reason='this torch has no process allowlist (torch.serialization.'
    'get_safe_globals); mmdetr loads through AllowlistUnpickler there')
def test_loading_a_checkpoint_keeps_the_process_allowlist(tmp_path):
    """import mmdetr allowlists the trusted classes for the whole process
    (mmdet's tools rely on it); loading a file with mmdetr's loader must
    not take them away again."""
    import torch
    from mmdetr.checkpoints import (load_checkpoint_file,
                                    trusted_checkpoint_globals)
    path, _ = official_checkpoint(tmp_path)
    load_checkpoint_file(str(path))
    allowed = torch.serialization.get_safe_globals()
    assert all(g in allowed for g in trusted_checkpoint_globals())
