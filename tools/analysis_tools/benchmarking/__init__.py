# Copyright (c) mmdetr contributors. All rights reserved.
"""The parts of ``tools/analysis_tools/benchmark.py`` (the entry point):

- ``models``: the two models under test, built from their shipped configs
  with the same weights, and their optimizer wrappers;
- ``workloads``: what is timed, one :class:`~.workloads.Workload` per row
  (train step, inference, matching, targets);
- ``timing``: how it is timed: alternating rounds, the clock, the per-round
  ratios;
- ``memory``: the train step's peak memory, each model in a child process;
- ``roofline``: the FLOPs of the train and infer rows (counted), the
  peaks of a convolution and a matmul probe, and each row's time as a
  multiple of its floor (also used by ``amp_benchmark.py``);
- ``report``: the table, the JSON file and the ``speedup`` line;
- ``host_sync``: the profiler of the ``train host syncs`` row, which
  counts where the host waits for the device (the tests use it too).
"""
