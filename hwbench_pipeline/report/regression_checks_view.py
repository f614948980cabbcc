"""The regression report's interleaved checks: beside each change the history flags (runs measured apart), the
newest ``regression check`` of the same configuration from the ``comparisons`` table, if any: the configuration
re-measured by interleaved fresh processes against a baseline build (A the baseline, B this build)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from hwbench_pipeline.bench.precision import spec_name
from hwbench_pipeline.report.compare import Comparison
from hwbench_pipeline.report.interleaved_section import (
    REGRESSION_CHECK_PURPOSE,
    interval_text,
    measured_at,
    newest_first,
    pairs_text,
    percent_change,
)

#: a finding's key columns and the comparisons columns that name the same configuration (side A: the baseline;
#: its precision is the spec, int8-static, made from the finding's precision and quantization)
MATCH = {"family": "family", "preset": "preset", "config_hash": "config_hash", "batch_size": "batch_size",
         "seq_len": "seq_len", "threads": "threads", "target": "target_a", "precision": "precision_a"}
FLAGGED = ("slower", "faster")
FROM_HISTORY = "from history (runs measured apart)"
HOW_TO_CHECK = ("An interleaved check needs a baseline build: set the regression_report run config baseline_python "
                "(the interpreter of the baseline checkout's virtual environment), or run hwbench compare "
                "--baseline-python PATH.")


@dataclass
class CheckedChange:
    """A change the history flags, and the newest interleaved check of its configuration (None: none yet)."""

    change: Comparison
    check: dict | None

    @property
    def ratio_text(self) -> str:
        """The check's B/A as a percent change, its interval and coverage: ``+6.2 % [+4.1 … +8.0 (96.1 %)]``;
        empty where the check compared nothing (it failed, or the host disturbed every pair)."""
        if self.check is None or self.check["ratio"] is None:
            return ""
        return f"{percent_change(self.check['ratio'])} % [{interval_text(self.check)}]"

    @property
    def pairs(self) -> str:
        return pairs_text(self.check) if self.check else ""

    @property
    def measured(self) -> str:
        return measured_at(self.check) if self.check else ""


def regression_check(key: dict, checks: pl.DataFrame, not_before: datetime | None) -> dict | None:
    """The newest ``regression check`` row of the configuration ``key`` (a finding's ``CONFIG_KEY`` values) among
    ``checks`` (``comparisons`` rows, any purpose) that started at or after ``not_before`` (when the run the
    finding judges was measured: an older check judged an older run), or None."""
    rows = newest_first(checks, REGRESSION_CHECK_PURPOSE)
    # a key part the finding lacks matches nothing: no check rather than another configuration's
    if rows.is_empty() or not_before is None or any(key.get(name) is None for name in MATCH):
        return None
    wanted = {**key, "precision": spec_name(key["precision"], key.get("quantization"))}
    rows = rows.filter(pl.all_horizontal(pl.col(column) == wanted[name] for name, column in MATCH.items())
                       # as epoch microseconds: the table's and the history's time zones may be spelt apart
                       & (pl.col("started_at").dt.epoch("us") >= int(not_before.timestamp() * 1e6)))
    return rows.row(0, named=True) if rows.height else None


def run_times(history: pl.DataFrame) -> dict[str, datetime]:
    """When each run of ``history`` (results rows) measured its last configuration (when it was written, for a
    row without a start time)."""
    columns = [c for c in ("started_at", "_written_at") if c in history.columns]
    if not columns or history.is_empty():
        return {}
    times = history.group_by("run_id").agg(pl.coalesce(columns).max().alias("at")).drop_nulls()
    return dict(zip(times["run_id"].to_list(), times["at"].to_list(), strict=True))


def checked_changes(changes: Sequence[Comparison], comparisons: pl.DataFrame | None,
                    measured: dict[str, datetime] | None = None) -> list[CheckedChange]:
    """Every slower or faster change, with the newest interleaved check of its configuration made since its run
    (``measured``: run id -> when, ``run_times``) where one exists."""
    checks = comparisons if comparisons is not None else pl.DataFrame()
    measured = measured or {}
    return [CheckedChange(c, regression_check(c.key, checks, measured.get(c.current_run)))
            for c in changes if c.verdict in FLAGGED]
