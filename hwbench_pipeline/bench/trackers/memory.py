"""Peak memory of the measuring process: RSS high-water mark on CPU, allocator peak on accelerators."""

from __future__ import annotations

import resource
import sys


def rss_high_water_mb() -> float:
    """The process's peak resident set size so far, in MiB: ru_maxrss, or the current RSS when that is higher
    (Linux updates the high-water mark lazily, so right after growth it can read below the current RSS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return max(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, current_rss_mb())


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def available_memory_mb() -> float:
    """Memory the system can give a new allocation now without swapping, in MiB."""
    import psutil

    return psutil.virtual_memory().available / (1024 * 1024)
