# Copyright (c) mmdetr contributors. All rights reserved.
"""Exporting a PanopticDETR to ONNX is refused by name, nothing written;
the plain DETR it shares its detector with still exports."""
import pytest

from helpers import build_mmdetr, panoptic_detr_cfg

pytest.importorskip('onnx', reason='pip install onnx')
from mmdetr.deploy import ExportSettingError  # noqa: E402
from mmdetr.deploy.export import check_exportable, export_onnx  # noqa: E402


def test_a_panoptic_model_is_refused_and_its_detector_is_not(tmp_path):
    cfg = panoptic_detr_cfg()
    model = build_mmdetr(cfg).eval()
    path = tmp_path / 'panoptic.onnx'
    with pytest.raises(ExportSettingError,
                       match='PanopticDETR cannot be exported'):
        export_onnx(model, str(path))
    assert not path.exists()
    detector = dict(cfg, type='DETR')
    for key in ('mask_head', 'num_things_classes'):
        detector.pop(key)
    check_exportable(build_mmdetr(detector))  # no error
