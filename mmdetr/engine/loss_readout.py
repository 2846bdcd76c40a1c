# Copyright (c) mmdetr contributors. All rights reserved.
"""Hand a step's gradient norm, still on the device, to the next step.

The optimizer wrapper (:class:`~mmdetr.engine.DeferredGradNormMixin`)
leaves the norm here instead of reading it (a wait for the device); the
model's ``parse_losses`` takes it into the one copy to the host it makes
anyway for the loss values. The hand-over is the current MessageHub's
runtime info, not resumed (never saved in a checkpoint).
"""
from typing import Optional, Tuple

from mmengine.logging import MessageHub
from torch import Tensor

#: MessageHub runtime-info key holding ``(log name, norm tensor)``.
PENDING_GRAD_NORM = 'mmdetr_pending_grad_norm'


def leave_grad_norm(name: str, norm: Tensor) -> None:
    """Leave a 0-d norm tensor (unread) for the next step to log as
    ``train/<name>``; replaces one left before."""
    MessageHub.get_current_instance().update_info(
        PENDING_GRAD_NORM, (name, norm.detach()), resumed=False)


def pop_pending_grad_norm() -> Optional[Tuple[str, Tensor]]:
    """Take the norm the last optimizer step left, if any.

    Returns:
        tuple[str, Tensor] | None: the log name (``grad_norm``) and the
        0-d norm, still on the device; None when no step left one since
        the last call (no clipping, or another optimizer wrapper).
    """
    return MessageHub.get_current_instance().pop_info(PENDING_GRAD_NORM,
                                                      None)
