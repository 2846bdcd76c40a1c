# Copyright (c) mmdetr contributors. All rights reserved.
"""Hugging Face transformers' DETR for the tests: tiny random models built
offline (no hub, no timm), official weights under transformers' timm-layout
keys, and the comparison of an mmdetr DETR with a transformers one.

``official_to_hf_timm`` is the tests' own renaming, written from the module
names of both codebases (official ``backbone.0.body`` = transformers'
``model.backbone.conv_encoder.model`` for timm's ResNet, ``in_proj`` = q, k,
v rows ...), independent of :mod:`mmdetr.checkpoints.hf`.
"""
import re

import torch

from .batches import preprocess
from .parity import randomize_

TINY_HF = dict(
    num_queries=7, d_model=32, encoder_layers=2, decoder_layers=2,
    encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=4,
    decoder_attention_heads=4, dropout=0.0)
# a ResNet-50's blocks at an eighth of its width: stem 8, stages 32..256
TINY_RESNET50 = dict(
    embedding_size=8, depths=[3, 4, 6, 3], hidden_sizes=[32, 64, 128, 256],
    layer_type='bottleneck', out_features=['stage4'])


def tiny_hf_detr(labels=('dog', 'cat', 'bird'), seed=0, resnet=None,
                 **overrides):
    """A random ``DetrForObjectDetection`` with transformers' own ResNet
    (no timm needed), in evaluation mode: transformers' initialisation, every
    norm and BN statistic perturbed too (:func:`randomize_`)."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig
    config = DetrConfig(
        backbone_config=ResNetConfig(**(resnet or TINY_RESNET50)),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        **dict(TINY_HF, **overrides))
    return randomize_(DetrForObjectDetection(config), seed).eval()


def hf_inputs(inputs):
    """transformers' inputs for mmdetr's preprocessed batch: the same padded
    images and ``pixel_mask`` 1 on each image's valid pixels (mmdetr's mask
    is True on padding)."""
    images = inputs['inputs']
    mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.long)
    for i, sample in enumerate(inputs['data_samples']):
        h, w = sample.img_shape
        mask[i, :h, :w] = 1
    return dict(pixel_values=images, pixel_mask=mask)


def assert_matches_hf(model, hf_model, data, atol=1e-4):
    """The last decoder layer's logits and boxes of mmdetr's ``model``
    equal those of ``hf_model`` on the padded batch ``data``."""
    model.eval()
    hf_model.eval()
    with torch.no_grad():
        inputs = preprocess(model, data, False)
        cls, boxes = model(**inputs, mode='tensor')
        out = hf_model(**hf_inputs(inputs))
    torch.testing.assert_close(cls[-1][-1], out.logits, rtol=0, atol=atol)
    torch.testing.assert_close(boxes[-1][-1], out.pred_boxes, rtol=0,
                               atol=atol)


_OFFICIAL_TO_HF = [
    (r'^backbone\.0\.body\.', 'model.backbone.conv_encoder.model.'),
    (r'^input_proj\.', 'model.input_projection.'),
    (r'^query_embed\.', 'model.query_position_embeddings.'),
    (r'^transformer\.decoder\.norm\.', 'model.decoder.layernorm.'),
    (r'^transformer\.(encoder|decoder)\.layers\.', r'model.\1.layers.'),
    (r'\.multihead_attn\.', '.encoder_attn.'),
    (r'\.linear([12])\.', r'.fc\1.'),
    (r'(encoder\.layers\.\d+)\.norm1\.', r'\1.self_attn_layer_norm.'),
    (r'(encoder\.layers\.\d+)\.norm2\.', r'\1.final_layer_norm.'),
    (r'(decoder\.layers\.\d+)\.norm1\.', r'\1.self_attn_layer_norm.'),
    (r'(decoder\.layers\.\d+)\.norm2\.', r'\1.encoder_attn_layer_norm.'),
    (r'(decoder\.layers\.\d+)\.norm3\.', r'\1.final_layer_norm.'),
    (r'^class_embed\.', 'class_labels_classifier.'),
    (r'^bbox_embed\.', 'bbox_predictor.'),
]


def official_to_hf_timm(state_dict):
    """Official DETR weights under the keys transformers writes for a DETR
    with timm's ResNet (the hub's facebook/detr-resnet-* layout)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _OFFICIAL_TO_HF:
            key = re.sub(pattern, repl, key)
        match = re.match(r'^(.*)\.in_proj_(weight|bias)$', key)
        if match:
            for x, part in zip('qkv', value.chunk(3)):
                out[f'{match[1]}.{x}_proj.{match[2]}'] = part.clone()
        else:
            out[key] = value
    return out


def hf_timm_config(depth=50, dilation=False, labels=None, **overrides):
    """``config.json`` of a DETR with timm's ResNet, as transformers 4.x
    writes it (``use_timm_backbone``, ``backbone``, ``dilation``)."""
    labels = labels or [f'class_{i}' for i in range(3)]
    config = dict(
        model_type='detr', use_timm_backbone=True, backbone=f'resnet{depth}',
        dilation=dilation, position_embedding_type='sine',
        activation_function='relu', auxiliary_loss=False,
        id2label={str(i): name for i, name in enumerate(labels)},
        **dict(TINY_HF, **overrides))
    config.pop('dropout')
    return config
