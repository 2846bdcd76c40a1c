# Copyright (c) mmdetr contributors. All rights reserved.
"""Writing an mmdetr DETR as a transformers DETR directory, which
``DetrForObjectDetection.from_pretrained`` and
``pipeline('object-detection')`` load: the weights under the keys
``save_pretrained`` writes, ``config.json`` from the model's
:class:`~mmdetr.checkpoints.hf.arch.DetrArch` and class names, and
``preprocessor_config.json`` from the config's test pipeline.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from torch import Tensor

from ..convert import drop_training_only, rename_keys
from .arch import RESNET_DEPTHS, DetrArch, arch_from_model
from .layout import (CONFIG_FILE, HF_RULES, PREPROCESSOR_FILE,
                     SAFETENSORS_FILE, HFConversionError, split_qkv)


def mmdetr_to_hf(state_dict: Dict[str, Tensor], layout: str,
                 notes: List[str]) -> 'OrderedDict[str, Tensor]':
    """mmdetr's weights under the keys ``save_pretrained`` writes.

    Args:
        state_dict (dict): mmdetr's DETR weights.
        layout (str): The backbone layout to write, ``'resnet'`` or
            ``'timm'``.
        notes (list): Receives a line for what is dropped.

    Returns:
        OrderedDict: contiguous tensors that share no memory (as safetensors
        requires), attention ``in_proj_*`` split into q/k/v_proj.
    """
    state_dict = drop_training_only(state_dict, notes)
    state_dict = OrderedDict((k, v) for k, v in state_dict.items()
                             if not k.endswith('.num_batches_tracked'))
    theirs, unplaced = rename_keys(state_dict, HF_RULES[layout],
                                   to_mmdetr=False)
    if unplaced:
        raise HFConversionError(
            f'{len(unplaced)} keys have no place in transformers\' DETR, '
            f'e.g. {unplaced[:5]}')
    # safetensors wants contiguous tensors that share no memory (the q/k/v
    # chunks are copies already)
    return OrderedDict(
        (k, v.detach().contiguous()) for k, v in split_qkv(theirs).items())


def hf_config(arch: DetrArch, classes: Sequence[str]) -> dict:
    """``config.json`` of a transformers DETR with ``arch`` and ``classes``.

    The backbone is transformers' own ResNet, which loads without timm; a
    DC5 model gets timm's (transformers dilates only timm's ResNet, so
    loading it needs timm installed).
    """
    config = dict(
        model_type='detr', architectures=['DetrForObjectDetection'],
        d_model=arch.embed_dims, encoder_layers=arch.num_encoder_layers,
        decoder_layers=arch.num_decoder_layers,
        encoder_attention_heads=arch.num_heads,
        decoder_attention_heads=arch.num_heads,
        encoder_ffn_dim=arch.feedforward_channels,
        decoder_ffn_dim=arch.feedforward_channels,
        num_queries=arch.num_queries, activation_function=arch.activation,
        position_embedding_type=arch.positional_encoding,
        auxiliary_loss=False, dilation=arch.dc5, num_channels=3,
        id2label={str(i): name for i, name in enumerate(classes)},
        label2id={name: i for i, name in enumerate(classes)})
    if arch.dc5:
        # what 4.x writes; 5.x reads it into a timm_backbone config with
        # output_stride 16
        config.update(use_timm_backbone=True, backbone=f'resnet{arch.depth}',
                      use_pretrained_backbone=False, backbone_config=None)
    else:
        bottleneck = arch.depth >= 50
        config.update(
            use_timm_backbone=False, backbone=None,
            use_pretrained_backbone=False,
            backbone_config=dict(
                model_type='resnet', num_channels=3,
                embedding_size=arch.stem_channels,
                hidden_sizes=[
                    arch.base_channels * (4 if bottleneck else 1) * 2**i
                    for i in range(4)
                ],
                depths=list(next(blocks for (blocks, b), depth in
                                 RESNET_DEPTHS.items()
                                 if depth == arch.depth and b == bottleneck)),
                layer_type='bottleneck' if bottleneck else 'basic',
                hidden_act='relu', downsample_in_first_stage=False,
                downsample_in_bottleneck=False, out_features=['stage4']))
    return config


def preprocessor_config(cfg) -> Tuple[dict, List[str]]:
    """``preprocessor_config.json`` of transformers' ``DetrImageProcessor``
    doing what the config's test pipeline and data preprocessor do: resize
    (shorter side, longer side at most), scale to [0, 1] and normalise with
    the same mean and std, pad at the bottom/right.

    Returns:
        tuple: the dict and notes on what could not be carried over.
    """
    notes = []
    preprocessor = cfg.model.get('data_preprocessor') or {}
    mean = preprocessor.get('mean') or [0., 0., 0.]
    std = preprocessor.get('std') or [1., 1., 1.]
    if not preprocessor.get('bgr_to_rgb', False):
        raise HFConversionError(
            'the model\'s data_preprocessor has bgr_to_rgb=False: the model '
            'reads BGR images; transformers feeds RGB')
    size = dict(shortest_edge=800, longest_edge=1333)
    pipeline = (cfg.get('test_dataloader') or {}).get('dataset', {}).get(
        'pipeline') or cfg.get('test_pipeline') or []
    resizes = [t for t in pipeline if t.get('type') in ('Resize',
                                                        'mmdet.Resize')]
    if resizes and resizes[0].get('keep_ratio') and resizes[0].get('scale'):
        scale = resizes[0]['scale']
        scale = (scale, scale) if isinstance(scale, int) else scale
        size = dict(shortest_edge=min(scale), longest_edge=max(scale))
    else:
        notes.append('preprocessor: no keep-ratio Resize with a scale in the '
                     'test pipeline; wrote transformers\' default (shorter '
                     'side 800, longer at most 1333)')
    config = dict(
        image_processor_type='DetrImageProcessor', format='coco_detection',
        do_resize=True, size=size, resample=2, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True,
        image_mean=[m / 255 for m in mean], image_std=[s / 255 for s in std],
        do_pad=True, do_convert_annotations=True)
    return config, notes


def write_hf_dir(dst: str, state_dict: Dict[str, Tensor], config: dict,
                 preprocessor: dict, metadata: Optional[dict] = None) -> None:
    """Write ``config.json``, ``model.safetensors`` and
    ``preprocessor_config.json`` into directory ``dst`` (made if needed);
    each file is written beside its place and renamed over it, so an
    interrupted export never leaves a truncated file. Other files in
    ``dst`` stay."""
    from safetensors.torch import save_file
    if osp.exists(dst) and not osp.isdir(dst):
        raise HFConversionError(f'{dst}: exists and is not a directory')
    os.makedirs(dst, exist_ok=True)

    def write_json(obj):
        return lambda tmp: _dump_json(obj, tmp)

    writers = {
        SAFETENSORS_FILE: lambda tmp: save_file(
            dict(state_dict), tmp, metadata=dict(format='pt', **(
                metadata or {}))),
        CONFIG_FILE: write_json(config),
        PREPROCESSOR_FILE: write_json(preprocessor),
    }
    for name, write in writers.items():
        path = osp.join(dst, name)
        tmp = osp.join(dst, f'.{name}.tmp.{os.getpid()}')
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)


def _dump_json(obj, path):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write('\n')


def export_hf(model, cfg, state_dict: Dict[str, Tensor],
              classes: Sequence[str], dst: str, notes: List[str]) -> DetrArch:
    """Write an mmdetr DETR as a transformers DETR directory
    (:func:`write_hf_dir`) that ``DetrForObjectDetection.from_pretrained``
    and ``pipeline('object-detection')`` load.

    Args:
        model (nn.Module): The DETR built from ``cfg``, holding
            ``state_dict``; its architecture is read from it.
        cfg (Config): Its config (test pipeline and data preprocessor for
            ``preprocessor_config.json``).
        state_dict (dict): Its weights, mmdetr's keys.
        classes (sequence[str]): Its class names, written as ``id2label``.
        dst (str): The directory.
        notes (list): Receives a line for what is dropped or needs care.

    Returns:
        DetrArch: what was written.

    Raises:
        HFConversionError: the model is one transformers' DETR cannot hold
            (the message says why); nothing is written then.
    """
    arch = arch_from_model(model)
    if len(classes) != model.bbox_head.num_classes:
        raise HFConversionError(
            f'{len(classes)} class names for a classifier of '
            f'{model.bbox_head.num_classes} classes')
    layout = 'resnet'
    if arch.dc5:
        if (arch.stem_channels, arch.base_channels) != (64, 64):
            raise HFConversionError(
                'a DC5 model is written with timm\'s ResNet, which has 64 '
                f'stem and base channels, not {arch.stem_channels}/'
                f'{arch.base_channels}')
        layout = 'timm'
        notes.append(
            'DC5: written with timm\'s ResNet (transformers dilates only '
            'timm\'s ResNet): from_pretrained needs timm installed')
    tensors = mmdetr_to_hf(state_dict, layout, notes)
    preprocessor, more_notes = preprocessor_config(cfg)
    notes.extend(more_notes)
    write_hf_dir(dst, tensors, hf_config(arch, classes), preprocessor)
    return arch
