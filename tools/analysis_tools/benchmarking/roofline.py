# Copyright (c) mmdetr contributors. All rights reserved.
"""The roofline of the timed workloads: how far each is from the time its
arithmetic alone would take on this machine.

- **FLOPs**, counted, not estimated: one run of the workload under torch's
  ``torch.utils.flop_counter.FlopCounterMode``, which sees the operators
  torch dispatches and counts those it has a formula for (a multiply-add
  is 2 FLOPs): convolutions (forward and backward) and the matmul-like
  operators (``mm``, ``addmm``, ``bmm``, ``baddbmm``, scaled-dot-product
  attention), kept apart here as they reach different peaks. Elementwise
  work (normalisation, activations, softmax, losses, the optimizer's
  update) is not counted. torch's counter has no formula for the CPU's
  fused attention kernel (``_scaled_dot_product_flash_attention_for_cpu``
  in torch 2.13 and 2.14; 2.1's CPU kernel is the counted
  ``_scaled_dot_product_flash_attention``) and gives it 0:
  :data:`CUSTOM_FORMULAS` counts it as torch counts the CUDA kernels.
- **Peaks**: two probes, a 3x3 256->256 convolution on a batch of 2 50x84
  channels-last maps (the 3x3 convolutions of ResNet-50's third stage at
  800x1333) and a 2048x2048 matmul, in float32 and in each mixed-precision
  dtype (run under autocast on inputs already in that dtype: the kernel's
  speed, no casts), timed after warm-up on the workloads' clock; the best
  of a few repeats. Their FLOPs are counted by the same counter.
- **Floor** of a workload in a dtype: ``conv_flops / conv_peak +
  matmul_flops / matmul_peak`` (seconds); its **multiple**: the measured
  median over the floor, how many times the workload's time its counted
  arithmetic at the probes' speed would take.
"""
import math
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.benchmark import timer as synchronized_wall_clock

#: probe shapes: ``conv``: (batch, channels, height, width), a 3x3
#: convolution channels -> channels; ``matmul``: n, an n x n by n x n
#: product
PROBES = dict(conv=(2, 256, 50, 84), matmul=2048)
#: ``--quick``'s smaller probes (lower peaks: a smoke run)
QUICK_PROBES = dict(conv=(2, 128, 50, 84), matmul=1024)
#: warm-up calls and timed repeats of each probe (best taken)
PROBE_WARMUP, PROBE_REPEATS = 2, 5
QUICK_PROBE_WARMUP, QUICK_PROBE_REPEATS = 1, 3
#: a probe's measurement runs it until this many seconds have passed, so
#: that a fast kernel (a GPU's) is not timed by its launch and sync
PROBE_MIN_SECONDS = 0.02


# ------------------------------------------------------------------ count
def _sdpa_formula(query_shape, key_shape, value_shape, *args,
                  out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_formula(grad_out_shape, query_shape, key_shape,
                           value_shape, *args, out_shape=None,
                           **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape,
                                    value_shape)


def _custom_formulas() -> dict:
    """Formulas for the operators torch's counter leaves at 0 that the
    timed models run: the CPU's fused attention (forward, backward), where
    this torch has it; same arguments as the CUDA kernels'."""
    formulas = {}
    for name, formula in (
            ('_scaled_dot_product_flash_attention_for_cpu', _sdpa_formula),
            ('_scaled_dot_product_flash_attention_for_cpu_backward',
             _sdpa_backward_formula)):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            formulas[op] = formula
    return formulas


CUSTOM_FORMULAS = _custom_formulas()


@dataclass(frozen=True)
class Flops:
    """Counted FLOPs by operator (``'aten.convolution'`` ...)."""
    by_op: Dict[str, int] = field(default_factory=dict)

    @staticmethod
    def is_conv(op: str) -> bool:
        """Convolutions, forward and backward; every other operator the
        counter counts is matmul-like."""
        return 'conv' in op

    @property
    def conv(self) -> int:
        return sum(n for op, n in self.by_op.items() if self.is_conv(op))

    @property
    def matmul(self) -> int:
        return sum(n for op, n in self.by_op.items()
                   if not self.is_conv(op))

    @property
    def total(self) -> int:
        return sum(self.by_op.values())


@contextmanager
def inference_mode_as_no_grad():
    """``torch.inference_mode()`` is ``torch.no_grad()`` inside: the same
    operators, with the autograd bookkeeping that inference mode skips.
    For the counter: in torch 2.1 (to at least 2.3, pytorch issue 126268) a
    dispatch mode such as ``FlopCounterMode`` does not see the operators
    run under inference mode: it counts 0."""
    real = torch.inference_mode

    def no_grad(mode: bool = True):
        return torch.no_grad() if mode else nullcontext()

    torch.inference_mode = no_grad
    try:
        yield
    finally:
        torch.inference_mode = real


def count_flops(step: Callable[[], object],
                inference_model: Optional[torch.nn.Module] = None) -> Flops:
    """FLOPs of one call of ``step``, as torch's ``FlopCounterMode`` counts
    them (with :data:`CUSTOM_FORMULAS`; ``torch.inference_mode`` as
    ``torch.no_grad``: :func:`inference_mode_as_no_grad`).

    Args:
        step: called once, under the counter.
        inference_model: for a step that computes no gradients (mmdetr's
            ``predict``): the model, whose parameters are counted with
            ``requires_grad`` off, then restored. The module tracker of
            torch >= 2.4's counter hooks autograd on the inputs of every
            module that require grad, and fails on a parameter's view made
            under ``no_grad`` or ``inference_mode`` (mmdetr's queries);
            with grad off the step runs the same operators.
    """
    from torch.utils.flop_counter import FlopCounterMode
    params = [] if inference_model is None else [
        p for p in inference_model.parameters() if p.requires_grad
    ]
    counter = FlopCounterMode(display=False, custom_mapping=CUSTOM_FORMULAS)
    try:
        for p in params:
            p.requires_grad_(False)
        with inference_mode_as_no_grad(), counter:
            step()
    finally:
        for p in params:
            p.requires_grad_(True)
    counts = counter.get_flop_counts().get('Global', {})
    return Flops({str(op): int(n) for op, n in counts.items() if n})


# ----------------------------------------------------------------- probes
@dataclass(frozen=True)
class Peak:
    """The probes' best speeds in one dtype, FLOP/s, and their counted
    FLOPs per call."""
    dtype: str
    conv: float
    matmul: float
    conv_flops: int
    matmul_flops: int


def probe_steps(device: str, dtype: str,
                probes: dict = None) -> Dict[str, Callable[[], object]]:
    """The two probes in ``dtype`` (``'float32'``, ``'bfloat16'`` ...) on
    ``device``, as argument-free callables; a low-precision dtype runs under
    autocast, on inputs made in that dtype."""
    probes = PROBES if probes is None else probes
    gen = torch.Generator().manual_seed(0)
    torch_dtype = getattr(torch, dtype)
    n, c, h, w = probes['conv']
    size = probes['matmul']

    def make(*shape):
        return torch.randn(*shape, generator=gen).to(device, torch_dtype)

    x = make(n, c, h, w).to(memory_format=torch.channels_last)
    weight = make(c, c, 3, 3).to(memory_format=torch.channels_last)
    a, b = make(size, size), make(size, size)

    @contextmanager
    def context():
        with torch.no_grad(), (nullcontext() if dtype == 'float32' else
                               torch.autocast(torch.device(device).type,
                                              dtype=torch_dtype)):
            yield

    def conv():
        with context():
            return F.conv2d(x, weight, padding=1)

    def matmul():
        with context():
            return a @ b

    return dict(conv=conv, matmul=matmul)


def synchronised(clock: Callable[[], float],
                 device: str) -> Callable[[], float]:
    """``clock`` after waiting for ``device``'s queued work (on CUDA)."""
    if not str(device).startswith('cuda'):
        return clock

    def read():
        torch.cuda.synchronize(device)
        return clock()

    return read


def best_seconds(step: Callable[[], object], clock: Callable[[], float],
                 warmup: int, repeats: int,
                 min_seconds: float = PROBE_MIN_SECONDS) -> float:
    """Seconds of one call of ``step``: the fastest of ``repeats``
    measurements after ``warmup`` calls, each of as many calls in a row as
    fill ``min_seconds`` (judged by one more timed call first), divided."""
    for _ in range(warmup):
        step()

    def measure(calls):
        start = clock()
        for _ in range(calls):
            step()
        return (clock() - start) / calls

    first = measure(1)
    calls = 1 if first >= min_seconds else math.ceil(
        min_seconds / max(first, 1e-9))
    return min(measure(calls) for _ in range(repeats))


def probe_peaks(device: str, dtypes: Iterable[str],
                clock: Callable[[], float] = synchronized_wall_clock,
                quick: bool = False, probes: dict = None) -> Dict[str, Peak]:
    """Each probe's best speed in each of ``dtypes`` on ``device``, timed
    on ``clock`` (the workloads'; synchronised on CUDA), with its FLOPs
    counted by :func:`count_flops`. ``quick``: :data:`QUICK_PROBES`, fewer
    repeats."""
    if probes is None:
        probes = QUICK_PROBES if quick else PROBES
    warmup, repeats = ((QUICK_PROBE_WARMUP, QUICK_PROBE_REPEATS) if quick
                       else (PROBE_WARMUP, PROBE_REPEATS))
    clock = synchronised(clock, device)
    peaks = {}
    for dtype in dtypes:
        steps = probe_steps(device, dtype, probes)
        flops = {k: count_flops(s).total for k, s in steps.items()}
        speed = {
            k: flops[k] / best_seconds(s, clock, warmup, repeats)
            for k, s in steps.items()
        }
        peaks[dtype] = Peak(dtype, speed['conv'], speed['matmul'],
                            flops['conv'], flops['matmul'])
    return peaks


def probe_dtypes(device: str) -> List[str]:
    """float32, and the mixed-precision dtype of ``--amp`` on ``device``
    where mmdetr runs it (``mmdetr.engine.amp.check_amp``: float16 on
    CUDA, bfloat16 on a CPU with bfloat16 instructions)."""
    from mmdetr.engine.amp import AmpUnsupportedError, check_amp
    try:
        return ['float32', str(check_amp(device)).split('.')[-1]]
    except AmpUnsupportedError:
        return ['float32']


def describe_probes(quick: bool = False) -> str:
    probes = QUICK_PROBES if quick else PROBES
    n, c, h, w = probes['conv']
    repeats = QUICK_PROBE_REPEATS if quick else PROBE_REPEATS
    return (f'conv 3x3 {c}->{c} on {n}x{h}x{w} channels-last, matmul '
            f'{probes["matmul"]}x{probes["matmul"]}; best of {repeats}')


# ----------------------------------------------------------- floor, table
def floor_seconds(flops: Flops, peak: Peak) -> float:
    """The time of ``flops`` at the probes' speeds: convolution FLOPs at
    the convolution peak plus matmul-like FLOPs at the matmul peak."""
    return flops.conv / peak.conv + flops.matmul / peak.matmul


@dataclass
class Entry:
    """A workload's roofline row in one dtype.

    Attributes:
        workload (str): ``'train'``, ``'infer'`` ...
        dtype (str): whose peaks make the floor.
        flops (Flops): one run's counted FLOPs.
        floor (float): seconds (:func:`floor_seconds`).
        times (dict): the measured medians, seconds, by model or label.
    """
    workload: str
    dtype: str
    flops: Flops
    floor: float
    times: Dict[str, float]

    @property
    def multiples(self) -> Dict[str, float]:
        """Each measured median over the floor."""
        return {k: t / self.floor for k, t in self.times.items()}


def entry(workload: str, flops: Flops, peak: Peak,
          times: Dict[str, float]) -> Entry:
    return Entry(workload, peak.dtype, flops, floor_seconds(flops, peak),
                 dict(times))


def format_table(entries: Sequence[Entry], peaks: Dict[str, Peak],
                 quick: bool = False, clock: str = 'wall') -> str:
    """The roofline table: per entry its GFLOP (conv, matmul), floor,
    medians and multiples; then the probes' peaks per dtype."""
    labels = list(dict.fromkeys(k for e in entries for k in e.times))
    lines = [
        '\nroofline: the FLOPs of one run counted by torch\'s '
        'FlopCounterMode (a training step: forward and backward; not the '
        'elementwise work, the optimizer\'s included)',
        'floor = conv FLOPs / conv peak + matmul FLOPs / matmul peak; '
        'multiple = median / floor',
        f'{"":10s}{"dtype":>9s}{"conv GFLOP":>12s}{"matmul GFLOP":>14s}'
        f'{"floor":>11s}' + ''.join(f'{k:>11s}{"multiple":>10s}'
                                    for k in labels)
    ]
    for e in entries:
        cells = ''.join(
            f'{e.times[k] * 1e3:9.1f}ms{e.multiples[k]:9.1f}x'
            if k in e.times else f'{"":21s}' for k in labels)
        lines.append(f'{e.workload:10s}{e.dtype:>9s}{e.flops.conv / 1e9:12.2f}'
                     f'{e.flops.matmul / 1e9:14.2f}{e.floor * 1e3:9.1f}ms'
                     + cells)
    lines.append(f'peak GFLOPS ({describe_probes(quick)}; {clock} time'
                 f'{"; --quick: small probes, lower peaks" if quick else ""})')
    for p in peaks.values():
        lines.append(f'{"":10s}{p.dtype:>9s}  conv {p.conv / 1e9:8.1f}  '
                     f'matmul {p.matmul / 1e9:8.1f}')
    return '\n'.join(lines)


def to_json(entries: Sequence[Entry], peaks: Dict[str, Peak],
            quick: bool = False) -> dict:
    """The roofline for ``--json``: FLOPs, FLOP/s and seconds."""
    return dict(
        probes=QUICK_PROBES if quick else PROBES,
        peaks={k: asdict(p) for k, p in peaks.items()},
        workloads=[
            dict(asdict(e), conv_flops=e.flops.conv,
                 matmul_flops=e.flops.matmul, multiples=e.multiples)
            for e in entries
        ])
