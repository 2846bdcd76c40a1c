# Copyright (c) mmdetr contributors. All rights reserved.
"""mmdetr's registry nodes, children of mmdet's.

mmdetr reuses mmdet's class names (``DETR``, ``DETRHead``,
``HungarianAssigner`` ...), so it registers them into registries of its own
(scope ``mmdetr``) instead of mmdet's: mmdet's classes keep working in the same
process, and a config picks mmdetr's with ``_scope_='mmdetr'`` on the model
dict (or a ``mmdetr.`` type prefix). Names mmdetr does not define (``ResNet``,
``CrossEntropyLoss``, ``DetDataPreprocessor`` ...) are found in mmdet, the
parent.

Every runner registry has an mmdetr child so that ``default_scope='mmdetr'``
works as well as mmdet's default scope.
"""
from contextlib import contextmanager
from typing import Iterator

from mmdet import registry as mmdet_registry
from mmengine.registry import Registry

_LOCATIONS = ['mmdetr.models']


def _child(parent: Registry, locations=None) -> Registry:
    return Registry(
        parent.name, parent=parent, scope='mmdetr', locations=locations or [])


# Registries mmdetr registers into.
MODELS = _child(mmdet_registry.MODELS, _LOCATIONS)
TASK_UTILS = _child(mmdet_registry.TASK_UTILS, _LOCATIONS)

# The rest of the runner's registries, so that default_scope='mmdetr' finds
# mmdet's datasets, transforms, metrics, hooks ... through the parent.
RUNNERS = _child(mmdet_registry.RUNNERS, ['mmdetr.engine'])
RUNNER_CONSTRUCTORS = _child(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmdet_registry.LOOPS)
HOOKS = _child(mmdet_registry.HOOKS, ['mmdetr.engine'])
DATASETS = _child(mmdet_registry.DATASETS, ['mmdetr.datasets'])
DATA_SAMPLERS = _child(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmdet_registry.TRANSFORMS)
MODEL_WRAPPERS = _child(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmdet_registry.OPTIM_WRAPPERS, ['mmdetr.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child(mmdet_registry.METRICS, ['mmdetr.evaluation'])
EVALUATOR = _child(mmdet_registry.EVALUATOR)
VISUALIZERS = _child(mmdet_registry.VISUALIZERS,
                     ['mmdetr.visualization'])
VISBACKENDS = _child(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmdet_registry.LOG_PROCESSORS)


@contextmanager
def mmdetr_scope(registry: Registry) -> Iterator[Registry]:
    """Look names up in mmdetr first, whatever the default scope is.

    mmdetr's components build their children through this, so a
    ``type='HungarianAssigner'`` inside mmdetr's head is mmdetr's assigner
    even when the runner's default scope is ``mmdet``. Without it, mmengine
    0.10 resolves a plain name in the *default* scope first, even when the
    build goes through mmdetr's child registry, and a ``mmdetr.`` prefix on
    the detector picks its class without switching the scope of what it
    builds inside: training would silently run mmdet's head and assigner.
    A ``mmdet.`` prefix still picks mmdet's class explicitly.
    """
    with registry.switch_scope_and_registry('mmdetr') as scoped:
        yield scoped


def build_model(cfg: dict, **kwargs):
    """Build a model component from ``cfg`` with mmdetr's classes first."""
    with mmdetr_scope(MODELS) as registry:
        return registry.build(cfg, **kwargs)


def build_task_util(cfg: dict, **kwargs):
    """Build an assigner, match cost ... with mmdetr's classes first."""
    with mmdetr_scope(TASK_UTILS) as registry:
        return registry.build(cfg, **kwargs)
