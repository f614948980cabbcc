"""The files of a partition folder, ``warehouse/<table>/<partition>/``, and the runs they hold.

A write leaves one plain ``<run_id>.parquet`` per (table, partition, run). Compaction (``warehouse/compaction.py``)
merges old ones into ``_compacted-<time>-<hex>.parquet``. A compacted file remembers, in its Parquet key-value
metadata, which runs it holds and in which order (``hwbench.segments``: run id, row count, ``_written_at``), so
:func:`partition_units` lists every run of a folder as a :class:`RunUnit`, whichever file holds it.

Re-writing a compacted run
    The newest run of a partition is never compacted: a step retry re-writes the newest run, which is still a
    plain ``<run_id>.parquet`` that the writer simply replaces. A run inside a compacted file can still be
    written again (an import of an old run): the writer renames the new ``<run_id>.parquet`` into place and
    then calls :func:`drop_superseded_segments`, which rewrites the compacted file without that run. Rule: a
    plain run file always supersedes a segment of the same run in a compacted file, because compaction never
    leaves both. A crash between the two renames leaves the run visible twice in the history (the ``_latest``
    views are right: the new rows are newer); the next write to the partition, or ``compact``, repairs it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hwbench_pipeline.warehouse.schema import TABLES

if TYPE_CHECKING:
    from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.format import COMPACTED_PREFIX, PARQUET_WRITE_OPTIONS, SAFE_NAME, MaintenanceError

SEGMENTS_KEY = b"hwbench.segments"
COMPACTED_NAME = re.compile(rf"^{COMPACTED_PREFIX}[0-9]{{8}}T[0-9]{{12}}-[0-9a-f]{{8}}\.parquet\Z")


@dataclass(frozen=True)
class RunUnit:
    """One run's rows in one partition: a whole run file, or a segment of a compacted file."""

    table: str
    partition: str
    run_id: str
    path: Path
    rows: int
    written_at: datetime
    offset: int = 0  # first row of the segment within a compacted file
    compacted: bool = False


def is_run_file(path: Path) -> bool:
    return path.suffix == ".parquet" and SAFE_NAME.match(path.stem) is not None


def is_compacted_file(path: Path) -> bool:
    return COMPACTED_NAME.match(path.name) is not None


def partition_folders(wh: Warehouse, tables: list[str] | None = None) -> Iterator[tuple[str, str, Path]]:
    """(table, partition, folder) of every partition folder of the known tables, sorted."""
    for table in tables or list(TABLES):
        root = wh.parquet_dir / table
        if root.is_dir():
            for folder in sorted(p for p in root.iterdir() if p.is_dir() and SAFE_NAME.match(p.name)):
                yield table, folder.name, folder


def read_segments(path: Path) -> list[dict]:
    """The runs a compacted file holds, in row order: dicts with run_id, rows, written_at (ISO)."""
    metadata = pq.read_schema(path).metadata or {}
    if SEGMENTS_KEY not in metadata:
        raise MaintenanceError(f"{path} is named as a compacted file but has no {SEGMENTS_KEY.decode()} metadata")
    return json.loads(metadata[SEGMENTS_KEY])


def _written_at(path: Path) -> datetime:
    column = pq.read_table(path, columns=["_written_at"]).column("_written_at")
    newest = pc.max(column).as_py() if len(column) else None
    return newest or datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _file_units(table: str, partition: str, path: Path) -> list[RunUnit]:
    if is_compacted_file(path):
        units, offset = [], 0
        for seg in read_segments(path):
            units.append(RunUnit(table, partition, seg["run_id"], path, seg["rows"],
                                 datetime.fromisoformat(seg["written_at"]), offset, compacted=True))
            offset += seg["rows"]
        return units
    if is_run_file(path):
        rows = pq.ParquetFile(path).metadata.num_rows
        return [RunUnit(table, partition, path.stem, path, rows, _written_at(path))]
    return []


def partition_units(table: str, partition: str, folder: Path) -> list[RunUnit]:
    """Every run stored in a partition folder, oldest first."""
    units = []
    for path in sorted(folder.glob("*.parquet")):
        try:
            units += _file_units(table, partition, path)
        except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
            raise MaintenanceError(f"{path} cannot be read ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                                   "see `hwbench db check`") from None
    return sorted(units, key=lambda u: (u.written_at, u.run_id))


def _write_parquet(table: pa.Table, final: Path) -> None:
    """Write under a hidden temporary name beside ``final``, flush, rename: readers never see half a file."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, **PARQUET_WRITE_OPTIONS)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def with_segments(table: pa.Table, segments: list[dict]) -> pa.Table:
    """``table`` labelled as a compacted file holding ``segments`` (see :func:`read_segments`)."""
    return table.replace_schema_metadata({SEGMENTS_KEY: json.dumps(segments).encode()})


def rewrite_compacted(path: Path, drop_runs: set[str]) -> int:
    """Rewrite a compacted file without the segments of ``drop_runs``; returns the rows removed."""
    segments = read_segments(path)
    table = pq.read_table(path)
    keep, pieces, offset, removed = [], [], 0, 0
    for seg in segments:
        if seg["run_id"] in drop_runs:
            removed += seg["rows"]
        else:
            keep.append(seg)
            pieces.append(table.slice(offset, seg["rows"]))
        offset += seg["rows"]
    if not removed:
        return 0
    if keep:
        _write_parquet(with_segments(pa.concat_tables(pieces), keep), path)
    else:
        path.unlink()
    return removed


def drop_superseded_segments(folder: Path) -> int:
    """Remove from compacted files every run that also has its own run file (a later write of that run).

    The caller holds the partition's lock. Returns the rows removed.
    """
    plain = {p.stem for p in folder.glob("*.parquet") if is_run_file(p) and not is_compacted_file(p)}
    removed = 0
    for path in sorted(folder.glob(f"{COMPACTED_PREFIX}*.parquet")):
        if is_compacted_file(path):
            superseded = {seg["run_id"] for seg in read_segments(path)} & plain
            if superseded:
                removed += rewrite_compacted(path, superseded)
    return removed
