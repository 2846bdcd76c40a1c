# Copyright (c) mmdetr contributors. All rights reserved.
"""Fit a checkpoint's classifier to a model with other classes, by name.

Fine-tuning starts from weights trained on other classes (COCO's 80, or a
previous run's). Every tensor but the classifier fits as it is; the
classifier ``bbox_head.fc_cls`` has one row per class plus, with softmax
cross-entropy, a last "no-object" row. Loading it by position would hand a
new class the trained row of whatever class sat at that index, so rows are
matched by class name:

- a class in both gets the checkpoint's row;
- a class only in the model keeps the model's freshly initialised row;
- the no-object row is the checkpoint's (it means the same in both).

Class names come from the checkpoint's ``meta`` (mmengine saves the train
dataset's ``metainfo`` as ``meta['dataset_meta']``; mmdet 2.x saved
``meta['CLASSES']``) and from the model's dataset. When a side's names are
unknown, equal counts are kept by position and other counts re-initialised;
the log line says which.
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

from torch import Tensor

from .class_names import checkpoint_classes
from .convert import CLASSIFIER


def remap_classifier(state_dict: Dict[str, Tensor],
                     model_state: Dict[str, Tensor],
                     num_classes: int,
                     ckpt_classes: Optional[Sequence[str]] = None,
                     model_classes: Optional[Sequence[str]] = None,
                     prefix: str = CLASSIFIER
                     ) -> Tuple[Dict[str, Tensor], Optional[str], bool]:
    """Rebuild the classifier rows of ``state_dict`` for the model's classes.

    Args:
        state_dict (dict): Checkpoint weights in mmdetr's layout; its
            ``{prefix}.weight`` has shape (ckpt_rows, embed_dims) and
            ``{prefix}.bias`` shape (ckpt_rows, ).
        model_state (dict): The model's own, freshly initialised
            ``{prefix}.weight`` (model_rows, embed_dims) and
            ``{prefix}.bias`` (model_rows, ): the rows given to classes the
            checkpoint does not have.
        num_classes (int): The model's classes; ``model_rows - num_classes``
            (0 or 1) is its number of no-object rows, assumed the same in
            the checkpoint.
        ckpt_classes (sequence[str], optional): The checkpoint's class names,
            if known.
        model_classes (sequence[str], optional): The model's class names, if
            known.
        prefix (str): The classifier's key prefix.

    Returns:
        tuple: a state dict (a new one if the classifier changed, sharing
        every other tensor), one log line saying what was done (None when
        there is no classifier to look at, e.g. other embed dims: the loader
        reports that mismatch), and whether the line is a warning (rows
        kept by position or re-initialised because names are unknown).
    """
    w_key, b_key = f'{prefix}.weight', f'{prefix}.bias'
    if w_key not in state_dict or w_key not in model_state:
        return state_dict, None, False
    ckpt_w, model_w = state_dict[w_key], model_state[w_key]
    if ckpt_w.dim() != 2 or ckpt_w.shape[1:] != model_w.shape[1:]:
        return state_dict, None, False
    bg = model_w.shape[0] - num_classes  # no-object rows: 1 softmax, 0 sigmoid
    n_ckpt = ckpt_w.shape[0] - bg
    if bg not in (0, 1) or n_ckpt < 0:
        return state_dict, None, False
    plus = ' + no-object' if bg else ''
    head = (f'{prefix}: checkpoint has {n_ckpt} classes{plus}, model has '
            f'{num_classes}{plus}')
    kept = ', no-object row kept' if bg else ''

    unknown = []
    if ckpt_classes is not None and len(ckpt_classes) != n_ckpt:
        unknown.append(f'the checkpoint records {len(ckpt_classes)} class '
                       f'names for {n_ckpt} rows')
        ckpt_classes = None
    elif ckpt_classes is None:
        unknown.append('the checkpoint\'s class names are unknown')
    if model_classes is not None and len(model_classes) != num_classes:
        unknown.append(f'the model\'s dataset has {len(model_classes)} '
                       f'classes for num_classes={num_classes}')
        model_classes = None
    elif model_classes is None:
        unknown.append('the model\'s class names are unknown')

    if not unknown:
        ckpt_classes, model_classes = tuple(ckpt_classes), tuple(model_classes)
        if ckpt_classes == model_classes:
            return state_dict, (f'{prefix}: checkpoint and model have the '
                                f'same {num_classes} classes in the same '
                                'order: loaded as is'), False
        index = {name: i for i, name in enumerate(ckpt_classes)}
        src = [index.get(name) for name in model_classes]
    elif n_ckpt == num_classes:
        # Nothing says the rows mean other classes: keep them, but say so.
        return state_dict, (f'{head}: {"; ".join(unknown)}, so the '
                            f'{num_classes} class rows are kept by position '
                            '(check that the classes are the same, in the '
                            'same order)'), True
    else:
        src = [None] * num_classes

    out = OrderedDict(state_dict)
    for key in (w_key, b_key):
        if key not in state_dict or key not in model_state:
            continue
        ckpt, fresh = state_dict[key], model_state[key]
        new = fresh.detach().clone().to(dtype=ckpt.dtype, device=ckpt.device)
        for row, i in enumerate(src):
            if i is not None:
                new[row] = ckpt[i]
        if bg:
            new[-1] = ckpt[-1]
        out[key] = new
    if hasattr(state_dict, '_metadata'):
        out._metadata = state_dict._metadata
    copied = sum(i is not None for i in src)
    fresh_names = [n for n, i in zip(model_classes or (), src) if i is None]
    if unknown:
        return out, (f'{head}: {"; ".join(unknown)}, so all {num_classes} '
                     f'class rows are re-initialised{kept}'), True
    line = (f'{head}: {copied} rows copied by class name, '
            f'{num_classes - copied} re-initialised{kept}')
    if fresh_names:
        shown = ', '.join(fresh_names[:10])
        more = f' and {len(fresh_names) - 10} more' if len(
            fresh_names) > 10 else ''
        line += f' (new: {shown}{more})'
    return out, line, False


def remap_checkpoint_classifier(checkpoint: dict,
                                model,
                                model_classes: Optional[Sequence[str]],
                                prefix: str = CLASSIFIER
                                ) -> Tuple[dict, Optional[str], bool]:
    """:func:`remap_classifier` on a loaded checkpoint and a built model.

    Args:
        checkpoint (dict): ``{'state_dict': ..., 'meta': ...}`` or a bare
            state dict, in mmdetr's key layout.
        model (nn.Module): The model the checkpoint goes into (unwrapped);
            its current classifier is the fresh initialisation.
        model_classes (sequence[str], optional): The model's class names.

    Returns:
        tuple: the checkpoint (a new dict if the classifier changed), the log
        line (or None) and whether it is a warning.
    """
    head = getattr(model, 'bbox_head', None)
    num_classes = getattr(head, 'num_classes', None)
    if num_classes is None:
        return checkpoint, None, False
    has_state = 'state_dict' in checkpoint
    state_dict = checkpoint['state_dict'] if has_state else checkpoint
    own = {
        k: v
        for k, v in model.state_dict().items() if k.startswith(prefix + '.')
    }
    new_state, line, warn = remap_classifier(
        state_dict, own, num_classes, checkpoint_classes(checkpoint)
        if has_state else None, model_classes, prefix)
    if new_state is state_dict:
        return checkpoint, line, warn
    if has_state:
        return dict(checkpoint, state_dict=new_state), line, warn
    return new_state, line, warn
