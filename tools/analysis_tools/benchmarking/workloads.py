# Copyright (c) mmdetr contributors. All rights reserved.
"""What is timed: one :class:`Workload` per row of the table.

A workload's ``setup`` gets the two models (:class:`Bench`) and returns two
argument-free callables, mmdet's and mmdetr's, that do the same work on the
same inputs; ``timing.time_pair`` times them. To add a timed row, write a
setup function and append a ``Workload`` to :data:`WORKLOADS`. A row that
is not a time (a count or a size per model, like the peak memory) is a
``report.ValueRow`` made in ``benchmark.main``.
"""
import argparse
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .models import autocast_context, build_optim

Step = Callable[[], Any]


@dataclass
class Bench:
    """The two models (the same weights) and the options.

    ``optim_cfg`` is mmdet's optimizer wrapper config; ``mmdetr_optim_cfg``
    mmdetr's (the same optimizer, gradient clipping and learning rates, in
    mmdetr's wrapper and constructor), mmdet's when None."""
    mmdet: nn.Module
    mmdetr: nn.Module
    optim_cfg: dict
    args: argparse.Namespace
    mmdetr_optim_cfg: Optional[dict] = None

    def optim_cfg_of(self, model: nn.Module) -> dict:
        """The optimizer wrapper config of ``model``'s own config."""
        if model is self.mmdetr and self.mmdetr_optim_cfg is not None:
            return self.mmdetr_optim_cfg
        return self.optim_cfg

    @property
    def device(self) -> str:
        return self.args.device

    @property
    def num_classes(self) -> int:
        return self.mmdetr.bbox_head.num_classes


@dataclass(frozen=True)
class Workload:
    """A row: its name and how to make its two steps.

    Attributes:
        name (str): the row's name in the table and the JSON file.
        setup (callable): ``Bench -> (mmdet_step, mmdetr_step)``.
        fast (bool): a step of milliseconds: timed with ``--match-repeats``
            rounds and at least one warm-up round.
        no_grad (bool): time under ``torch.no_grad``.
        roofline (bool): the row's FLOPs are counted (one run of mmdetr's
            step) for the roofline table (``roofline.py``).
        inference (bool): the steps compute no gradients (how
            ``roofline.count_flops`` counts them).
    """
    name: str
    setup: Callable[[Bench], Tuple[Step, Step]]
    fast: bool = False
    no_grad: bool = False
    roofline: bool = False
    inference: bool = False


#: ``--quick`` (a smoke run): these images and at most this many rounds
QUICK_TRAIN_SIZES = ((320, 427), (288, 384))
QUICK_INFER_SIZE = (320, 533)
QUICK_REPEATS = 3


def apply_quick(args: argparse.Namespace) -> None:
    """``--quick`` of ``benchmark.py`` and ``amp_benchmark.py``: the small
    images and at most :data:`QUICK_REPEATS` timed rounds."""
    args.train_sizes = list(QUICK_TRAIN_SIZES)
    args.infer_size = QUICK_INFER_SIZE
    args.repeats = min(args.repeats, QUICK_REPEATS)


# ------------------------------------------------------------------- data
def synthetic_batch(sizes: Sequence[Tuple[int, int]], num_gts: int,
                    num_classes: int) -> dict:
    """Model input before the data preprocessor, made by mmdet's own test
    input maker (fixed seed): uint8 images of ``sizes`` (H, W), each with
    ``num_gts`` random boxes and labels."""
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=len(sizes),
        image_shapes=[(3, h, w) for h, w in sizes],
        num_items=[num_gts] * len(sizes),
        num_classes=num_classes)


def match_inputs(args, num_layers: int, num_queries: int, num_classes: int,
                 device: str):
    """Synthetic head outputs of every decoder layer and the ground truths
    of a batch of ``args.match_batch`` images (alternately of the two
    ``args.train_sizes``, padded to the first).

    Returns:
        tuple: logits ``cls`` (L, B, Q, C+1); normalised (cx, cy, w, h)
        boxes ``box`` (L, B, Q, 4); per image ``args.match_gts`` absolute
        (x1, y1, x2, y2) boxes and labels, as lists of tensors
        (``gt_bboxes``, ``gt_labels``, mmdetr's arguments) and as
        ``InstanceData`` (``gt_instances``, mmdet's); and the image metas.
    """
    gen = torch.Generator().manual_seed(args.seed + 1)
    L, B, Q = num_layers, args.match_batch, num_queries
    cls = torch.randn(L, B, Q, num_classes + 1, generator=gen)
    box = torch.rand(L, B, Q, 4, generator=gen) * 0.5 + 0.2
    sizes = [args.train_sizes[i % 2] for i in range(B)]
    samples = synthetic_batch(sizes, args.match_gts,
                              num_classes)['data_samples']
    metas = [
        dict(img_shape=size, batch_input_shape=args.train_sizes[0])
        for size in sizes
    ]
    gt_instances = [s.gt_instances.to(device) for s in samples]
    gt_bboxes = [g.bboxes for g in gt_instances]
    gt_labels = [g.labels for g in gt_instances]
    return (cls.to(device), box.to(device), gt_bboxes, gt_labels,
            gt_instances, metas)


# ----------------------------------------------------------- train, infer
def train_step(model, optim_wrapper, data, amp: bool, device: str):
    """mmengine's ``BaseModel.train_step`` after the data preprocessor:
    forward, losses, ``parse_losses``, backward, clipping, optimizer step."""
    with optim_wrapper.optim_context(model), autocast_context(
            amp, device, optim_wrapper):
        losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    optim_wrapper.update_params(loss)


def infer(model, data, amp: bool = False, device: str = 'cpu'):
    """``predict`` as mmengine's test loop runs it (under autocast with
    ``amp``, as ``tools/test.py --amp``)."""
    with torch.no_grad(), autocast_context(amp, device):
        model(**data, mode='predict')


def setup_train(bench: Bench) -> Tuple[Step, Step]:
    """One training step on a padded batch of the two ``--train-sizes``
    images; each model gets the optimizer wrapper of its own config (the
    same AdamW, clipping and learning rates)."""
    args = bench.args
    data = bench.mmdet.data_preprocessor(
        synthetic_batch(args.train_sizes, args.train_gts, bench.num_classes),
        True)
    steps = []
    for model in (bench.mmdet, bench.mmdetr):
        model.train()
        optim = build_optim(model, bench.optim_cfg_of(model), args.amp,
                            bench.device,
                            ours=model is bench.mmdetr)
        steps.append(lambda m=model, o=optim: train_step(
            m, o, data, args.amp, bench.device))
    return tuple(steps)


def setup_infer(bench: Bench) -> Tuple[Step, Step]:
    """``predict`` on one ``--infer-size`` image."""
    data = bench.mmdet.data_preprocessor(
        synthetic_batch([bench.args.infer_size], 0, bench.num_classes), False)
    for model in (bench.mmdet, bench.mmdetr):
        model.eval()
    amp, device = bench.args.amp, bench.device
    return (lambda: infer(bench.mmdet, data, amp, device),
            lambda: infer(bench.mmdetr, data, amp, device))


# -------------------------------------------------------- match, targets
class _RecordingAssigner:
    """Stands in for a head's assigner: records the keyword arguments of
    each ``assign`` call and passes the call on."""

    def __init__(self, assigner):
        self.assigner = assigner
        self.calls: List[dict] = []

    def assign(self, **kwargs):
        self.calls.append(kwargs)
        return self.assigner.assign(**kwargs)


def mmdet_assigner_calls(head, cls: Tensor, box: Tensor, gt_instances,
                         metas) -> List[dict]:
    """The assigner calls mmdet's head makes for every layer and image,
    recorded while its own ``get_targets`` runs: the inputs (predictions
    turned into absolute x1y1x2y2 boxes) are exactly mmdet's, computed by
    mmdet's code, in ``[layer][image]`` order, flattened."""
    recorder = _RecordingAssigner(head.assigner)
    head.assigner = recorder
    try:
        mmdet_targets(head, cls, box, gt_instances, metas)
    finally:
        head.assigner = recorder.assigner
    return recorder.calls


def mmdet_match(head, calls: List[dict]) -> list:
    """mmdet's assigner on each recorded call: one cost computation and one
    scipy call per layer and image."""
    return [head.assigner.assign(**kwargs) for kwargs in calls]


def mmdetr_match(head, cls, box, targets):
    """mmdetr's assigner on all layers and images at once (``match``): the
    matches of every layer, back on the predictions' device."""
    return head.assigner.match(cls, box, targets)


def mmdet_targets(head, cls, box, gt_instances, metas) -> list:
    """mmdet's ``get_targets`` for every layer (it matches per image)."""
    return [
        head.get_targets(list(c), list(b), gt_instances, metas)
        for c, b in zip(cls, box)
    ]


def mmdetr_targets(head, cls, box, gt_bboxes, gt_labels, metas):
    """mmdetr's targets: the batch's ground truths in the forms the loss
    reads (``SetTargets.build``) and every layer matched at once, the
    matches copied back to the device once."""
    from mmdetr.models import SetTargets
    targets = SetTargets.build(gt_bboxes, gt_labels, metas)
    return targets, head.assigner.match(cls, box, targets)


def _match_setup_inputs(bench: Bench):
    head = bench.mmdetr.bbox_head
    return match_inputs(bench.args, head.transformer.num_decoder_layers,
                        head.num_query, bench.num_classes, bench.device)


def setup_match(bench: Bench) -> Tuple[Step, Step]:
    """The assignment of every decoder layer's (synthetic) predictions for
    ``--match-batch`` images, cost computation included. mmdet's step
    leaves out what its ``_get_targets_single`` does before calling the
    assigner (the box conversion, building the ``InstanceData``): about 15%
    of mmdet's match time on a CPU, so the ratio leans in mmdet's favour."""
    from mmdetr.models import SetTargets
    cls, box, gt_bboxes, gt_labels, gt_instances, metas = \
        _match_setup_inputs(bench)
    ref_head, our_head = bench.mmdet.bbox_head, bench.mmdetr.bbox_head
    with torch.no_grad():
        calls = mmdet_assigner_calls(ref_head, cls, box, gt_instances, metas)
    # the batch's targets, built once per step before the matching
    targets = SetTargets.build(gt_bboxes, gt_labels, metas)
    return (lambda: mmdet_match(ref_head, calls),
            lambda: mmdetr_match(our_head, cls, box, targets))


def setup_targets(bench: Bench) -> Tuple[Step, Step]:
    """Matching and every layer's targets as each head's loss builds them:
    mmdet's ``get_targets`` per layer (per-image matching and dense
    targets), mmdetr's targets and ``HungarianAssigner.match`` (all layers
    at once)."""
    cls, box, gt_bboxes, gt_labels, gt_instances, metas = \
        _match_setup_inputs(bench)
    ref_head, our_head = bench.mmdet.bbox_head, bench.mmdetr.bbox_head
    return (lambda: mmdet_targets(ref_head, cls, box, gt_instances, metas),
            lambda: mmdetr_targets(our_head, cls, box, gt_bboxes, gt_labels,
                                   metas))


# the table's timed rows, in order
WORKLOADS = (
    Workload('train', setup_train, roofline=True),
    Workload('infer', setup_infer, roofline=True, inference=True),
    Workload('match', setup_match, fast=True, no_grad=True),
    Workload('targets', setup_targets, fast=True, no_grad=True),
)


# ------------------------------------------------------------ host syncs
def train_host_syncs(bench: Bench) -> Tuple[int, int]:
    """Host-device synchronisations of one training step of each model,
    the runner's logging of ``log_vars`` included, after a warm-up step.

    Each model gets the optimizer wrapper type its own configs use (mmdet's
    ``OptimWrapper``; mmdetr's ``DeferredGradNormOptimWrapper``, which
    reads the losses, the non-finite flag and the previous step's clipped
    gradient norm in one copy) with the same optimizer and clipping, and
    runs as mmengine's ``train_step`` does. Counted from outside by
    :class:`~.host_sync.HostSyncCounter`: waits plus copies to
    the device.

    Returns:
        tuple[int, int]: mmdet's and mmdetr's count.
    """
    from mmengine.logging import MessageHub
    from mmengine.registry import DefaultScope

    from .host_sync import count_host_syncs
    args = bench.args
    data = bench.mmdet.data_preprocessor(
        synthetic_batch(args.train_sizes, args.train_gts, bench.num_classes),
        True)
    hub = MessageHub.get_current_instance()
    counts = []
    for model, wrapper in ((bench.mmdet, 'OptimWrapper'),
                           (bench.mmdetr,
                            'mmdetr.DeferredGradNormOptimWrapper')):
        model.train()
        cfg = dict(bench.optim_cfg_of(model), type=wrapper)
        with DefaultScope.overwrite_default_scope('mmdet'):  # as configs
            optim = build_optim(model, cfg, args.amp, bench.device,
                                ours=model is bench.mmdetr)

        def step(m=model, o=optim):
            with o.optim_context(m), autocast_context(args.amp,
                                                      bench.device, o):
                losses = m(**data, mode='loss')
            loss, log_vars = m.parse_losses(losses)
            o.update_params(loss)
            for key, value in log_vars.items():  # RuntimeInfoHook's log
                hub.update_scalar(f'train/{key}', value)

        step()  # warm-up: first-step set-up
        _, counter = count_host_syncs(step)
        counts.append(counter.total + sum(counter.copies.values()))
    return tuple(counts)
