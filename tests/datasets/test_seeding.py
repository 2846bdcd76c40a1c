# Copyright (c) mmdetr contributors. All rights reserved.
"""Seeds derived from keys: in range, distinct per key, and seeding every
generator from one gives the same draws."""
import random

import numpy as np
import torch

from mmdetr.datasets.seeding import ITERATION, SAMPLE, derive_seed, seed_all


def test_derived_seeds_are_32_bit_and_distinct_per_key():
    seeds = {derive_seed(0, kind, i, j) for kind in (SAMPLE, ITERATION)
             for i in range(50) for j in range(20)}
    assert len(seeds) == 2000
    assert all(0 <= s < 2**32 for s in seeds)
    assert derive_seed(-1, 2) == derive_seed(2**64 - 1, 2)
    assert derive_seed(3, 1) == derive_seed(3, 1)


def test_seed_all_repeats_every_generator():
    draws = []
    for _ in range(2):
        seed_all(derive_seed(0, ITERATION, 5))
        draws.append((random.random(), np.random.rand(),
                      torch.rand(()).item()))
    assert draws[0] == draws[1]
