"""Two configurations, or one configuration under two builds, measured interleaved (A B A B …) and compared
pair by pair (the statistics: trackers/paired.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hwbench_pipeline.bench.launchers.base import Launcher
from hwbench_pipeline.bench.scenarios.base import Scenario
from hwbench_pipeline.bench.scenarios.processes import disturbed
from hwbench_pipeline.bench.trackers.paired import DEFAULT_THRESHOLD, PairedComparison, compare_pairs


@dataclass
class Side:
    """One side of a comparison: a label, the configuration, and the launcher that measures its processes."""

    label: str
    cfg: object
    launcher: Launcher
    rows: list[dict] = field(default_factory=list)


@dataclass
class InterleavedResult:
    a: Side
    b: Side
    comparison: PairedComparison | None
    dropped_pairs: int
    failure: dict | None = None  # the first failed process's row, when a side could not be measured


def measure_interleaved(a: Side, b: Side, scenario: Scenario, pairs: int, run_id: str, *, timeout_s: float = 600.0,
                        threshold: float = DEFAULT_THRESHOLD,
                        on_pair: Callable[[int, dict, dict], None] | None = None) -> InterleavedResult:
    """``pairs`` rounds of one fresh process of each side (A B, B A, A B, …); the pairs the host disturbed on
    either side are dropped, the others compared. A failed process ends the comparison with its row."""
    for i in range(pairs):
        for side in ((a, b) if i % 2 == 0 else (b, a)):  # alternating, so a drift favours neither side
            cfg = scenario.process_config(side.cfg, first=not side.rows)
            row = side.launcher.measure(cfg, run_id, timeout_s, scenario.failure_row, workspace=side.label)
            if row["status"] != "ok":
                return InterleavedResult(a, b, None, 0, failure=row)
            side.rows.append(row)
        if on_pair:
            on_pair(i + 1, a.rows[-1], b.rows[-1])
    keep = [not (x or y) for x, y in zip(disturbed(a.rows), disturbed(b.rows), strict=True)]
    a_medians = [r["p50_ms"] for r, ok in zip(a.rows, keep, strict=True) if ok]
    b_medians = [r["p50_ms"] for r, ok in zip(b.rows, keep, strict=True) if ok]
    comparison = compare_pairs(a_medians, b_medians, threshold) if a_medians else None
    return InterleavedResult(a, b, comparison, keep.count(False))
