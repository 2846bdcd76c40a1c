# Copyright (c) mmdetr contributors. All rights reserved.
from .amp import (AmpTestLoop, AmpUnsupportedError, CpuBf16Support,
                  amp_autocast, check_amp, cpu_bf16_support)
from .bf16_optim_wrapper import BF16OptimWrapper
from .grad_norm import DeferredGradNormMixin, DeferredGradNormOptimWrapper
from .hooks import DataCheckError, DataCheckHook
from .launcher import (LAUNCHERS, build_runner, load_config,
                       resume_from_latest, set_deterministic_env,
                       setup_launcher)
from .optim_wrapper import (ConsecutiveSkipGuard,
                            SkipNonFiniteAmpOptimWrapper)
from .runner import Runner, find_latest_checkpoint

__all__ = [
    'DataCheckError', 'DataCheckHook', 'Runner', 'find_latest_checkpoint',
    'LAUNCHERS', 'build_runner', 'load_config', 'resume_from_latest',
    'set_deterministic_env', 'setup_launcher', 'ConsecutiveSkipGuard',
    'SkipNonFiniteAmpOptimWrapper', 'DeferredGradNormMixin',
    'DeferredGradNormOptimWrapper', 'AmpTestLoop', 'AmpUnsupportedError',
    'CpuBf16Support', 'amp_autocast', 'check_amp', 'cpu_bf16_support',
    'BF16OptimWrapper'
]
