# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/train.py and tools/test.py leave no process group behind when a
run ends normally or stops on a signal, as torch asks of a process before
it exits; an error leaves the group up."""
import pytest
import torch.distributed as dist

from helpers import load_tool
from mmdetr.engine import close_process_group

TOOLS = {
    'train': (load_tool('tools/train.py', 'train_tool_launcher'),
              ['cfg.py']),
    'test': (load_tool('tools/test.py', 'test_tool_launcher'),
             ['cfg.py', 'ckpt.pth']),
}


@pytest.fixture
def one_rank_group(tmp_path):
    """A function that starts a one-process gloo group (a file store: no
    port); whatever is still up at the end is destroyed."""

    def start():
        dist.init_process_group(
            'gloo', store=dist.FileStore(str(tmp_path / 'store'), 1),
            rank=0, world_size=1)

    yield start
    if dist.is_initialized():
        dist.destroy_process_group()


def test_close_process_group_destroys_the_group(one_rank_group):
    close_process_group()  # none up: nothing to do
    one_rank_group()
    assert dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
    close_process_group()


@pytest.mark.parametrize('tool', sorted(TOOLS))
@pytest.mark.parametrize('ending', ['done', 'stopped', 'error'])
def test_the_tools_close_the_group_when_a_run_ends(tool, ending,
                                                   one_rank_group,
                                                   monkeypatch):
    module, argv = TOOLS[tool]

    class Runner:

        def run(self):
            if ending == 'stopped':
                raise SystemExit(75)
            if ending == 'error':
                raise RuntimeError('the run failed')

        train = test = run

    def build_runner(cfg, *args, **kwargs):
        one_rank_group()
        return Runner()

    monkeypatch.setattr(module, 'build_cfg', lambda args: None)
    monkeypatch.setattr(module, 'build_runner', build_runner)
    if ending == 'done':
        module.main(argv)
    else:
        with pytest.raises((SystemExit, RuntimeError)):
            module.main(argv)
    # an error leaves the group up: another rank may still wait in a
    # collective with this one
    assert dist.is_initialized() == (ending == 'error')
