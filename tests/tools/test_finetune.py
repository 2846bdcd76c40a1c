# Copyright (c) mmdetr contributors. All rights reserved.
"""Fine-tuning on other classes: the classifier is rebuilt by
class name on ``load_from``, through ``mmdetr-convert://`` and the
converter; every other tensor loads as it is; the template config runs."""
import json
import os.path as osp
import re
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner.checkpoint import CheckpointLoader

from helpers import ROOT, build_mmdet, load_ckpt, train
from helpers import load_tool
from mmdetr.checkpoints.class_names import coco_classes, config_classes
from mmdetr.checkpoints.classifier_remap import remap_classifier
from mmdetr.engine import DataCheckError, Runner
from references.reference_detr import OFFICIAL_COCO_NAMES, official_state_dict

shapes = load_tool('tools/misc/make_shapes_dataset.py', 'make_shapes_dataset')
converter = load_tool('tools/model_converters/detr_to_mmdetr.py',
                      'detr_to_mmdetr')
TEMPLATE = osp.join(ROOT, 'configs', 'detr_r50_8x2_50e_finetune_custom.py')
CLS = 'bbox_head.fc_cls'

# A tiny DETR (ResNet-18, 32-d transformer, 1+1 layers, 10 queries) on 64 px
# images: the delta a test config puts on the R50 configs.
TINY = '''
model = dict(
    backbone=dict(depth=18, init_cfg=None, zero_init_residual=False),
    bbox_head=dict(
        num_classes=3, in_channels=512, num_query=10,
        transformer=dict(type='DetrTransformer', embed_dims=32, num_heads=2,
                         num_encoder_layers=1, num_decoder_layers=1,
                         feedforward_channels=64, dropout=0.0),
        positional_encoding=dict(type='SinePositionalEncoding',
                                 num_feats=16, normalize=True)),
    test_cfg=dict(max_per_img=10))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
'''


def _data(data_root, metainfo=True):
    """Dataloaders and evaluators reading the shapes layout at data_root
    (metainfo: from the config's ``classes`` variable)."""
    meta = 'metainfo=dict(classes=classes), ' if metainfo else ''
    return f'''
data_root = {str(data_root) + '/'!r}
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, batch_sampler=None,
    dataset=dict(data_root=data_root, {meta}
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=False, min_size=0),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, {meta}
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
visualizer = dict(name='visualizer_{uuid.uuid4().hex[:8]}')
'''


def write_config(path, base, body):
    path.write_text(f'_base_ = {base!r}\n' + TINY + body)
    return str(path)


def make_shapes(root, classes=shapes.CLASSES, seed=0):
    shapes.make_dataset(str(root), num_train=2, num_val=2, seed=seed,
                        img_size=64, classes=classes)
    return root


class Probe(Hook):
    """Records the model's classifier right after its fresh initialisation
    (``after_load_checkpoint`` runs before the checkpoint is loaded into
    the model), every tensor at iteration 0, and the val metrics."""

    priority = 'LOWEST'

    def after_load_checkpoint(self, runner, checkpoint):
        head = runner.model.bbox_head
        self.fresh = {f'{CLS}.weight': head.fc_cls.weight.detach().clone(),
                      f'{CLS}.bias': head.fc_cls.bias.detach().clone()}

    def before_train(self, runner):
        self.start = {k: v.detach().clone()
                      for k, v in runner.model.state_dict().items()}

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = metrics


def run_probed(cfg_path, work_dir, **cfg_options):
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict(cfg_options)
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    probe = Probe()
    runner.register_hook(probe)
    runner.train()
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return probe, f.read()


# ------------------------------------------------------------ unit level
def _classifier(rows, dims=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {f'{CLS}.weight': torch.randn(rows, dims, generator=gen),
            f'{CLS}.bias': torch.randn(rows, generator=gen)}


def test_rows_follow_class_names_not_positions():
    """('circle', 'square', 'triangle') into ('triangle', 'hexagon',
    'square'): same count, other order, one new class."""
    ckpt = dict(_classifier(4, seed=1), other=torch.ones(2))
    fresh = _classifier(4, seed=2)
    out, line, warn = remap_classifier(
        ckpt, fresh, 3, ('circle', 'square', 'triangle'),
        ('triangle', 'hexagon', 'square'))
    assert not warn
    assert line == (f'{CLS}: checkpoint has 3 classes + no-object, model '
                    'has 3 + no-object: 2 rows copied by class name, 1 '
                    're-initialised, no-object row kept (new: hexagon)')
    for key in (f'{CLS}.weight', f'{CLS}.bias'):
        assert torch.equal(out[key][0], ckpt[key][2])  # triangle
        assert torch.equal(out[key][1], fresh[key][1])  # hexagon: fresh
        assert torch.equal(out[key][2], ckpt[key][1])  # square
        assert torch.equal(out[key][3], ckpt[key][3])  # no-object
    assert out['other'] is ckpt['other']
    assert not torch.equal(ckpt[f'{CLS}.weight'][0],
                           out[f'{CLS}.weight'][0])  # the input is intact


def test_same_classes_load_as_they_are():
    ckpt = _classifier(3)
    out, line, warn = remap_classifier(ckpt, _classifier(3, seed=5), 2,
                                       ('a', 'b'), ('a', 'b'))
    assert out is ckpt and not warn
    assert 'same 2 classes in the same order' in line


def test_unknown_names_keep_equal_counts_by_position_and_say_so():
    ckpt = _classifier(4)
    out, line, warn = remap_classifier(ckpt, _classifier(4, seed=5), 3,
                                       None, ('a', 'b', 'c'))
    assert out is ckpt and warn
    assert 'class names are unknown' in line and 'by position' in line
    # names recorded for another number of rows are no names
    out, line, warn = remap_classifier(ckpt, _classifier(4, seed=5), 3,
                                       ('a', 'b'), ('a', 'b', 'c'))
    assert out is ckpt and warn and 'records 2 class names for 3' in line


def test_unknown_names_and_other_count_reinitialise_all_but_no_object():
    ckpt, fresh = _classifier(81), _classifier(3, seed=5)
    out, line, warn = remap_classifier(ckpt, fresh, 2, None, ('a', 'b'))
    assert warn
    assert line.startswith(f'{CLS}: checkpoint has 80 classes + no-object, '
                           'model has 2 + no-object')
    assert 'all 2 class rows are re-initialised, no-object row kept' in line
    w = f'{CLS}.weight'
    assert torch.equal(out[w][:2], fresh[w][:2])
    assert torch.equal(out[w][2], ckpt[w][80])


def test_sigmoid_classifier_has_no_no_object_row():
    ckpt, fresh = _classifier(2), _classifier(3, seed=5)
    out, line, _ = remap_classifier(ckpt, fresh, 3, ('b', 'a'),
                                    ('a', 'c', 'b'))
    assert 'no-object' not in line and '2 rows copied by class name' in line
    w = f'{CLS}.weight'
    assert torch.equal(out[w][0], ckpt[w][1])
    assert torch.equal(out[w][1], fresh[w][1])
    assert torch.equal(out[w][2], ckpt[w][0])


def test_other_embed_dims_are_left_to_the_loader_to_report():
    ckpt = _classifier(4, dims=8)
    out, line, _ = remap_classifier(ckpt, _classifier(4), 3, ('a', 'b', 'c'),
                                    ('c', 'b', 'a'))
    assert out is ckpt and line is None


def test_config_classes_read_metainfo_or_the_dataset_default():
    cfg = Config.fromfile(TEMPLATE)
    classes, where = config_classes(cfg)
    assert classes == shapes.CLASSES
    assert where == 'train_dataloader.dataset.metainfo.classes'
    coco = Config.fromfile(osp.join(ROOT, 'configs',
                                    'detr_r50_8x2_150e_coco.py'))
    assert config_classes(coco)[0] == coco_classes()
    assert len(coco_classes()) == 80 and coco_classes()[0] == 'person'


# ------------------------------------------------ template and scheme
def test_template_reads_what_the_generator_writes():
    cfg = Config.fromfile(TEMPLATE)
    assert tuple(cfg.classes) == shapes.CLASSES
    assert cfg.model.bbox_head.num_classes == len(cfg.classes)
    for split, loader in (('train', cfg.train_dataloader),
                          ('val', cfg.val_dataloader),
                          ('val', cfg.test_dataloader)):
        dataset = loader.dataset
        assert tuple(dataset.metainfo.classes) == shapes.CLASSES
        assert dataset.data_root == 'data/shapes/'
        assert dataset.ann_file == f'annotations/instances_{split}.json'
        assert dataset.data_prefix.img == f'{split}/'
    assert cfg.val_evaluator.ann_file == \
        'data/shapes/annotations/instances_val.json'
    assert cfg.load_from.startswith('mmdetr-convert://https://')
    assert cfg.train_cfg.max_epochs < 150
    # the R50 recipe is inherited, not restated
    assert cfg.model.backbone.depth == 50
    assert cfg.optim_wrapper.optimizer.lr == 1e-4


def test_scheme_names_coco_classes_of_an_mmdet_checkpoint(tmp_path):
    """An mmdet COCO checkpoint without recorded names (81 logits) is taken
    for COCO's, as mmdet's init_detector does; recorded names win."""
    torch.manual_seed(0)
    sd = build_mmdet(num_classes=80).state_dict()
    torch.save(dict(state_dict=sd), tmp_path / 'coco.pth')
    ckpt = CheckpointLoader.load_checkpoint(
        f'mmdetr-convert://{tmp_path / "coco.pth"}')
    assert ckpt['meta']['dataset_meta']['classes'] == coco_classes()
    named = tuple(f'c{i}' for i in range(80))
    torch.save(dict(state_dict=sd, meta=dict(CLASSES=named)),
               tmp_path / 'named.pth')
    ckpt = CheckpointLoader.load_checkpoint(
        f'mmdetr-convert://{tmp_path / "named.pth"}')
    assert ckpt['meta']['dataset_meta']['classes'] == named


def official_checkpoint(path):
    """A fabricated official DETR file (COCO's 92 logits) of the tiny
    architecture; returns its weights."""
    sd = official_state_dict(depth=18, d=32, ffn=64, enc=1, dec=1,
                             queries=10, num_logits=92, seed=3)
    torch.save(dict(model=sd), path)
    return sd


def test_converter_with_config_copies_coco_rows_by_name(tmp_path, capsys):
    src = tmp_path / 'detr-official.pth'
    sd = official_checkpoint(src)
    cfg = tmp_path / 'mine.py'
    write_config(cfg, osp.join(ROOT, 'configs', 'detr_r50_8x2_150e_coco.py'),
                 "classes = ('person', 'hexagon', 'car')\n" +
                 _data(tmp_path / 'nowhere'))
    dst = tmp_path / 'mine.pth'
    assert converter.main([str(src), str(dst), '--config', str(cfg)]) == 0
    out = capsys.readouterr().out
    assert 'class names: COCO\'s 80 (official DETR' in out
    assert (f'{CLS}: checkpoint has 80 classes + no-object, model has 3 + '
            'no-object: 2 rows copied by class name, 1 re-initialised, '
            'no-object row kept (new: hexagon)') in out
    assert 'model classes from train_dataloader.dataset.metainfo' in out
    written = load_ckpt(str(dst))
    assert written['meta']['dataset_meta']['classes'] == (
        'person', 'hexagon', 'car')
    w, official = written['state_dict'][f'{CLS}.weight'], \
        sd['class_embed.weight']
    assert w.shape == (4, 32)
    assert torch.equal(w[0], official[OFFICIAL_COCO_NAMES.index('person')])
    assert torch.equal(w[2], official[OFFICIAL_COCO_NAMES.index('car')])
    assert torch.equal(w[3], official[91])  # no-object
    assert not any(torch.equal(w[1], row) for row in official)
    # every other tensor is the official one, renamed
    assert torch.equal(written['state_dict']['bbox_head.fc_reg.weight'],
                       sd['bbox_embed.layers.2.weight'])


# ------------------------------------------------------------- end to end
@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny DETR trained on 3-class shapes by tools/train.py."""
    root = tmp_path_factory.mktemp('ft')
    make_shapes(root / 'shapes')
    cfg = write_config(
        root / 'shapes_cfg.py',
        osp.join(ROOT, 'configs', 'detr_r50_8x2_150e_coco.py'),
        f'classes = {shapes.CLASSES!r}\n' + _data(root / 'shapes'))
    train(cfg, root / 'work')
    ckpt = str(root / 'work' / 'epoch_1.pth')
    assert load_ckpt(ckpt)['meta']['dataset_meta']['classes'] == \
        shapes.CLASSES
    return root, ckpt


@pytest.mark.slow
def test_finetune_on_two_old_classes_and_a_new_one(trained, tmp_path):
    root, ckpt_path = trained
    new = ('triangle', 'hexagon', 'square')
    make_shapes(tmp_path / 'data', classes=new, seed=1)
    cfg = write_config(tmp_path / 'ft.py', TEMPLATE,
                       f'classes = {new!r}\n' + _data(tmp_path / 'data') +
                       f'load_from = {ckpt_path!r}\n')
    probe, log = run_probed(cfg, tmp_path / 'work')

    ckpt = load_ckpt(ckpt_path)['state_dict']
    assert set(probe.start) == set(ckpt)
    for key, value in ckpt.items():
        if not key.startswith(CLS + '.'):
            assert torch.equal(probe.start[key], value), key
    for key in (f'{CLS}.weight', f'{CLS}.bias'):
        start, old, fresh = probe.start[key], ckpt[key], probe.fresh[key]
        assert torch.equal(start[0], old[2])  # triangle, by name
        assert torch.equal(start[2], old[1])  # square, by name
        assert torch.equal(start[1], fresh[1])  # hexagon: fresh init
        assert not torch.equal(start[1], old[1])
        assert torch.equal(start[3], old[3])  # no-object
    assert (f'{CLS}: checkpoint has 3 classes + no-object, model has 3 + '
            'no-object: 2 rows copied by class name, 1 re-initialised, '
            'no-object row kept (new: hexagon)') in log
    assert "model classes from the train dataset's metainfo" in log
    assert not re.search(r'size mismatch|missing keys|unexpected key', log)
    # it trained and evaluated
    assert 0.0 <= probe.metrics['coco/bbox_mAP_50'] <= 1.0
    assert osp.isfile(tmp_path / 'work' / 'epoch_1.pth')


@pytest.mark.slow
def test_template_on_shapes_from_official_coco_weights(tmp_path):
    """The template as it is (shapes classes), an official COCO file through
    mmdetr-convert://: no class in common, so 0 rows copied."""
    src = tmp_path / 'detr-official.pth'
    sd = official_checkpoint(src)
    make_shapes(tmp_path / 'data')
    cfg = write_config(tmp_path / 'ft.py', TEMPLATE,
                       _data(tmp_path / 'data', metainfo=False) +
                       f"load_from = 'mmdetr-convert://{src}'\n")
    probe, log = run_probed(cfg, tmp_path / 'work')
    assert (f'{CLS}: checkpoint has 80 classes + no-object, model has 3 + '
            'no-object: 0 rows copied by class name, 3 re-initialised, '
            'no-object row kept') in log
    w = probe.start[f'{CLS}.weight']
    assert torch.equal(w[:3], probe.fresh[f'{CLS}.weight'][:3])
    assert torch.equal(w[3], sd['class_embed.weight'][91])
    assert torch.equal(probe.start['bbox_head.query_embedding.weight'],
                       sd['query_embed.weight'])
    assert 'coco/bbox_mAP_50' in probe.metrics


@pytest.mark.slow
def test_num_classes_mismatch_still_stops_a_finetune_run(trained, tmp_path):
    """DataCheckHook's error is unchanged when load_from is set: the
    classifier fit says it cannot match names and the hook stops the run."""
    root, ckpt_path = trained
    cfg = write_config(tmp_path / 'ft.py', TEMPLATE,
                       _data(root / 'shapes', metainfo=False) +
                       f'load_from = {ckpt_path!r}\n')
    with pytest.raises(DataCheckError, match=r'num_classes=2 .* 3 classes'):
        run_probed(cfg, tmp_path / 'work',
                   **{'model.bbox_head.num_classes': 2})


def _coco_dataset(root, classes):
    from mmdetr.datasets import CocoDataset
    return CocoDataset(
        data_root=str(root) + '/', ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'), metainfo=dict(classes=classes),
        pipeline=[])


def test_classes_out_of_the_files_order_are_refused(tmp_path):
    """mmdet numbers labels in the file's category order: metainfo classes
    in another order (or one missing in the middle) would name every label
    wrongly, and a by-name fine-tune would copy rows to the wrong labels."""
    from mmdetr.datasets.coco import AnnotationFileError
    make_shapes(tmp_path)  # categories: circle, square, triangle
    with pytest.raises(AnnotationFileError,
                       match=r"instances_val.json does not fit .*"
                       r"in the order \('square', 'triangle'\)"):
        _coco_dataset(tmp_path, ('triangle', 'square'))
    with pytest.raises(AnnotationFileError,
                       match=r"no category named \['hexagon'\]"):
        _coco_dataset(tmp_path, ('circle', 'hexagon', 'square'))
    # what labels the same as mmdet: a subset in the file's order, and a
    # class the file lacks at the end
    for ok in (('circle', 'triangle'), ('circle', 'square', 'hexagon')):
        dataset = _coco_dataset(tmp_path, ok)
        coco = json.loads((tmp_path / 'annotations' /
                           'instances_val.json').read_text())
        names = {c['id']: c['name'] for c in coco['categories']}
        assert [ok[i] for i in range(len(dataset.cat_ids))] == [
            names[i] for i in dataset.cat_ids]


# ------------------------------------------------------------- generator
def test_generator_default_output_is_unchanged(tmp_path):
    """What the generator wrote before --classes existed (the demo's val
    split must not change), as commit a9be3e4's generator wrote it for
    ``OUT --num-train 3 --num-val 2 --seed 0``: the same images, names and
    annotations (boxes and areas to the 0.01 px the files hold, within one
    such step), and images whose 4x4 grid of grey-level means is the same
    to 1.5 levels (JPEG encoders of other libjpeg builds differ by a level
    or so; a shape moved or gone changes a cell by tens)."""
    import cv2
    shapes.main([str(tmp_path), '--num-train', '3', '--num-val', '2',
                 '--seed', '0'])
    for split, (names, anns) in GENERATOR_ANNOTATIONS.items():
        coco = json.loads((tmp_path / 'annotations' /
                           f'instances_{split}.json').read_text())
        assert [i['file_name'] for i in coco['images']] == names
        got = [(a['image_id'], a['category_id'], a['bbox'], a['area'])
               for a in coco['annotations']]
        assert [g[:2] for g in got] == [a[:2] for a in anns]
        for g, a in zip(got, anns):
            assert g[2] == pytest.approx(a[2], abs=0.011), (split, g, a)
            assert g[3] == pytest.approx(a[3], abs=0.011), (split, g, a)
    for name, want in GENERATOR_GRIDS.items():
        grey = cv2.imread(str(tmp_path / name), cv2.IMREAD_GRAYSCALE)
        got = cv2.resize(grey.astype(np.float32), (4, 4),
                         interpolation=cv2.INTER_AREA).flatten()
        assert np.abs(got - np.array(want)).max() <= 1.5, (name, got)


#: (image names, (image id, category id, bbox, area) per object) per split
GENERATOR_ANNOTATIONS = {
    'train': (['000000.jpg', '000001.jpg', '000002.jpg'], [
        (2, 1, [35.61, 40.52, 26.95, 26.95], 527.88),
        (2, 3, [91.75, 76.51, 51.87, 50.44], 1170.71),
        (3, 3, [26.72, 86.04, 63.61, 67.34], 1951.89),
        (3, 1, [86.15, 59.97, 66.18, 66.18], 3331.13),
        (3, 1, [61.05, 73.11, 63.51, 63.51], 3064.41),
        (3, 3, [118.38, 91.35, 31.73, 36.39], 542.32),
        (3, 3, [75.42, 27.18, 68.68, 68.08], 2107.66)]),
    'val': (['000000.jpg', '000001.jpg'], [
        (1, 2, [73.18, 77.68, 69.04, 69.04], 2893.64),
        (1, 1, [101.33, 68.62, 52.69, 52.69], 2094.8),
        (1, 1, [21.0, 5.52, 42.58, 42.58], 1355.59)]),
}
#: each image's grey levels averaged over a 4x4 grid of 40x40 px cells
GENERATOR_GRIDS = {
    'train/000000.jpg': [161.3, 149.8, 134.1, 130.9, 145.0, 139.3, 118.6,
                         123.2, 139.1, 130.2, 117.0, 102.4, 129.8, 114.8,
                         111.3, 100.5],
    'train/000001.jpg': [115.1, 112.4, 105.8, 101.2, 118.5, 103.3, 94.4,
                         94.3, 120.5, 101.9, 96.0, 93.1, 103.4, 95.0, 94.9,
                         93.6],
    'train/000002.jpg': [127.5, 136.2, 125.5, 131.6, 134.3, 130.1, 102.8,
                         116.5, 123.9, 113.4, 111.8, 118.7, 134.6, 117.0,
                         128.2, 129.5],
    'val/000000.jpg': [98.0, 95.1, 97.8, 93.2, 113.4, 126.7, 110.2, 98.1,
                       121.9, 135.3, 113.7, 84.8, 150.4, 148.1, 135.5,
                       133.6],
    'val/000001.jpg': [137.3, 134.3, 132.4, 110.7, 131.7, 125.9, 130.0,
                       111.7, 123.7, 117.8, 114.9, 113.5, 119.0, 112.1,
                       109.6, 108.3],
}


def test_generator_other_classes(tmp_path):
    shapes.main([str(tmp_path), '--num-train', '6', '--num-val', '0',
                 '--seed', '1', '--classes', 'hexagon', 'circle'])
    coco = json.loads(
        (tmp_path / 'annotations' / 'instances_train.json').read_text())
    assert [(c['id'], c['name']) for c in coco['categories']] == [
        (1, 'hexagon'), (2, 'circle')]
    assert {a['category_id'] for a in coco['annotations']} == {1, 2}
    with pytest.raises(SystemExit):
        shapes.parse_args([str(tmp_path), '--classes', 'star'])
    with pytest.raises(SystemExit):
        shapes.parse_args([str(tmp_path), '--classes', 'circle', 'circle'])


def test_hexagon_fills_its_box():
    """A hexagon of ``side`` 40 has its 6 corners 20 from the centre (it is
    ``side`` wide corner to corner)."""
    rng = np.random.default_rng(0)
    pts = shapes.shape_points(rng, 'hexagon', 50.0, 50.0, 40.0)
    assert pts.shape == (6, 2)
    radii = np.hypot(pts[:, 0] - 50, pts[:, 1] - 50)
    np.testing.assert_allclose(radii, 20.0)
    with pytest.raises(ValueError, match='unknown shape'):
        shapes.shape_points(rng, 'star', 0, 0, 1)


# ---------------------------------------------------------- time_to_metric
def test_time_to_metric_finds_the_first_step(tmp_path, capsys):
    tool = load_tool('tools/analysis_tools/time_to_metric.py',
                     'time_to_metric')
    log = tmp_path / 'scalars.json'
    lines = [dict(loss=1.0, iter=1, epoch=1, step=1),
             {'coco/bbox_mAP_50': 0.2, 'step': 1},
             {'coco/bbox_mAP_50': 0.6, 'step': 2},
             {'coco/bbox_mAP_50': 0.55, 'step': 3}]
    log.write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    assert tool.main([str(log), '--target', '0.5',
                      '--iters-per-epoch', '10']) == 0
    out = capsys.readouterr().out
    assert 'bbox_mAP_50 >= 0.5 first at step 2 (20 iterations) (0.600)' in out
    assert 'best 0.600 at step 2' in out
    tool.main([str(log), '--target', '0.9'])
    assert 'never reached 0.9' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='no validation records'):
        tool.main([str(log), '--key', 'segm_mAP'])
