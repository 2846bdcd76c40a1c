# Copyright (c) mmdetr contributors. All rights reserved.
"""Gradient clipping whose norm is logged without a wait of its own."""
from contextlib import contextmanager
from typing import List

import torch
from mmengine.optim import OptimWrapper

from mmdetr.registry import OPTIM_WRAPPERS

from .loss_readout import GradNormHandOff, install_loss_readout


class DeferredGradNormMixin(GradNormHandOff):
    """Clip gradients as mmengine's ``OptimWrapper`` does, but leave the
    norm on the device for the next step's single copy to the host
    (:mod:`~mmdetr.engine.loss_readout`).

    mmengine's ``_clip_grad`` logs ``float(grad_norm)``: one more wait for
    the device in every step. Here the clipping is the same call with the
    same arguments (so the clipped gradients are bit-identical), and the
    norm tensor stays with the wrapper. The next training step's loss
    readout carries it to the host in the copy it makes anyway for the loss
    values, and logs it as ``train/grad_norm``. The logged norm is
    therefore **one iteration late**: at iteration ``i`` the log shows the
    norm of iteration ``i - 1``'s gradients (the last iteration's norm is
    never logged).

    Put it before the wrapper class in the bases, so its ``_clip_grad`` and
    ``optim_context`` win.
    """

    @contextmanager
    def optim_context(self, model):
        install_loss_readout(model, self)
        with super().optim_context(model):
            yield

    def _clip_grad(self) -> None:
        """Clip the gradients; leave the norm pending, unread."""
        params: List[torch.Tensor] = []
        for param_group in self.optimizer.param_groups:
            params.extend(param_group['params'])
        params = [p for p in params if p.requires_grad and p.grad is not None]
        if not params:
            return
        norm = self.clip_func(params, **self.clip_grad_kwargs)
        # clip_grad_value_ returns None: there is no norm to log
        if norm is not None:
            self.leave_grad_norm(self.grad_name, norm)


@OPTIM_WRAPPERS.register_module()
class DeferredGradNormOptimWrapper(DeferredGradNormMixin, OptimWrapper):
    """mmengine's ``OptimWrapper`` whose clipped-gradient norm is logged one
    iteration late, in the next step's loss copy, instead of being read
    on its own (see :class:`DeferredGradNormMixin`); a non-finite loss stops
    training before the optimizer step.

    Configs name it ``type='mmdetr.DeferredGradNormOptimWrapper'`` (their
    default scope is mmdet). Without ``clip_grad`` it is mmengine's
    ``OptimWrapper`` with the one-copy loss readout.
    """
