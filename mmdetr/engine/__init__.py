# Copyright (c) mmdetr contributors. All rights reserved.
from .amp import (AmpTestLoop, AmpUnsupportedError, CpuBf16Support,
                  amp_autocast, check_amp, cpu_bf16_support)
from .bf16_optim_wrapper import BF16OptimWrapper
from .checkpoint_files import (CorruptCheckpointError, find_latest_checkpoint,
                               verify_checkpoint)
from .fused_optimizer import (FusedOptimWrapperConstructor,
                              fused_unavailable)
from .grad_norm import DeferredGradNormMixin, DeferredGradNormOptimWrapper
from .hooks import DataCheckError, DataCheckHook
from .launcher import (LAUNCHERS, build_runner, close_process_group,
                       closing_process_group, load_config, resume_from_latest,
                       set_deterministic_env, setup_launcher)
from .optim_wrapper import (ConsecutiveSkipGuard,
                            SkipNonFiniteAmpOptimWrapper)
from .resumable_loops import (ResumableEpochBasedTrainLoop,
                              ResumableIterBasedTrainLoop)
from .resume_checkpoint_hook import EXIT_RESUMABLE, ResumeCheckpointHook
from .resume_checks import ResumeMismatchError
from .runner import Runner

__all__ = [
    'DataCheckError', 'DataCheckHook', 'Runner', 'find_latest_checkpoint',
    'verify_checkpoint', 'CorruptCheckpointError', 'LAUNCHERS',
    'build_runner', 'close_process_group', 'closing_process_group',
    'load_config', 'resume_from_latest',
    'set_deterministic_env', 'setup_launcher', 'ConsecutiveSkipGuard',
    'SkipNonFiniteAmpOptimWrapper', 'DeferredGradNormMixin',
    'DeferredGradNormOptimWrapper', 'ResumableEpochBasedTrainLoop',
    'ResumableIterBasedTrainLoop', 'ResumeCheckpointHook', 'EXIT_RESUMABLE',
    'ResumeMismatchError', 'AmpTestLoop', 'AmpUnsupportedError',
    'CpuBf16Support', 'amp_autocast', 'check_amp', 'cpu_bf16_support',
    'BF16OptimWrapper', 'FusedOptimWrapperConstructor', 'fused_unavailable'
]
