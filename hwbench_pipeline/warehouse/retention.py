"""Retention: removing old runs without changing what the ``_latest`` views show.

``retain`` removes whole runs of a partition (a file, or a segment of a compacted file) that are older
than N days and/or beyond the N newest runs of their partition, but never a run that holds the newest row
of some key of its table (the row a ``_latest`` view shows), so the ``_latest`` views never change.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from hwbench_pipeline.warehouse.layout import (
    RunUnit,
    is_compacted_file,
    partition_folders,
    partition_units,
    rewrite_compacted,
)
from hwbench_pipeline.warehouse.maintenance_common import (
    MaintenanceError,
    Progress,
    maintenance_session,
    no_progress,
    refuse_unknown_tables,
)
from hwbench_pipeline.warehouse.schema import TABLE_KEYS, TABLES
from hwbench_pipeline.warehouse.store import Warehouse, history_sql, measured_at_sql


@dataclass
class RetentionReport:
    dry_run: bool
    removed: list[RunUnit] = field(default_factory=list)
    kept: int = 0
    protected: int = 0  # runs that a rule would remove but that hold the newest row of some key

    def describe(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        rows = sum(u.rows for u in self.removed)
        return (f"{verb} {len(self.removed)} runs ({rows} rows); kept {self.kept} runs, {self.protected} of them "
                f"only because they hold the newest row of a key")


def _key_columns(table: str, path: Path, keys: list[str]) -> pl.DataFrame:
    """``keys``, ``_measured_at`` and ``_written_at`` of one file, in file order, read as the views read them
    (legacy key columns filled, a key column no file has yet null)."""
    source = history_sql(table, "'" + str(path).replace("'", "''") + "'")
    with duckdb.connect() as con:
        columns = set(con.sql(source).columns)
        select = ", ".join(k if k in columns else f"NULL AS {k}" for k in [*keys, "_written_at"])
        measured = measured_at_sql(table) if "finished_at" in columns else "_written_at"
        return con.sql(f"SELECT {select}, {measured} AS _measured_at FROM ({source})").pl()


def _protected_units(table: str, units: list[RunUnit]) -> set[int]:
    """Indices of the units holding the newest row of some key (all of them when rows tie)."""
    keys = TABLE_KEYS.get(table, ["_partition"])
    frames = []
    for path in sorted({u.path for u in units}):
        data = _key_columns(table, path, keys)
        for i, unit in enumerate(units):
            if unit.path == path:
                frames.append(data.slice(unit.offset, unit.rows).select([*keys, "_measured_at", "_written_at"])
                              .with_columns(pl.lit(i).alias("_unit")))
    if not frames:
        return set()
    rows = pl.concat(frames, how="vertical_relaxed")
    # the row a _latest view shows: the newest measurement, the newest write among ties (store.newest_first_sql)
    newest_measured = rows.filter(pl.col("_measured_at") == pl.col("_measured_at").max().over(keys))
    newest = newest_measured.filter(pl.col("_written_at") == pl.col("_written_at").max().over(keys))
    return set(newest["_unit"].to_list())


def retain(wh: Warehouse, *, older_than_days: float | None = None, keep_runs: int | None = None,
           tables: list[str] | None = None, dry_run: bool = False, now: datetime | None = None,
           progress: Progress = no_progress) -> RetentionReport:
    """Remove old runs. Each given rule is a reason to keep a run: a run goes when it is older than
    ``older_than_days`` (if given) and beyond the ``keep_runs`` newest of its partition (if given), and does
    not hold the newest row of any key of its table."""
    if older_than_days is None and keep_runs is None:
        raise MaintenanceError("say what to remove: --older-than-days DAYS and/or --keep-runs N")
    if older_than_days is not None and older_than_days < 0:
        raise MaintenanceError(f"--older-than-days must be zero or more, got {older_than_days}")
    if keep_runs is not None and keep_runs < 1:
        raise MaintenanceError(f"--keep-runs must be at least 1, got {keep_runs}")
    refuse_unknown_tables(tables)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days) if older_than_days is not None else None
    report = RetentionReport(dry_run=dry_run)
    guard = contextlib.nullcontext() if dry_run else maintenance_session(wh)
    with guard:
        selected = tables or list(TABLES)
        for t_index, table in enumerate(selected):
            progress(f"retention: {table}", t_index, len(selected))
            folders = [(p, f) for t, p, f in partition_folders(wh, [table])]
            with contextlib.ExitStack() as locks:
                if not dry_run:  # the whole table: the newest row of a key may live in another partition
                    for partition, _ in folders:
                        locks.enter_context(wh.partition_lock(table, partition))
                units = [u for partition, folder in folders for u in partition_units(table, partition, folder)]
                protected = _protected_units(table, units)
                removable = []
                for partition, _ in folders:
                    ranked = sorted((i for i, u in enumerate(units) if u.partition == partition),
                                    key=lambda i: (units[i].written_at, units[i].run_id), reverse=True)
                    for rank, i in enumerate(ranked):
                        expired = cutoff is None or units[i].written_at < cutoff
                        surplus = keep_runs is None or rank >= keep_runs
                        if expired and surplus:
                            if i in protected:
                                report.protected += 1
                            else:
                                removable.append(units[i])
                report.kept += len(units) - len(removable)
                report.removed += removable
                if not dry_run:
                    _remove_units(removable)
                    for _, folder in folders:
                        with contextlib.suppress(OSError):
                            folder.rmdir()  # only succeeds when empty
        progress("retention", len(selected), len(selected))
    return report


def _remove_units(units: list[RunUnit]) -> None:
    by_file: dict[Path, set[str]] = {}
    for unit in units:
        by_file.setdefault(unit.path, set()).add(unit.run_id)
    for path, runs in by_file.items():
        if is_compacted_file(path):
            rewrite_compacted(path, runs)
        else:
            path.unlink()
