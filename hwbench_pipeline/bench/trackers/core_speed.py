"""How fast each core this process may run on is right now: a fixed piece of Python timed on each in turn.

A core shared with another tenant's work can run slower for seconds without any steal showing in /proc/stat
(benchmarks/host_interference.py shows it here), and a multi-threaded measurement runs at its slowest core's
pace. The probe runs in a thread pinned to one core at a time (affinity is per thread on Linux, so the
measuring threads' own placement is untouched), before and after sampling; the slowest core's time is recorded
with the row, and each process's against the configuration's fastest (``process_core_slowdowns``).
"""

from __future__ import annotations

import os
import threading
import time

#: iterations of the probe loop: 10–15 ms on the cores this project runs on, longer than a scheduler slice,
#: so that a core another task shares cannot hide between slices
PROBE_LOOPS = 150_000
PROBE_REPEATS = 1  # before and after sampling: 10–15 ms per core each time


def _probe_loop() -> None:
    total = 0
    for i in range(PROBE_LOOPS):
        total += i * i
    if total < 0:  # never: keeps the loop's result alive
        raise AssertionError


def _time_on_core(core: int, repeats: int, out: dict[int, float]) -> None:
    os.sched_setaffinity(0, {core})  # this thread only
    t0 = time.perf_counter()
    for _ in range(repeats):
        _probe_loop()
    out[core] = (time.perf_counter() - t0) * 1e3 / repeats


def slowest_core_ms(repeats: int = PROBE_REPEATS) -> float | None:
    """The probe's time, in ms, on the slowest of the cores this process may use (None where threads cannot be
    pinned: not Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    times: dict[int, float] = {}
    for core in sorted(os.sched_getaffinity(0)):
        thread = threading.Thread(target=_time_on_core, args=(core, repeats, times), name="hwbench-core-probe")
        thread.start()
        thread.join()
    return max(times.values()) if times else None
