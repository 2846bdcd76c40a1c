# Copyright (c) mmdetr contributors. All rights reserved.
"""An exported DETR as an mmengine model, so that mmengine's test loop,
mmdet's CocoMetric and the visualisation hook run it like the PyTorch one
(``tools/deployment/test.py``)."""
from typing import List, Optional

import numpy as np
import torch
from mmengine.model import BaseModel
from mmengine.structures import InstanceData

from mmdetr.registry import MODELS
from .ort_detector import ORTDetector


@MODELS.register_module()
class ORTDetectionModel(BaseModel):
    """Runs the ONNX model on batches from the config's data preprocessor.

    Args:
        onnx_file (str): Exported by ``tools/deployment/pytorch2onnx.py``.
        data_preprocessor (dict): The config's (``DetDataPreprocessor``):
            the graph takes its padded, normalised batch.
        num_threads (int, optional): ONNX Runtime intra-op threads.
    """

    def __init__(self,
                 onnx_file: str,
                 data_preprocessor: Optional[dict] = None,
                 num_threads: Optional[int] = None,
                 init_cfg=None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.ort = ORTDetector(onnx_file, num_threads=num_threads)

    def forward(self, inputs: torch.Tensor, data_samples: List = None,
                mode: str = 'predict'):
        """Detections written into each data sample's ``pred_instances``,
        in original-image pixels (as ``DETR.predict(rescale=True)``).

        Args:
            inputs (Tensor): Padded normalised batch, (N, 3, H, W).
            data_samples (list[DetDataSample]): With ``img_shape`` and
                ``scale_factor``.
            mode (str): Only 'predict'.
        """
        if mode != 'predict':
            raise ValueError(f'an ONNX model only predicts, got mode={mode!r}')
        img_shape = np.array([ds.img_shape[:2] for ds in data_samples],
                             np.int64)
        dets, labels = self.ort.run(inputs.detach().cpu().numpy(), img_shape)
        for ds, det, label in zip(data_samples, dets, labels):
            bboxes = torch.from_numpy(det[:, :4].copy())
            # the same float32 division as DETRHead's rescale
            bboxes /= bboxes.new_tensor(ds.scale_factor).repeat((1, 2))
            ds.pred_instances = InstanceData(
                bboxes=bboxes,
                scores=torch.from_numpy(det[:, 4].copy()),
                labels=torch.from_numpy(label.copy()))
        return data_samples
