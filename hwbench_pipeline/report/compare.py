"""Each configuration's newest run against its history, in the shape the regression report shows.

The judgement is :func:`hwbench_pipeline.report.regressions.detect_regressions` (change points over the
run medians, Mann–Whitney U on the raw samples, a minimum magnitude from the history's spread); this module
turns its findings into report rows. ``min_change`` here is the floor of that magnitude (10 % by default:
above the 5–8 % run-to-run spread measured on a 2-core host at 2 threads); a configuration whose history
moves more between runs needs a larger change to be flagged. A contaminated run is never the evidence for
a change: such a comparison's verdict is ``unreliable``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from hwbench_pipeline.report.regressions import (
    DEFAULT_MIN_CHANGE_FLOOR,
    DetectionSettings,
    Finding,
    detect_regressions,
)

DEFAULT_MIN_CHANGE = DEFAULT_MIN_CHANGE_FLOOR


@dataclass
class Comparison:
    key: dict
    current_run: str
    previous_run: str | None  # the baseline run: the last clean run before the change (or before this run)
    current_p50_ms: float
    previous_p50_ms: float | None  # the baseline level: median of the baseline runs' medians
    change_pct: float | None
    p_value: float | None
    verdict: str  # new, slower, faster, unchanged, unreliable
    current_samples: int
    environment_change: str
    first_suspicious_run: str | None = None
    changepoint_p_value: float | None = None
    min_change_pct: float | None = None
    method: str = ""

    @property
    def label(self) -> str:
        k = self.key
        return (f"{k['target']} {k['family']}/{k['preset']} bs={k['batch_size']} seq={k['seq_len']} {k['precision']} "
                f"attn={k.get('attention')}")


def compare_latest_runs(history: pl.DataFrame, *, min_change: float = DEFAULT_MIN_CHANGE,
                        alpha: float = 0.01) -> list[Comparison]:
    """Report rows, most urgent first: slower, faster, unreliable, new, unchanged."""
    settings = DetectionSettings(alpha=alpha, min_change_floor=min_change)
    return comparisons_from_findings(detect_regressions(history, settings=settings))


def comparisons_from_findings(findings: list[Finding]) -> list[Comparison]:
    """Report rows for findings already computed (the order is kept)."""
    return [
        Comparison(
            key=f.key,
            current_run=f.current_run_id,
            previous_run=f.baseline_run_id,
            current_p50_ms=f.current_value,
            previous_p50_ms=f.baseline_value,
            change_pct=None if f.change is None else f.change * 100.0,
            p_value=f.p_value,
            verdict=f.verdict,
            current_samples=f.current_samples,
            environment_change=f.environment_changes,
            first_suspicious_run=f.first_suspicious_run_id,
            changepoint_p_value=f.changepoint_p_value,
            min_change_pct=None if f.min_change is None else f.min_change * 100.0,
            method=f.method,
        )
        for f in findings
    ]
