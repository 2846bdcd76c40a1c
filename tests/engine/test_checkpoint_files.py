# Copyright (c) mmdetr contributors. All rights reserved.
"""The newest whole checkpoint of a work dir: ordered by the training state
inside, a truncated or damaged newest one passed over, saying so."""
import os
import time

import pytest
import torch

from mmdetr.engine import (CorruptCheckpointError, find_latest_checkpoint,
                           verify_checkpoint)


def save(path, epoch, it, size=20000):
    weights = dict(w=torch.arange(size, dtype=torch.float32))
    torch.save(dict(meta=dict(epoch=epoch, iter=it), state_dict=weights),
               path)
    return str(path)


def damage(path, how):
    data = bytearray(open(path, 'rb').read())
    if how == 'truncate':
        data = data[:len(data) // 2]
    else:  # flip bytes inside the weights: torch.load would not notice
        data[len(data) // 2] ^= 0xFF
    open(path, 'wb').write(bytes(data))


def test_newest_is_by_the_state_inside_not_the_name(tmp_path):
    save(tmp_path / 'epoch_2.pth', 2, 20)  # end of epoch 2
    save(tmp_path / 'resume_iter_15.pth', 1, 15)
    save(tmp_path / 'resume_iter_25.pth', 2, 25)
    save(tmp_path / '.resume_iter_27.pth.tmp123', 2, 27)  # a cut-off save
    save(tmp_path / 'best_coco_bbox_mAP_epoch_2.pth', 2, 20)
    assert find_latest_checkpoint(str(tmp_path)).endswith(
        'resume_iter_25.pth')
    os.remove(tmp_path / 'resume_iter_25.pth')
    assert find_latest_checkpoint(str(tmp_path)).endswith('epoch_2.pth')
    # a mid-epoch checkpoint of the same iteration comes before the
    # epoch's own (its epoch is not finished)
    save(tmp_path / 'resume_iter_20.pth', 1, 20)
    assert find_latest_checkpoint(str(tmp_path)).endswith('epoch_2.pth')
    assert find_latest_checkpoint(str(tmp_path / 'nothing_here')) is None


@pytest.mark.parametrize('how', ['truncate', 'flip'])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
        tmp_path, how):
    older = save(tmp_path / 'resume_iter_10.pth', 0, 10)
    newest = save(tmp_path / 'resume_iter_12.pth', 0, 12)
    damage(newest, how)
    reports = []
    assert find_latest_checkpoint(str(tmp_path), reports.append) == older
    assert len(reports) == 1 and 'resume_iter_12.pth' in reports[0]
    assert ('cannot be read' in reports[0]) if how == 'truncate' else (
        'falling back' in reports[0])
    with pytest.raises(CorruptCheckpointError, match='resume_iter_12.pth'):
        verify_checkpoint(newest)
    verify_checkpoint(older)


def test_the_last_checkpoint_file_does_not_overrule(tmp_path):
    """mmengine's ``last_checkpoint`` may name an older file (written by
    another hook); the state inside decides."""
    save(tmp_path / 'epoch_1.pth', 1, 10)
    time.sleep(0.01)
    newer = save(tmp_path / 'resume_iter_14.pth', 1, 14)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    assert find_latest_checkpoint(str(tmp_path)) == newer
