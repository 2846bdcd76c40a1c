# Copyright (c) mmdetr contributors. All rights reserved.
"""Random numbers keyed by what they are for, not by how many came before.

A generator seeded once at the start of a run hands out a stream: draw *k*
depends on the *k - 1* draws before it, in this process. A run resumed from
a checkpoint, or one whose data loader has another number of worker
processes, makes other draws before a given sample or iteration and so gets
other numbers. Seeding from a key (the run's seed, what is drawn for, and
its position: an iteration, or an epoch and a sample index) makes every draw
a function of its key alone, whatever came before.
"""
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

# What a seed is derived for; part of every key, so that the streams of two
# purposes never share a seed.
SAMPLE = 1  # the data pipeline's transforms of one sample
ITERATION = 2  # one training iteration (dropout, anything in the step)


def derive_seed(*keys: int) -> int:
    """A 32-bit seed from integer keys, well mixed (numpy's
    ``SeedSequence``): keys that differ in any position give independent
    streams.

    Args:
        *keys (int): Any integers; negative ones are taken modulo 2**64.

    Returns:
        int: A seed in ``[0, 2**32)``, valid for python, numpy and torch.
    """
    entropy = [int(k) % 2**64 for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (torch's CPU
    generator and, when CUDA is initialised, every GPU's) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def seeded_cpu_generators(seed: int) -> Iterator[None]:
    """Inside, python's, numpy's and torch's CPU global generators start
    from ``seed``; on exit each is back where it was, as if nothing had been
    drawn (CUDA generators are not touched).

    The data pipeline runs inside this in the training process itself when
    there are no loader workers; restoring keeps its draws out of the
    training step's stream.
    """
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
