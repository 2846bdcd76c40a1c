# Copyright (c) mmdetr contributors. All rights reserved.
"""bfloat16 mixed-precision training on any device, CPUs included: no loss
scaler, and the non-finite policy of the GPU's AMP wrapper."""
from collections import defaultdict
from contextlib import contextmanager
from typing import List

import torch
from mmengine.optim import OptimWrapper
from torch import Tensor

from mmdetr.registry import OPTIM_WRAPPERS

from .amp import check_amp, model_device
from .grad_norm import DeferredGradNormMixin
from .optim_wrapper import ConsecutiveSkipGuard


def nonfinite_gradients(params: List[Tensor]) -> Tensor:
    """Whether any gradient of ``params`` has an inf or NaN, as a 1-element
    float tensor on the first gradient's device (not read on the host).

    The check the loss scaler makes, with a scale of 1 (values unchanged).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(1)
    found = torch.zeros(1, device=grads[0].device)
    groups = defaultdict(list)
    for g in grads:
        groups[(g.device, g.dtype)].append(g)
    for (device, _), group in groups.items():
        found = found + _nonfinite_flag(group, device).to(found.device)
    return found


def _nonfinite_flag(grads: List[Tensor], device) -> Tensor:
    """1.0 if any of ``grads`` (one device and dtype) is not finite, else
    0.0: torch's fused check where it has a kernel for the device (torch
    2.1 has none for CPUs), else one ``isfinite`` per tensor."""
    flag = torch.zeros(1, device=device)
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(
            grads, flag, torch.ones(1, device=device))
        return flag
    except NotImplementedError:  # no kernel for this device in this torch
        finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
        return (~finite).float().reshape(1)


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(DeferredGradNormMixin, OptimWrapper):
    """bfloat16 autocast in the model's forward, float32 weights and
    optimizer, no loss scaling; a step whose gradients are not finite is
    skipped, counted and logged, and persisting ones stop training.

    mmengine's ``AmpOptimWrapper`` asserts a GPU (and would scale the
    loss, which bfloat16, with float32's exponent range, does not need).
    This wrapper runs wherever bfloat16 autocast does: on a CPU with
    bfloat16 instructions (checked at the first step,
    :func:`~mmdetr.engine.amp.check_amp`) or a GPU. Its policy is that of
    :class:`~mmdetr.engine.SkipNonFiniteAmpOptimWrapper`: a non-finite loss
    goes through to ``backward``, the step is skipped when any gradient is
    inf or NaN (the loss scaler's test), ``train/amp_skipped_steps`` counts
    the skipped steps, and ``max_consecutive_skips`` of them in a row raise
    a ``FloatingPointError``. The clipped-gradient norm is logged one
    iteration late (:class:`~mmdetr.engine.DeferredGradNormMixin`).

    Args:
        dtype (str): ``'bfloat16'``, the only dtype it takes (float16
            needs loss scaling). Defaults to ``'bfloat16'``.
        max_consecutive_skips (int): Consecutive skipped steps that stop
            training. Defaults to 10.
        **kwargs: ``OptimWrapper``'s (``optimizer``, ``clip_grad`` ...).

    Raises:
        ValueError: ``dtype`` is not bfloat16.
    """

    #: the gradient check, not the loss readout, handles a non-finite loss
    skip_nonfinite_loss = True

    def __init__(self, *args, dtype='bfloat16',
                 max_consecutive_skips: int = 10, **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(
                'BF16OptimWrapper: dtype must be bfloat16, got '
                f'{dtype!r} (float16 needs loss scaling: on a GPU use '
                'mmdetr.SkipNonFiniteAmpOptimWrapper)')
        super().__init__(*args, **kwargs)
        self.cast_dtype = torch.bfloat16
        self.skip_guard = ConsecutiveSkipGuard(max_consecutive_skips)
        self._checked_devices = set()

    @contextmanager
    def optim_context(self, model):
        """The parent's context, with bfloat16 autocast on the model's
        device."""
        device = model_device(model)
        if device.type not in self._checked_devices:
            check_amp(device, self.cast_dtype)
            self._checked_devices.add(device.type)
        with super().optim_context(model), torch.autocast(
                device.type, dtype=self.cast_dtype):
            yield

    def step(self, **kwargs) -> None:
        """Clip (if configured) and step, unless a gradient is not finite;
        record whether the step was skipped."""
        params = [
            p for group in self.optimizer.param_groups
            for p in group['params']
        ]
        found = nonfinite_gradients(params)
        if self.clip_grad_kwargs:
            self._clip_grad()
        skipped = bool(found.item())  # the step's one wait, as the scaler's
        if not skipped:
            self.optimizer.step(**kwargs)
        self.skip_guard.update(skipped, message_hub=self.message_hub)

    def load_state_dict(self, state_dict: dict) -> None:
        """The optimizer's state; a loss scaler's state (a checkpoint of a
        GPU run with loss scaling) is dropped: bfloat16 needs none."""
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)
