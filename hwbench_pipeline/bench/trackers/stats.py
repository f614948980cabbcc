"""Statistics of latency samples and the rules that decide when a measurement is done.

The rules, in one place:

* **Warm-up** runs the call until latency is stable: at least ``min_calls`` calls, then until the median of
  the last ``window`` calls is within ``tolerance`` of the median of the ``window`` calls before them, or
  the warm-up time cap is reached. A window holds ``warmup_window`` calls, or fewer (never under 2) when
  that many would take longer than ``warmup_window_seconds``: a 500 ms call that settled after its second
  run needs no ten-call warm-up. Warm-up samples are never reported.
* **Measurement** collects samples until the 95 % confidence interval of the median is narrower than
  ``±target`` (relative to the median) with at least ``min_samples`` samples, or the time cap is reached,
  or ``max_samples`` is reached. How it stopped is recorded (``ci_reached``, ``time_cap``, ``sample_cap``).
* The confidence interval of the median is distribution-free: the order statistics whose ranks are
  ``n/2 ± 1.96·√n/2`` (normal approximation to the binomial). Latency distributions are skewed and
  heavy-tailed; the median and its order-statistic interval do not assume otherwise.
* Percentiles use linear interpolation between order statistics (numpy's default).
* **Processes.** A configuration is measured by at least ``processes`` and at most ``max_processes`` short
  measuring processes, spread over the run (docs/measurement.md); each samples for at most
  ``max_seconds / max_processes`` under the rule above, so ``max_seconds`` caps the configuration's sampling
  time as a whole. Its figure is the median of the process medians, with the distribution-free interval of
  those medians (:func:`between_process_interval`); once ``processes`` undisturbed processes are in, it stops
  when that interval is within ``±target``, else it adds processes until ``max_processes``. A process the
  host disturbed does not count. ``processes = max_processes = 1`` is a single measuring window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

Z_95 = 1.959963984540054
#: a figure whose interval is wider than this, relative to the figure, is marked noisy (and not trusted "high")
NOISY_HALFWIDTH = 0.05


def median_ci(samples: np.ndarray | list[float], z: float = Z_95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (order statistics, normal approximation)."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    if n == 0:
        raise ValueError("median_ci needs at least one sample")
    half = z * math.sqrt(n) / 2.0
    lo_rank = max(int(math.floor(n / 2.0 - half)), 1)  # 1-based ranks
    hi_rank = min(int(math.ceil(n / 2.0 + half + 1.0)), n)
    return float(x[lo_rank - 1]), float(x[hi_rank - 1])


def median_ci_relative_halfwidth(samples: np.ndarray | list[float]) -> float:
    """Half the width of the median's 95 % interval, as a fraction of the median."""
    lo, hi = median_ci(samples)
    med = float(np.median(samples))
    if med <= 0:
        return math.inf
    return (hi - lo) / 2.0 / med


def between_process_interval(medians: list[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free interval of the median of ``medians`` (one per process), and its exact coverage.

    The interval runs from the r-th smallest to the r-th largest median, with the largest r whose coverage
    ``1 - 2·P(B < r)``, B ~ Binomial(k, 1/2), is at least ``confidence``. Below 6 processes no r reaches 95 %:
    the interval is then [min, max] and its coverage, ``1 - 2^(1-k)``, is returned as it is (75 % for 3).
    """
    x = np.sort(np.asarray(medians, dtype=float))
    k = x.size
    if k == 0:
        raise ValueError("between_process_interval needs at least one median")
    below = 0.0  # P(B < r), built up term by term
    rank, coverage = 1, 1.0 - 2.0 * 0.5**k
    for r in range(1, k // 2 + 1):
        below += math.comb(k, r - 1) * 0.5**k
        if 1.0 - 2.0 * below < confidence:
            break
        rank, coverage = r, 1.0 - 2.0 * below
    return float(x[rank - 1]), float(x[k - rank]), max(coverage, 0.0)


def is_finite_number(value: object) -> bool:
    """Whether ``value`` is an int or a float (a bool is neither here) that a float holds and that is finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


@dataclass(frozen=True)
class StoppingRule:
    """When to stop warming up and when to stop measuring (see the module docstring)."""

    ci_target: float = 0.01
    min_samples: int = 10
    max_samples: int = 100_000
    max_seconds: float = 10.0
    warmup_min_calls: int = 3
    warmup_window: int = 5
    warmup_window_seconds: float = 1.0
    warmup_tolerance: float = 0.05
    warmup_max_seconds: float = 5.0
    processes: int = 3
    max_processes: int = 6

    def __post_init__(self) -> None:
        # The one place a rule's settings are checked (profiles and the CLI build rules through it). Types first:
        # a YAML `true` is an int to Python, and NaN passes every range test below.
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.type == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{spec.name} must be an integer, got {value!r}")
            elif not is_finite_number(value):
                raise ValueError(f"{spec.name} must be a finite number, got {value!r}")
        if not 1 <= self.processes <= self.max_processes:
            raise ValueError(f"processes must be at least 1 and at most max_processes, got {self.processes} "
                             f"and {self.max_processes}")
        if not 0 < self.ci_target < 1:
            raise ValueError(f"ci_target must be between 0 and 1, got {self.ci_target}")
        if self.min_samples < 3:
            raise ValueError(f"min_samples must be at least 3, got {self.min_samples}")
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples must be at least min_samples ({self.min_samples}), got {self.max_samples}")
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.warmup_max_seconds < 0:
            raise ValueError(f"warmup_max_seconds must be zero or more, got {self.warmup_max_seconds}")
        if self.warmup_min_calls < 0:
            raise ValueError(f"warmup_min_calls must be zero or more, got {self.warmup_min_calls}")
        if self.warmup_window < 1:
            raise ValueError(f"warmup_window must be at least 1, got {self.warmup_window}")
        if self.warmup_window_seconds <= 0:
            raise ValueError(f"warmup_window_seconds must be positive, got {self.warmup_window_seconds}")
        if not 0 <= self.warmup_tolerance <= 1:
            raise ValueError(f"warmup_tolerance must be between 0 and 1, got {self.warmup_tolerance}")

    def warmup_done(self, warmup_samples: list[float], elapsed_s: float) -> bool:
        n = len(warmup_samples)
        if elapsed_s >= self.warmup_max_seconds and n >= 1:
            return True
        window = self.warmup_window_calls(warmup_samples)
        if n < max(self.warmup_min_calls, 2 * window):
            return False
        last = np.median(warmup_samples[-window:])
        prev = np.median(warmup_samples[-2 * window : -window])
        return abs(last - prev) <= self.warmup_tolerance * prev

    def warmup_window_calls(self, warmup_samples_ms: list[float]) -> int:
        """Calls per warm-up window: ``warmup_window``, or as many as fit ``warmup_window_seconds`` (at least 2)."""
        if not warmup_samples_ms or self.warmup_window <= 2:
            return self.warmup_window
        recent_s = float(np.median(warmup_samples_ms[-self.warmup_window :])) / 1e3
        fitting = math.ceil(self.warmup_window_seconds / recent_s) if recent_s > 0 else self.warmup_window
        return max(2, min(self.warmup_window, fitting))

    def per_process(self) -> StoppingRule:
        """The rule one of a configuration's measuring processes samples under: its share of the time cap.
        (A configuration measured in one process, as training's are, uses the rule as it is.)"""
        return replace(self, max_seconds=self.max_seconds / self.max_processes, processes=1, max_processes=1)

    def stop_reason(self, samples: list[float], elapsed_s: float) -> str | None:
        """Why one measuring process should stop sampling now, or None to keep going."""
        n = len(samples)
        if n >= self.min_samples and median_ci_relative_halfwidth(samples) <= self.ci_target:
            return "ci_reached"
        if n >= self.max_samples:
            return "sample_cap"
        # The time cap still needs a handful of samples, or the percentiles mean nothing.
        if elapsed_s >= self.max_seconds and n >= 3:
            return "time_cap"
        return None

    def processes_stop_reason(self, medians: list[float], processes_run: int) -> str | None:
        """Why a configuration needs no further process, given its undisturbed processes' medians and how many
        processes it has run in all (disturbed ones included); None to run another."""
        if len(medians) >= max(self.processes, 2):  # one median has no spread to judge
            lo, hi, _ = between_process_interval(medians)
            center = float(np.median(medians))
            if center > 0 and (hi - lo) / 2.0 / center <= self.ci_target:
                return "ci_reached"
        if processes_run >= self.max_processes:
            return "process_cap"
        return None


def summarize(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/p99, mean, std, CV, min, max and the median's interval, all in milliseconds."""
    x = np.asarray(samples_ms, dtype=float)
    if x.size == 0:
        raise ValueError("summarize needs at least one sample")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    lo, hi = median_ci(x)
    p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": mean,
        "std_ms": std,
        "cv": std / mean if mean > 0 else math.nan,
        "min_ms": float(x.min()),
        "max_ms": float(x.max()),
        "median_ci_low_ms": lo,
        "median_ci_high_ms": hi,
        "ci_rel_halfwidth": (hi - lo) / 2.0 / p50 if p50 > 0 else math.inf,
    }
