# Copyright (c) mmdetr contributors. All rights reserved.
"""Import a script under tools/ (tools/ is not a package) as a module."""
import importlib.util
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(rel_path: str, name: str):
    """Load ``ROOT/rel_path`` as module ``name``."""
    spec = importlib.util.spec_from_file_location(name,
                                                  osp.join(ROOT, rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
