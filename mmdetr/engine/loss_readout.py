# Copyright (c) mmdetr contributors. All rights reserved.
"""What a training step reads back on the host, in one copy.

A step's host reads each make the host wait for the device: mmengine's
logging reads every logged loss on its own, mmengine's gradient clipping
reads the norm, and a check for non-finite losses reads a flag. mmdetr's
optimizer wrappers (:class:`~mmdetr.engine.DeferredGradNormOptimWrapper`,
:class:`~mmdetr.engine.SkipNonFiniteAmpOptimWrapper`) read all of it at
once: when a wrapper first enters its ``optim_context`` for a model, it
replaces that model's ``parse_losses`` (on the instance; the class is
untouched) with a :class:`LossReadout`, which

- sums the losses as the model's own ``parse_losses`` does;
- copies the logged values, which loss terms are not finite, the previous
  step's clipped-gradient norm (left on the device by the wrapper) and,
  in distributed training, whether any rank has a non-finite loss, to the
  host in one copy, and returns the logged values as Python floats;
- applies the wrapper's non-finite policy before ``backward`` and the
  optimizer step: stop with a ``FloatingPointError`` naming the iteration
  and the loss terms (every rank stops, none is left waiting in an
  all-reduce), or, under mixed precision, let the loss scaler skip the
  step.

The model knows nothing of this: with mmengine's own wrappers it keeps
mmengine's ``parse_losses``.
"""
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist
from mmengine.logging import MessageHub
from mmengine.model import is_model_wrapper
from torch import Tensor


class LossReadout:
    """A model's ``parse_losses`` with the one copy to the host and the
    non-finite policy of ``wrapper`` (see the module docstring).

    Args:
        parse_losses (callable): The model's own ``parse_losses``.
        wrapper: The optimizer wrapper: ``skip_nonfinite_loss`` (bool) and
            ``pop_grad_norm() -> (name, Tensor) | None``.
    """

    def __init__(self, parse_losses, wrapper) -> None:
        self.parse_losses = parse_losses
        self.wrapper = wrapper

    def __call__(self, losses: Dict[str, Tensor]
                 ) -> Tuple[Tensor, Dict[str, float]]:
        """Returns the loss to optimise and the logged values as floats.

        Raises:
            FloatingPointError: a loss term is not finite on some rank and
                the wrapper does not skip such steps.
        """
        loss, log_vars = self.parse_losses(losses)
        # loss terms first: only they stop training (other logged values
        # may legitimately be inf); the split is known on the host
        keys = [k for k in log_vars if 'loss' in k]
        num_losses = len(keys)
        keys += [k for k in log_vars if 'loss' not in k]
        values = torch.stack([
            torch.as_tensor(log_vars[k]).detach().float().reshape(())
            for k in keys
        ])
        bad = ~torch.isfinite(values[:num_losses])
        flag = bad.any().float().reshape(1)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        # the previous step's gradient norm, left on the device unread
        pending = self.wrapper.pop_grad_norm()
        norm = [] if pending is None else \
            [pending[1].float().reshape(1).to(values.device)]
        # the one copy: values, which loss terms are bad, the pending norm,
        # any rank's flag
        host = torch.cat([values, bad.float(), *norm, flag]).cpu().tolist()
        if pending is not None:
            MessageHub.get_current_instance().update_scalar(
                f'train/{pending[0]}', host[-2])
        log_vars = OrderedDict((k, host[keys.index(k)]) for k in log_vars)
        if host[-1] > 0 and not self.wrapper.skip_nonfinite_loss:
            it = MessageHub.get_current_instance().get_info('iter')
            where = f'iteration {it + 1}' if it is not None else 'this step'
            named = [
                f'{k}={log_vars[k]}'
                for k, b in zip(keys, host[len(keys):len(keys) + num_losses])
                if b > 0 and k != 'loss'  # the total is bad with any term
            ]
            raise FloatingPointError(
                f'non-finite loss at {where}: '
                + (', '.join(named) or 'on another rank')
                + '. Training stopped before the optimizer step; the last '
                'checkpoint is intact: fix the cause (lr, data, AMP) and '
                'continue with tools/train.py ... --resume')
        return loss, log_vars


def install_loss_readout(model, wrapper) -> None:
    """Give ``model`` (or the module a model wrapper holds) a
    :class:`LossReadout` of ``wrapper``, replacing one of another wrapper."""
    module = model.module if is_model_wrapper(model) else model
    current = module.__dict__.get('parse_losses')
    if isinstance(current, LossReadout) and current.wrapper is wrapper:
        return
    own = type(module).parse_losses.__get__(module)
    module.parse_losses = LossReadout(own, wrapper)


class GradNormHandOff:
    """The clipped-gradient norm of the last step, kept on the device until
    the next step's :class:`LossReadout` copies it with the losses.

    Attributes:
        skip_nonfinite_loss (bool): Let a non-finite loss through to the
            loss scaler instead of stopping (mixed precision).
    """

    skip_nonfinite_loss = False
    _pending_grad_norm: Optional[Tuple[str, Tensor]] = None

    def leave_grad_norm(self, name: str, norm: Tensor) -> None:
        """Keep a 0-d norm tensor (unread) for the next step to log as
        ``train/<name>``; replaces one left before."""
        self._pending_grad_norm = (name, norm.detach())

    def pop_grad_norm(self) -> Optional[Tuple[str, Tensor]]:
        """Take the norm the last step left, if any: the log name and the
        0-d norm, still on the device."""
        pending, self._pending_grad_norm = self._pending_grad_norm, None
        return pending
