# Copyright (c) mmdetr contributors. All rights reserved.
"""ONNX export (mmdetr.deploy, tools/deployment/): the exported graph gives
the detections of mmdetr's PyTorch ``predict`` on the same padded batch, at
any batch size and padded size, runs without torch, and refuses mismatched
configs and unexportable settings by name."""
import copy
import json
import os
import os.path as osp
import pickle
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import (build_mmdetr, copypaste_ap, load_tool, mmdetr_cfg, run,
                     write_tiny_train_config)
from mmengine.config import Config

onnx = pytest.importorskip('onnx', reason='pip install onnx')
ort = pytest.importorskip('onnxruntime', reason='pip install onnxruntime')

from mmdetr.deploy import ExportSettingError  # noqa: E402
from mmdetr.deploy.errors import DeployMismatchError  # noqa: E402
from mmdetr.deploy.export import (ExportableDETR, export_onnx,  # noqa: E402
                                  torchscript_exporter)
from mmdetr.deploy.ort_detector import ORTDetector, make_session  # noqa
from mmdetr.deploy.verify import (compare_with_pytorch,  # noqa: E402
                                  random_batch, within_tolerance)

pytorch2onnx = load_tool('tools/deployment/pytorch2onnx.py', 'pytorch2onnx')
deploy_test = load_tool('tools/deployment/test.py', 'deploy_test')

THREE_SIZES = [(96, 128), (64, 80), (120, 56)]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny mmdetr DETR (R18, 64-d, 2+2 layers, 20 queries, 5 classes)
    exported with a dynamic batch and size, and its ORT session."""
    model = build_mmdetr().eval()
    path = str(tmp_path_factory.mktemp('deploy') / 'tiny.onnx')
    export_onnx(model, path, shape=(96, 128), dynamic=True)
    return model, path, make_session(path)


def test_export_computes_with_the_heads_own_functions(monkeypatch):
    """One implementation of the padding mask, the transformer step, the
    predictors and the post-processing: the exported module computes with
    the head's, so a change to them is a change to the export."""
    from mmdetr.deploy import export
    from mmdetr.models import detr_head, padding_mask
    assert export.feature_padding_mask is padding_mask.feature_padding_mask
    assert detr_head.feature_padding_mask is padding_mask.feature_padding_mask
    assert export.top_detections is detr_head.top_detections

    model = build_mmdetr().eval()
    head = model.bbox_head
    calls = []
    forward_transformer, predict_layers = (head.forward_transformer,
                                           head.predict_layers)

    def counted_transformer(*args, **kwargs):
        calls.append('forward_transformer')
        return forward_transformer(*args, **kwargs)

    def class_1_everywhere(hidden_states):
        calls.append('predict_layers')
        cls_scores, bbox_preds = predict_layers(hidden_states)
        cls_scores = cls_scores.clone()
        cls_scores[..., 1] += 100.
        return cls_scores, bbox_preds

    monkeypatch.setattr(head, 'forward_transformer', counted_transformer)
    monkeypatch.setattr(head, 'predict_layers', class_1_everywhere)
    inputs, samples = random_batch(model, THREE_SIZES)
    img_shape = torch.tensor([s.img_shape for s in samples])
    with torch.no_grad():
        _, labels = ExportableDETR(model)(inputs, img_shape)
    assert calls == ['forward_transformer', 'predict_layers']
    assert (labels == 1).all()  # the changed predictor decided every label


@pytest.mark.parametrize('sizes', [[(96, 128)], THREE_SIZES],
                         ids=['batch1', 'batch3'])
def test_onnx_matches_pytorch_predict(tiny, sizes):
    model, _, session = tiny
    diffs = compare_with_pytorch(model, session, sizes, seed=len(sizes))
    assert diffs['num_dets'] == 20 * len(sizes)  # every detection compared
    assert within_tolerance(diffs), diffs


def test_graph_layout_and_metadata(tiny):
    model, path, session = tiny
    inputs, samples = random_batch(model, THREE_SIZES)
    img_shape = np.array([s.img_shape for s in samples], np.int64)
    dets, labels = session.run(None, {'input': inputs.numpy(),
                                      'img_shape': img_shape})
    assert dets.shape == (3, 20, 5) and labels.shape == (3, 20)
    assert labels.dtype == np.int64 and 0 <= labels.min() <= labels.max() < 5
    # best first, boxes inside each image's valid area
    assert (np.diff(dets[..., 4], axis=1) <= 0).all()
    for i, (h, w) in enumerate(img_shape):
        assert dets[i, :, [0, 2]].max() <= w and dets[i, :, [1, 3]].max() <= h
        assert dets[i, :, :4].min() >= 0
    # the exporter's example input was 96x128: the sizes are not baked in
    assert tuple(inputs.shape[2:]) == (120, 128)
    meta = json.loads(onnx.load(path).metadata_props[0].value)
    assert meta['num_dets'] == 20 and meta['dynamic'] is True


def test_exportable_module_matches_without_onnx(tiny):
    """The traced module itself (no ONNX) gives predict's detections: the
    rewrite of the head's forward and get_bboxes is exact."""
    model = tiny[0]
    inputs, samples = random_batch(model, THREE_SIZES, seed=5)
    img_shape = torch.tensor([s.img_shape for s in samples])
    with torch.no_grad():
        dets, labels = ExportableDETR(model)(inputs, img_shape)
    results = model.predict(inputs, copy.deepcopy(samples), rescale=False)
    for i, r in enumerate(results):
        assert torch.equal(labels[i], r.pred_instances.labels)
        torch.testing.assert_close(dets[i, :, 4], r.pred_instances.scores)
        torch.testing.assert_close(dets[i, :, :4], r.pred_instances.bboxes)


def test_unexportable_settings_are_named(tiny, tmp_path):
    model = tiny[0]
    with pytest.raises(ExportSettingError, match='opset_version=13'):
        export_onnx(model, str(tmp_path / 'x.onnx'), opset_version=13)
    with pytest.raises(ExportSettingError, match='shape='):
        export_onnx(model, str(tmp_path / 'x.onnx'), shape=(0, 64))
    sigmoid = copy.deepcopy(model)
    sigmoid.bbox_head.use_sigmoid = True
    sigmoid.bbox_head.test_cfg = dict(max_per_img=1000)
    with pytest.raises(ExportSettingError, match='max_per_img=1000'):
        export_onnx(sigmoid, str(tmp_path / 'x.onnx'))
    with pytest.raises(ExportSettingError, match='only mmdetr'):
        ExportableDETR(torch.nn.Linear(2, 2))
    assert not (tmp_path / 'x.onnx').exists()


def test_foreign_onnx_layout_is_refused(tmp_path):
    path = str(tmp_path / 'linear.onnx')
    torch.onnx.export(torch.nn.Linear(4, 5), (torch.zeros(1, 4), ), path,
                      input_names=['x'], **torchscript_exporter())
    with pytest.raises(DeployMismatchError) as e:
        ORTDetector(path)
    assert path in str(e.value) and "x tensor(float) [1, 4]" in str(e.value)
    assert 'img_shape (N, 2)' in str(e.value)


# --------------------------------------------------------------- the tools
TRAIN_ITERS = 60
# train and test on the 6 train images (a few dozen iterations make the
# tiny model find some of them, so the AP compared is not 0); an infinite
# sampler: mmengine's iteration loop sleeps 2 s whenever a sampler runs out
_OVERFIT = f"""
train_dataloader.update(
    batch_size=3, sampler=dict(type='InfiniteSampler', shuffle=True))
test_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/train.json',
                 data_prefix=dict(img='train/'), pipeline=test_pipeline,
                 test_mode=True))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_evaluator = dict(type='CocoMetric',
                      ann_file=data_root + 'annotations/train.json',
                      metric='bbox')
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                 max_iters={TRAIN_ITERS}, val_interval={TRAIN_ITERS + 1})
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=2e-3))
default_hooks = dict(checkpoint=dict(interval={TRAIN_ITERS + 1},
                                     save_last=False),
                     logger=dict(interval=50))
log_level = 'WARNING'
"""


@pytest.fixture(scope='module')
def trained(coco_root, tmp_path_factory):
    """A tiny model trained for a few dozen iterations on the generated
    dataset, tested by tools/test.py's code (build_cfg, build_runner) and
    exported by pytorch2onnx.py --dynamic-export --verify."""
    import contextlib
    import io

    from mmdetr.engine.launcher import build_runner
    tmp = tmp_path_factory.mktemp('deploy_trained')
    cfg_file = write_tiny_train_config(
        str(tmp / 'tiny.py'), coco_root, extra=_OVERFIT)
    cfg = Config.fromfile(cfg_file)
    cfg.work_dir = str(tmp / 'work')
    runner = build_runner(cfg, 'none')
    runner.train()
    ckpt = str(tmp / 'tiny.pth')
    runner.save_checkpoint(str(tmp), 'tiny.pth')
    tool = load_tool('tools/test.py', 'test_tool_deploy')
    args = tool.parse_args([cfg_file, ckpt, '--eval', 'bbox', '--out',
                            str(tmp / 'torch.pkl'), '--work-dir',
                            str(tmp / 'test_torch')])
    torch_metrics = build_runner(tool.build_cfg(args), 'none').test()
    onnx_file = str(tmp / 'tiny.onnx')
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = pytorch2onnx.main([cfg_file, ckpt, '--output-file', onnx_file,
                                  '--shape', '64', '96', '--dynamic-export',
                                  '--verify'])
    assert code == 0, printed.getvalue()
    return dict(cfg=cfg_file, ckpt=ckpt, onnx=onnx_file, tmp=tmp,
                torch_metrics=torch_metrics, export_out=printed.getvalue())


@pytest.fixture(scope='module')
def from_config(coco_root, tmp_path_factory):
    """The tiny config's model (untrained), its checkpoint and its export
    with the config's metadata: for the tests that need no trained
    weights."""
    from mmengine.registry import MODELS, DefaultScope

    from mmdetr.deploy.export import deploy_metadata
    tmp = tmp_path_factory.mktemp('deploy_cfg')
    cfg_file = write_tiny_train_config(str(tmp / 'tiny.py'), coco_root)
    cfg = Config.fromfile(cfg_file)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = str(tmp / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=['r', 'g', 'b']))),
               ckpt)
    onnx_file = str(tmp / 'tiny.onnx')
    export_onnx(model.eval(), onnx_file, shape=(64, 96),
                metadata=deploy_metadata(cfg, dict(classes=['r', 'g', 'b'])))
    return dict(cfg=cfg_file, ckpt=ckpt, onnx=onnx_file)


def test_pytorch2onnx_verify_prints_the_differences(trained):
    out = trained['export_out']
    assert 'wrote' in out and out.count(': OK (tolerance 0.0001)') == 2, out
    assert 'batch of 3 (64x96, 48x60, 32x84)' in out
    meta = ORTDetector(trained['onnx']).meta
    assert meta['classes'] == ['red', 'green', 'blue']
    assert meta['resize'] == dict(scale=[96, 64], scale_factor=None,
                                  keep_ratio=True)


@pytest.mark.slow
def test_deployment_test_gives_pytorchs_ap(trained):
    """tools/deployment/test.py on the ONNX model prints the COCO numbers
    tools/test.py gives on the checkpoint, and the detections behind them
    agree."""
    tmp = trained['tmp']
    proc = run(sys.executable, 'tools/deployment/test.py', trained['cfg'],
               trained['onnx'], '--backend', 'onnxruntime', '--eval', 'bbox',
               '--out', str(tmp / 'onnx.pkl'), '--work-dir',
               str(tmp / 'test_onnx'), '--cfg-options', 'log_level=INFO')
    out = proc.stdout + proc.stderr
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in out
    m = trained['torch_metrics']
    torch_ap = ' '.join(f"{m['coco/bbox_' + k]:.3f}" for k in (
        'mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'))
    assert copypaste_ap(out) == torch_ap
    assert m['coco/bbox_mAP_50'] > 0  # the model learned something
    with open(tmp / 'torch.pkl', 'rb') as f:
        want = pickle.load(f)
    with open(tmp / 'onnx.pkl', 'rb') as f:
        got = pickle.load(f)
    assert len(want) == len(got) == 6
    for a, b in zip(want, got):
        pa, pb = a['pred_instances'], b['pred_instances']
        assert torch.equal(pa['labels'], pb['labels'])
        torch.testing.assert_close(pa['scores'], pb['scores'], atol=1e-5,
                                   rtol=0)
        scale = max(a['ori_shape'])
        torch.testing.assert_close(pa['bboxes'] / scale, pb['bboxes'] / scale,
                                   atol=1e-4, rtol=0)


def test_deployment_test_refuses_another_config(from_config, tmp_path):
    """A config with another number of classes or input layout than the
    ONNX model stops before testing, naming both files and values."""
    cfg = from_config['cfg']
    for options, words in [
        (['model.bbox_head.num_classes=4'], 'num_classes=4'),
        (['model.data_preprocessor.bgr_to_rgb=False'], 'bgr_to_rgb=False'),
    ]:
        with pytest.raises(SystemExit) as e:
            deploy_test.main([cfg, from_config['onnx'], '--eval', 'bbox',
                              '--work-dir', str(tmp_path),
                              '--cfg-options', *options])
        msg = str(e.value)
        assert cfg in msg and from_config['onnx'] in msg and words in msg, msg


@pytest.mark.slow
def test_ort_detector_without_torch_equals_inference_detector(from_config,
                                                              tmp_path):
    """ORTDetector in a process where torch, mmcv, mmdet and mmengine cannot
    be imported gives the detections of mmdet's inference_detector on the
    PyTorch model (file in, boxes in original pixels out)."""
    from mmdet.apis import inference_detector
    image_demo = load_tool('tools/demo/image_demo.py', 'image_demo_deploy')
    images = []
    for i, (h, w) in enumerate([(70, 50), (45, 90)]):
        img = np.random.default_rng(i).integers(0, 255, (h, w, 3), np.uint8)
        cv2.rectangle(img, (5, 5), (w // 2, h // 2), (0, 0, 255), -1)
        images.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(images[-1], img)
    site = tmp_path / 'no_torch'
    site.mkdir()
    (site / 'sitecustomize.py').write_text(
        'import sys\n'
        'for name in ("torch", "mmcv", "mmdet", "mmengine"):\n'
        '    sys.modules[name] = None  # import fails\n')
    script = tmp_path / 'serve.py'
    script.write_text(
        'import json, sys\n'
        'from mmdetr.deploy.ort_detector import ORTDetector\n'
        'det = ORTDetector(sys.argv[1])\n'
        # one image per call, as inference_detector: padding a smaller
        # image into a batch changes its backbone features near the border
        'res = [det(path)[0] for path in sys.argv[2:]]\n'
        'assert not [m for m in ("torch", "mmdet") if sys.modules.get(m)]\n'
        'print(json.dumps([{k: v.tolist() for k, v in r.items()} '
        'for r in res]))\n')
    proc = run(sys.executable, str(script), from_config['onnx'], *images,
               env=dict(PYTHONPATH=os.pathsep.join(
                   [str(site), os.getcwd(), osp.dirname(__file__)])))
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    model = image_demo.init_model(from_config['cfg'], from_config['ckpt'],
                                  'cpu')
    for path, res in zip(images, got):
        want = inference_detector(model, path).pred_instances
        assert res['labels'] == want.labels.tolist()
        np.testing.assert_allclose(res['scores'], want.scores.numpy(),
                                   atol=1e-5)
        h, w = cv2.imread(path).shape[:2]
        np.testing.assert_allclose(
            np.array(res['bboxes']) / [w, h, w, h],
            want.bboxes.numpy() / [w, h, w, h], atol=1e-4)
    # and the sitecustomize really hides torch
    fail = run(sys.executable, '-c', 'import torch', check=False,
               env=dict(PYTHONPATH=str(site)))
    assert fail.returncode != 0


def test_ort_detector_preprocessing_equals_the_pipeline(from_config, tmp_path):
    """ORTDetector's numpy resize/normalise/pad gives the batch the config's
    test pipeline and DetDataPreprocessor give."""
    from mmcv.transforms import Compose
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(from_config['cfg'])
    with DefaultScope.overwrite_default_scope('mmdet'):
        pipeline = Compose([p for p in cfg.test_pipeline
                            if p['type'] != 'LoadAnnotations'])
        model = build_mmdetr(copy.deepcopy(cfg.model))
    paths = []
    for i, (h, w) in enumerate([(70, 50), (45, 90), (61, 61)]):
        img = np.random.default_rng(i).integers(0, 255, (h, w, 3), np.uint8)
        paths.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(paths[-1], img)
    packed = [pipeline(dict(img_path=p, img_id=i))
              for i, p in enumerate(paths)]
    data = model.data_preprocessor(
        dict(inputs=[d['inputs'] for d in packed],
             data_samples=[d['data_samples'] for d in packed]), False)
    detector = ORTDetector(from_config['onnx'])
    batch, img_shape, factors = detector.preprocess(paths)
    np.testing.assert_allclose(batch, data['inputs'].numpy(), atol=1e-5)
    assert img_shape.tolist() == [list(s.img_shape)
                                  for s in data['data_samples']]
    np.testing.assert_allclose(
        factors, [s.scale_factor for s in data['data_samples']])


def test_onnx_image_demo_draws(from_config, tmp_path):
    demo = load_tool('tools/deployment/onnx_image_demo.py', 'onnx_demo')
    img = np.zeros((60, 80, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    assert demo.main([str(tmp_path / 'a.png'), from_config['onnx'],
                      '--out-dir', str(tmp_path / 'out'),
                      '--score-thr', '0']) == 0
    drawn = cv2.imread(str(tmp_path / 'out' / 'a.png'))
    assert drawn.shape == img.shape and drawn.max() > 0  # boxes drawn


def test_pytorch2onnx_names_an_unexportable_setting(from_config, tmp_path):
    with pytest.raises(SystemExit) as e:
        pytorch2onnx.main([from_config['cfg'], from_config['ckpt'],
                           '--output-file', str(tmp_path / 'x.onnx'),
                           '--opset-version', '11'])
    assert 'opset_version=11' in str(e.value)


# ------------------------------------------------------------ full size
@pytest.mark.slow
def test_r50_6x6_matches_pytorch(tmp_path):
    """The R50 6+6 recipe model (random weights): batch 1 and a padded batch
    of three sizes."""
    model = build_mmdetr(
        mmdetr_cfg(depth=50, embed_dims=256, num_heads=8, ffn=2048, enc=6,
                   dec=6, queries=100, num_classes=80)).eval()
    path = str(tmp_path / 'r50.onnx')
    export_onnx(model, path, shape=(128, 160), dynamic=True)
    session = make_session(path)
    for sizes in ([(160, 192)], [(160, 192), (128, 96), (96, 160)]):
        diffs = compare_with_pytorch(model, session, sizes)
        assert diffs['num_dets'] == 100 * len(sizes)
        assert within_tolerance(diffs), (sizes, diffs)


def test_quantize_onnx_int8_keeps_io_metadata_and_detections(trained):
    """quantize_onnx.py: the convolutions in int8 (QDQ, calibrated on the
    config's training images), the same inputs, outputs and metadata, and
    detections close to the float32 graph's."""
    quantize_onnx = load_tool('tools/deployment/quantize_onnx.py',
                              'quantize_onnx')
    out = str(trained['tmp'] / 'tiny_int8.onnx')
    assert quantize_onnx.main([trained['cfg'], trained['onnx'],
                               '--output-file', out,
                               '--calib-images', '4']) == 0
    model = onnx.load(out)
    ops = {n.op_type for n in model.graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear', 'Conv'} <= ops
    quantized_convs = {
        n.input[1] for n in model.graph.node if n.op_type == 'Conv'}
    dequant_outputs = {
        n.output[0] for n in model.graph.node
        if n.op_type == 'DequantizeLinear'}
    assert quantized_convs <= dequant_outputs  # every Conv weight is int8
    assert ORTDetector(out).meta == ORTDetector(trained['onnx']).meta
    full, int8 = make_session(trained['onnx']), make_session(out)
    assert [i.name for i in int8.get_inputs()] == \
        [i.name for i in full.get_inputs()]
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(trained['cfg'])
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    inputs, samples = random_batch(model, [(64, 96), (48, 60)])
    feed = dict(input=inputs.numpy(), img_shape=np.array(
        [s.img_shape for s in samples], dtype=np.int64))
    dets_full, _ = full.run(None, feed)
    dets_int8, _ = int8.run(None, feed)
    assert dets_int8.shape == dets_full.shape
    # int8 weights and activations (256 levels per tensor: about 0.4% each)
    # through the whole network: scores within a few hundredths, none far
    diff = np.abs(dets_int8[..., 4] - dets_full[..., 4])
    assert diff.mean() < 0.03 and diff.max() < 0.2, diff
    with pytest.raises(SystemExit, match='model not found'):
        quantize_onnx.main([trained['cfg'], str(trained['tmp'] / 'no.onnx')])
