# Copyright (c) mmdetr contributors. All rights reserved.
"""One training step as the runner runs it, and its host syncs counted by
the benchmark's profiler (``tools/analysis_tools/benchmarking/host_sync.py``,
loaded by path: tools/ is not a package)."""
import torch
from mmengine.logging import MessageHub

from mmdetr.engine import DeferredGradNormOptimWrapper

from .batches import make_batch, preprocess
from .tools import load_tool

_host_sync = load_tool('tools/analysis_tools/benchmarking/host_sync.py',
                       'host_sync')
HostSyncCounter = _host_sync.HostSyncCounter
count_host_syncs = _host_sync.count_host_syncs


def training_step(model, data, optim_wrapper):
    """What the runner runs per iteration after the data preprocessor
    (mmengine's ``BaseModel.train_step``): loss inside the wrapper's
    ``optim_context``, parse_losses, backward + clip + optimizer step
    (``update_params``), and the logging of ``log_vars``
    (``RuntimeInfoHook.after_train_iter``)."""
    with optim_wrapper.optim_context(model):
        losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    optim_wrapper.update_params(loss)
    hub = MessageHub.get_current_instance()
    for key, value in log_vars.items():
        hub.update_scalar(f'train/{key}', value)
    return log_vars


def count_step(model, num_boxes=(3, 5), clip=True,
               wrapper=DeferredGradNormOptimWrapper):
    """Host syncs of one training step after a warm-up step (AdamW, and
    gradient clipping unless ``clip=False``) under ``wrapper``: the
    configs' ``DeferredGradNormOptimWrapper`` by default, or mmengine's
    ``OptimWrapper``.

    Returns:
        tuple: the :class:`HostSyncCounter` and the step's ``log_vars``.
    """
    torch.manual_seed(0)
    model.train()
    data = preprocess(model, make_batch(num_boxes=num_boxes, seed=3), True)
    optim_wrapper = wrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4),
        clip_grad=dict(max_norm=0.1, norm_type=2) if clip else None)
    training_step(model, data, optim_wrapper)  # warm-up: first-step set-up
    with HostSyncCounter() as counter:
        log_vars = training_step(model, data, optim_wrapper)
    return counter, log_vars
