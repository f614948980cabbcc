"""The regression report's interleaved checks: beside each change the history flags (runs measured apart), the
newest ``regression check`` of the same configuration from the ``comparisons`` table, if any: the configuration
re-measured by interleaved fresh processes against a baseline build (A the baseline, B this build)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from hwbench_pipeline.report.compare import Comparison
from hwbench_pipeline.report.interleaved_section import (
    REGRESSION_CHECK_PURPOSE,
    interval_text,
    measured_at,
    newest_first,
    pairs_text,
    percent_change,
)

#: a finding's key columns and the comparisons columns that name the same configuration (side A: the baseline)
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


def regression_check(key: dict, checks: pl.DataFrame) -> dict | None:
    """The newest ``regression check`` row of the configuration ``key`` (a finding's ``CONFIG_KEY`` values) among
    ``checks`` (``comparisons`` rows, any purpose), or None."""
    rows = newest_first(checks, REGRESSION_CHECK_PURPOSE)
    # a key part the finding lacks matches nothing: no check rather than another configuration's
    if rows.is_empty() or any(key.get(name) is None for name in MATCH):
        return None
    rows = rows.filter(pl.all_horizontal(pl.col(column) == key[name] for name, column in MATCH.items()))
    return rows.row(0, named=True) if rows.height else None


def checked_changes(changes: Sequence[Comparison], comparisons: pl.DataFrame | None) -> list[CheckedChange]:
    """Every slower or faster change, with the newest interleaved check of its configuration where one exists."""
    checks = comparisons if comparisons is not None else pl.DataFrame()
    return [CheckedChange(c, regression_check(c.key, checks)) for c in changes if c.verdict in FLAGGED]
