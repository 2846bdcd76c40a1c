# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/demo/image_demo.py with a tiny, untrained checkpoint made here."""
import os.path as osp
import tempfile

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.structures import InstanceData

from helpers import load_tool, write_tiny_train_config
from mmdetr.models.precision import autocast_dtype, autocast_enabled_for
from mmdetr.visualization import DetLocalVisualizer

image_demo = load_tool('tools/demo/image_demo.py', 'image_demo')
shapes = load_tool('tools/misc/make_shapes_dataset.py', 'make_shapes_dataset')

# a tiny DETR config (a user's delta config on the R50 recipe)
_TMP = tempfile.mkdtemp(prefix='image_demo_cfg')
CONFIG = write_tiny_train_config(osp.join(_TMP, 'tiny.py'), _TMP)
CLASSES = ['circle', 'square', 'triangle']


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A generated image and a checkpoint of the demo config's model, in
    the layout mmengine's CheckpointHook writes."""
    tmp = tmp_path_factory.mktemp('image_demo')
    img, _ = shapes.make_image(
        np.random.default_rng(0), size=160, empty=False)
    cv2.imwrite(str(tmp / 'img.jpg'), img)
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=CLASSES))), tmp / 'ckpt.pth')
    # the same weights with one key renamed: does not fit the model
    sd = model.state_dict()
    sd['renamed'] = sd.pop('bbox_head.fc_cls.weight')
    torch.save(dict(state_dict=sd), tmp / 'bad.pth')
    return tmp


def test_draws_the_boxes_into_out_file(files, capsys):
    out = files / 'out' / 'result.png'
    assert image_demo.main([
        str(files / 'img.jpg'), CONFIG,
        str(files / 'ckpt.pth'), '--out-file',
        str(out), '--score-thr', '0', '--device', 'cpu'
    ]) == 0
    drawn, src = cv2.imread(str(out)), cv2.imread(str(files / 'img.jpg'))
    # a 160-pixel image is drawn 3x enlarged (--min-size 480)
    assert drawn.shape == (480, 480, 3)
    src = cv2.resize(src, (480, 480), interpolation=cv2.INTER_NEAREST)
    # at threshold 0 every query's box is drawn: many pixels change
    changed = (np.abs(drawn.astype(int) - src.astype(int)).max(-1) > 40)
    assert changed.mean() > 0.01
    printed = capsys.readouterr().out
    num_query = Config.fromfile(CONFIG).model.bbox_head.num_query
    assert f'{num_query} detections >= 0.0' in printed
    assert any(name in printed for name in CLASSES)


def test_min_size_0_draws_at_the_image_size(files):
    out = files / 'as_is.png'
    assert image_demo.main([
        str(files / 'img.jpg'), CONFIG,
        str(files / 'ckpt.pth'), '--out-file',
        str(out), '--min-size', '0', '--device', 'cpu'
    ]) == 0
    assert cv2.imread(str(out)).shape == (160, 160, 3)


def test_threshold_one_draws_nothing(files, capsys):
    out = files / 'none.png'
    image_demo.main([
        str(files / 'img.jpg'), CONFIG,
        str(files / 'ckpt.pth'), '--out-file',
        str(out), '--score-thr', '1.0'
    ])
    assert '0 detections' in capsys.readouterr().out
    # the reference: the same visualizer given no detections at all (the
    # enlarged image passes through matplotlib either way, whose resampling
    # differs between its versions)
    reference = DetLocalVisualizer(name='threshold_one_reference',
                                   min_size=480)
    reference.dataset_meta = dict(classes=CLASSES)
    empty = DetDataSample(pred_instances=InstanceData(
        bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
        labels=torch.zeros(0, dtype=torch.long)))
    reference.add_datasample(
        'reference', mmcv.imread(str(files / 'img.jpg'), channel_order='rgb'),
        data_sample=empty, draw_gt=False, show=False,
        out_file=str(files / 'reference.png'))
    drawn = cv2.imread(str(out))
    assert drawn.shape == (480, 480, 3)
    assert np.array_equal(drawn, cv2.imread(str(files / 'reference.png')))


def test_errors_name_the_file(files):
    with pytest.raises(SystemExit) as e:
        image_demo.main([str(files / 'nope.jpg'), CONFIG,
                         str(files / 'ckpt.pth')])
    assert 'nope.jpg' in str(e.value)
    with pytest.raises(SystemExit) as e:
        image_demo.main([str(files / 'img.jpg'), CONFIG,
                         str(files / 'bad.pth'), '--out-file',
                         str(files / 'x.png')])
    assert 'bad.pth' in str(e.value) and 'fc_cls' in str(e.value)
    assert not (files / 'x.png').exists()


def test_amp_runs_the_model_under_bfloat16_autocast(files, monkeypatch,
                                                    capsys):
    """--amp: the same detections drawn, computed under bfloat16 autocast
    (float32 boxes and scores); a CPU without bfloat16 instructions stops
    before the model is loaded, with a message."""
    import mmdetr.engine.amp as amp
    monkeypatch.delenv('MMDETR_EMULATED_BF16', raising=False)
    monkeypatch.setattr(amp, 'cpu_bf16_support',
                        lambda: amp.CpuBf16Support(True, False))
    seen = []
    detect = image_demo.inference_detector

    def recording(model, img):
        seen.append(autocast_dtype('cpu')
                    if autocast_enabled_for('cpu') else None)
        return detect(model, img)

    monkeypatch.setattr(image_demo, 'inference_detector', recording)
    args = [str(files / 'img.jpg'), CONFIG, str(files / 'ckpt.pth'),
            '--out-file', str(files / 'amp.png'), '--score-thr', '0',
            '--device', 'cpu']
    assert image_demo.main(args + ['--amp']) == 0
    assert image_demo.main(args) == 0
    assert seen == [torch.bfloat16, None]
    printed = capsys.readouterr().out.splitlines()
    num_query = Config.fromfile(CONFIG).model.bbox_head.num_query
    assert printed.count(f'image_demo: {num_query} detections >= 0.0 drawn '
                         f'into {files / "amp.png"}') == 2
    monkeypatch.setattr(amp, 'cpu_bf16_support',
                        lambda: amp.CpuBf16Support(False, False))
    with pytest.raises(SystemExit, match='--amp: bfloat16 on this CPU'):
        image_demo.main(args + ['--amp'])
    assert seen == [torch.bfloat16, None]
    with pytest.raises(SystemExit, match='--amp-dtype needs --amp'):
        image_demo.main(args + ['--amp-dtype', 'bfloat16'])
