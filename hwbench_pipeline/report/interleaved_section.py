"""Interleaved comparisons in the reports: the ``comparisons`` table (bench/compare.py; docs/measurement.md,
"Interleaved comparisons").

* the comparison report's section: the newest row of each ``COMPARISON_KEY`` whose purpose is a comparison (a
  profile's ``comparisons:`` or ``hwbench compare --store``), a line per comparison;
* the figures of one row as report text (a ratio B/A as a percent change, its interval, the pairs), which the
  regression report's interleaved checks (:mod:`hwbench_pipeline.report.regression_checks_view`) share.

Two sides measured by alternating fresh processes in one window share the host's drift, so their verdict is
the report's word on which is faster; the target-by-target figures elsewhere come from partitions measured
apart, and a ratio between those carries the drift between them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from hwbench_pipeline.report.comparison_sections import Section, Table
from hwbench_pipeline.report.text import number
from hwbench_pipeline.warehouse.schema import COMPARISON_KEY

#: the ``purpose`` of a row the comparison report shows; "regression check" rows belong to the regression report
COMPARISON_PURPOSE = "comparison"
REGRESSION_CHECK_PURPOSE = "regression check"
TITLE = "Interleaved comparisons"
INTRO = ("Each line compares two sides, A and B (two targets, two precisions, or one configuration under two "
         "builds), measured in one window by interleaved pairs of fresh processes (A B, B A, …) and compared pair "
         "by pair: a slow stretch of the host moves both processes of a pair and cancels. 'B vs A' is the median "
         "of the pairs' ratios B/A as a percent change, with its distribution-free interval (its coverage in "
         "brackets) and the Wilcoxon signed-rank p-value; a pair the host disturbed on either side is dropped. The "
         "verdict is B against A: slower or faster when the whole interval lies beyond 1 and the change reaches the "
         "threshold, same when the interval lies within ±threshold, else inconclusive. The target-by-target charts "
         "and tables elsewhere in this report come from partitions measured apart (at different times): a ratio "
         "between two of their figures includes whatever the host did in between; where the two disagree, trust "
         "the interleaved verdict.")
#: the report's summary says once how its figures were measured
MEASURED_APART = ("Different targets' figures were measured apart (each target's partition at its own time); the "
                  "interleaved comparisons were measured in one window, pair by pair.")
NO_COMPARISONS = ("No interleaved comparison has been stored yet: add a comparisons: section to the profile, or run "
                  "hwbench compare with --store.")
COLUMNS = ["A", "B", "what differs", "model", "batch", "seq", "threads", "verdict", "B vs A %",
           "interval % (coverage)", "p-value", "pairs compared of asked", "s per process", "measured", "sentence"]
NUMERIC = [False, False, False, False, True, True, True, False, True, False, True, False, True, False, False]
#: the display order of the section's lines
ORDER = ["family", "preset", "kind", "label_a", "label_b", "batch_size", "seq_len", "threads"]


def percent_change(ratio: float | None) -> str:
    """A ratio B/A as B's percent change from A (``+4.2``); ``n/a`` where nothing was compared."""
    return "n/a" if ratio is None else number(100 * (ratio - 1), "+.1f")


def interval_text(row: dict) -> str:
    """The interval of B/A as percent changes, with its coverage: ``+1.9 … +6.3 (96.1 %)``."""
    if row.get("low") is None or row.get("high") is None:
        return "n/a"
    coverage = f" ({number(100 * row['coverage'], '.1f')} %)" if row.get("coverage") is not None else ""
    return f"{percent_change(row['low'])} … {percent_change(row['high'])}{coverage}"


def pairs_text(row: dict) -> str:
    """The undisturbed pairs compared of those asked for, and the disturbed ones dropped: ``7 of 8 (1 dropped)``."""
    dropped = row.get("dropped_pairs") or 0
    return f"{row['pairs']} of {row['pairs_asked']}" + (f" ({dropped} dropped)" if dropped else "")


def measured_at(row: dict) -> str:
    """When the comparison started (else when it was written), to the minute."""
    when: datetime | None = row.get("started_at") or row.get("_written_at")
    if when is None:
        return "n/a"
    # a time read back may carry the reader's zone; a naive one was written as UTC
    return (when.astimezone(UTC) if when.tzinfo else when).strftime("%Y-%m-%d %H:%M UTC")


def newest_first(comparisons: pl.DataFrame, purpose: str) -> pl.DataFrame:
    """The rows of one purpose, newest first: by when the comparison started, then when it was written."""
    if comparisons.is_empty() or "purpose" not in comparisons.columns:
        return comparisons.clear()
    order = [c for c in ("started_at", "_written_at") if c in comparisons.columns]
    rows = comparisons.filter(pl.col("purpose") == purpose)
    return rows.sort(order, descending=True, nulls_last=True) if order else rows


def newest_comparisons(comparisons: pl.DataFrame, purpose: str = COMPARISON_PURPOSE) -> pl.DataFrame:
    """The newest row of each ``COMPARISON_KEY`` with this purpose: an older measurement of the same two sides is
    superseded, not a second line."""
    rows = newest_first(comparisons, purpose)
    if rows.is_empty():
        return rows
    # nulls compare equal in ``unique``: a key with a missing part is still one key
    return rows.unique(subset=COMPARISON_KEY, keep="first", maintain_order=True).sort(ORDER, nulls_last=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _side(row: dict, side: str) -> str:
    label = row[f"label_{side}"]
    build = row[f"build_{side}"]
    # two builds: the label says which side is the baseline, the build which interpreter measured it
    return f"{label} ({build})" if row["kind"] == "builds" and build and build != label else label


def _differs(row: dict) -> str:
    """What differs between the sides, and what they share (the labels name what differs)."""
    if row["kind"] == "targets":
        return f"targets, {row['precision_a']}"
    if row["kind"] == "precisions":
        return f"precisions, on {row['target_a']}"
    return f"builds, {row['target_a']} {row['precision_a']}"


def _line(row: dict) -> list[str]:
    return [_side(row, "a"), _side(row, "b"), _differs(row), f"{row['family']}/{row['preset']}",
            str(row["batch_size"]), str(row["seq_len"]), str(row["threads"]), row["verdict"],
            percent_change(row.get("ratio")), interval_text(row), number(row.get("p_value"), ".2g"), pairs_text(row),
            number(row.get("seconds_per_process"), "g"), measured_at(row), row.get("sentence") or ""]


def interleaved_section(comparisons: pl.DataFrame) -> Section:
    """The section from every row of the ``comparisons`` table (it picks the newest comparison of each key)."""
    section = Section("interleaved", TITLE, INTRO)
    rows = newest_comparisons(comparisons)
    if rows.is_empty():
        checks = newest_first(comparisons, REGRESSION_CHECK_PURPOSE).height
        section.empty = NO_COMPARISONS + (f" The regression report shows {_count(checks, 'regression check')} "
                                          "against a baseline build." if checks else "")
        return section
    section.tables.append(Table(COLUMNS, [_line(r) for r in rows.iter_rows(named=True)], NUMERIC))
    counts = rows.group_by("verdict").len().sort("verdict")
    section.notes.append(f"{_count(rows.height, 'comparison')}: "
                         + ", ".join(f"{n} {v}" for v, n in counts.iter_rows()) + ".")
    return section
