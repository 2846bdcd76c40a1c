# Copyright (c) mmdetr contributors. All rights reserved.
"""Resuming from a checkpoint of another model, optimizer or training data
is refused, naming what differs."""
import pytest
import torch
from torch import nn

from mmdetr.engine import ResumeMismatchError
from mmdetr.engine.resume_checks import check_model, check_optimizer


def model(width=4):
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))


def test_the_same_model_passes_also_saved_from_ddp():
    m = model()
    check_model(m, m.state_dict(), 'a.pth')
    check_model(m, {f'module.{k}': v for k, v in m.state_dict().items()},
                'a.pth')


@pytest.mark.parametrize('theirs,match', [
    (model(width=5).state_dict(), r'3 weights differ in shape \(0.bias'),
    ({k: v for k, v in model().state_dict().items() if k != '2.bias'},
     r"1 of the model's weights are not in it \(2.bias\)"),
    (dict(model().state_dict(), extra=torch.zeros(1)),
     r'it has 1 weights the model lacks \(extra\)'),
])
def test_another_model_is_named(theirs, match):
    with pytest.raises(ResumeMismatchError, match=match) as e:
        check_model(model(), theirs, 'work/epoch_3.pth')
    assert 'work/epoch_3.pth' in str(e.value)
    assert 'load_from' in str(e.value)  # how to start from it instead


def adamw(m, groups=1):
    params = list(m.parameters())
    if groups == 1:
        return torch.optim.AdamW(params, lr=1e-4)
    return torch.optim.AdamW([dict(params=params[:2]),
                              dict(params=params[2:], lr=1e-5)], lr=1e-4)


def test_the_same_optimizer_passes():
    m = model()
    check_optimizer(adamw(m), adamw(m).state_dict(), 'a.pth')
    # a newer torch adding an option to the groups still fits
    state = adamw(m).state_dict()
    state['param_groups'][0].pop('foreach')
    check_optimizer(adamw(m), state, 'a.pth')


@pytest.mark.parametrize('theirs,match', [
    (lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
     'another optimizer type'),
    (lambda m: adamw(m, groups=2), '2 parameter groups in the checkpoint, 1'),
    (lambda m: adamw(model()[:1]), 'holds 2 parameters in the checkpoint, 4'),
])
def test_another_optimizer_is_named(theirs, match):
    m = model()
    with pytest.raises(ResumeMismatchError, match=match) as e:
        check_optimizer(adamw(m), theirs(m).state_dict(), 'x/iter_9.pth')
    assert 'x/iter_9.pth' in str(e.value)


@pytest.fixture(scope='module')
def stopped_mid_epoch(coco_root, tmp_path_factory):
    """A run of the tiny model (1 epoch of 3 iterations) and its resume
    checkpoint of iteration 2, mid-epoch."""
    from mmengine.config import Config

    from helpers import write_tiny_train_config
    from mmdetr.engine import Runner
    tmp = tmp_path_factory.mktemp('resume_checks')
    cfg = Config.fromfile(write_tiny_train_config(
        tmp / 'cfg.py', coco_root, max_epochs=1))
    cfg.merge_from_dict({'default_hooks.resume_checkpoint.interval': 2})
    cfg.work_dir = str(tmp / 'work')
    Runner.from_cfg(cfg).train()
    return dict(cfg=cfg.filename, ckpt=str(tmp / 'work' / 'resume_iter_2.pth'))


@pytest.mark.slow
@pytest.mark.parametrize('options,match', [
    ({'model.bbox_head.num_query': 12},
     r'its model is not this config.s model: 1 weights differ in shape '
     r'\(bbox_head.query_embedding.weight \(10, 32\) in the checkpoint, '
     r'\(12, 32\) in the model\)'),
    ({'optim_wrapper.optimizer': dict(_delete_=True, type='SGD', lr=0.01,
                                      momentum=0.9, weight_decay=1e-4)},
     'another optimizer type'),
    ({'train_dataloader.dataset.indices': 4},
     'the training dataset has 4 samples, the checkpoint.s run had 6'),
    ({'train_dataloader.batch_size': 3},
     r'2 batches into the data: batches_per_epoch 3 in the checkpoint, 2 '
     r'now; batch_size 2 in the checkpoint, 3 now'),
])
def test_resuming_with_another_config_names_the_difference(
        stopped_mid_epoch, tmp_path, options, match):
    from mmengine.config import Config

    from mmdetr.engine import Runner
    cfg = Config.fromfile(stopped_mid_epoch['cfg'])
    cfg.merge_from_dict(options)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.resume, cfg.load_from = True, stopped_mid_epoch['ckpt']
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ResumeMismatchError, match=match):
        runner.train()
    assert not list((tmp_path / 'work').glob('*.pth'))  # nothing trained


@pytest.mark.slow
def test_training_leaves_the_signal_handlers_as_it_found_them(
        stopped_mid_epoch, tmp_path):
    """ResumeCheckpointHook handles SIGTERM and SIGUSR1 while training; the
    process gets its own handlers back however training ends: by an error
    raised after they were installed (a resume that does not fit; mmengine
    then skips ``after_run``), and by a run that returns."""
    import signal

    from mmengine.config import Config

    from mmdetr.engine import Runner
    signals = (signal.SIGTERM, signal.SIGUSR1)

    def own(signum, frame):  # the process's handler before training
        pass

    before = {s: signal.signal(s, own) for s in signals}
    try:
        cfg = Config.fromfile(stopped_mid_epoch['cfg'])
        cfg.merge_from_dict({'train_dataloader.dataset.indices': 4})
        cfg.work_dir = str(tmp_path / 'failing')
        cfg.resume, cfg.load_from = True, stopped_mid_epoch['ckpt']
        runner = Runner.from_cfg(cfg)
        installed = []
        hook = next(h for h in runner.hooks
                    if type(h).__name__ == 'ResumeCheckpointHook')
        start = hook.before_train

        def before_train(runner):
            start(runner)
            installed.extend(signal.getsignal(s) for s in signals)

        hook.before_train = before_train
        with pytest.raises(ResumeMismatchError):
            runner.train()
        assert installed and all(h is not own for h in installed)
        assert [signal.getsignal(s) for s in signals] == [own, own]

        cfg = Config.fromfile(stopped_mid_epoch['cfg'])
        cfg.work_dir = str(tmp_path / 'returning')
        Runner.from_cfg(cfg).train()
        assert [signal.getsignal(s) for s in signals] == [own, own]
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
