# Copyright (c) mmdetr contributors. All rights reserved.
"""Export mmdetr's DETR to ONNX: the exportable module and the exporter.

The graph holds everything after data preprocessing: backbone, padding mask
from each image's valid size, positional encoding, transformer, heads and the
post-processing (softmax, top-k, box scaling). Its interface:

- inputs: ``input`` (N, 3, H, W) float32, the batch as mmdet's
  ``DetDataPreprocessor`` makes it (resized, channel order and
  normalisation of the config, zero-padded at the bottom/right), and
  ``img_shape`` (N, 2) int64, each image's valid (h, w) within it;
- outputs: ``dets`` (N, K, 5) float32, (x1, y1, x2, y2, score) in the
  pixels of the (resized) input image, clipped to its valid size, best
  first, and ``labels`` (N, K) int64; K = ``test_cfg.max_per_img`` (at most
  ``num_query`` for a softmax classifier).

Rescaling to the original image (``scale_factor``) stays outside, as in
``DETR.predict(rescale=True)``. The TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``) is used; see docs/deployment.md.
"""
import inspect
import json
import warnings
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmdetr.models.detr_head import top_detections
from mmdetr.models.padding_mask import feature_padding_mask

from .errors import ExportSettingError, require

INPUT_NAMES = ('input', 'img_shape')
OUTPUT_NAMES = ('dets', 'labels')
# nn.MultiheadAttention exports through scaled_dot_product_attention, whose
# ONNX symbolic exists from opset 14 on
MIN_OPSET = 14
DEFAULT_OPSET = 17
METADATA_KEY = 'mmdetr'
FORMAT = 'mmdetr-detr/1'
_HEAD_PARTS = ('forward_transformer', 'predict_layers', 'num_detections')


def check_exportable(detector: nn.Module,
                     opset_version: int = DEFAULT_OPSET) -> None:
    """Refuse, naming the setting, what the exported graph cannot hold.

    Raises:
        ExportSettingError: e.g. mmdet's own DETR (not mmdetr's), a DETR
            that predicts more than detections (``PanopticDETR``), an
            opset below :data:`MIN_OPSET`, a ``test_cfg.max_per_img`` the
            classifier cannot give.
    """
    from mmdetr.models.detr import DETR
    if not isinstance(detector, DETR):
        cls = type(detector)
        raise ExportSettingError(
            f'model type {cls.__module__}.{cls.__name__} cannot be exported '
            'by mmdetr: only mmdetr.models.DETR is supported (set '
            "_scope_='mmdetr' on the config's model dict)")
    if type(detector).predict_by_outputs is not DETR.predict_by_outputs:
        cls = type(detector).__name__
        raise ExportSettingError(
            f'model type {cls} cannot be exported: it predicts more than '
            'boxes and labels (its own predict_by_outputs, e.g. the masks '
            'and panoptic segmentation of PanopticDETR), and the exported '
            'graph holds detections only. Export the box model it was '
            "trained on instead (the panoptic config's load_from, with its "
            'own config)')
    if int(opset_version) < MIN_OPSET:
        raise ExportSettingError(
            f'opset_version={opset_version} cannot be exported: the '
            'transformer\'s attention (scaled_dot_product_attention) needs '
            f'opset >= {MIN_OPSET}')
    head = detector.bbox_head
    missing = [p for p in _HEAD_PARTS if not hasattr(head, p)]
    if missing:
        raise ExportSettingError(
            f'model.bbox_head type {type(head).__name__} cannot be exported: '
            f'it has no {missing} (mmdetr.DETRHead has them)')
    max_per_img = head.num_detections()
    limit = head.num_query * head.num_classes if head.use_sigmoid else None
    if limit is not None and max_per_img > limit:
        raise ExportSettingError(
            f'test_cfg.max_per_img={max_per_img} cannot be exported: a '
            f'sigmoid classifier has only num_query * num_classes = {limit} '
            'scores to choose from')


class ExportableDETR(nn.Module):
    """mmdetr's DETR from padded batch to detections, tensors only.

    Computes what ``DETR.predict(rescale=False)`` computes on the same
    padded batch, with the head's own functions: the padding mask from each
    image's valid size (:func:`~mmdetr.models.feature_padding_mask`), the
    transformer step, the predictors and the post-processing
    (:func:`~mmdetr.models.top_detections`); no ``torch.inference_mode``
    (which tracing cannot enter).

    Args:
        detector (DETR): mmdetr's DETR, in eval mode.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        check_exportable(detector)
        self.detector = detector
        self.num_dets = detector.bbox_head.num_detections()

    def forward(self, inputs: Tensor, img_shape: Tensor) -> Tuple[Tensor,
                                                                  Tensor]:
        """
        Args:
            inputs (Tensor): Padded normalised batch, has shape (N, 3, H, W).
            img_shape (Tensor): Valid (h, w) per image, has shape (N, 2).

        Returns:
            tuple[Tensor, Tensor]: ``dets`` (N, K, 5) as (x1, y1, x2, y2,
            score) in input pixels, and ``labels`` (N, K).
        """
        head = self.detector.bbox_head
        # the head predicts from the last level, DETR has one
        feats = self.detector.extract_feat(inputs)[-1]
        mask = feature_padding_mask(img_shape,
                                    torch._shape_as_tensor(inputs)[-2:],
                                    feats)
        outputs = head.forward_transformer(feats, mask)
        # detections come from the last decoder layer
        cls_scores, bbox_preds = head.predict_layers(
            outputs['hidden_states'][-1])
        boxes, scores, labels = top_detections(cls_scores, bbox_preds,
                                               img_shape, self.num_dets,
                                               head.use_sigmoid)
        return torch.cat([boxes, scores.unsqueeze(-1)], dim=-1), labels


def torchscript_exporter() -> dict:
    """The ``torch.onnx.export`` keyword that picks the TorchScript-based
    exporter: ``dynamo=False`` where the argument exists (newer torch
    exports with dynamo by default), nothing where it does not (torch 2.1:
    the TorchScript exporter is the only one)."""
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        return dict(dynamo=False)
    return {}


def export_onnx(detector: nn.Module,
                output_file: str,
                shape: Sequence[int] = (800, 1333),
                batch_size: int = 1,
                dynamic: bool = True,
                opset_version: int = DEFAULT_OPSET,
                metadata: Optional[dict] = None) -> str:
    """Write ``detector`` as an ONNX model.

    Args:
        detector (DETR): mmdetr's DETR; put in eval mode here.
        output_file (str): Where to write the ``.onnx`` file.
        shape (tuple[int, int]): (H, W) of the example input; the fixed
            input size without ``dynamic``.
        batch_size (int): Batch of the example input; the fixed batch
            without ``dynamic``.
        dynamic (bool): Batch size, H and W free. Defaults to True.
        opset_version (int): ONNX opset, >= :data:`MIN_OPSET`.
        metadata (dict, optional): Stored as JSON under the model's
            ``metadata_props['mmdetr']`` (see :func:`deploy_metadata`).

    Returns:
        str: ``output_file``.

    Raises:
        ExportSettingError: naming a setting that cannot be exported.
    """
    onnx = require('onnx')
    check_exportable(detector, opset_version)
    height, width = (int(v) for v in shape)
    if height < 1 or width < 1 or batch_size < 1:
        raise ExportSettingError(
            f'shape={tuple(shape)}, batch_size={batch_size} cannot be '
            'exported: sizes must be positive')
    detector.eval()
    module = ExportableDETR(detector).eval()
    inputs = torch.randn(batch_size, 3, height, width)
    # the last image fills the batch, the others are smaller: the trace
    # sees a real padding mask
    img_shape = torch.tensor([[max(1, height * 3 // 4), max(1, width // 2)]]
                             * batch_size, dtype=torch.int64)
    img_shape[-1] = torch.tensor([height, width])
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {
            'input': {0: 'batch', 2: 'height', 3: 'width'},
            'img_shape': {0: 'batch'},
            'dets': {0: 'batch'},
            'labels': {0: 'batch'},
        }
    with torch.no_grad(), warnings.catch_warnings():
        # shape arithmetic traced on purpose; dynamo=False is deprecated
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', FutureWarning)
        torch.onnx.export(
            module, (inputs, img_shape),
            output_file,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            opset_version=int(opset_version),
            do_constant_folding=True,
            **torchscript_exporter())
    model = onnx.load(output_file)
    meta = dict(metadata or {})
    meta.update(format=FORMAT, num_dets=module.num_dets,
                dynamic=bool(dynamic))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, output_file)
    return output_file


def deploy_metadata(cfg, dataset_meta: Optional[dict] = None) -> dict:
    """What a serving process needs besides the graph, from the config:
    classes, the test pipeline's resize, the data preprocessor's
    normalisation and padding.

    Args:
        cfg (Config): The model's config.
        dataset_meta (dict, optional): e.g. a checkpoint's
            ``meta['dataset_meta']``; its ``classes`` win over the config's.

    Returns:
        dict: JSON-serialisable; read back by
        :class:`mmdetr.deploy.ORTDetector`.
    """
    model = cfg.model
    pre = model.get('data_preprocessor') or {}
    head = model.bbox_head
    classes = (dataset_meta or {}).get('classes')
    if not classes:
        for loader in ('test_dataloader', 'val_dataloader'):
            ds = (cfg.get(loader) or {}).get('dataset', {}) or {}
            classes = (ds.get('metainfo') or {}).get('classes')
            if classes:
                break
    pipeline = []
    test_loader = cfg.get('test_dataloader') or {}
    if test_loader.get('dataset'):
        pipeline = test_loader['dataset'].get('pipeline') or []
    resize = None
    others = []
    for step in pipeline:
        kind = str(step.get('type', '')).split('.')[-1]
        if kind == 'Resize':
            scale = step.get('scale')
            resize = dict(
                scale=list(scale) if scale is not None else None,
                scale_factor=step.get('scale_factor'),
                keep_ratio=bool(step.get('keep_ratio', False)))
        elif kind not in ('LoadImageFromFile', 'LoadAnnotations',
                          'PackDetInputs'):
            others.append(kind)
    return dict(
        num_classes=int(head.num_classes),
        classes=list(classes) if classes else None,
        mean=[float(v) for v in pre.get('mean', [0., 0., 0.])],
        std=[float(v) for v in pre.get('std', [1., 1., 1.])],
        # either flag swaps the first and third channel of the BGR image
        bgr_to_rgb=bool(pre.get('bgr_to_rgb') or pre.get('rgb_to_bgr')),
        pad_size_divisor=int(pre.get('pad_size_divisor', 1)),
        pad_value=float(pre.get('pad_value', 0)),
        resize=resize,
        unsupported_transforms=others)
