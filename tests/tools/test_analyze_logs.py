# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/analysis_tools/analyze_logs.py on a json log the test writes in
mmengine's ``vis_data/scalars.json`` format."""
import json

import cv2
import pytest

from helpers import load_tool

analyze_logs = load_tool('tools/analysis_tools/analyze_logs.py',
                         'analyze_logs')


@pytest.fixture
def scalars_json(tmp_path):
    """Two epochs of 3 logged iterations each, a val line after each."""
    lines, step = [], 0
    for epoch in (1, 2):
        for it in (10, 20, 30):
            step += 10
            loss = 20.0 / step
            lines.append(dict(lr=1e-4, loss=loss, loss_cls=loss / 3,
                              loss_bbox=loss / 3, loss_iou=loss / 3,
                              time=0.5, epoch=epoch, iter=step, step=step))
        lines.append({'coco/bbox_mAP': 0.1 * epoch,
                      'coco/bbox_mAP_50': 0.3 * epoch, 'step': epoch})
    path = tmp_path / 'vis_data' / 'scalars.json'
    path.parent.mkdir()
    path.write_text('\n'.join(json.dumps(line) for line in lines) + '\n')
    return path


def test_load_splits_train_and_val(scalars_json):
    log = analyze_logs.load_json_log(str(scalars_json))
    assert [r['step'] for r in log['train']] == [10, 20, 30, 40, 50, 60]
    assert [r['coco/bbox_mAP_50'] for r in log['val']] == [0.3, 0.6]
    # each val record knows the training iteration it ran at
    assert [r['train_step'] for r in log['val']] == [30, 60]


def test_val_metrics_against_iterations_one_panel_each(scalars_json,
                                                       tmp_path,
                                                       monkeypatch):
    import matplotlib.axes
    drawn = []
    plot = matplotlib.axes.Axes.plot

    def spy(ax, xs, ys, *args, **kwargs):
        drawn.append((ax, list(xs), kwargs.get('label')))
        return plot(ax, xs, ys, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, 'plot', spy)
    other = tmp_path / 'other.json'
    other.write_text(scalars_json.read_text())
    assert analyze_logs.main([
        'plot_curve', str(scalars_json), str(other), '--keys',
        'bbox_mAP', 'bbox_mAP_50', '--val-x', 'iter', '--legend', 'a', 'b',
        '--out', str(tmp_path / 'v.png')
    ]) == 0
    assert [(xs, label) for _, xs, label in drawn] == [
        ([30, 60], 'a: coco/bbox_mAP'), ([30, 60], 'b: coco/bbox_mAP'),
        ([30, 60], 'a: coco/bbox_mAP_50'), ([30, 60], 'b: coco/bbox_mAP_50')]
    # two validation keys, two panels
    assert len({id(ax) for ax, _, _ in drawn}) == 2


def test_plot_curve_writes_a_png(scalars_json, tmp_path, capsys):
    out = tmp_path / 'plots' / 'curves.png'
    assert analyze_logs.main(
        ['plot_curve', str(scalars_json), '--out', str(out)]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 5, 'the picture has something drawn on it'
    assert 'wrote' in capsys.readouterr().out


def test_short_key_names_match_and_missing_keys_are_named(
        scalars_json, tmp_path):
    # 'bbox_mAP_50' finds 'coco/bbox_mAP_50', as in mmdet's tool
    assert analyze_logs.main([
        'plot_curve', str(scalars_json), '--keys', 'loss', 'bbox_mAP_50',
        '--out', str(tmp_path / 'a.png')
    ]) == 0
    with pytest.raises(SystemExit) as e:
        analyze_logs.main([
            'plot_curve', str(scalars_json), '--keys', 'loss_nope', '--out',
            str(tmp_path / 'b.png')
        ])
    assert "'loss_nope'" in str(e.value) and 'loss_cls' in str(e.value)
    assert not (tmp_path / 'b.png').exists()


def test_cal_train_time(scalars_json, capsys):
    assert analyze_logs.main(['cal_train_time', str(scalars_json)]) == 0
    assert '0.5000 s/iter' in capsys.readouterr().out


def test_bad_log_is_named(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"step": 1, "loss": 1.0}\nnot json\n')
    with pytest.raises(SystemExit) as e:
        analyze_logs.main(['plot_curve', str(bad)])
    assert 'bad.json:2' in str(e.value)
    with pytest.raises(SystemExit) as e:
        analyze_logs.main(['plot_curve', str(tmp_path / 'missing.json')])
    assert 'missing.json' in str(e.value)
