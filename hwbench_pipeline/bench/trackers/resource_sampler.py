"""Per-node resource use while a distributed run trains: CPU %, memory, the workers' RSS, GPU utilisation.

One sampler runs per node, on a background thread of that node's first worker (local rank 0), and reads
psutil (and NVML through torch, when a GPU and its library are present) every ``interval_s``. Reading these
counters takes well under a millisecond, so a few samples a second do not disturb the training step.
Simulated nodes of one machine (``ray.cluster_utils.Cluster``) share the machine-wide figures (CPU %,
memory used); the workers' own CPU % and RSS are still per node.

:class:`NodeLoadWindow` brackets the measured steps: machine-wide busy and steal time from ``/proc/stat`` and
the CPU time of this node's workers, so :func:`combine_load_windows` can tell how much of the machine went to
work other than this run (summed over every worker on the same host, simulated nodes included).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence

import psutil

from hwbench_pipeline.bench.trackers.system_load import CLOCK_TICKS, LoadWindow, read_cpu_times

DEFAULT_INTERVAL_S = 0.25


def _gpu_figures(gpu_index: int | None) -> tuple[float | None, float | None]:
    """(utilisation %, memory used MiB) of one GPU, or Nones where there is none or NVML is missing."""
    if gpu_index is None:
        return None, None
    try:
        import torch

        util = float(torch.cuda.utilization(gpu_index))
        free, total = torch.cuda.mem_get_info(gpu_index)
        return util, (total - free) / 2**20
    except Exception:  # noqa: BLE001 - no NVML (pynvml) or no device: the sample says None, not a guess
        return None, None


class ResourceSampler:
    """Samples one node's load and the given worker processes until :meth:`stop`."""

    def __init__(self, node_id: str, pids: Sequence[int], *, interval_s: float = DEFAULT_INTERVAL_S,
                 gpu_index: int | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.node_id = node_id
        self.interval_s = interval_s
        self.gpu_index = gpu_index
        self._procs = [psutil.Process(pid) for pid in pids]
        self._samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hwbench-resource-sampler", daemon=True)
        self._t0 = 0.0
        self.phase = "setup"
        self.host = socket.gethostname()

    def set_phase(self, phase: str) -> None:
        """Label the following samples (setup, warmup, measure): only 'measure' samples are the timed steps."""
        self.phase = phase

    def start(self) -> ResourceSampler:
        # cpu_percent(None) measures since the previous call: prime every counter so the first sample is valid.
        psutil.cpu_percent(None)
        for proc in self._procs:
            proc.cpu_percent(None)
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _sample(self) -> dict:
        cpu, rss = 0.0, 0.0
        for proc in self._procs:
            try:
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
            except psutil.Error:  # a worker that exited (or was killed) counts for nothing from then on
                continue
        gpu_util, gpu_mem = _gpu_figures(self.gpu_index)
        return {
            "node_id": self.node_id,
            "host": self.host,
            "phase": self.phase,
            "t_s": time.monotonic() - self._t0,
            "node_cpu_percent": psutil.cpu_percent(None),
            "node_memory_used_mb": psutil.virtual_memory().used / 2**20,
            "workers_cpu_percent": cpu,
            "workers_rss_mb": rss / 2**20,
            "gpu_util_percent": gpu_util,
            "gpu_memory_used_mb": gpu_mem,
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.append(self._sample())

    def stop(self) -> list[dict]:
        """Stop sampling (taking one last sample) and return every sample, oldest first."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self._samples.append(self._sample())
        return list(self._samples)


def summarize_samples(samples: Sequence[dict]) -> dict[str, float | int | None]:
    """Means and peaks over every node's samples (None where a figure was never available)."""

    def values(key: str) -> list[float]:
        return [s[key] for s in samples if s.get(key) is not None]

    def mean(key: str) -> float | None:
        v = values(key)
        return sum(v) / len(v) if v else None

    def peak(key: str) -> float | None:
        v = values(key)
        return max(v) if v else None

    return {
        "resource_sample_count": len(samples),
        "resource_nodes": len({s["node_id"] for s in samples}),
        "node_cpu_percent_mean": mean("node_cpu_percent"),
        "node_cpu_percent_max": peak("node_cpu_percent"),
        "workers_cpu_percent_mean": mean("workers_cpu_percent"),
        "workers_rss_mb_max": peak("workers_rss_mb"),
        "gpu_util_percent_mean": mean("gpu_util_percent"),
        "gpu_memory_used_mb_max": peak("gpu_memory_used_mb"),
    }


def _cpu_ticks(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += (times.user + times.system) * CLOCK_TICKS
    return total


class NodeLoadWindow:
    """Machine CPU counters and this node's workers' CPU time between :meth:`begin` and :meth:`end`."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._procs = [psutil.Process(pid) for pid in pids]
        self._start = None
        self._own = 0.0

    def begin(self) -> None:
        self._start = read_cpu_times()
        self._own = _cpu_ticks(self._procs)

    def end(self) -> dict | None:
        """Plain numbers (they travel between processes); None where /proc is missing."""
        stop = read_cpu_times()
        if self._start is None or stop is None or stop.total <= self._start.total:
            return None
        return {
            "host": socket.gethostname(),
            "busy": stop.busy - self._start.busy,
            "steal": stop.steal - self._start.steal,
            "total": stop.total - self._start.total,
            "own": _cpu_ticks(self._procs) - self._own,
        }


def combine_load_windows(windows: Sequence[dict]) -> LoadWindow:
    """One LoadWindow for a run whose workers span hosts: per host, what the machine did beyond all of this
    run's workers on it (simulated nodes of one machine are one host); the busiest host is reported."""
    try:
        loadavg = os.getloadavg()[0]
    except OSError:
        loadavg = None
    worst: LoadWindow | None = None
    for host in sorted({w["host"] for w in windows}):
        mine = [w for w in windows if w["host"] == host]
        machine = max(mine, key=lambda w: w["total"])  # overlapping windows of one machine: take the longest
        own = sum(w["own"] for w in mine)
        total = machine["total"]
        window = LoadWindow(busy_fraction=machine["busy"] / total,
                            foreign_fraction=max(machine["busy"] - own, 0.0) / total,
                            steal_fraction=machine["steal"] / total, loadavg_1m=loadavg)
        if worst is None or (window.foreign_fraction or 0) > (worst.foreign_fraction or 0):
            worst = window
    return worst or LoadWindow(None, None, None, loadavg)
