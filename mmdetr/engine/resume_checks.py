# Copyright (c) mmdetr contributors. All rights reserved.
"""Checks that a checkpoint to resume from belongs to this run's config.

mmengine resumes with ``strict=False``: a checkpoint of another model loads
what fits and lists the rest in a warning, and an optimizer of another kind
or shape fails deep inside torch. Resuming is continuing the same run, so
any difference is an error here, naming it.
"""
import re
from typing import Dict, List

import torch


class ResumeMismatchError(ValueError):
    """The checkpoint to resume from was written by a different run: other
    model, optimizer or training data."""


def _listed(names: List[str], limit: int = 5) -> str:
    more = f' and {len(names) - limit} more' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def check_model(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor],
                filename: str) -> None:
    """Raise :class:`ResumeMismatchError` unless ``state_dict`` has exactly
    ``model``'s keys and shapes (a DDP ``module.`` prefix is ignored)."""
    theirs = {
        re.sub(r'^module\.', '', k): tuple(v.shape)
        for k, v in state_dict.items() if hasattr(v, 'shape')
    }
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = []
    missing = sorted(set(ours) - set(theirs))
    if missing:
        problems.append(f'{len(missing)} of the model\'s weights are not in '
                        f'it ({_listed(missing)})')
    unexpected = sorted(set(theirs) - set(ours))
    if unexpected:
        problems.append(f'it has {len(unexpected)} weights the model lacks '
                        f'({_listed(unexpected)})')
    shapes = [
        f'{k} {theirs[k]} in the checkpoint, {ours[k]} in the model'
        for k in sorted(set(ours) & set(theirs)) if ours[k] != theirs[k]
    ]
    if shapes:
        problems.append(f'{len(shapes)} weights differ in shape '
                        f'({_listed(shapes, 3)})')
    if problems:
        raise ResumeMismatchError(
            f'cannot resume from {filename}: its model is not this config\'s '
            f'model: {"; ".join(problems)}. Resume with the config that '
            'wrote it, or start a new run from it with load_from (weights '
            'only)')


def check_optimizer(optimizer: torch.optim.Optimizer, state: dict,
                    filename: str) -> None:
    """Raise :class:`ResumeMismatchError` unless the optimizer state
    ``state`` (a checkpoint's ``'optimizer'``) has ``optimizer``'s parameter
    groups: as many, of as many parameters each, with hyper-parameter names
    of the same optimizer type (one side's names may extend the other's, as
    a newer torch adds options)."""
    theirs = state.get('param_groups', [])
    ours = optimizer.state_dict()['param_groups']
    why = None
    if len(theirs) != len(ours):
        why = (f'{len(theirs)} parameter groups in the checkpoint, '
               f'{len(ours)} now (paramwise_cfg differs)')
    else:
        for i, (t, o) in enumerate(zip(theirs, ours)):
            t_keys, o_keys = set(t) - {'params'}, set(o) - {'params'}
            # a newer torch adds options (a superset): only names that
            # neither side has all of tell another algorithm
            if not (t_keys <= o_keys or o_keys <= t_keys):
                why = (f'parameter group {i} has the hyper-parameters '
                       f'{sorted(t_keys)} in the checkpoint but '
                       f'{sorted(o_keys)} now: another optimizer type '
                       f'({type(optimizer).__name__} now)')
                break
            if len(t['params']) != len(o['params']):
                why = (f'parameter group {i} holds {len(t["params"])} '
                       f'parameters in the checkpoint, {len(o["params"])} '
                       'now')
                break
    if why is not None:
        raise ResumeMismatchError(
            f'cannot resume from {filename}: its optimizer state does not '
            f'fit this config\'s optimizer: {why}')
