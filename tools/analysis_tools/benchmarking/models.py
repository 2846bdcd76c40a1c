# Copyright (c) mmdetr contributors. All rights reserved.
"""The two models under test: mmdet 3.3's DETR and mmdetr's DETR, built from
their own shipped R50 configs and given the same weights."""
import copy
import os.path as osp
from contextlib import nullcontext

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
MMDETR_CONFIG = osp.join(ROOT, 'configs', 'detr_r50_8x2_150e_coco.py')
MMDET_CONFIG = 'detr/detr_r50_8xb2-150e_coco.py'  # under mmdet/.mim/configs


def model_configs():
    """mmdet's and mmdetr's configs, with the backbone left randomly
    initialised (nothing is downloaded).

    Returns:
        tuple[Config, Config]: mmdet's, mmdetr's.
    """
    import mmdet
    mmdet_path = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', MMDET_CONFIG)
    ref_cfg = Config.fromfile(mmdet_path)
    our_cfg = Config.fromfile(MMDETR_CONFIG)
    for cfg in (ref_cfg, our_cfg):
        cfg.model.backbone.init_cfg = None
    return ref_cfg, our_cfg


def build_one(which: str, device: str, weights: dict = None):
    """Build mmdet's (``which='mmdet'``) or mmdetr's DETR.

    mmdet's gets a fresh initialisation, or ``weights`` (a state dict in
    mmdet's layout); mmdetr's always gets ``weights``, converted with
    mmdetr's converter, so both compute the same function.

    Returns:
        tuple[nn.Module, dict]: the model on ``device`` and the optimizer
        wrapper config of its own config (the same AdamW, clipping at 0.1
        and backbone learning rate; mmdetr's in its own wrapper, with the
        optimizer step in torch's fused kernel where torch has one).
    """
    from mmengine.registry import MODELS
    ref_cfg, our_cfg = model_configs()
    if which == 'mmdet':
        import mmdet.models  # noqa: F401  registers mmdet's modules
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(copy.deepcopy(ref_cfg.model))
        model.init_weights()
        if weights is not None:
            model.load_state_dict(weights, strict=True)
    else:
        import mmdetr  # noqa: F401  registers mmdetr's modules
        from mmdetr.checkpoints.convert import convert_state_dict
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(copy.deepcopy(our_cfg.model))
        model.load_state_dict(
            convert_state_dict(weights, 'mmdet3'), strict=True)
    cfg = ref_cfg if which == 'mmdet' else our_cfg
    return model.to(device), copy.deepcopy(cfg.optim_wrapper)


def build_optim(model, optim_cfg: dict, amp: bool, device: str,
                ours: bool = False):
    """The config's optimizer wrapper, or with ``amp``: on CUDA mmengine's
    ``AmpOptimWrapper`` (autocast and loss scaling); on a CPU, for mmdetr
    (``ours``) the ``BF16OptimWrapper`` that ``tools/train.py --amp`` uses
    there, for mmdet (which has no CPU AMP) the config's wrapper, with
    :func:`autocast_context` around the forward."""
    cfg = copy.deepcopy(optim_cfg)
    if amp and device.startswith('cuda'):
        cfg['type'] = 'AmpOptimWrapper'
    elif amp and ours:
        from mmdetr.engine import BF16OptimWrapper
        cfg['type'] = BF16OptimWrapper
    with DefaultScope.overwrite_default_scope('mmdet'):  # as the configs
        return build_optim_wrapper(model, cfg)


def autocast_context(amp: bool, device: str, optim_wrapper=None):
    """bfloat16 autocast for ``amp`` on CPU, unless ``optim_wrapper``
    autocasts itself (an AMP wrapper); else nothing to add."""
    from mmengine.optim import AmpOptimWrapper

    from mmdetr.engine import BF16OptimWrapper
    if isinstance(optim_wrapper, (AmpOptimWrapper, BF16OptimWrapper)):
        return nullcontext()
    if amp and device == 'cpu':
        return torch.autocast('cpu', dtype=torch.bfloat16)
    if amp:
        return torch.autocast('cuda', dtype=torch.float16)
    return nullcontext()
