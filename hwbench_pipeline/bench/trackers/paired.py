"""Two things compared by interleaved processes (A B A B …): the paired ratio, its interval, a test, a verdict.

The rules, in one place:

* Each round measures one process of A and then one of B; a pair whose process of either side the host
  disturbed is dropped. The statistic of a pair is ``log(B median / A median)``: both processes ran within
  seconds of each other, so a slow stretch of the host moves both and cancels in the ratio.
* The ratio is ``exp`` of the median of the pair statistics; its interval is the distribution-free one of
  that median (trackers/stats.py ``between_process_interval``: order statistics, exact binomial coverage,
  stated as it is below 6 pairs). The p-value is the exact two-sided Wilcoxon signed-rank test of the pair
  statistics against 0 (it can go below 0.05 from 6 pairs on).
* The verdict: ``slower`` when the interval lies above 1 and the ratio is at least ``1 + threshold``;
  ``faster`` when the interval lies below 1 and the ratio is at most ``1 / (1 + threshold)``; ``same`` when
  the whole interval lies within those two bounds; else ``inconclusive`` (measure more pairs). Below 6
  undisturbed pairs the interval's coverage is under 95 % and the verdict is always ``inconclusive``.
* The order within a pair alternates (A B, then B A, …), so that a steady drift of the host does not always
  favour the side measured first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from hwbench_pipeline.bench.trackers.stats import between_process_interval

#: a difference smaller than this, either way, is no difference
DEFAULT_THRESHOLD = 0.05
VERDICTS = ("slower", "faster", "same", "inconclusive")
#: the interval's coverage a verdict needs (6 pairs or more)
MIN_COVERAGE = 0.95


@dataclass(frozen=True)
class PairedComparison:
    pairs: int
    ratio: float  # B over A
    low: float
    high: float
    coverage: float
    p_value: float | None
    threshold: float
    verdict: str

    def as_dict(self) -> dict:
        return asdict(self)

    def sentence(self, a: str, b: str) -> str:
        """The verdict in words, saying that it comes from interleaved pairs."""
        change = f"{100 * (self.ratio - 1):+.1f} %"
        p = f", Wilcoxon p = {self.p_value:.3g}" if self.p_value is not None else ""
        figures = (f"{b} / {a} = {self.ratio:.4f} [{self.low:.4f}, {self.high:.4f}] "
                   f"({100 * self.coverage:.1f} % interval{p}; {self.pairs} interleaved pairs)")
        if self.verdict == "slower":
            return f"{b} is slower than {a} ({change}): {figures}"
        if self.verdict == "faster":
            return f"{b} is faster than {a} ({change}): {figures}"
        if self.verdict == "same":
            return f"no difference beyond ±{100 * self.threshold:g} %: {figures}"
        return f"inconclusive (measure more pairs): {figures}"


def _wilcoxon_p(statistics: np.ndarray) -> float | None:
    from scipy.stats import wilcoxon

    nonzero = statistics[statistics != 0]
    if nonzero.size < 1:
        return None
    return float(wilcoxon(nonzero, alternative="two-sided", method="exact").pvalue)


def compare_pairs(a_medians: list[float], b_medians: list[float],
                  threshold: float = DEFAULT_THRESHOLD) -> PairedComparison:
    """The comparison of B against A from the medians of their interleaved processes, pair by pair."""
    if len(a_medians) != len(b_medians):
        raise ValueError(f"pairs need as many A as B medians, got {len(a_medians)} and {len(b_medians)}")
    if not a_medians:
        raise ValueError("compare_pairs needs at least one pair")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    logs = np.log(np.asarray(b_medians, dtype=float) / np.asarray(a_medians, dtype=float))
    low, high, coverage = between_process_interval(logs)
    ratio = math.exp(float(np.median(logs)))
    low, high = math.exp(low), math.exp(high)
    upper, lower = 1 + threshold, 1 / (1 + threshold)
    if coverage < MIN_COVERAGE:
        verdict = "inconclusive"
    elif low > 1 and ratio >= upper:
        verdict = "slower"
    elif high < 1 and ratio <= lower:
        verdict = "faster"
    elif lower <= low and high <= upper:
        verdict = "same"
    else:
        verdict = "inconclusive"
    return PairedComparison(len(logs), ratio, low, high, coverage, _wilcoxon_p(logs), threshold, verdict)
