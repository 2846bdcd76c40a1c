# Copyright (c) mmdetr contributors. All rights reserved.
"""With mmdet's default scope (as mmdet configs and register_all_modules()
set it), a model dict scoped to mmdetr builds mmdetr's classes all the way
down, and mmdet's own DETR still builds mmdet's."""
import textwrap

from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from helpers import build_mmdet, mmdetr_cfg


def _assert_mmdetr_parts(model):
    head = model.bbox_head
    parts = dict(
        detector=model,
        head=head,
        assigner=head.assigner,
        transformer=head.transformer,
        positional_encoding=head.positional_encoding,
        **{
            f'cost{i}': c
            for i, c in enumerate(head.assigner.match_costs)
        })
    for name, obj in parts.items():
        assert type(obj).__module__.startswith('mmdetr.'), (
            name, type(obj).__module__)
    # what mmdetr does not define comes from mmdet
    assert type(model.backbone).__module__.startswith('mmdet.')
    assert type(head.loss_cls).__module__.startswith('mmdet.')


def test_custom_imports_config_builds_mmdetr_components(tmp_path):
    register_all_modules(init_default_scope=True)
    cfg_file = tmp_path / 'user_detr.py'
    model = mmdetr_cfg()
    cfg_file.write_text(
        textwrap.dedent("""
        custom_imports = dict(imports=['mmdetr'], allow_failed_imports=False)
        default_scope = 'mmdet'
        """) + f'model = {model!r}\n')
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model._scope_ == 'mmdetr'
    with DefaultScope.overwrite_default_scope('mmdet'):
        built = MODELS.build(cfg.model)
    _assert_mmdetr_parts(built)


def test_prefixed_type_without_scope_still_builds_mmdetr_children():
    """``type='mmdetr.DETR'`` without ``_scope_``: the detector builds its
    own children in mmdetr's scope. mmengine resolves the prefix for the
    detector's class only; the scope of what the detector builds inside
    stays ``mmdet``, so without ``mmdetr_scope`` its head would be mmdet's."""
    cfg = mmdetr_cfg()
    cfg.pop('_scope_')
    cfg['type'] = 'mmdetr.DETR'
    with DefaultScope.overwrite_default_scope('mmdet'):
        built = MODELS.build(cfg)
    _assert_mmdetr_parts(built)


def test_mmdet_detr_is_untouched_in_the_same_process():
    import mmdetr  # noqa: F401
    model = build_mmdet()
    assert type(model).__module__.startswith('mmdet.')
    assert type(model.bbox_head).__module__.startswith('mmdet.')
    assert type(
        model.bbox_head.assigner).__module__.startswith('mmdet.')
