# Copyright (c) mmdetr contributors. All rights reserved.
"""Runner set-up shared by tools/train.py and tools/test.py.

Distributed runs work the same on GPUs and on CPU-only machines: with CUDA,
mmengine initialises NCCL as usual; without it, mmengine's ``init_dist``
would call ``torch.cuda.set_device`` and die, so the process group is
initialised here with gloo before the Runner is built (mmengine then skips
its own initialisation) and DDP is told there are no device ids.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction

from .checkpoint import register_trusted_checkpoint_globals

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def _slurm_env(port: str) -> None:
    """Translate SLURM's variables into torch.distributed's env:// ones."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    addr = subprocess.getoutput(
        f'scontrol show hostname {node_list} | head -n1')
    os.environ.setdefault('MASTER_PORT', port)
    os.environ.setdefault('MASTER_ADDR', addr)
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ['RANK'] = str(proc_id)


def _mpi_env(port: str) -> None:
    os.environ.setdefault('MASTER_PORT', port)
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']


def setup_launcher(cfg: Config, launcher: str) -> None:
    """Prepare ``cfg`` and the process group for ``launcher``.

    Args:
        cfg (Config): The run's config; ``launcher``, and on CPU-only
            machines ``env_cfg.dist_cfg.backend`` and ``model_wrapper_cfg``,
            are set in place.
        launcher (str): 'none', 'pytorch' (torchrun), 'slurm' or 'mpi'.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'--launcher must be one of {LAUNCHERS}, '
                         f'got {launcher!r}')
    cfg.launcher = launcher
    register_trusted_checkpoint_globals()
    if launcher == 'none' or torch.cuda.is_available():
        return  # single process, or GPUs: mmengine's own path (NCCL)

    # CPU-only distributed: gloo, initialised before the Runner is built
    port = str(cfg.get('env_cfg', {}).get('dist_cfg', {}).get('port', 29500))
    if launcher == 'slurm':
        _slurm_env(port)
    elif launcher == 'mpi':
        _mpi_env(port)
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', init_method='env://')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None  # CPU modules take no device ids
    cfg.model_wrapper_cfg = wrapper


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """The options every runner tool shares: --cfg-options, --launcher."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_cfg.max_epochs=12 '
        'model.bbox_head.num_classes=3')
    parser.add_argument(
        '--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(path: str, cfg_options=None, work_dir=None,
                tool: str = 'mmdetr') -> Config:
    """Read a config, apply ``--cfg-options`` and settle the work dir
    (``work_dir`` > the config's > ``./work_dirs/<config name>``)."""
    if not osp.isfile(path):
        sys.exit(f'{tool}: config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def build_runner(cfg: Config, launcher: str):
    """Set up ``launcher`` and build the config's runner: ``runner_type``
    if given, else mmdetr's Runner (atomic checkpoint saves, safe loading).
    """
    from mmdetr.engine import Runner
    from mmdetr.registry import RUNNERS
    os.environ.setdefault('LOCAL_RANK', '0')
    setup_launcher(cfg, launcher)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
