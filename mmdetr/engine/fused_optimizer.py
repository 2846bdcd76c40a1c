# Copyright (c) mmdetr contributors. All rights reserved.
"""The optimizer's step in torch's fused kernel where torch has one.

mmengine's default constructor gives every parameter a group of its own
when a config has a ``paramwise_cfg`` (DETR's backbone learning rate): on a
CPU, where torch's Adam, AdamW and SGD default to a Python loop over the
parameters, one step is a dozen small operations per parameter. With
``fused=True`` each group is one kernel call. The fused kernels compute the
same update (up to float rounding), keep the same state-dict layout (a
checkpoint of either resumes in the other) and exist for CUDA tensors from
torch 2.0 and for CPU tensors from torch 2.4 (Adam, AdamW, SGD).

A config turns it on with the constructor of its ``optim_wrapper``::

    optim_wrapper = dict(
        constructor='mmdetr.FusedOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4), ...)

An optimizer config that states ``fused`` or ``foreach`` itself is left as
it is; with a torch, an optimizer or a device without a fused kernel the
constructor is mmengine's default one.
"""
from typing import Iterable, Optional

import torch
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from mmdetr.registry import OPTIM_WRAPPER_CONSTRUCTORS

#: optimizer -> device type -> the first torch (major, minor) with a fused
#: kernel for it
FUSED_SINCE = {
    'Adam': dict(cuda=(2, 0), cpu=(2, 4)),
    'AdamW': dict(cuda=(2, 0), cpu=(2, 4)),
    'SGD': dict(cuda=(2, 0), cpu=(2, 4)),
}


def _torch_version() -> tuple:
    release = torch.__version__.split('+')[0].split('.')
    return tuple(int(v) for v in release[:2])


def fused_unavailable(optimizer_type, params: Iterable[nn.Parameter],
                      torch_version: Optional[tuple] = None
                      ) -> Optional[str]:
    """Why ``optimizer_type`` cannot take ``fused=True`` for ``params``, or
    None when it can.

    Args:
        optimizer_type (str | type): The optimizer config's ``type``
            (``'AdamW'``, ``'torch.optim.AdamW'`` or the class).
        params (iterable[Parameter]): The parameters it will update.
        torch_version (tuple, optional): (major, minor); this torch's when
            None.
    """
    cls = optimizer_type
    if isinstance(cls, str):
        from mmengine.registry import OPTIMIZERS
        with OPTIMIZERS.switch_scope_and_registry(None) as registry:
            cls = registry.get(cls)
    name = getattr(cls, '__name__', repr(optimizer_type))
    if name not in FUSED_SINCE or cls is not getattr(torch.optim, name):
        return f'torch has no fused kernel for {optimizer_type!r}'
    since = FUSED_SINCE[name]
    params = [p for p in params if p.requires_grad]
    if not params:
        return 'no parameter to update'
    devices = {p.device.type for p in params}
    if len(devices) != 1 or next(iter(devices)) not in since:
        return f'parameters on {sorted(devices)}'
    device = next(iter(devices))
    if not all(p.is_floating_point() for p in params):
        return 'a parameter that is not floating point'
    version = torch_version or _torch_version()
    if version < since[device]:
        need = '.'.join(map(str, since[device]))
        return (f'torch {torch.__version__} has no fused {name} on {device} '
                f'(torch >= {need})')
    return None


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FusedOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's :class:`DefaultOptimWrapperConstructor` (the same
    parameter groups, ``paramwise_cfg`` included) that builds the optimizer
    with ``fused=True`` where :func:`fused_unavailable` finds nothing
    against it. The reason it did not, if any, is kept in
    ``self.unfused_reason``."""

    unfused_reason: Optional[str] = None

    def __call__(self, model: nn.Module) -> OptimWrapper:
        module = model.module if hasattr(model, 'module') else model
        cfg = self.optimizer_cfg
        if 'fused' in cfg or 'foreach' in cfg:
            self.unfused_reason = 'the optimizer config chooses itself'
        else:
            self.unfused_reason = fused_unavailable(cfg['type'],
                                                    module.parameters())
        if self.unfused_reason is None:
            original = self.optimizer_cfg
            self.optimizer_cfg = dict(original, fused=True)
            try:
                wrapper = super().__call__(model)
            finally:
                self.optimizer_cfg = original
        else:
            wrapper = super().__call__(model)
        keep_kernel_choice(wrapper.optimizer)
        return wrapper


class _KeepKernelChoice:
    """Optimizer load-state-dict post-hook: puts back the kernel flags
    (``fused``, ``foreach``) the optimizer was built with."""

    def __init__(self, flags: dict) -> None:
        self.flags = flags

    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            group.update(self.flags)


def keep_kernel_choice(optimizer: torch.optim.Optimizer) -> None:
    """Make which kernel runs the step a property of the run, not of the
    checkpoint it resumes: a checkpoint's parameter groups carry ``fused``
    and ``foreach``, which ``load_state_dict`` would otherwise restore (a
    checkpoint of a fused GPU run would ask a torch without a fused CPU
    kernel for one). Needs the optimizer hooks of torch >= 2.1."""
    flags = {
        key: optimizer.param_groups[0][key]
        for key in ('fused', 'foreach') if key in optimizer.param_groups[0]
    }
    if flags and hasattr(optimizer, 'register_load_state_dict_post_hook'):
        optimizer.register_load_state_dict_post_hook(_KeepKernelChoice(flags))
