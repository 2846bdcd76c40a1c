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


_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    """splitmix64's output function: a bijection of 64-bit integers whose
    every output bit depends on every input bit."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_seed(*keys: int) -> int:
    """A 32-bit seed from integer keys, well mixed: keys that differ in
    any position give unrelated seeds (each key is folded into a 64-bit
    state by splitmix64's mixer; a few microseconds, as it runs once per
    sample and iteration).

    Args:
        *keys (int): Any integers; negative ones are taken modulo 2**64.

    Returns:
        int: A seed in ``[0, 2**32)``, valid for python, numpy and torch.
    """
    state = 0
    for key in keys:
        state = _splitmix64(state ^ (int(key) & _MASK64))
    return state >> 32


def seed_all(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (torch's CPU
    generator and, when CUDA is initialised, every GPU's) with ``seed``.

    ``torch.manual_seed`` would do torch's part, but it also queues seeds
    for every accelerator backend, which costs about 0.3 ms on a CPU: this
    is called once per training iteration.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


@contextmanager
def seeded_cpu_generators(seed: int, restore: bool = True) -> Iterator[None]:
    """Inside, python's, numpy's and torch's CPU global generators start
    from ``seed``; with ``restore``, on exit each is back where it was, as
    if nothing had been drawn (CUDA generators are not touched).

    Restoring keeps draws made inside out of the caller's stream; it costs
    about 0.1 ms (numpy's state is 2.5 kB), which a caller that reseeds
    anyway before its next draw can save.
    """
    states = (random.getstate(), np.random.get_state(),
              torch.get_rng_state()) if restore else None
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        if states is not None:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
