# Copyright (c) mmdetr contributors. All rights reserved.
from .local_visualizer import DetLocalVisualizer

__all__ = ['DetLocalVisualizer']
