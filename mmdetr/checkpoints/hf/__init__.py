# Copyright (c) mmdetr contributors. All rights reserved.
"""Hugging Face transformers' DETR (``DetrForObjectDetection``), in and out.

- ``layout``: what its directory holds, the keys of its weights and their
  renaming to and from mmdetr's;
- ``arch``: what the weights do not say (:class:`DetrArch`: heads,
  activation, dilation ...), read from an mmdetr model or written into its
  config;
- ``read``: a transformers DETR (directory or weights file) in mmdetr's
  layout, its class names and architecture;
- ``write``: an mmdetr DETR as a transformers DETR directory.
"""
from .arch import (DetrArch, apply_arch, arch_from_model, arch_mismatches,
                   silent_mismatches)
from .layout import CONFIG_FILE, HFConversionError, looks_like_hf
from .read import hf_files, hf_to_mmdetr, load_hf_checkpoint
from .write import export_hf, mmdetr_to_hf

__all__ = [
    'DetrArch', 'apply_arch', 'arch_from_model', 'arch_mismatches',
    'silent_mismatches', 'CONFIG_FILE', 'HFConversionError', 'looks_like_hf',
    'hf_files', 'hf_to_mmdetr', 'load_hf_checkpoint', 'export_hf',
    'mmdetr_to_hf'
]
