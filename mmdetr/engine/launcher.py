# Copyright (c) mmdetr contributors. All rights reserved.
"""Launcher and runner set-up shared by tools/train.py and tools/test.py.

Distributed runs work the same on GPUs and on CPU-only machines: with CUDA,
mmengine initialises NCCL as usual; without it, mmengine's ``init_dist``
would call ``torch.cuda.set_device`` and die, so the process group is
initialised here with gloo before the Runner is built (mmengine then skips
its own initialisation) and DDP is told there are no device ids.
"""
import os
import os.path as osp
import subprocess
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config

from mmdetr.engine.checkpoint_files import find_latest_checkpoint
from mmdetr.engine.runner import Runner
from mmdetr.registry import RUNNERS

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
        raise ValueError(f'launcher must be one of {LAUNCHERS}, '
                         f'got {launcher!r}')
    cfg.launcher = launcher
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


def load_config(path: str, cfg_options=None, work_dir=None) -> Config:
    """Read a config, apply ``--cfg-options`` and settle the work dir
    (``work_dir`` > the config's > ``./work_dirs/<config name>``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def set_deterministic_env(cfg: Config) -> None:
    """With ``randomness.deterministic=True``, let cuBLAS be deterministic.

    torch's deterministic mode raises at the first cuBLAS matmul on CUDA
    unless ``CUBLAS_WORKSPACE_CONFIG`` is set; cuBLAS reads it when CUDA
    starts, so it is set here, before the Runner touches the device. A value
    the user set is kept.
    """
    if cfg.get('randomness', {}).get('deterministic', False):
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')


def resume_from_latest(work_dir: str) -> Optional[str]:
    """The checkpoint every rank resumes from: decided by rank 0 alone.

    Only rank 0 writes checkpoints, so on machines whose work dirs are not
    shared (node-local disks) other ranks would find none, or another one,
    by scanning their own work dir. Rank 0 picks the newest whole
    checkpoint (:func:`~mmdetr.engine.checkpoint_files.find_latest_checkpoint`:
    a truncated or damaged newest one is passed over for the one before it,
    saying so) and every rank receives its choice before loading; ranks
    that cannot read that file get its content from rank 0 when mmdetr's
    :class:`~mmdetr.engine.Runner` resumes.

    Needs the process group to be up when distributed (it is after
    :func:`setup_launcher`).

    Returns:
        str | None: the path, or None when there is nothing to resume.
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0

    def report(msg: str) -> None:
        print(f'--resume: {msg}', flush=True)

    choice = [
        find_latest_checkpoint(work_dir, report) if rank == 0 else None
    ]
    if distributed:
        dist.broadcast_object_list(choice, src=0)
    return choice[0]


def close_process_group() -> None:
    """Destroy the default process group, if one is up (no-op otherwise).

    The tools call it when a run ends normally or stops on a signal, as
    torch asks of a process before it exits (a group left to the
    interpreter's exit can abort it: pytorch/pytorch#190489). It is not
    called on an error, where another rank may still wait in a collective
    with this one.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def closing_process_group() -> Iterator[None]:
    """``with closing_process_group(): runner.train()``: the process group
    is closed (:func:`close_process_group`) when the block returns or stops
    on a signal (``SystemExit``, status 75: every rank agreed), and left up
    on an error."""
    try:
        yield
    except SystemExit:
        close_process_group()
        raise
    close_process_group()


def build_runner(cfg: Config, launcher: str, resume_latest: bool = False):
    """Set up ``launcher`` and build the config's runner: ``runner_type``
    if given, else mmdetr's Runner (atomic checkpoint saves, safe loading).

    Args:
        cfg (Config): The run's config.
        launcher (str): One of :data:`LAUNCHERS`.
        resume_latest (bool): Resume from the newest checkpoint in
            ``cfg.work_dir`` as rank 0 finds it (:func:`resume_from_latest`);
            start from scratch when there is none. Defaults to False.

    """
    set_deterministic_env(cfg)
    os.environ.setdefault('LOCAL_RANK', '0')
    setup_launcher(cfg, launcher)
    if resume_latest:
        latest = resume_from_latest(cfg.work_dir)
        if latest is None:
            print(f'--resume: no checkpoint in {cfg.work_dir}, starting '
                  'from scratch')
            cfg.resume = False  # the config's load_from, if any, still holds
        else:
            cfg.resume = True
            cfg.load_from = latest
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
