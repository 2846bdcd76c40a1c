# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr/checkpoints/hf/ against the real transformers package.

transformers builds ``DetrForObjectDetection`` offline with random weights
and its own ResNet; timm (transformers' other backbone, the hub models')
cannot be installed here (it needs torchvision), so timm-layout checkpoints
are official weights under transformers' timm keys, renamed by the tests'
own table (helpers/hf.py) and compared with the paper-equation reference.
"""
import copy
import json

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from helpers import (ROOT, import_transformers, make_batch, mmdetr_cfg,
                     preprocess)
from helpers.hf import (assert_matches_hf, hf_inputs, hf_timm_config,
                        official_to_hf_timm, tiny_hf_detr)
from mmdetr.checkpoints.convert import convert_state_dict
from mmdetr.checkpoints.hf import (HFConversionError, apply_arch,
                                   arch_from_model, export_hf, hf_to_mmdetr,
                                   load_hf_checkpoint, mmdetr_to_hf)
from references.reference_detr import (OFFICIAL_COCO_NAMES, official_forward,
                                       official_state_dict)

transformers = import_transformers()

KEEP = [i for i, name in enumerate(OFFICIAL_COCO_NAMES) if name != 'N/A'
        ] + [91]
SIZES = ((64, 96), (80, 56))  # two images, so the batch is padded
DEFAULT_MODEL = Config.fromfile(
    f'{ROOT}/configs/detr_r50_8x2_150e_coco.py').model.to_dict()


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(copy.deepcopy(cfg))


def converted_model(state_dict, classes, arch):
    """mmdetr's DETR for a converted transformers DETR, weights loaded."""
    model = build(apply_arch(DEFAULT_MODEL, arch, len(classes)))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def batch(num_classes=3, seed=0):
    return make_batch(sizes=SIZES, num_boxes=(1, 2), num_classes=num_classes,
                      seed=seed)


@pytest.fixture(scope='module')
def hf_dir(tmp_path_factory):
    """A tiny transformers DETR (its own ResNet-50 layout, sine encoding),
    saved with save_pretrained."""
    path = tmp_path_factory.mktemp('hf') / 'detr'
    tiny_hf_detr(seed=1).save_pretrained(path)
    return path


def test_hf_resnet_checkpoint_matches_transformers(hf_dir):
    notes = []
    state_dict, classes, arch = load_hf_checkpoint(str(hf_dir), notes)
    assert classes == ('dog', 'cat', 'bird')
    assert (arch.depth, arch.base_channels, arch.dc5) == (50, 8, False)
    assert (arch.embed_dims, arch.num_heads, arch.num_queries) == (32, 4, 7)
    assert any('transformers\' ResNet' in n for n in notes)
    model = converted_model(state_dict, classes, arch)
    hf_model = transformers.DetrForObjectDetection.from_pretrained(hf_dir)
    assert_matches_hf(model, hf_model, batch())
    # the comparison is sharp: two crossed decoder norms no longer match
    swapped = dict(state_dict)
    swapped['bbox_head.transformer.decoder_layers.1.norm2.weight'], \
        swapped['bbox_head.transformer.decoder_layers.1.norm3.weight'] = \
        state_dict['bbox_head.transformer.decoder_layers.1.norm3.weight'], \
        state_dict['bbox_head.transformer.decoder_layers.1.norm2.weight']
    model.load_state_dict(swapped)
    with pytest.raises(AssertionError):
        assert_matches_hf(model, hf_model, batch())


def test_memory_names_bin_file_and_learned_encoding(tmp_path):
    """A state dict saved from a 5.x model in memory (``backbone.model``,
    ``o_proj``, ``mlp.fc1``) as pytorch_model.bin, with a learned position
    embedding and gelu."""
    hf_model = tiny_hf_detr(seed=2, position_embedding_type='learned',
                            activation_function='gelu')
    state_dict = hf_model.state_dict()
    assert any('.o_proj.' in k for k in state_dict)
    assert any(k.startswith('model.backbone.model.') for k in state_dict)
    torch.save(state_dict, tmp_path / 'pytorch_model.bin')
    hf_model.config.save_pretrained(tmp_path)
    sd, classes, arch = load_hf_checkpoint(
        str(tmp_path / 'pytorch_model.bin'), [])
    assert (arch.positional_encoding, arch.activation) == ('learned', 'gelu')
    assert_matches_hf(converted_model(sd, classes, arch), hf_model, batch())
    # 4.x kept the learned encoding under model.backbone.position_embedding
    old = {
        k.replace('model.position_embedding.',
                  'model.backbone.position_embedding.'): v
        for k, v in state_dict.items()
    }
    sd_4x, _, _ = hf_to_mmdetr(old, hf_model.config.to_dict(), [])
    assert all(torch.equal(sd_4x[k], sd[k]) for k in sd)


def test_mmdetr_model_exports_to_transformers(tmp_path):
    """mmdetr -> transformers: from_pretrained loads every key, same
    outputs; training-only parts are dropped with a note."""
    cfg = Config(dict(model=mmdetr_cfg(
        depth=50, embed_dims=32, ffn=64, enc=2, dec=1, queries=6,
        num_classes=2)))
    cfg.model['backbone']['base_channels'] = 8
    cfg.model['bbox_head'].update(type='GroupDETRHead', in_channels=256,
                                  num_query_groups=2)
    torch.manual_seed(0)
    model = build(cfg.model)
    from helpers import randomize_
    randomize_(model, seed=4)
    state_dict = dict(model.state_dict(), **{'aux_head.cls.weight':
                                              torch.zeros(2)})
    notes = []
    export_hf(model, cfg, state_dict, ('cat', 'hat'), str(tmp_path), notes)
    assert any('dropped' in n and 'group_query_embedding' in n
               for n in notes)
    hf_model, info = transformers.DetrForObjectDetection.from_pretrained(
        tmp_path, output_loading_info=True)
    assert not info['missing_keys'] and not info['unexpected_keys'] and \
        not info['mismatched_keys']
    assert hf_model.config.id2label == {0: 'cat', 1: 'hat'}
    assert_matches_hf(model, hf_model, batch(num_classes=2))


def test_official_to_mmdetr_to_transformers_gives_official_outputs(tmp_path):
    official = official_state_dict(depth=18, width=16, d=64, ffn=128, enc=2,
                                   dec=2, queries=20, seed=5)
    cfg = Config(dict(model=mmdetr_cfg(num_classes=80)))
    cfg.model['backbone']['base_channels'] = 16
    cfg.model['bbox_head']['in_channels'] = 128
    model = build(cfg.model)
    model.load_state_dict(convert_state_dict(official, 'official'))
    from mmdetr.checkpoints.class_names import coco_classes
    export_hf(model, cfg, model.state_dict(), coco_classes(), str(tmp_path),
              [])
    hf_model = transformers.DetrForObjectDetection.from_pretrained(
        tmp_path).eval()
    with torch.no_grad():
        inputs = preprocess(model, batch(num_classes=80), False)
        out = hf_model(**hf_inputs(inputs))
        shapes = [s.img_shape for s in inputs['data_samples']]
        ref_logits, ref_boxes = official_forward(official, inputs['inputs'],
                                                 shapes, 4)
    torch.testing.assert_close(out.logits, ref_logits[-1][..., KEEP],
                               rtol=0, atol=1e-4)
    torch.testing.assert_close(out.pred_boxes, ref_boxes[-1], rtol=0,
                               atol=1e-4)


# a ResNet-50 at a quarter of its width, a small transformer
OFFICIAL_R50 = dict(depth=50, width=16, d=32, ffn=64, enc=2, dec=1,
                    queries=7)


@pytest.mark.parametrize('dilation', [False, True], ids=['C5', 'DC5'])
def test_timm_layout_matches_official_detr(dilation):
    """The hub's layout (timm's ResNet), 4.x config fields; with
    ``dilation: true`` transformers builds timm's ResNet with output stride
    16, i.e. official DETR-DC5."""
    official = official_state_dict(**OFFICIAL_R50, num_logits=4, seed=6)
    hf = official_to_hf_timm(official)
    assert 'model.backbone.conv_encoder.model.layer1.0.conv1.weight' in hf
    config = hf_timm_config(dilation=dilation, num_queries=7,
                            decoder_layers=1)
    notes = []
    sd, classes, arch = hf_to_mmdetr(hf, config, notes)
    assert any('timm' in n for n in notes)
    assert arch.dc5 == dilation and classes == ('class_0', 'class_1',
                                                'class_2')
    model = converted_model(sd, classes, arch)
    assert (model.backbone.layer4[1].conv2.dilation == (2, 2)) == dilation
    with torch.no_grad():
        inputs = preprocess(model, batch(), False)
        cls, boxes = model(**inputs, mode='tensor')
        shapes = [s.img_shape for s in inputs['data_samples']]
        ref_logits, ref_boxes = official_forward(
            official, inputs['inputs'], shapes, 4, dilation=dilation)
    torch.testing.assert_close(cls[-1], ref_logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes[-1], ref_boxes, rtol=0, atol=1e-4)
    # 5.x writes a timm_backbone backbone_config instead
    config_5x = dict(config, backbone_config=dict(
        model_type='timm_backbone', backbone='resnet50',
        out_indices=[1, 2, 3, 4], **({'output_stride': 16}
                                     if dilation else {})))
    del config_5x['dilation'], config_5x['use_timm_backbone']
    assert hf_to_mmdetr(hf, config_5x, [])[2] == arch
    # and mmdetr writes the model back in this layout (as it writes DC5
    # models)
    out = mmdetr_to_hf(model.state_dict(), 'timm', [])
    assert set(out) == set(hf)
    assert all(torch.equal(out[k], hf[k]) for k in hf)


def test_dc5_export_is_read_back_by_transformers_config(tmp_path):
    """A DC5 model is written with timm's layout and dilation; transformers
    reads that config.json into timm's backbone with output stride 16
    (building it would need timm)."""
    cfg = Config(dict(model=mmdetr_cfg(depth=50, embed_dims=32, ffn=64,
                                       enc=1, dec=1, queries=5)))
    cfg.model['backbone'].update(type='DilatedResNet', strides=(1, 2, 2, 1),
                                 dilations=(1, 1, 1, 2))
    model = build(cfg.model)
    notes = []
    export_hf(model, cfg, model.state_dict(), 'abcde', str(tmp_path), notes)
    assert any('needs timm' in n for n in notes)
    config = transformers.DetrConfig.from_pretrained(tmp_path)
    assert config.dilation
    assert config.backbone_config.model_type == 'timm_backbone'
    assert config.backbone_config.backbone == 'resnet50'
    assert config.backbone_config.output_stride == 16
    # and it converts back to the same model
    sd, classes, arch = load_hf_checkpoint(str(tmp_path), [])
    assert arch == arch_from_model(model) and classes == tuple('abcde')
    own = model.state_dict()
    assert set(sd) == set(own)
    assert all(torch.equal(sd[k], own[k]) for k in own)


def test_coco_hub_classifier_drops_the_unused_ids():
    """The hub's COCO models have 91 labels (COCO ids, 'N/A' for the unused
    ones) + no-object; mmdetr keeps the 80 classes, in COCO's order."""
    official = official_state_dict(depth=18, d=64, ffn=128, enc=1, dec=1,
                                   queries=5, seed=7)
    config = hf_timm_config(depth=18, labels=OFFICIAL_COCO_NAMES,
                            num_queries=5, d_model=64, encoder_layers=1,
                            decoder_layers=1, encoder_ffn_dim=128,
                            decoder_ffn_dim=128)
    notes = []
    sd, classes, _ = hf_to_mmdetr(official_to_hf_timm(official), config,
                                  notes)
    from mmdetr.checkpoints.class_names import coco_classes
    assert classes == coco_classes()
    assert torch.equal(sd['bbox_head.fc_cls.weight'],
                       official['class_embed.weight'][KEEP])
    assert any("'N/A'" in n and '91 labels' in n for n in notes)


REFUSED = {
    'auxiliary_loss': (dict(auxiliary_loss=True),
                       'auxiliary_loss=True.*LayerNorm inside the layer'),
    'activation': (dict(activation_function='silu'),
                   "activation_function='silu'"),
    'heads': (dict(decoder_attention_heads=8),
              'decoder_attention_heads=8'),
    'model_type': (dict(model_type='conditional_detr'),
                   "model_type='conditional_detr'"),
    'resnet options': (dict(backbone_config=dict(
        model_type='resnet', downsample_in_bottleneck=True)),
        'downsample_in_bottleneck=True'),
    'labels': (dict(id2label={'0': 'a'}), 'id2label'),
}


@pytest.mark.parametrize('change,message', REFUSED.values(), ids=REFUSED)
def test_what_mmdetr_cannot_compute_is_refused(change, message):
    hf_model = tiny_hf_detr(seed=3)
    config = dict(hf_model.config.to_dict(), **change)
    with pytest.raises(HFConversionError, match=message):
        hf_to_mmdetr(hf_model.state_dict(), config, [])


@pytest.mark.parametrize('backbone', ['resnet50d', 'efficientnet_b0',
                                      'resnet101'])
def test_other_timm_backbones_are_refused(backbone):
    official = official_state_dict(**OFFICIAL_R50, num_logits=4)
    config = dict(hf_timm_config(), backbone=backbone)
    with pytest.raises(HFConversionError, match=f"backbone='{backbone}'"):
        hf_to_mmdetr(official_to_hf_timm(official), config, [])


def test_r101_timm_layout():
    """ResNet-101 (the hub's facebook/detr-resnet-101 layout): depth from
    the weights, agreeing with config.json's backbone."""
    official = official_state_dict(depth=101, width=8, d=32, ffn=64, enc=1,
                                   dec=1, queries=7, num_logits=4)
    config = hf_timm_config(depth=101, encoder_layers=1, decoder_layers=1)
    sd, _, arch = hf_to_mmdetr(official_to_hf_timm(official), config, [])
    assert (arch.depth, arch.base_channels) == (101, 8)
    assert 'backbone.layer3.22.conv3.weight' in sd
    with pytest.raises(HFConversionError, match="backbone='resnet50'"):
        hf_to_mmdetr(official_to_hf_timm(official),
                     dict(config, backbone='resnet50'), [])


def test_incomplete_attention_is_refused():
    state_dict = {
        k: v
        for k, v in tiny_hf_detr(seed=3).state_dict().items()
        if 'encoder.layers.0.self_attn.k_proj' not in k
    }
    with pytest.raises(HFConversionError, match='not all of q_proj'):
        hf_to_mmdetr(state_dict, {}, [])


EXPORT_REFUSED = {
    'pre-norm': (dict(normalize_before=True), 'pre-norm'),
    'ResNeXt': (dict(depth=50), 'ResNeXt.*plain ResNet'),
    'sigmoid': (dict(), 'sigmoid'),
    'mmdet dilation': (dict(), 'use DilatedResNet'),
}


@pytest.mark.parametrize('kind', EXPORT_REFUSED, ids=EXPORT_REFUSED)
def test_what_transformers_cannot_hold_is_refused(kind, tmp_path):
    overrides, message = EXPORT_REFUSED[kind]
    cfg = mmdetr_cfg(**overrides)
    if kind == 'sigmoid':
        cfg['bbox_head']['loss_cls'] = dict(type='FocalLoss',
                                            use_sigmoid=True)
    if kind == 'ResNeXt':
        cfg['backbone'].update(type='mmdet.ResNeXt', groups=4, base_width=4)
    if kind == 'mmdet dilation':
        cfg['backbone'].update(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))
    model = build(cfg)
    with pytest.raises(HFConversionError, match=message):
        export_hf(model, Config(dict(model=cfg)), model.state_dict(),
                  tuple('abcde'), str(tmp_path / 'out'), [])
    assert not (tmp_path / 'out').exists()


def test_preprocessor_config_follows_the_test_pipeline(tmp_path):
    """The recipe's test pipeline and data preprocessor (a tiny model in
    place of its R50)."""
    cfg = Config.fromfile(f'{ROOT}/configs/detr_r50_8x2_150e_coco.py')
    cfg.model = mmdetr_cfg(num_classes=80)
    model = build(cfg.model)
    from mmdetr.checkpoints.class_names import coco_classes
    export_hf(model, cfg, model.state_dict(), coco_classes(), str(tmp_path),
              [])
    with open(tmp_path / 'preprocessor_config.json') as f:
        pre = json.load(f)
    assert pre['size'] == dict(shortest_edge=800, longest_edge=1333)
    assert pre['image_mean'] == pytest.approx([0.485, 0.456, 0.406],
                                              abs=1e-6)
    assert pre['image_std'] == pytest.approx([0.229, 0.224, 0.225], abs=1e-3)
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    assert processor.size['shortest_edge'] == 800
