# Copyright (c) mmdetr contributors. All rights reserved.
"""tools/analysis_tools/amp_benchmark.py: float32 against mixed precision
on the R50 model, small images; what it reports and how it alternates."""
import pytest

from helpers import load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis_tools/amp_benchmark.py',
                     'amp_benchmark_tool')


@pytest.fixture
def bf16_cpu(monkeypatch):
    import mmdetr.engine.amp as amp
    monkeypatch.setattr(amp, 'cpu_bf16_support',
                        lambda: amp.CpuBf16Support(True, False))


def test_rounds_alternate_which_precision_goes_first(tool):
    calls = []
    steps = {p: (lambda p=p: calls.append(p) or dict(t=len(calls)))
             for p in tool.PRECISIONS}
    out = tool.time_rounds(steps, warmup=1, repeats=3)
    assert calls == ['float32', 'amp', 'float32', 'amp', 'amp', 'float32',
                     'float32', 'amp']
    assert out['float32']['t'] == [3, 6, 7] and out['amp']['t'] == [4, 5, 8]


def test_refuses_a_cpu_without_bfloat16(tool, monkeypatch):
    import mmdetr.engine.amp as amp
    monkeypatch.delenv('MMDETR_EMULATED_BF16', raising=False)
    monkeypatch.setattr(amp, 'cpu_bf16_support',
                        lambda: amp.CpuBf16Support(False, False))
    with pytest.raises(SystemExit):
        tool.parse_args([])


@pytest.mark.slow  # builds and steps the R50 model: about 20 s
def test_reports_both_precisions_with_the_backbone_share(tool, bf16_cpu,
                                                         capsys, tmp_path):
    """R50 on small images, one round each: the rows, the shares and the
    JSON."""
    import json
    args = ['--infer-size', '64x96', '--train-sizes', '64x96', '64x80',
            '--repeats', '1', '--warmup', '0', '--no-memory', '--json',
            str(tmp_path / 'r.json')]
    assert tool.main(args) == 0
    out = capsys.readouterr().out
    for row in ('preprocess', 'predict', '  backbone', 'train'):
        assert f'\n{row}' in out
    assert 'outside the backbone' in out and 'load average' in out
    table = json.load(open(tmp_path / 'r.json'))['table']
    for key in ('predict', 'predict_backbone', 'train', 'train_backbone'):
        assert 0 < table[key]['amp'] and 0 < table[key]['float32']
    assert table['predict_backbone']['amp'] < table['predict']['amp']
    assert table['train_backbone']['amp'] < table['train']['amp']
    assert 0 < table['outside_share_amp'] < 1
