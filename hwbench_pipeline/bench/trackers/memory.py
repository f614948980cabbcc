"""Peak memory of the measuring process: RSS high-water mark on CPU, allocator peak on accelerators."""

from __future__ import annotations

import resource
import sys


def rss_high_water_mb() -> float:
    """The process's peak resident set size so far (ru_maxrss), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)
