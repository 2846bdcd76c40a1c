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


def test_quick_is_small_and_the_roofline_can_be_skipped(tool, bf16_cpu):
    quick = tool.parse_args(['--quick'])
    assert quick.train_sizes[0][0] < 800 and quick.infer_size[0] < 800
    assert quick.repeats <= 3 and not quick.no_roofline
    assert tool.parse_args(['--no-roofline']).no_roofline


@pytest.mark.slow  # builds and steps the R50 model: about 20 s
def test_reports_both_precisions_with_the_backbone_share(
        tool, bf16_cpu, capsys, tmp_path, monkeypatch):
    """R50 on small images, one round each: the rows, the shares, the
    roofline of each precision and the JSON."""
    import json
    monkeypatch.setattr(tool.roofline, 'PROBES',
                        dict(conv=(1, 16, 8, 8), matmul=64))
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
    # the roofline: float32 rows on the float32 floor, bfloat16 rows on
    # bfloat16's; the same function counted in both precisions
    roofline = out[out.index('\nroofline'):]
    for row in ('predict     float32', 'predict    bfloat16',
                'train       float32', 'train      bfloat16'):
        assert f'\n{row}' in roofline
    assert 'peak GFLOPS' in roofline
    data = json.load(open(tmp_path / 'r.json'))['roofline']
    peaks = data['peaks']
    assert set(peaks) == {'float32', 'bfloat16'}
    work = {(w['workload'], w['dtype']): w for w in data['workloads']}
    assert set(work) == {(r, d) for r in ('predict', 'train')
                         for d in ('float32', 'bfloat16')}
    for (row, dtype), w in work.items():
        assert w['conv_flops'] > 0 and w['matmul_flops'] > 0
        assert w['floor'] == pytest.approx(
            w['conv_flops'] / peaks[dtype]['conv'] +
            w['matmul_flops'] / peaks[dtype]['matmul'])
        precision = 'float32' if dtype == 'float32' else 'amp'
        assert w['times']['mmdetr'] == pytest.approx(
            table[row][precision] / 1e3)
        assert w['multiples']['mmdetr'] == pytest.approx(
            w['times']['mmdetr'] / w['floor'])
    for row in ('predict', 'train'):
        assert work[row, 'float32']['conv_flops'] == \
            work[row, 'bfloat16']['conv_flops']
