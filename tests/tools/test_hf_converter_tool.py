# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/model_converters/detr_to_mmdetr.py with Hugging Face transformers
DETRs (tiny, random, built offline in the test): in (--from hf, auto),
out (--to hf, from_pretrained, pipeline), load_from, and the refusals."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from scipy.optimize import linear_sum_assignment

from helpers import (ROOT, import_transformers, load_ckpt, load_tool,
                     make_batch)
from helpers.hf import assert_matches_hf, tiny_hf_detr
from mmdetr.checkpoints import CONVERT_PREFIX

transformers = import_transformers()
converter = load_tool('tools/model_converters/detr_to_mmdetr.py',
                      'detr_to_mmdetr')
image_demo = load_tool('tools/demo/image_demo.py', 'image_demo')

# helpers.hf's tiny transformers DETR as an mmdetr config: a delta on the
# R50 recipe, with the classes and a test resize the tests choose
TINY_CONFIG = '''
_base_ = {base!r}
metainfo = dict(classes={classes!r})
model = dict(
    backbone=dict(base_channels=8, init_cfg=None),
    bbox_head=dict(
        num_classes={num_classes}, in_channels=256, num_query=7,
        transformer=dict(embed_dims=32, num_heads={heads},
                         num_encoder_layers=2, num_decoder_layers=2,
                         feedforward_channels=64, dropout=0.0),
        positional_encoding=dict(num_feats=16)),
    test_cfg=dict(max_per_img=7))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(dataset=dict(metainfo=metainfo))
val_dataloader = dict(dataset=dict(metainfo=metainfo,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
'''


def write_config(tmp_path, classes=('dog', 'cat', 'bird'), heads=4,
                 name='tiny.py'):
    path = tmp_path / name
    path.write_text(TINY_CONFIG.format(
        base=osp.join(ROOT, 'configs', 'detr_r50_8x2_150e_coco.py'),
        classes=tuple(classes), num_classes=len(classes), heads=heads))
    return str(path)


def convert(*args):
    """The converter's exit: 0, or the message it exits with."""
    try:
        return converter.main([str(a) for a in args])
    except SystemExit as e:
        return e.code


def build_from(config, checkpoint):
    """The model of ``config`` with ``checkpoint``'s weights, as
    tools/demo/image_demo.py builds it (without weights: its model,
    built as a runner builds it)."""
    if checkpoint is not None:
        return image_demo.init_model(config, str(checkpoint), 'cpu')
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(Config.fromfile(config).model)


@pytest.fixture(scope='module')
def hf_model():
    """Random weights, with the object queries and the box head scaled up
    so that the queries' detections differ from each other."""
    model = tiny_hf_detr(seed=11)
    with torch.no_grad():
        model.model.query_position_embeddings.weight.mul_(10)
        model.bbox_predictor.layers[2].weight.mul_(5)
    return model


@pytest.fixture(scope='module')
def hf_dir(tmp_path_factory, hf_model):
    path = tmp_path_factory.mktemp('hub') / 'detr-tiny'
    hf_model.save_pretrained(path)
    return path


def test_hf_directory_converts_with_its_own_classes(hf_dir, hf_model,
                                                    tmp_path, capsys):
    dst = tmp_path / 'mmdetr.pth'
    assert convert(*[str(hf_dir), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'detected layout: hf' in out
    # what a config for these weights needs is printed
    assert "'num_query': 7" in out and "'base_channels': 8" in out
    assert "'num_classes': 3" in out
    assert "metainfo=dict(classes=('dog', 'cat', 'bird'))" in out
    saved = load_ckpt(str(dst))
    assert saved['meta']['converted_from'] == 'hf'
    assert saved['meta']['dataset_meta']['classes'] == ('dog', 'cat', 'bird')
    # the printed needs, as a config, give transformers' outputs
    model = build_from(write_config(tmp_path), dst)
    assert_matches_hf(model, hf_model, make_batch(
        sizes=((64, 96), (80, 56)), num_boxes=(1, 0), num_classes=3))


def test_weights_file_with_config_beside_and_from_hf(hf_dir, tmp_path):
    dst = tmp_path / 'a.pth'
    assert convert(*[
        str(hf_dir / 'model.safetensors'), str(dst), '--from', 'hf',
        '--config', write_config(tmp_path)]) == 0
    assert dst.exists()
    # a bare state dict with transformers' keys, no config.json: refused
    bare = tmp_path / 'bare' / 'weights.pth'
    bare.parent.mkdir()
    torch.save(tiny_hf_detr(seed=1).state_dict(), bare)
    code = convert(*[str(bare), str(tmp_path / 'b.pth')])
    assert 'need their config.json' in str(code)
    assert not (tmp_path / 'b.pth').exists()


def test_reordered_classes_give_transformers_scores_per_class(
        hf_dir, hf_model, tmp_path, capsys):
    """Fine-tuned in transformers on (dog, cat, bird), converted for a
    config of (bird, cat, dog): every class name keeps its score."""
    config = write_config(tmp_path, classes=('bird', 'cat', 'dog'))
    dst = tmp_path / 'reordered.pth'
    assert convert(*[str(hf_dir), str(dst), '--config', config]) == 0
    assert '3 rows copied by class name' in capsys.readouterr().out
    model = build_from(config, dst)
    data = make_batch(sizes=((64, 96), ), num_boxes=(1, ), num_classes=3)
    with torch.no_grad():
        inputs = model.data_preprocessor(data, False)
        cls, _ = model(**inputs, mode='tensor')
        ours = cls[-1][-1].softmax(-1)[0]
        theirs = hf_model(pixel_values=inputs['inputs']).logits.softmax(
            -1)[0]
    hf_names = hf_model.config.id2label
    for i, name in enumerate(('bird', 'cat', 'dog')):
        j = next(k for k, v in hf_names.items() if v == name)
        torch.testing.assert_close(ours[:, i], theirs[:, j], rtol=0,
                                   atol=1e-5)
    torch.testing.assert_close(ours[:, -1], theirs[:, -1], rtol=0, atol=1e-5)


def test_config_that_disagrees_is_refused_naming_the_field(hf_dir, tmp_path):
    dst = tmp_path / 'x.pth'
    code = convert(*[str(hf_dir), str(dst), '--config',
                           write_config(tmp_path, heads=8)])
    assert 'num_heads=4 (encoder_attention_heads), the model has 8' in \
        str(code)
    assert not dst.exists()


def test_auxiliary_loss_checkpoint_is_refused(tmp_path):
    path = tmp_path / 'aux'
    tiny_hf_detr(seed=2, auxiliary_loss=True).save_pretrained(path)
    code = convert(*[str(path), str(tmp_path / 'x.pth')])
    assert 'auxiliary_loss=True' in str(code)
    assert 'LayerNorm inside the layer loop' in str(code)
    assert not (tmp_path / 'x.pth').exists()


def test_export_loads_and_pipeline_detects_as_image_demo(
        hf_dir, tmp_path, capsys):
    """mmdetr -> transformers: from_pretrained loads every key, and
    ``pipeline('object-detection')`` on an image file finds what
    tools/demo/image_demo.py finds (an image the test resize keeps)."""
    config = write_config(tmp_path)
    ckpt = tmp_path / 'mmdetr.pth'
    assert convert(*[str(hf_dir), str(ckpt), '--config', config]) == 0
    out_dir = tmp_path / 'exported'
    assert convert(*[str(ckpt), str(out_dir), '--to', 'hf',
                           '--config', config]) == 0
    assert 'wrote a transformers DETR (mmdetr -> hf, 3 classes)' in \
        capsys.readouterr().out
    with open(out_dir / 'config.json') as f:
        assert json.load(f)['id2label'] == {'0': 'dog', '1': 'cat',
                                            '2': 'bird'}
    _, info = transformers.DetrForObjectDetection.from_pretrained(
        out_dir, output_loading_info=True)
    assert not any(info.values())

    img = tmp_path / 'img.png'
    rng = np.random.default_rng(0)
    cv2.imwrite(str(img), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    pipe = transformers.pipeline('object-detection', model=str(out_dir))
    theirs = pipe(str(img), threshold=0.0)
    from mmdet.apis import inference_detector
    model = build_from(config, ckpt)
    pred = inference_detector(model, str(img)).pred_instances
    assert len(theirs) == len(pred) == 7
    classes = model.dataset_meta['classes']
    # transformers' boxes are whole pixels and not clipped to the image
    boxes = torch.tensor([[d['box'][k] for k in ('xmin', 'ymin', 'xmax',
                                                 'ymax')] for d in theirs],
                         dtype=torch.float32)
    boxes = boxes.clamp(min=0) .minimum(torch.tensor([96., 64, 96, 64]))
    scores = torch.tensor([d['score'] for d in theirs])
    cost = torch.cdist(pred.bboxes, boxes, p=1) + 1e3 * (
        pred.scores[:, None] - scores[None]).abs()
    rows, cols = linear_sum_assignment(cost.numpy())
    assert [classes[i] for i in pred.labels[rows]] == \
        [theirs[j]['label'] for j in cols]
    torch.testing.assert_close(pred.scores[rows], scores[cols], rtol=0,
                               atol=1e-3)
    assert (pred.bboxes[rows] - boxes[cols]).abs().max() <= 1


def test_unexportable_model_is_refused_with_the_reason(tmp_path):
    config = tmp_path / 'prenorm.py'
    config.write_text(open(write_config(tmp_path)).read() +
                      'model.update(bbox_head=dict(model["bbox_head"], '
                      'transformer=dict(model["bbox_head"]["transformer"], '
                      'normalize_before=True)))\n')
    cfg = Config.fromfile(str(config))
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'prenorm.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    code = convert(*[str(ckpt), str(tmp_path / 'out'), '--to', 'hf',
                           '--config', str(config)])
    assert 'pre-norm' in str(code)
    assert not (tmp_path / 'out').exists()


def test_mmdetr_convert_scheme_reads_a_transformers_directory(
        hf_dir, hf_model, tmp_path):
    from mmengine.runner import load_checkpoint
    model = build_from(write_config(tmp_path), None)
    checkpoint = load_checkpoint(model, CONVERT_PREFIX + str(hf_dir),
                                 strict=True)
    assert checkpoint['meta']['dataset_meta']['classes'] == ('dog', 'cat',
                                                             'bird')
    assert checkpoint['meta']['hf_architecture']['num_heads'] == 4
    assert_matches_hf(model, hf_model, make_batch(
        sizes=((64, 96), (80, 56)), num_boxes=(1, 0), num_classes=3))


@pytest.mark.slow  # mmengine's Runner runs a process (collect_env)
def test_load_from_a_transformers_directory(hf_dir, hf_model, tmp_path):
    from mmdetr.engine import Runner
    cfg = Config.fromfile(write_config(tmp_path))
    runner = Runner(model=cfg.model, work_dir=str(tmp_path / 'work'),
                    load_from=CONVERT_PREFIX + str(hf_dir),
                    default_scope='mmdet')
    runner.load_or_resume()
    assert_matches_hf(runner.model, hf_model, make_batch(
        sizes=((64, 96), (80, 56)), num_boxes=(1, 0), num_classes=3))
    # a model whose heads differ would load every key: refused instead
    cfg = Config.fromfile(write_config(tmp_path, heads=8, name='h8.py'))
    runner = Runner(model=cfg.model, work_dir=str(tmp_path / 'work8'),
                    load_from=CONVERT_PREFIX + str(hf_dir),
                    default_scope='mmdet')
    with pytest.raises(ValueError, match='num_heads=4'):
        runner.load_or_resume()


@pytest.mark.slow
def test_full_size_r50_both_ways(tmp_path):
    """transformers' full-size R50 DETR (its own ResNet, 91 COCO labels)
    converts into the default config, and that model exports back with
    every key in place."""
    from mmdetr.checkpoints.class_names import coco_classes
    from references.reference_detr import OFFICIAL_COCO_NAMES
    config = transformers.DetrConfig(
        backbone_config=transformers.ResNetConfig(
            depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048],
            layer_type='bottleneck', out_features=['stage4']),
        num_labels=91, id2label=dict(enumerate(OFFICIAL_COCO_NAMES)))
    transformers.DetrForObjectDetection(config).save_pretrained(
        tmp_path / 'hub')
    assert convert(*[str(tmp_path / 'hub'), str(tmp_path / 'r50.pth'),
                           '--config', converter.DEFAULT_CONFIGS['mmdetr']
                           ]) == 0
    saved = load_ckpt(str(tmp_path / 'r50.pth'))
    assert saved['meta']['dataset_meta']['classes'] == coco_classes()
    assert convert(*[str(tmp_path / 'r50.pth'), str(tmp_path / 'out'),
                           '--to', 'hf']) == 0
    _, info = transformers.DetrForObjectDetection.from_pretrained(
        tmp_path / 'out', output_loading_info=True)
    assert not any(info.values())
