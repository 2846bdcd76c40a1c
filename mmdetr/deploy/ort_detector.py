# Copyright (c) mmdetr contributors. All rights reserved.
"""Run an exported DETR with ONNX Runtime, without torch.

This module imports only numpy, OpenCV and onnxruntime (and mmdetr's
torch-free :mod:`mmdetr.deploy.errors`), so a serving process needs neither
torch nor mmcv/mmdet::

    from mmdetr.deploy.ort_detector import ORTDetector
    detector = ORTDetector('detr.onnx')
    results = detector(['a.jpg', 'b.jpg'])   # or BGR uint8 arrays
    results[0]['bboxes'], results[0]['scores'], results[0]['labels']

Preprocessing reproduces the config's test pipeline and data preprocessor
(mmcv's ``imrescale``/``imresize`` with bilinear OpenCV resizing, channel
swap, ``(x - mean) / std``, zero padding to the batch's largest size), read
from the metadata the exporter stores in the file.
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DeployMismatchError, require

METADATA_KEY = 'mmdetr'  # same as mmdetr.deploy.export.METADATA_KEY
INPUT_LAYOUT = ('input (N, 3, H, W) float32 and img_shape (N, 2) int64; '
                'outputs dets (N, K, 5) and labels (N, K)')

Image = Union[str, np.ndarray]


def make_session(onnx_file: str,
                 num_threads: Optional[int] = None,
                 optimization: str = 'all',
                 providers: Optional[Sequence[str]] = None):
    """An ONNX Runtime session for ``onnx_file``.

    Args:
        onnx_file (str): The model.
        num_threads (int, optional): Intra-op threads; None lets ONNX
            Runtime choose (one per physical core).
        optimization (str): Graph optimisation level: 'disable', 'basic',
            'extended' or 'all'. Defaults to 'all'.
        providers (list[str], optional): Defaults to the CPU provider.
    """
    ort = require('onnxruntime')
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'ONNX model not found: {onnx_file}')
    levels = {
        'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f'optimization must be one of {sorted(levels)}, '
                         f'got {optimization!r}')
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
    return ort.InferenceSession(
        onnx_file, options,
        providers=list(providers or ['CPUExecutionProvider']))


def read_metadata(session, onnx_file: str = 'the ONNX model') -> dict:
    """The exporter's metadata (classes, preprocessing), or {} if absent."""
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        return {}
    try:
        return json.loads(props[METADATA_KEY])
    except ValueError as e:
        raise DeployMismatchError(
            f'{onnx_file}: metadata "{METADATA_KEY}" is not valid JSON: '
            f'{e}') from e


def check_io(session, onnx_file: str = 'the ONNX model') -> None:
    """Stop unless the graph has mmdetr's input/output layout.

    Raises:
        DeployMismatchError: naming the file's inputs/outputs and the
            expected layout.
    """

    def describe(args):
        return ', '.join(f'{a.name} {a.type} {list(a.shape)}' for a in args)

    inputs, outputs = session.get_inputs(), session.get_outputs()
    ok = (len(inputs) == 2 and inputs[0].name == 'input'
          and inputs[1].name == 'img_shape' and len(inputs[0].shape) == 4
          and inputs[0].shape[1] in (3, None) and 'float' in inputs[0].type
          and len(inputs[1].shape) == 2 and 'int64' in inputs[1].type
          and len(outputs) == 2 and len(outputs[0].shape) == 3
          and outputs[0].shape[-1] == 5 and len(outputs[1].shape) == 2)
    if not ok:
        raise DeployMismatchError(
            f'{onnx_file} has inputs [{describe(inputs)}] and outputs '
            f'[{describe(outputs)}], but mmdetr expects {INPUT_LAYOUT} '
            '(export it with tools/deployment/pytorch2onnx.py)')


def check_matches_config(meta: dict, model_cfg: dict, onnx_file: str,
                         config_file: str) -> None:
    """Stop when the ONNX model was exported from another model or
    preprocessing than ``model_cfg`` describes.

    Args:
        meta (dict): :func:`read_metadata` of the ONNX file.
        model_cfg (dict): The config's ``model``.
        onnx_file, config_file (str): Named in the error.

    Raises:
        DeployMismatchError: naming both files and both values.
    """
    if not meta:
        raise DeployMismatchError(
            f'{onnx_file} holds no mmdetr metadata, so it cannot be checked '
            f'against {config_file}; export it with '
            'tools/deployment/pytorch2onnx.py')
    pre = model_cfg.get('data_preprocessor') or {}
    wanted = dict(
        num_classes=int(model_cfg['bbox_head']['num_classes']),
        mean=[float(v) for v in pre.get('mean', [0., 0., 0.])],
        std=[float(v) for v in pre.get('std', [1., 1., 1.])],
        bgr_to_rgb=bool(pre.get('bgr_to_rgb') or pre.get('rgb_to_bgr')),
    )
    for key, value in wanted.items():
        if meta.get(key) != value:
            what = ('number of classes' if key == 'num_classes' else
                    'input layout (channel order / normalisation)')
            raise DeployMismatchError(
                f'{what} differs: {config_file} has {key}={value} but '
                f'{onnx_file} was exported with {key}={meta.get(key)}')


def rescale_size(width: int, height: int, resize: Optional[dict]
                 ) -> Tuple[int, int]:
    """The (w, h) mmdet's ``Resize`` (mmcv's ``imrescale`` with
    ``keep_ratio``, else ``imresize``) gives an image of (width, height)."""
    if not resize:
        return width, height
    scale, factor = resize.get('scale'), resize.get('scale_factor')
    if scale is None:
        if factor is None:
            return width, height
        fw, fh = (factor, factor) if isinstance(factor,
                                                (int, float)) else factor
        scale = (int(width * float(fw) + 0.5), int(height * float(fh) + 0.5))
    if not resize.get('keep_ratio'):
        return int(scale[0]), int(scale[1])
    ratio = min(max(scale) / max(height, width),
                min(scale) / min(height, width))
    return int(width * float(ratio) + 0.5), int(height * float(ratio) + 0.5)


class ORTDetector:
    """DETR exported by ``tools/deployment/pytorch2onnx.py``, run by ONNX
    Runtime on images.

    Args:
        onnx_file (str): The exported model (with mmdetr's metadata).
        num_threads (int, optional): Intra-op threads.
        optimization (str): ONNX Runtime graph optimisation level.
        providers (list[str], optional): Execution providers.
    """

    def __init__(self,
                 onnx_file: str,
                 num_threads: Optional[int] = None,
                 optimization: str = 'all',
                 providers: Optional[Sequence[str]] = None) -> None:
        self.onnx_file = onnx_file
        self.session = make_session(onnx_file, num_threads, optimization,
                                    providers)
        check_io(self.session, onnx_file)
        self.meta = read_metadata(self.session, onnx_file)

    @property
    def classes(self) -> Optional[List[str]]:
        return self.meta.get('classes')

    def run(self, inputs: np.ndarray,
            img_shape: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The raw graph: ``dets`` (N, K, 5) and ``labels`` (N, K).

        Args:
            inputs (np.ndarray): Padded normalised batch (N, 3, H, W).
            img_shape (np.ndarray): Valid (h, w) per image, (N, 2).
        """
        dets, labels = self.session.run(
            ['dets', 'labels'], {
                'input': np.ascontiguousarray(inputs, dtype=np.float32),
                'img_shape': np.asarray(img_shape, dtype=np.int64)
            })
        return dets, labels

    def load(self, image: Image) -> np.ndarray:
        """A BGR uint8 (h, w, 3) image from a file or an array."""
        if isinstance(image, str):
            import cv2
            img = cv2.imread(image, cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(f'cannot read image file: {image}')
            return img
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError('ORTDetector: an image array must be (h, w, 3) '
                             f'BGR, got shape {img.shape}')
        return img

    def preprocess(self, images: Sequence[Image]
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resize, normalise and pad as the config's test pipeline and data
        preprocessor do.

        Returns:
            tuple: ``input`` (N, 3, H, W) float32, ``img_shape`` (N, 2)
            int64, ``scale_factor`` (N, 2) float as (w_scale, h_scale).
        """
        import cv2
        meta = self.meta
        mean = np.asarray(meta.get('mean', [0., 0., 0.]), np.float32)
        std = np.asarray(meta.get('std', [1., 1., 1.]), np.float32)
        resized, factors = [], []
        for image in images:
            img = self.load(image)
            h, w = img.shape[:2]
            new_w, new_h = rescale_size(w, h, meta.get('resize'))
            if (new_w, new_h) != (w, h):
                img = cv2.resize(img, (new_w, new_h),
                                 interpolation=cv2.INTER_LINEAR)
            img = img.astype(np.float32)
            if meta.get('bgr_to_rgb'):
                img = img[..., ::-1]
            resized.append((img - mean) / std)
            factors.append((new_w / w, new_h / h))
        divisor = max(int(meta.get('pad_size_divisor', 1)), 1)
        height = -(-max(i.shape[0] for i in resized) // divisor) * divisor
        width = -(-max(i.shape[1] for i in resized) // divisor) * divisor
        batch = np.full((len(resized), 3, height, width),
                        meta.get('pad_value', 0.), np.float32)
        for i, img in enumerate(resized):
            batch[i, :, :img.shape[0], :img.shape[1]] = img.transpose(2, 0, 1)
        img_shape = np.array([i.shape[:2] for i in resized], np.int64)
        return batch, img_shape, np.array(factors, np.float64)

    def __call__(self,
                 images: Union[Image, Sequence[Image]],
                 score_thr: float = 0.0) -> List[Dict[str, np.ndarray]]:
        """Detect objects in one image or a batch.

        Args:
            images: Image file(s) or BGR uint8 (h, w, 3) array(s).
            score_thr (float): Keep detections scoring at least this.

        Returns:
            list[dict]: per image, ``bboxes`` (n, 4) (x1, y1, x2, y2) in the
            original image's pixels, ``scores`` (n, ), ``labels`` (n, ),
            best first.
        """
        if isinstance(images, str) or (isinstance(images, np.ndarray)
                                       and images.ndim == 3):
            images = [images]
        if len(images) == 0:
            return []
        batch, img_shape, factors = self.preprocess(images)
        dets, labels = self.run(batch, img_shape)
        results = []
        for i in range(len(images)):
            keep = dets[i, :, 4] >= score_thr
            scale = np.tile(factors[i], 2)  # (w, h, w, h)
            results.append(
                dict(
                    bboxes=(dets[i, keep, :4] / scale).astype(np.float32),
                    scores=dets[i, keep, 4],
                    labels=labels[i, keep]))
        return results
