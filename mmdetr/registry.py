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

Config adapters (:func:`register_config_adapter`) let a component config
written in another form, e.g. mmdet 2.x's ``HungarianAssigner(cls_cost=...)``,
build the class that accepts that form, before mmdetr's registries build
it. :mod:`mmdetr.compat` registers them; the core classes only know their
own form.
"""
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional

from mmdet import registry as mmdet_registry
from mmengine.registry import Registry

_LOCATIONS = ['mmdetr.models', 'mmdetr.speed', 'mmdetr.extras',
              'mmdetr.panoptic']

#: type name -> adapters, each ``adapter(cfg) -> cfg or None`` (None: not
#: its form)
_CONFIG_ADAPTERS: Dict[str, List[Callable[[dict], Optional[dict]]]] = {}


def register_config_adapter(type_name: str,
                            adapter: Callable[[dict], Optional[dict]]
                            ) -> None:
    """Have configs of ``type_name`` (``'X'`` or ``'mmdetr.X'``) pass
    through ``adapter`` before mmdetr's registries build them; it returns a
    new config (its ``type`` may be a class) or None to leave it as is."""
    adapters = _CONFIG_ADAPTERS.setdefault(type_name, [])
    if adapter not in adapters:
        adapters.append(adapter)


def adapt_config(cfg):
    """``cfg`` after the first config adapter of its type that takes it."""
    kind = cfg.get('type') if isinstance(cfg, dict) else None
    if not isinstance(kind, str) or kind.split('.')[0] not in (
            kind, 'mmdetr'):
        return cfg  # a class, or another scope's name ('mmdet.X')
    for adapter in _CONFIG_ADAPTERS.get(kind.split('.')[-1], ()):
        adapted = adapter(cfg)
        if adapted is not None:
            return adapted
    return cfg


def _adapting(build_func):

    def build(cfg, *args, **kwargs):
        return build_func(adapt_config(cfg), *args, **kwargs)

    return build


def _child(parent: Registry, locations=None) -> Registry:
    return Registry(
        parent.name,
        parent=parent,
        scope='mmdetr',
        locations=locations or [],
        build_func=_adapting(parent.build_func))


# Registries mmdetr registers into.
MODELS = _child(mmdet_registry.MODELS, _LOCATIONS)
TASK_UTILS = _child(mmdet_registry.TASK_UTILS, _LOCATIONS)

# The rest of the runner's registries, so that default_scope='mmdetr' finds
# mmdet's datasets, transforms, metrics, hooks ... through the parent.
RUNNERS = _child(mmdet_registry.RUNNERS, ['mmdetr.engine'])
RUNNER_CONSTRUCTORS = _child(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmdet_registry.LOOPS, ['mmdetr.engine'])
HOOKS = _child(mmdet_registry.HOOKS, ['mmdetr.engine'])
DATASETS = _child(mmdet_registry.DATASETS, ['mmdetr.datasets'])
DATA_SAMPLERS = _child(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmdet_registry.TRANSFORMS)
MODEL_WRAPPERS = _child(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmdet_registry.OPTIM_WRAPPERS, ['mmdetr.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child(
    mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS, ['mmdetr.engine'])
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
