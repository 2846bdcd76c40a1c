# Copyright (c) mmdetr contributors. All rights reserved.
"""ResNet with dilated stages as torchvision and timm dilate them (DETR DC5).

Official DETR's DC5 models replace the stride of ResNet's last stage with a
dilation (torchvision's ``replace_stride_with_dilation``; timm's
``output_stride=16``, which Hugging Face transformers uses): the feature map
has stride 16 instead of 32. In both, the *first* block of the dilated stage
keeps the previous dilation in its 3x3 convolution; only the blocks after it
are dilated. mmdet's ``ResNet(dilations=...)`` dilates every block of the
stage, the first one too, which computes another function on the same
weights. :class:`DilatedResNet` is mmdet's ResNet with torchvision's rule;
its parameters and state-dict keys are mmdet's.
"""
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from mmdetr.registry import MODELS


@MODELS.register_module()
class DilatedResNet(ResNet):
    """mmdet's ``ResNet`` whose dilated stages start as torchvision's do.

    Takes mmdet ResNet's arguments. For each stage whose dilation differs
    from the previous stage's (1 before the first stage), the 3x3
    convolution of the stage's first block (``conv2`` of a bottleneck,
    ``conv1`` of a basic block) gets the previous dilation and padding; the
    other blocks keep the stage's. With ``strides=(1, 2, 2, 1)`` and
    ``dilations=(1, 1, 1, 2)`` this is official DETR's DC5 backbone.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        previous = 1
        for dilation, name in zip(self.dilations, self.res_layers):
            if dilation != previous:
                first = getattr(self, name)[0]
                conv = first.conv2 if isinstance(first, Bottleneck) else \
                    first.conv1
                if not isinstance(first, (Bottleneck, BasicBlock)) or \
                        type(conv) is not nn.Conv2d:
                    raise TypeError(
                        f'DilatedResNet: {name}: cannot re-dilate a '
                        f'{type(conv).__name__} (dcn or plugins are not '
                        'supported)')
                conv.dilation = (previous, previous)
                conv.padding = (previous, previous)
            previous = dilation
