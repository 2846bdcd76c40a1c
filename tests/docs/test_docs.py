# Copyright (c) mmdetr contributors. All rights reserved.
"""The README and the guides under docs/ stay runnable: every tool their
commands name exists and accepts the options they show, every config and
make target they name exists, and every relative link (and its #anchor)
leads somewhere. Nothing is trained: each tool is asked for ``--help``."""
import glob
import os.path as osp
import re
import shlex
import subprocess
import sys
from functools import lru_cache

import pytest

from helpers import ROOT

DOCS = ['README.md'] + sorted(
    osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'docs', '*.md')))
# the shell launchers pass their extra options on to these scripts
LAUNCHED = {
    'tools/dist_train.sh': 'tools/train.py',
    'tools/slurm_train.sh': 'tools/train.py',
    'tools/dist_test.sh': 'tools/test.py',
    'tools/slurm_test.sh': 'tools/test.py',
}


def _read(doc):
    with open(osp.join(ROOT, doc)) as f:
        return f.read()


def shell_lines(text):
    """Command lines of the ```bash blocks (continuations joined, comments
    dropped) and of inline code spans that start with a command."""
    lines = []
    for block in re.findall(r'```bash\n(.*?)```', text, flags=re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            line = line.split(' #')[0].strip()
            if line and not line.startswith('#'):
                lines.append(line)
    lines += re.findall(r'`((?:[A-Z_]+=\S+ )*(?:python|bash|make) [^`]+)`',
                        text)
    return lines


def documented_commands():
    """(doc, line, tool, arguments after the tool) for each line that runs
    a script under tools/."""
    found = []
    for doc in DOCS:
        for line in shell_lines(_read(doc)):
            tokens = shlex.split(line)
            for i, token in enumerate(tokens):
                if re.fullmatch(r'tools/\S+\.(py|sh)', token):
                    found.append((doc, line, token, tokens[i + 1:]))
                    break
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands_of_every_kind():
    tools = {tool for _, _, tool, _ in COMMANDS}
    # a guard against an extractor that silently finds nothing
    assert {'tools/train.py', 'tools/test.py',
            'tools/analysis_tools/benchmark.py',
            'tools/model_converters/detr_to_mmdetr.py',
            'tools/dist_train.sh'} <= tools, sorted(tools)


@pytest.mark.parametrize('doc,line,tool,args', COMMANDS,
                         ids=[f'{c[0]}:{c[2]}' for c in COMMANDS])
def test_documented_tool_and_configs_exist(doc, line, tool, args):
    assert osp.isfile(osp.join(ROOT, tool)), f'{doc}: {line}'
    for arg in args:
        if re.fullmatch(r'configs/\S+\.py', arg):
            assert osp.isfile(osp.join(ROOT, arg)), f'{doc}: {line}'


@lru_cache(maxsize=None)
def _help(tool, subcommand=None):
    cmd = [sys.executable, tool] + ([subcommand] if subcommand else [])
    proc = subprocess.run(
        cmd + ['--help'], cwd=ROOT, capture_output=True, text=True,
        env={'PYTHONPATH': ROOT, 'PATH': osp.dirname(sys.executable)},
        timeout=300)
    assert proc.returncode == 0, f'{cmd} --help failed:\n{proc.stderr}'
    return proc.stdout


def _flags_by_tool():
    """{(python tool, subcommand or None): {option: a line showing it}}."""
    wanted = {}
    for doc, line, tool, args in COMMANDS:
        tool = LAUNCHED.get(tool, tool)
        if not tool.endswith('.py'):
            continue
        sub = None
        if args and re.fullmatch(r'[a-z]+_[a-z_]+', args[0]):
            sub = args[0]  # e.g. analyze_logs.py plot_curve
        for arg in args:
            if arg.startswith('--'):
                wanted.setdefault((tool, sub), {}).setdefault(
                    arg.split('=')[0], f'{doc}: {line}')
    return wanted


FLAGS = _flags_by_tool()


@pytest.mark.parametrize('tool,sub', sorted(FLAGS, key=str),
                         ids=[f'{t}{" " + s if s else ""}'
                              for t, s in sorted(FLAGS, key=str)])
@pytest.mark.slow
def test_documented_options_are_accepted(tool, sub):
    text = _help(tool, sub)
    for flag, where in FLAGS[(tool, sub)].items():
        assert re.search(rf'{re.escape(flag)}(?![\w-])', text), (
            f'{where}: {tool} does not accept {flag}')


def test_documented_make_targets_and_variables_exist():
    makefile = _read('Makefile')
    shown = [line for doc in DOCS for line in shell_lines(_read(doc))
             if line.startswith('make ')]
    assert shown
    for line in shown:
        for token in shlex.split(line)[1:]:
            if '=' in token:
                name = token.split('=')[0]
                assert re.search(rf'^{name} \?=', makefile, re.M), line
            else:
                assert re.search(rf'^{token}:', makefile, re.M), line


def _anchors(text):
    """GitHub's anchors of the markdown headings in ``text``."""
    slugs = set()
    text = re.sub(r'```.*?```', '', text, flags=re.S)  # '# comments'
    for title in re.findall(r'^#+ (.+)$', text, flags=re.M):
        slug = re.sub(r'[^\w\- ]', '', title.strip().lower())
        slugs.add(slug.replace(' ', '-'))
    return slugs


@pytest.mark.parametrize('doc', DOCS)
def test_relative_links_lead_somewhere(doc):
    text = re.sub(r'```.*?```', '', _read(doc), flags=re.S)
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+://', target):
            continue
        path, _, anchor = target.partition('#')
        full = osp.normpath(
            osp.join(ROOT, osp.dirname(doc), path) if path else osp.join(
                ROOT, doc))
        assert osp.exists(full), f'{doc}: link {target!r} leads nowhere'
        if anchor and full.endswith('.md'):
            with open(full) as f:
                assert anchor in _anchors(f.read()), (
                    f'{doc}: link {target!r}: no heading with that anchor')


def readme_layout():
    """The package files the README's layout lists, as paths relative to
    the repository (its ``mmdetr/`` tree, read by indentation)."""
    text = _read('README.md')
    section = text.split('## Layout', 1)[1]
    block = re.search(r'```\n(.*?)```', section, flags=re.S).group(1)
    listed, stack = set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        stack = stack[:depth] + [name]
        path = ''.join(stack)
        if path.startswith('mmdetr/'):
            listed.add(path)
    return listed


def test_readme_layout_matches_the_package():
    """Every package module the README's layout lists exists, and every
    module of the package (``__init__.py`` aside) is listed."""
    listed = readme_layout()
    assert 'mmdetr/models/detr_head.py' in listed  # the parser reads it
    modules = {
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'mmdetr', '**', '*.py'),
                           recursive=True)
        if not p.endswith('__init__.py')
    }
    folders = {osp.dirname(m) + '/' for m in modules}
    missing = [p for p in listed if not (p in modules or p in folders or
                                         osp.isdir(osp.join(ROOT, p)))]
    assert not missing, f'README layout lists what does not exist: {missing}'
    # a module counts as listed when it or a folder above it is (core/ is
    # listed as a folder of aliases)
    unlisted = sorted(m for m in modules if m not in listed and not any(
        m.startswith(p) for p in listed if p.endswith('/') and
        not any(q.startswith(p) and q != p for q in listed)))
    assert not unlisted, f'README layout misses: {unlisted}'


@pytest.mark.parametrize('doc', DOCS)
def test_no_placeholder_left_for_a_figure(doc):
    """A line that is one upper-case word (``RESULTS``, ``SOME_TABLE``)
    outside code blocks, or a "to be measured" / TBD / TODO in the text,
    is a figure someone meant to fill in."""
    text = re.sub(r'```.*?```', '', _read(doc), flags=re.S)
    left = [line for line in text.splitlines()
            if re.fullmatch(r'[A-Z][A-Z0-9_]{3,}', line.strip()) or
            re.search(r'to be (measured|filled)|\bTBD\b|\bTODO\b', line,
                      flags=re.I)]
    assert not left, f'{doc}: placeholders left: {left}'
