# Copyright (c) mmdetr contributors. All rights reserved.
"""Mixed-precision training that skips a non-finite step, as GradScaler
means it to, and stops only when non-finite steps persist."""
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper

from mmdetr.registry import OPTIM_WRAPPERS

from .grad_norm import DeferredGradNormMixin


class ConsecutiveSkipGuard:
    """Count skipped optimizer steps; fail when too many come in a row.

    Args:
        limit (int): Consecutive skipped steps that stop training.

    Raises:
        ValueError: ``limit`` is not a positive integer.
    """

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or limit < 1:
            raise ValueError('optim_wrapper.max_consecutive_skips must be a '
                             f'positive integer, got {limit!r}')
        self.limit = limit
        self.consecutive = 0
        self.total = 0

    def update(self, skipped: bool, scale: float = None,
               message_hub=None, what: str = 'non-finite gradients') -> None:
        """Record one optimizer step; a skipped one is counted in
        ``train/amp_skipped_steps`` of ``message_hub`` (when given) and
        warned about, naming ``what`` was not finite and the loss
        ``scale`` (when there is a loss scaler).

        Raises:
            FloatingPointError: this is the ``limit``-th skipped step in a
                row.
        """
        if not skipped:
            self.consecutive = 0
            return
        if message_hub is not None:
            message_hub.update_scalar('train/amp_skipped_steps',
                                      self.total + 1)
        scaled = '' if scale is None else f', loss scale now {scale}'
        MMLogger.get_current_instance().warning(
            f'{what}: optimizer step skipped{scaled} '
            f'({self.consecutive + 1} in a row, the limit is {self.limit})')
        self.consecutive += 1
        self.total += 1
        if self.consecutive >= self.limit:
            how = ('skipped' if scale is None else
                   f'skipped by the loss scaler, whose scale is now {scale}')
            raise FloatingPointError(
                f'non-finite loss or gradients in {self.consecutive} '
                f'consecutive steps under mixed precision (each {how}). '
                'Training '
                'stopped; the last checkpoint is intact: fix the cause (lr, '
                'data, AMP dtype) and continue with tools/train.py ... '
                '--resume, or raise optim_wrapper.max_consecutive_skips')


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteAmpOptimWrapper(DeferredGradNormMixin, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` whose non-finite steps are skipped,
    counted and logged, and which stops training when they persist.

    Half-precision training overflows now and then; GradScaler is made for
    that: it skips the optimizer step whose gradients are not finite and
    shrinks the loss scale. So under this wrapper the model does not stop
    at a non-finite loss (``DETR.parse_losses`` lets it through to the
    scaler); each skipped step is logged (``train/amp_skipped_steps``, and a
    warning with the new scale), and ``max_consecutive_skips`` skipped steps
    in a row raise the ``FloatingPointError`` that training without AMP
    raises at the first non-finite loss.

    Its clipped-gradient norm is logged one iteration late, without a wait
    of its own (:class:`~mmdetr.engine.DeferredGradNormMixin`).

    Args:
        max_consecutive_skips (int): Consecutive skipped steps that stop
            training. Defaults to 10.
        **kwargs: ``AmpOptimWrapper``'s (``loss_scale``, ``dtype``,
            ``optimizer``, ``clip_grad`` ...).
    """

    #: the scaler, not the loss readout, handles a non-finite loss
    skip_nonfinite_loss = True

    def __init__(self, *args, max_consecutive_skips: int = 10,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip_guard = ConsecutiveSkipGuard(max_consecutive_skips)

    def step(self, **kwargs) -> None:
        """As ``AmpOptimWrapper.step``, then record whether the scaler
        skipped the step."""
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        # read before update(), which clears the scaler's per-step state;
        # step() has already waited for these values
        skipped = self._found_inf()
        self.loss_scaler.update(self._scale_update_param)
        scale = self.loss_scaler.get_scale() if skipped else None
        self.skip_guard.update(skipped, scale, self.message_hub,
                               'non-finite loss or gradients')

    def _found_inf(self) -> bool:
        state = self.loss_scaler._per_optimizer_states.get(
            id(self.optimizer), {})
        return any(
            bool(v.item())
            for v in state.get('found_inf_per_device', {}).values())
