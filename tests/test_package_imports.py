# Copyright (c) mmdetr contributors. All rights reserved.
"""The import graph of the mmdetr package: no cycle, counting the imports
made inside functions (which hide a cycle from import time, not from the
reader), and dependencies that flow one way: the core (``mmdetr.models``)
imports nothing from the edges (speed parts, training extras, mmdet 2.x
forms, engine, deployment, checkpoints), the speed parts
(``mmdetr.speed``) build on the core and the registry only, and the
checkpoint package reads the model it fills without importing it."""
import ast
import os
import os.path as osp
from typing import Dict, List, Optional, Set, Tuple

from helpers import ROOT

#: what the core may import: itself and the registry
CORE, CORE_MAY_IMPORT = 'mmdetr.models', ('mmdetr.models', 'mmdetr.registry')
#: what the checkpoint package may import: itself, the registry and the
#: datasets (whose types name a config's classes); not the core, whose
#: models it reads by their attributes, nor the engine, which loads with it
CHECKPOINTS = 'mmdetr.checkpoints'
CHECKPOINTS_MAY_IMPORT = (CHECKPOINTS, 'mmdetr.registry', 'mmdetr.datasets')
#: what the speed parts may import: themselves, the core and the registry
SPEED, SPEED_MAY_IMPORT = 'mmdetr.speed', ('mmdetr.speed', 'mmdetr.models',
                                           'mmdetr.registry')


def package_modules(pkg_dir: str, pkg: str) -> Dict[str, str]:
    """Dotted module name -> file, for every .py under ``pkg_dir``."""
    modules = {}
    for dirpath, _, files in os.walk(pkg_dir):
        rel = osp.relpath(dirpath, osp.dirname(pkg_dir))
        prefix = rel.replace(os.sep, '.')
        for name in files:
            if not name.endswith('.py'):
                continue
            mod = prefix if name == '__init__.py' else \
                f'{prefix}.{name[:-3]}'
            modules[mod] = osp.join(dirpath, name)
    assert pkg in modules, f'{pkg_dir} is not the package {pkg}'
    return modules


def _resolve(module: str, is_pkg: bool, level: int,
             target: Optional[str]) -> str:
    """Absolute name of a (possibly relative) import in ``module``."""
    if level == 0:
        return target
    base = module.split('.')
    base = base if is_pkg else base[:-1]
    base = base[:len(base) - (level - 1)]
    return '.'.join(base + ([target] if target else []))


def import_graph(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """Module -> the package's modules it imports, anywhere in its code.

    Importing ``a.b.c`` also runs the packages ``a.b`` and ``a``, except
    those that contain the importing module (Python has started them before
    it), so those count as imported too.
    """
    graph = {}
    for module, path in modules.items():
        is_pkg = path.endswith('__init__.py')
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_pkg, node.level, node.module)
                targets.add(base)
                # `from pkg import sub` imports the submodule pkg.sub
                targets.update(f'{base}.{alias.name}' for alias in node.names)
        own = {'.'.join(module.split('.')[:i])
               for i in range(1, module.count('.') + 2 - (not is_pkg))}
        edges = set()
        for target in targets:
            parts = target.split('.')
            for i in range(1, len(parts) + 1):
                name = '.'.join(parts[:i])
                if name in modules and name not in own and name != module:
                    edges.add(name)
        graph[module] = edges
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as [m0, m1, ..., m0], or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_mmdetr_has_no_import_cycle():
    modules = package_modules(osp.join(ROOT, 'mmdetr'), 'mmdetr')
    graph = import_graph(modules)
    # the walk sees the package's real structure, local imports included
    assert 'mmdetr.engine.runner' in graph['mmdetr.engine.launcher']
    assert 'mmdetr.models.set_targets' in graph['mmdetr.models.detr_head']
    cycle = find_cycle(graph)
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def reachable(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def forbidden_imports(graph: Dict[str, Set[str]], package: str = CORE,
                      may_import: Tuple[str, ...] = CORE_MAY_IMPORT
                      ) -> Dict[str, Set[str]]:
    """Module of ``package`` -> the modules outside ``may_import`` it
    reaches (by default: core module -> what it reaches outside the
    core)."""
    out = {}
    for module in graph:
        if module == package or module.startswith(package + '.'):
            bad = {m for m in reachable(graph, module)
                   if not m.startswith(may_import)}
            if bad:
                out[module] = bad
    return out


def test_the_core_imports_nothing_from_the_edges():
    graph = import_graph(package_modules(osp.join(ROOT, 'mmdetr'), 'mmdetr'))
    assert forbidden_imports(graph) == {}
    # and the edges do build on the core
    for edge in ('mmdetr.compat.mmdet2_head', 'mmdetr.extras.group_detr',
                 'mmdetr.deploy.export', 'mmdetr.speed.weight_cache'):
        assert any(m.startswith(CORE) for m in graph[edge]), edge


def test_checkpoints_import_neither_the_core_nor_the_engine():
    graph = import_graph(package_modules(osp.join(ROOT, 'mmdetr'), 'mmdetr'))
    assert forbidden_imports(graph, CHECKPOINTS,
                             CHECKPOINTS_MAY_IMPORT) == {}
    # the engine loads with it
    assert 'mmdetr.checkpoints.safe_load' in graph['mmdetr.engine.runner']


def test_a_forbidden_import_fails(tmp_path):
    """The check itself: a core module that imports the engine, even
    inside a function, is reported."""
    pkg = tmp_path / 'mmdetr'
    for sub in ('models', 'engine'):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / '__init__.py').write_text('')
    (pkg / '__init__.py').write_text('')
    (pkg / 'registry.py').write_text('')
    (pkg / 'models' / 'head.py').write_text(
        'from mmdetr.registry import MODELS\n\ndef f():\n'
        '    from mmdetr.engine import hub\n')
    (pkg / 'engine' / 'hub.py').write_text('')
    graph = import_graph(package_modules(str(pkg), 'mmdetr'))
    assert forbidden_imports(graph) == {
        'mmdetr.models.head': {'mmdetr.engine', 'mmdetr.engine.hub'}}


def test_a_cycle_through_a_local_import_is_found(tmp_path):
    """The walker itself: a cycle made only by an import inside a function
    (the kind that stays hidden at import time) is reported."""
    pkg = tmp_path / 'pkg'
    (pkg / 'sub').mkdir(parents=True)
    (pkg / '__init__.py').write_text('')
    (pkg / 'sub' / '__init__.py').write_text('from .a import f\n')
    (pkg / 'sub' / 'a.py').write_text('from pkg.b import g\n\ndef f():\n'
                                      '    return g()\n')
    (pkg / 'b.py').write_text('def g():\n    from .sub import a\n'
                              '    return a\n')
    graph = import_graph(package_modules(str(pkg), 'pkg'))
    cycle = find_cycle(graph)
    assert cycle is not None and 'pkg.b' in cycle and 'pkg.sub.a' in cycle
    # without the local import there is none
    (pkg / 'b.py').write_text('def g():\n    return 1\n')
    assert find_cycle(import_graph(package_modules(str(pkg), 'pkg'))) is None


def test_the_speed_parts_build_on_the_core_and_the_registry_only():
    graph = import_graph(package_modules(osp.join(ROOT, 'mmdetr'), 'mmdetr'))
    assert 'mmdetr.speed.transforms' in graph
    assert forbidden_imports(graph, SPEED, SPEED_MAY_IMPORT) == {}
    assert not any(m.startswith(SPEED) for core in graph
                   if core.startswith(CORE) for m in graph[core])
