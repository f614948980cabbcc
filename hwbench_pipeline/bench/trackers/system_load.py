"""System load around a measurement: what else the machine was doing while we timed.

Reads /proc counters at the start and end of a measurement only, so it never spins a core while the
measurement runs. Where /proc is missing (macOS) the figures are None.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# A measurement during which other processes used more than this fraction of all cores' time, or whose
# steal exceeded STEAL_LIMIT, ran beside something else: its numbers are flagged (and measured again).
FOREIGN_BUSY_LIMIT = 0.10
STEAL_LIMIT = 0.05


@dataclass(frozen=True)
class CpuTimes:
    busy: int  # machine-wide, in clock ticks
    steal: int
    total: int
    own: float  # this process's user + system time, in clock ticks


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state, ppid, …), or None without that process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # the command name (field 2) may hold spaces and parentheses: the fields follow its last ")"
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_ticks(pids: Sequence[int]) -> float:
    """User + system clock ticks of the running processes ``pids`` (those that exited count nothing)."""
    ticks = 0.0
    for pid in pids:
        fields = proc_stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of the file
    return ticks


def read_cpu_times(own_pids: Sequence[int] = ()) -> CpuTimes | None:
    """The machine's CPU counters now; ``own_pids``: other processes whose CPU time is this measurement's own
    (a browser running the model), not other work."""
    own = os.times()
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    values = [int(v) for v in fields[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return CpuTimes(busy=busy, steal=steal, total=busy + idle + iowait + steal,
                    own=(own.user + own.system) * CLOCK_TICKS + process_ticks(own_pids))


@dataclass(frozen=True)
class LoadWindow:
    """CPU use between two readings, as fractions of all cores' time: the whole machine's, the part that was
    not this process (other work competing with the measurement), and steal (the hypervisor's)."""

    busy_fraction: float | None
    foreign_fraction: float | None
    steal_fraction: float | None
    loadavg_1m: float | None


def load_between(start: CpuTimes | None, end: CpuTimes | None) -> LoadWindow:
    try:
        loadavg = os.getloadavg()[0]
    except OSError:
        loadavg = None
    if start is None or end is None or end.total <= start.total:
        return LoadWindow(None, None, None, loadavg)
    total = end.total - start.total
    busy = end.busy - start.busy
    foreign = max(busy - (end.own - start.own), 0.0)
    return LoadWindow(
        busy_fraction=busy / total,
        foreign_fraction=foreign / total,
        steal_fraction=(end.steal - start.steal) / total,
        loadavg_1m=loadavg,
    )


def is_contaminated(load: LoadWindow) -> bool:
    """Whether other work (or the hypervisor) took enough CPU during the window to distort the timing."""
    return bool(
        (load.steal_fraction is not None and load.steal_fraction > STEAL_LIMIT)
        or (load.foreign_fraction is not None and load.foreign_fraction > FOREIGN_BUSY_LIMIT)
    )
