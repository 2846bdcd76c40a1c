# Copyright (c) mmdetr contributors. All rights reserved.
"""Host-device synchronisations of a DETR training step, counted on CPU by
the benchmark's profiler (tools/analysis_tools/benchmarking/host_sync.py).

What a GPU would wait for shows on CPU tensors as the same ops (``.item()``,
``nonzero``, ``unique``); the host <-> device copies, no-ops on a CPU, show
where tensor data crosses into host code (``Tensor.numpy``, ``tolist``,
``torch.from_numpy``), which the counter watches from outside.
"""
import copy
import socket

import pytest
import torch
import torch.distributed as dist
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from helpers import (HostSyncCounter, build_mmdet, build_mmdetr,
                     count_host_syncs, count_step, make_batch, preprocess,
                     training_step)
from mmdetr.engine import DeferredGradNormOptimWrapper


def test_counter_sees_reads_data_dependent_ops_and_copies():
    x = torch.arange(6.)
    numpy, from_numpy = torch.Tensor.numpy, torch.from_numpy
    with HostSyncCounter() as counter:
        x.sum().item()
        float(x.max())
        bool((x > 2).any())
        torch.nonzero(x > 2)
        torch.unique(x)
        host = x.cpu().numpy()
        x.tolist()
        torch.from_numpy(host)
        x * 2  # no wait
    assert counter.counts == {'item': 3, 'nonzero': 1, 'unique': 1,
                              'to_host': 2}
    assert counter.total == 7
    assert counter.copies == {'to_device': 1}
    # each event names the line that caused it
    assert all('test_host_sync.py' in where for _, where in counter.events)
    # outside a counter the watched functions are torch's own again
    assert torch.Tensor.numpy is numpy and torch.from_numpy is from_numpy


def test_any_callable_can_be_counted():
    result, counter = count_host_syncs(lambda t: t.max().item(),
                                       torch.arange(3.))
    assert result == 2.0 and counter.counts == {'item': 1}


def test_counter_leaves_out_optimizer_step_counters_only():
    """Adam keeps its step count in a host tensor on every device and reads
    it with .item(): not a device wait. Anything else is counted."""
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    param.grad = torch.ones(3)
    with HostSyncCounter() as counter:
        optimizer.step()
    assert counter.total == 0
    with HostSyncCounter(ignore=lambda kind, frames: False) as everything:
        optimizer.step()
    assert everything.counts['item'] >= 1


@pytest.mark.parametrize('dec', [2, 4])
def test_training_step_waits_for_the_device_at_most_three_times(dec):
    """Whatever the number of decoder layers, with gradient clipping as the
    configs do it: the cost matrix to the host (scipy), the matches back in
    one copy that need not wait, and the loss values with the non-finite
    flag and the previous step's gradient norm (one copy). No nonzero/unique,
    no read of the gradient norm on its own."""
    counter, log_vars = count_step(build_mmdetr(dec=dec))
    assert counter.total + sum(counter.copies.values()) <= 3, counter.events
    assert counter.counts == {'to_host': 2}, counter.events
    assert counter.copies == {'to_device': 1}, counter.events
    assert all(isinstance(v, float) for v in log_vars.values())
    assert len(log_vars) == 1 + 3 * dec
    # mmengine's own wrapper keeps mmengine's parse_losses: each logged
    # value and the gradient norm is read on its own
    counter, _ = count_step(build_mmdetr(dec=dec), wrapper=OptimWrapper)
    assert counter.counts == {'to_host': 1, 'item': 2 + 3 * dec}, \
        counter.events
    # without gradient clipping there is no norm to carry
    counter, _ = count_step(build_mmdetr(dec=dec), clip=False)
    assert counter.counts == {'to_host': 2}, counter.events
    assert counter.copies == {'to_device': 1}, counter.events


def _norms_logged(wrapper, model, data, steps=3):
    """``train/grad_norm`` as the MessageHub holds it after each of
    ``steps`` training steps (None: not logged yet), in a hub of its own."""
    hub = MessageHub.get_instance(f'grad-norm-{wrapper.__name__}-{id(model)}')
    optim_wrapper = wrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4),
        clip_grad=dict(max_norm=0.1, norm_type=2))
    logged = []
    for _ in range(steps):
        training_step(model, data, optim_wrapper)
        assert MessageHub.get_current_instance() is hub
        buffer = hub.log_scalars.get('train/grad_norm')
        logged.append(None if buffer is None else
                      (len(buffer.data[0]), buffer.current()))
    return logged


@pytest.mark.parametrize('dec', [2, 4])
def test_logged_grad_norm_is_mmengines_one_step_late(dec):
    """The norm logged at step i is the one mmengine's OptimWrapper logs at
    step i - 1 (the same float), for the same model and data."""
    torch.manual_seed(0)
    model = build_mmdetr(dec=dec)
    model.train()
    data = preprocess(model, make_batch(num_boxes=(3, 5), seed=3), True)
    theirs = _norms_logged(OptimWrapper, copy.deepcopy(model), data)
    ours = _norms_logged(DeferredGradNormOptimWrapper, model, data)
    assert [n for n, _ in theirs] == [1, 2, 3]
    assert ours[0] is None  # the first step's norm is still pending
    assert [n for n, _ in ours[1:]] == [1, 2]
    assert [v for _, v in ours[1:]] == [v for _, v in theirs[:2]]
    assert len({v for _, v in theirs}) == 3  # the norms do change


def test_mmdet_detr_step_waits_many_times():
    """The same step of mmdet 3.3's DETR, as measured for the benchmark: its
    per-image target building (nonzero, unique) and per-key log reads show;
    proof that the counter sees what the step above avoids."""
    counter, _ = count_step(build_mmdet(), wrapper=OptimWrapper)
    assert counter.counts['nonzero'] >= 4 and counter.counts['unique'] >= 4
    assert counter.total > 10


@pytest.fixture
def process_group():
    """A one-process gloo group: the distributed code paths, on CPU."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('sync_cls_avg_factor', [False, True])
def test_matched_boxes_are_all_reduced_once_per_step(
        sync_cls_avg_factor, process_group, monkeypatch):
    """In distributed training the number of matched boxes (and, with
    sync_cls_avg_factor, the class normaliser) is all-reduced once for all
    decoder layers, plus the non-finite flag once; the losses equal the
    single-process ones."""
    torch.manual_seed(0)
    model = build_mmdetr(dec=3)
    model.bbox_head.sync_cls_avg_factor = sync_cls_avg_factor
    model.train()
    data = preprocess(model, make_batch(num_boxes=(2, 6), seed=5), True)
    calls = []
    real = dist.all_reduce

    def counting_all_reduce(tensor, *args, **kwargs):
        calls.append(tuple(tensor.shape))
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(dist, 'all_reduce', counting_all_reduce)
    wrapper = DeferredGradNormOptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-4))
    with wrapper.optim_context(model):
        losses = model(**data, mode='loss')
    assert len(calls) == 1, calls  # the loss: one reduction, all layers
    model.parse_losses(losses)
    assert len(calls) == 2, calls  # + the non-finite flag
    monkeypatch.setattr(dist, 'is_initialized', lambda: False)
    single = model(**data, mode='loss')
    for key, value in single.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-6, atol=0,
                                   msg=key)
