# Copyright (c) mmdetr contributors. All rights reserved.
"""Checkpoints in the layouts of other codebases, made from state dicts the
tests build: mmdet 2.x's keys, official DETR's file."""
import argparse
import re

import torch

from references.reference_detr import official_state_dict

# mmdet 3.x key -> mmdet 2.x key (mmdet 2.28 with mmcv 1.x); the rest
# (backbone, bbox_head.fc_cls / reg_ffn / fc_reg) is named alike
_TO_MMDET2 = [
    (r'^neck\.convs\.0\.conv\.', 'bbox_head.input_proj.'),
    (r'^query_embedding\.', 'bbox_head.query_embedding.'),
    (r'^decoder\.post_norm\.', 'bbox_head.transformer.decoder.post_norm.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.self_attn\.',
     r'bbox_head.transformer.\1.layers.\2.attentions.0.'),
    (r'^decoder\.layers\.(\d+)\.cross_attn\.',
     r'bbox_head.transformer.decoder.layers.\1.attentions.1.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.ffn\.',
     r'bbox_head.transformer.\1.layers.\2.ffns.0.'),
    (r'^(encoder|decoder)\.layers\.(\d+)\.norms\.',
     r'bbox_head.transformer.\1.layers.\2.norms.'),
]


def mmdet2_state_dict(mmdet3_state_dict):
    """An mmdet 3.x DETR state dict under mmdet 2.x's keys."""
    out = {}
    for key, value in mmdet3_state_dict.items():
        for pattern, repl in _TO_MMDET2:
            key, n = re.subn(pattern, repl, key)
            if n:
                break
        out[key] = value
    return out


def official_checkpoint(tmp_path, **arch):
    """An official-layout file as facebookresearch/detr's main.py saves it:
    ``model``, ``optimizer``, ``epoch`` and the ``argparse.Namespace`` of its
    command line under ``args``."""
    arch = dict(dict(depth=18, d=64, ffn=128, enc=2, dec=2, queries=20),
                **arch)
    state_dict = official_state_dict(**arch)
    args = argparse.Namespace(
        backbone=f'resnet{arch["depth"]}', dilation=False,
        position_embedding='sine', hidden_dim=arch['d'], nheads=4,
        dim_feedforward=arch['ffn'], enc_layers=arch['enc'],
        dec_layers=arch['dec'], num_queries=arch['queries'], pre_norm=False,
        lr=1e-4, dataset_file='coco')
    path = tmp_path / 'detr-official.pth'
    torch.save(dict(model=state_dict, optimizer={}, epoch=499, args=args),
               path)
    return path, state_dict
