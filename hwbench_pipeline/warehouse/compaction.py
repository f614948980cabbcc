"""Compaction: fewer, larger files per partition, with the same query results.

Every write leaves one small file per (table, partition, run); queries then pay one file open per run.
``compact`` merges the small files of a partition into ``_compacted-<time>-<hex>.parquet`` (the format is in
``warehouse/layout.py``). Rows are copied unchanged (``_written_at`` and ``_partition`` included), so the
history and ``_latest`` views give the same rows before and after.

The swap is atomic: the new partition folder (the compacted files plus hard links to the files left
alone) is built under ``<data>/.maintenance/`` and exchanged with the live folder in one
``renameat2(RENAME_EXCHANGE)`` call, so a reader's glob sees either the old files or the new ones, never
both or neither. Where the filesystem cannot exchange, two renames are used instead (a short window in
which the partition looks empty), with a journal that lets the next maintenance operation put the old
folder back if a crash falls between them (``warehouse/swap.py``). A crash before the swap leaves only
staging debris (``check`` reports it, the next compaction removes it).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hwbench_pipeline.warehouse.format import COMPACTED_PREFIX, PARQUET_WRITE_OPTIONS
from hwbench_pipeline.warehouse.layout import (
    RunUnit,
    drop_superseded_segments,
    is_compacted_file,
    is_run_file,
    partition_folders,
    partition_units,
    with_segments,
)
from hwbench_pipeline.warehouse.maintenance_common import (
    Progress,
    maintenance_session,
    no_progress,
    refuse_unknown_tables,
    staging_folder,
    swap_folder,
)
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.swap import fsync_dir


@dataclass
class PartitionCompaction:
    table: str
    partition: str
    files_before: int
    files_after: int
    runs_merged: int
    rows_merged: int
    bytes_before: int
    bytes_after: int
    temp_files_removed: int = 0
    skipped: str | None = None


@dataclass
class CompactionReport:
    partitions: list[PartitionCompaction] = field(default_factory=list)

    @property
    def changed(self) -> list[PartitionCompaction]:
        return [p for p in self.partitions if p.runs_merged or p.temp_files_removed]

    def describe(self) -> str:
        changed = self.changed
        if not changed:
            return f"nothing to compact in {len(self.partitions)} partitions"
        before = sum(p.files_before for p in changed)
        after = sum(p.files_after for p in changed)
        return (f"compacted {len(changed)} of {len(self.partitions)} partitions: {before} files -> {after}, "
                f"{sum(p.runs_merged for p in changed)} runs and {sum(p.rows_merged for p in changed)} rows merged")


def _batches(units_by_file: dict[Path, list[RunUnit]], target_bytes: int) -> list[list[Path]]:
    """Files in time order, grouped so each merged file stays below ``target_bytes``; groups of one dropped."""
    ordered = sorted(units_by_file, key=lambda p: min(u.written_at for u in units_by_file[p]))
    batches: list[list[Path]] = [[]]
    size = 0
    for path in ordered:
        if batches[-1] and size + path.stat().st_size > target_bytes:
            batches.append([])
            size = 0
        batches[-1].append(path)
        size += path.stat().st_size
    return [b for b in batches if len(b) > 1]


def _merge(paths: list[Path], units_by_file: dict[Path, list[RunUnit]], dest_dir: Path) -> tuple[Path, int]:
    tables = [pq.read_table(p) for p in paths]
    merged = pa.concat_tables([t.replace_schema_metadata(None) for t in tables], promote_options="default")
    segments = [{"run_id": u.run_id, "rows": u.rows, "written_at": u.written_at.isoformat()}
                for p in paths for u in sorted(units_by_file[p], key=lambda u: u.offset)]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    dest = dest_dir / f"{COMPACTED_PREFIX}{stamp}-{secrets.token_hex(4)}.parquet"
    pq.write_table(with_segments(merged, segments), dest, **PARQUET_WRITE_OPTIONS)
    with open(dest, "rb") as fh:
        os.fsync(fh.fileno())
    return dest, merged.num_rows


def _compact_partition(wh: Warehouse, table: str, partition: str, folder: Path, small_bytes: int,
                       target_bytes: int) -> PartitionCompaction:
    drop_superseded_segments(folder)
    entries = list(folder.iterdir())
    temps = [e for e in entries if e.name.endswith(".tmp")]  # we hold the lock: no writer owns them
    data = [e for e in entries if e.suffix == ".parquet" and (is_run_file(e) or is_compacted_file(e))]
    size_before = sum(e.stat().st_size for e in data)
    result = PartitionCompaction(table, partition, len(data), len(data), 0, 0, size_before, size_before)
    if any(e.is_dir() for e in entries):
        result.skipped = "a sub-folder is outside the layout (see `hwbench db check`)"
        return result
    units = partition_units(table, partition, folder)
    newest = max(units, key=lambda u: (u.written_at, u.run_id)) if units else None
    units_by_file: dict[Path, list[RunUnit]] = {}
    for unit in units:
        units_by_file.setdefault(unit.path, []).append(unit)
    # Never merge the newest run: a retried step re-writes it and should find its plain file.
    if newest is not None and not newest.compacted:
        units_by_file.pop(newest.path, None)
    small = {p: us for p, us in units_by_file.items() if p.stat().st_size < small_bytes}
    batches = _batches(small, target_bytes)
    if not batches:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        result.temp_files_removed = len(temps)
        return result
    merged_paths = {p for batch in batches for p in batch}
    with staging_folder(wh, "compact") as staging:
        new = staging / partition
        new.mkdir()
        try:
            merged = [_merge(batch, small, new) for batch in batches]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            result.skipped = f"files disagree on column types: {str(exc).splitlines()[0]}"
            return result
        for entry in entries:
            if entry not in merged_paths and entry not in temps:
                os.link(entry, new / entry.name)
        fsync_dir(new)
        swap_folder(wh, new, folder)
    result.files_after = len(data) - len(merged_paths) + len(merged)
    result.runs_merged = sum(len(small[p]) for p in merged_paths)
    result.rows_merged = sum(rows for _, rows in merged)
    result.bytes_after = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    result.temp_files_removed = len(temps)
    return result


def compact(wh: Warehouse, *, tables: list[str] | None = None, small_mb: float = 64.0, target_mb: float = 256.0,
            progress: Progress = no_progress) -> CompactionReport:
    """Merge the small files of every partition (see the module docstring); query results do not change."""
    refuse_unknown_tables(tables)
    report = CompactionReport()
    with maintenance_session(wh):
        folders = list(partition_folders(wh, tables))
        for i, (table, partition, folder) in enumerate(folders):
            progress(f"compacting {table}/{partition}", i, len(folders))
            with wh.partition_lock(table, partition):
                report.partitions.append(_compact_partition(wh, table, partition, folder,
                                                            int(small_mb * 2**20), int(target_mb * 2**20)))
        progress("compacted", len(folders), len(folders))
    if folders:
        wh.refresh_catalog()
    return report
