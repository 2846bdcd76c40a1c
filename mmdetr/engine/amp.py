# Copyright (c) mmdetr contributors. All rights reserved.
"""Mixed precision on the device at hand: what it supports, autocast for
inference and testing, and the configs of ``--amp``.

On a GPU, ``--amp`` is mmengine's (float16 or bfloat16 autocast with a loss
scaler, :class:`~mmdetr.engine.SkipNonFiniteAmpOptimWrapper`). On a CPU it
is bfloat16 autocast, which torch runs through oneDNN: fast on CPUs with
bfloat16 instructions (AVX-512 BF16: ``avx512_bf16``; Intel AMX:
``amx_bf16``), emulated on others. mmdetr stops there with a message
(``MMDETR_EMULATED_BF16=1`` runs it anyway) instead of running emulated
bfloat16 or, worse, float32 under a bfloat16 name. bfloat16 has float32's
exponent range, so it trains without loss scaling
(:class:`~mmdetr.engine.BF16OptimWrapper`).

The model's parts that stay float32 under autocast are the same on every
device (:mod:`mmdetr.models.precision`).
"""
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import TestLoop

from mmdetr.registry import LOOPS

DTypeLike = Union[str, torch.dtype, None]

#: the default ``--amp`` dtype of each device type
DEFAULT_DTYPES = {'cuda': torch.float16, 'cpu': torch.bfloat16}


class AmpUnsupportedError(RuntimeError):
    """Mixed precision in this dtype is not available (or would be slower
    than float32) on this device."""


@dataclass(frozen=True)
class CpuBf16Support:
    """The bfloat16 instructions this CPU has.

    Attributes:
        avx512_bf16 (bool): AVX-512 BF16 (bfloat16 dot products: Intel
            Cooper Lake and later, AMD Zen 4 and later).
        amx_bf16 (bool): Intel AMX tiles with bfloat16 (Sapphire Rapids and
            later): several times the throughput of AVX-512 BF16.
    """
    avx512_bf16: bool
    amx_bf16: bool

    @property
    def native(self) -> bool:
        """Whether oneDNN runs bfloat16 in hardware here."""
        return self.avx512_bf16 or self.amx_bf16

    def describe(self) -> str:
        """e.g. ``'avx512_bf16 (no AMX)'``."""
        if self.amx_bf16:
            return 'amx_bf16 and avx512_bf16' if self.avx512_bf16 \
                else 'amx_bf16'
        if self.avx512_bf16:
            return 'avx512_bf16 (no AMX)'
        return 'no bfloat16 instructions (neither avx512_bf16 nor amx_bf16)'


def _cpuinfo_flags() -> Optional[set]:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def cpu_bf16_support() -> CpuBf16Support:
    """What this CPU offers bfloat16, from ``/proc/cpuinfo`` (Linux) or
    else torch's own CPU feature checks."""
    flags = _cpuinfo_flags()
    if flags is not None:
        return CpuBf16Support('avx512_bf16' in flags, 'amx_bf16' in flags)
    cpu = torch.cpu
    checks = (getattr(cpu, '_is_avx512_bf16_supported', None),
              getattr(cpu, '_is_amx_tile_supported', None))
    return CpuBf16Support(*(bool(check and check()) for check in checks))


def to_dtype(dtype: DTypeLike, device_type: str) -> torch.dtype:
    """``dtype`` as a ``torch.dtype``; None: the device's default
    (:data:`DEFAULT_DTYPES`)."""
    if dtype is None:
        return DEFAULT_DTYPES.get(device_type, torch.float16)
    if isinstance(dtype, str):
        if dtype not in ('float16', 'bfloat16'):
            raise AmpUnsupportedError(
                f'mixed precision dtype must be float16 or bfloat16, got '
                f'{dtype!r}')
        return getattr(torch, dtype)
    return dtype


def check_amp(device: Union[str, torch.device],
              dtype: DTypeLike = None) -> torch.dtype:
    """The autocast dtype for ``device``, after checking that the device
    runs it (faster than float32, on a CPU).

    Args:
        device (str | torch.device): e.g. ``'cpu'``, ``'cuda:0'``.
        dtype (str | torch.dtype, optional): ``'float16'`` or
            ``'bfloat16'``; None: float16 on CUDA, bfloat16 on a CPU.

    Returns:
        torch.dtype: the dtype to autocast to.

    Raises:
        AmpUnsupportedError: the device cannot (or, a CPU without bfloat16
            instructions, should not) run it; the message says why and
            what to do.
    """
    device_type = torch.device(device).type
    dtype = to_dtype(dtype, device_type)
    if device_type == 'cuda':
        if not torch.cuda.is_available():
            raise AmpUnsupportedError('mixed precision on cuda: no CUDA '
                                      'device is available')
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise AmpUnsupportedError(
                'bfloat16: this GPU has no bfloat16 support; use float16')
        return dtype
    if device_type != 'cpu':
        raise AmpUnsupportedError(
            f'mixed precision on {device_type!r}: mmdetr supports cuda and '
            'cpu')
    if dtype != torch.bfloat16:
        raise AmpUnsupportedError(
            'mixed precision on a CPU is bfloat16 (float16 autocast needs '
            'a GPU): use --amp-dtype bfloat16 or leave --amp-dtype out')
    support = cpu_bf16_support()
    if not support.native and not os.environ.get('MMDETR_EMULATED_BF16'):
        raise AmpUnsupportedError(
            f'bfloat16 on this CPU: it has {support.describe()}, so '
            'bfloat16 would run emulated, without the instructions that '
            'make it faster than float32. Run without --amp (float32), or '
            'set MMDETR_EMULATED_BF16=1 to run emulated bfloat16 anyway '
            '(the same numbers, e.g. to check them)')
    return dtype


@contextmanager
def amp_autocast(device: Union[str, torch.device] = 'cpu',
                 dtype: DTypeLike = None) -> Iterator[torch.dtype]:
    """``torch.autocast`` for ``device`` after :func:`check_amp`; yields
    the dtype.

    The switch for any inference code, e.g. mmdet's ``DetInferencer``::

        with amp_autocast('cpu'):  # bfloat16; stops on a CPU without it
            result = inferencer('demo.jpg')

    Raises:
        AmpUnsupportedError: as :func:`check_amp`.
    """
    dtype = check_amp(device, dtype)
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield dtype


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU if it has none)."""
    for param in model.parameters():
        return param.device
    return torch.device('cpu')


@LOOPS.register_module()
class AmpTestLoop(TestLoop):
    """mmengine's ``TestLoop`` under mixed precision of a chosen dtype, on
    the model's device (checked with :func:`check_amp` when built).

    mmengine's ``TestLoop(fp16=True)`` autocasts to the device's default
    dtype (float16 on CUDA, bfloat16 on a CPU) without checking the CPU.

    Args:
        dtype (str, optional): ``'float16'`` or ``'bfloat16'``; None: the
            device's default.
        **kwargs: ``TestLoop``'s (``runner``, ``dataloader``,
            ``evaluator``).
    """

    def __init__(self, runner, dataloader, evaluator,
                 dtype: Optional[str] = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=True)
        self.device = model_device(runner.model)
        self.amp_dtype = check_amp(self.device, dtype)

    def run_iter(self, idx, data_batch) -> None:
        # mmengine's fp16 autocast inside takes the dtype of this one
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            super().run_iter(idx, data_batch)


#: optimizer wrappers ``--amp`` replaces with its own
_PLAIN_WRAPPERS = ('OptimWrapper', 'AmpOptimWrapper',
                   'DeferredGradNormOptimWrapper',
                   'SkipNonFiniteAmpOptimWrapper', 'BF16OptimWrapper')


def amp_device() -> str:
    """Where the tools run: ``'cuda'`` if there is a GPU, else ``'cpu'``."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def amp_train_config(cfg: Config, dtype: DTypeLike = None,
                     device: Optional[str] = None) -> torch.dtype:
    """Set ``cfg.optim_wrapper`` up for ``tools/train.py --amp``, in place.

    On CUDA: mmdetr's ``SkipNonFiniteAmpOptimWrapper`` (autocast in
    ``dtype``, dynamic loss scaling; non-finite steps skipped by the
    scaler). On a CPU: :class:`~mmdetr.engine.BF16OptimWrapper` (bfloat16
    autocast, no loss scaling; non-finite steps skipped). Both stop after
    ``optim_wrapper.max_consecutive_skips`` skipped steps in a row.

    Returns:
        torch.dtype: the autocast dtype.

    Raises:
        AmpUnsupportedError: as :func:`check_amp`, or a CPU run whose
            config names an optimizer wrapper of its own.
    """
    device = device or amp_device()
    dtype = check_amp(device, dtype)
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    plain = isinstance(wrapper, str) and \
        wrapper.split('.')[-1] in _PLAIN_WRAPPERS
    name = str(dtype).split('.')[-1]
    if device == 'cuda':
        if plain:
            cfg.optim_wrapper.type = 'mmdetr.SkipNonFiniteAmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        cfg.optim_wrapper.dtype = name
        return dtype
    if not plain:
        raise AmpUnsupportedError(
            f'optim_wrapper.type={wrapper!r}: mixed precision on a CPU '
            'uses mmdetr.BF16OptimWrapper, which replaces OptimWrapper, '
            'DeferredGradNormOptimWrapper or an AMP wrapper only')
    cfg.optim_wrapper.type = 'mmdetr.BF16OptimWrapper'
    for key in ('loss_scale', 'use_fsdp'):  # GPU wrappers' options
        cfg.optim_wrapper.pop(key, None)
    cfg.optim_wrapper.dtype = name
    return dtype


def amp_test_config(cfg: Config, dtype: DTypeLike = None,
                    device: Optional[str] = None) -> torch.dtype:
    """Set ``cfg.test_cfg`` up for ``tools/test.py --amp``, in place:
    :class:`AmpTestLoop` in ``dtype`` on the tools' device.

    Returns:
        torch.dtype: the autocast dtype.

    Raises:
        AmpUnsupportedError: as :func:`check_amp`, or a config with a test
            loop of its own.
    """
    device = device or amp_device()
    dtype = check_amp(device, dtype)
    loop = ConfigDict(cfg.get('test_cfg') or {})
    kind = loop.get('type', 'TestLoop')
    if not isinstance(kind, str) or \
            kind.split('.')[-1] not in ('TestLoop', 'AmpTestLoop'):
        raise AmpUnsupportedError(
            f'test_cfg.type={kind!r}: --amp replaces TestLoop only')
    loop.pop('fp16', None)
    loop.type = 'mmdetr.AmpTestLoop'
    loop.dtype = str(dtype).split('.')[-1]
    cfg.test_cfg = loop
    return dtype
