"""Keeping the warehouse small, bounded, recoverable and verified: compact, retain, backup, restore, check.

Compaction
    Every write leaves one small file per (table, partition, run); queries then pay one file open per run.
    ``compact`` merges the small files of a partition into ``_compacted-<time>-<hex>.parquet``. Rows are
    copied unchanged (``_written_at`` and ``_partition`` included), so the history and ``_latest`` views give
    the same rows before and after. A compacted file remembers, in its Parquet key-value metadata, which runs
    it holds and in which order (``hwbench.segments``: run id, row count, ``_written_at``).

    The swap is atomic: the new partition folder (the compacted files plus hard links to the files left
    alone) is built under ``<data>/.maintenance/`` and exchanged with the live folder in one
    ``renameat2(RENAME_EXCHANGE)`` call, so a reader's glob sees either the old files or the new ones, never
    both or neither. Where the filesystem cannot exchange, two renames are used instead (a short window in
    which the partition looks empty), with a journal that lets the next maintenance operation put the old
    folder back if a crash falls between them (``warehouse/swap.py``). A crash before the swap leaves only
    staging debris (``check`` reports it, the next compaction removes it).

Re-writing a compacted run
    The newest run of a partition is never compacted: a step retry re-writes the newest run, which is still a
    plain ``<run_id>.parquet`` that the writer simply replaces. A run inside a compacted file can still be
    written again (an import of an old run): the writer renames the new ``<run_id>.parquet`` into place and
    then calls :func:`drop_superseded_segments`, which rewrites the compacted file without that run. Rule: a
    plain run file always supersedes a segment of the same run in a compacted file, because compaction never
    leaves both. A crash between the two renames leaves the run visible twice in the history (the ``_latest``
    views are right: the new rows are newer); the next write to the partition, or ``compact``, repairs it.

Retention
    ``retain`` removes whole runs of a partition (a file, or a segment of a compacted file) that are older
    than N days and/or beyond the N newest runs of their partition, but never a run that holds the newest row
    of some key of its table (the row a ``_latest`` view shows), so the ``_latest`` views never change.

Backup and restore
    ``backup`` copies every data file under the exclusive warehouse lock (no writer is between its temporary
    file and its rename) with a manifest of sha256 per file. The DuckDB catalog is not copied: it holds only
    view definitions with absolute paths, and ``restore`` rebuilds it. ``restore`` unpacks into staging,
    verifies the manifest (every file present, no extra file, every checksum), and only then swaps the
    staged folder with the live one; a damaged backup is refused and the warehouse is left untouched.

Check
    ``check`` reads every file in full (page checksums on), compares its columns with the table's schema,
    opens the catalog read-only and selects from every view, and reports orphans: temporary files of dead
    writers, unknown table folders, files outside the layout, leftover staging.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hwbench_pipeline.warehouse.schema import TABLE_KEYS, TABLES
from hwbench_pipeline.warehouse.store import (
    COMPACTED_PREFIX,
    META_COLUMNS,
    PARQUET_WRITE_OPTIONS,
    SAFE_NAME,
    Warehouse,
    WarehouseError,
    history_sql,
    measured_at_sql,
)
from hwbench_pipeline.warehouse.swap import (
    SwapError,
    fsync_dir,
    interrupted_swaps,
    recover_interrupted_swaps,
    swap_directories,
)

SEGMENTS_KEY = b"hwbench.segments"
STAGING_DIR = ".maintenance"
MANIFEST = "manifest.json"
BACKUP_FORMAT = "hwbench-warehouse-backup"
COMPACTED_NAME = re.compile(rf"^{COMPACTED_PREFIX}[0-9]{{8}}T[0-9]{{12}}-[0-9a-f]{{8}}\.parquet$")
CHUNK = 1 << 20

#: progress callback: (what is being done, items done, items in all)
Progress = Callable[[str, int, int], None]


class MaintenanceError(WarehouseError):
    """A maintenance step refused to run; the message says why and the warehouse is unchanged."""


class BackupRejected(MaintenanceError):
    """A backup that is truncated, corrupt or incomplete."""


def _noop(what: str, done: int, total: int) -> None:
    return None


# ---- layout ------------------------------------------------------------------------------------------------
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


def _with_segments(table: pa.Table, segments: list[dict]) -> pa.Table:
    return table.replace_schema_metadata({SEGMENTS_KEY: json.dumps(segments).encode()})


def _rewrite_compacted(path: Path, drop_runs: set[str]) -> int:
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
        _write_parquet(_with_segments(pa.concat_tables(pieces), keep), path)
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
                removed += _rewrite_compacted(path, superseded)
    return removed


def _swap(wh: Warehouse, new: Path, live: Path) -> Path:
    try:
        return swap_directories(new, live, wh.data_dir / STAGING_DIR)
    except SwapError as exc:
        raise MaintenanceError(exc.strerror) from exc


@contextlib.contextmanager
def _staging(wh: Warehouse, kind: str) -> Iterator[Path]:
    """A fresh staging folder under <data>/.maintenance, removed afterwards whatever happens."""
    root = wh.data_dir / STAGING_DIR
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{kind}-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _maintenance(wh: Warehouse) -> Iterator[None]:
    """One maintenance operation at a time; staging left by a crashed one is removed first."""
    with wh._flock("maintenance.lock", exclusive=True):
        root = wh.data_dir / STAGING_DIR
        recover_interrupted_swaps(root)  # before the cleanup below: an interrupted swap's old folder is live data
        wh.recover()  # a dead writer's committed files go in place before anything is merged or removed
        if root.is_dir():
            for leftover in root.iterdir():
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink()
        yield


# ---- compaction --------------------------------------------------------------------------------------------
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
    pq.write_table(_with_segments(merged, segments), dest, **PARQUET_WRITE_OPTIONS)
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
    with _staging(wh, "compact") as staging:
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
        _swap(wh, new, folder)
    result.files_after = len(data) - len(merged_paths) + len(merged)
    result.runs_merged = sum(len(small[p]) for p in merged_paths)
    result.rows_merged = sum(rows for _, rows in merged)
    result.bytes_after = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    result.temp_files_removed = len(temps)
    return result


def compact(wh: Warehouse, *, tables: list[str] | None = None, small_mb: float = 64.0, target_mb: float = 256.0,
            progress: Progress = _noop) -> CompactionReport:
    """Merge the small files of every partition (see the module docstring); query results do not change."""
    _check_tables(tables)
    report = CompactionReport()
    with _maintenance(wh):
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


def _check_tables(tables: list[str] | None) -> None:
    unknown = sorted(set(tables or []) - set(TABLES))
    if unknown:
        raise MaintenanceError(f"unknown table {', '.join(unknown)}; tables: {', '.join(TABLES)}")


# ---- retention ---------------------------------------------------------------------------------------------
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
           progress: Progress = _noop) -> RetentionReport:
    """Remove old runs. Each given rule is a reason to keep a run: a run goes when it is older than
    ``older_than_days`` (if given) and beyond the ``keep_runs`` newest of its partition (if given), and does
    not hold the newest row of any key of its table."""
    if older_than_days is None and keep_runs is None:
        raise MaintenanceError("say what to remove: --older-than-days DAYS and/or --keep-runs N")
    if older_than_days is not None and older_than_days < 0:
        raise MaintenanceError(f"--older-than-days must be zero or more, got {older_than_days}")
    if keep_runs is not None and keep_runs < 1:
        raise MaintenanceError(f"--keep-runs must be at least 1, got {keep_runs}")
    _check_tables(tables)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days) if older_than_days is not None else None
    report = RetentionReport(dry_run=dry_run)
    guard = contextlib.nullcontext() if dry_run else _maintenance(wh)
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
            _rewrite_compacted(path, runs)
        else:
            path.unlink()


# ---- backup and restore ------------------------------------------------------------------------------------
@dataclass
class BackupReport:
    path: Path
    files: int
    bytes: int
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        extra = f"; skipped {len(self.skipped)} files outside the layout" if self.skipped else ""
        return f"backed up {self.files} files ({self.bytes / 2**20:.1f} MiB) to {self.path}{extra}"


class _HashingReader(io.RawIOBase):
    """Hashes what tarfile reads from a file."""

    def __init__(self, fh) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.sha.update(data)
        return data


def _data_files(wh: Warehouse) -> tuple[list[Path], list[Path]]:
    """(files of the layout, other files) under the warehouse folder; temporary files are neither."""
    layout, other = [], []
    if not wh.parquet_dir.is_dir():
        return layout, other
    for path in sorted(p for p in wh.parquet_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(wh.parquet_dir).parts
        if path.name.endswith(".tmp"):
            continue
        in_layout = (len(rel) == 3 and rel[0] in TABLES and SAFE_NAME.match(rel[1])
                     and (is_run_file(path) or is_compacted_file(path)))
        (layout if in_layout else other).append(path)
    return layout, other


def _copy_hashing(src: Path, dest: Path) -> str:
    sha = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(CHUNK):
            sha.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return sha.hexdigest()


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz"))


def backup(wh: Warehouse, dest: str | Path, *, progress: Progress = _noop) -> BackupReport:
    """Copy the warehouse's data files and a sha256 manifest to ``dest`` (a .tar.gz, else a directory)."""
    dest = Path(dest).resolve()
    if dest.exists():
        raise MaintenanceError(f"{dest} already exists; give a new name for the backup")
    if not dest.parent.is_dir():
        raise MaintenanceError(f"{dest.parent} is not a directory")
    if dest.is_relative_to(wh.data_dir):
        raise MaintenanceError(f"{dest} is inside the data directory {wh.data_dir}; put backups elsewhere")
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    manifest: dict = {"format": BACKUP_FORMAT, "version": 1, "created_at": datetime.now(UTC).isoformat(),
                      "source": str(wh.data_dir), "files": {}}
    total = 0
    with wh.warehouse_lock():
        files, other = _data_files(wh)
        try:
            if _is_archive(dest):
                with tarfile.open(partial, "w:gz") as tar:
                    for i, path in enumerate(files):
                        progress("backing up", i, len(files))
                        arcname = f"warehouse/{path.relative_to(wh.parquet_dir).as_posix()}"
                        info = tar.gettarinfo(str(path), arcname)
                        with open(path, "rb") as fh:
                            reader = _HashingReader(fh)
                            tar.addfile(info, reader)
                        manifest["files"][arcname] = {"sha256": reader.sha.hexdigest(), "bytes": info.size}
                        total += info.size
                    blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
                    info = tarfile.TarInfo(MANIFEST)
                    info.size, info.mtime = len(blob), int(datetime.now(UTC).timestamp())
                    tar.addfile(info, io.BytesIO(blob))
                with open(partial, "rb") as fh:
                    os.fsync(fh.fileno())
            else:
                partial.mkdir()
                for i, path in enumerate(files):
                    progress("backing up", i, len(files))
                    rel = f"warehouse/{path.relative_to(wh.parquet_dir).as_posix()}"
                    (partial / rel).parent.mkdir(parents=True, exist_ok=True)
                    manifest["files"][rel] = {"sha256": _copy_hashing(path, partial / rel),
                                              "bytes": path.stat().st_size}
                    total += path.stat().st_size
                (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            os.rename(partial, dest)
        finally:
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            elif partial.exists():
                partial.unlink()
    progress("backed up", len(files), len(files))
    return BackupReport(dest, len(files), total, [str(p) for p in other])


@dataclass
class RestoreReport:
    source: Path
    files: int
    bytes: int
    replaced_files: int

    def describe(self) -> str:
        return (f"restored {self.files} files ({self.bytes / 2**20:.1f} MiB) from {self.source}; "
                f"replaced {self.replaced_files} files; catalog rebuilt")


_BACKUP_MEMBER = re.compile(r"^warehouse/[A-Za-z0-9_]+/[A-Za-z0-9][A-Za-z0-9_.-]{0,127}/[^/]+\.parquet$")


def _check_member_name(src: Path, name: str) -> None:
    if name != MANIFEST and not _BACKUP_MEMBER.match(name):
        raise BackupRejected(f"{src} holds {name!r}, which is not part of an hwbench backup; nothing restored")


def _unpack_archive(src: Path, dest: Path, progress: Progress) -> dict[str, str]:
    hashes = {}
    try:
        with tarfile.open(src, "r:gz") as tar:
            for i, member in enumerate(tar):
                progress("unpacking", i, 0)
                if member.isdir():
                    continue
                _check_member_name(src, member.name)
                if not member.isfile():
                    raise BackupRejected(f"{src}: {member.name} is not a regular file; nothing restored")
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                sha = hashlib.sha256()
                with tar.extractfile(member) as fin, open(target, "wb") as fout:
                    while chunk := fin.read(CHUNK):
                        sha.update(chunk)
                        fout.write(chunk)
                hashes[member.name] = sha.hexdigest()
            # tarfile stops quietly at a damaged header; reading the gzip stream to its end checks its CRC.
            while tar.fileobj.read(CHUNK):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        # gzip raises EOFError on truncation and BadGzipFile (an OSError) on damaged bytes
        raise BackupRejected(f"{src} is not a readable backup archive (truncated or corrupt: "
                             f"{str(exc) or type(exc).__name__}); nothing restored") from None
    return hashes


def _unpack_directory(src: Path, dest: Path, progress: Progress) -> dict[str, str]:
    files = sorted(p for p in src.rglob("*") if p.is_file())
    hashes = {}
    for i, path in enumerate(files):
        progress("verifying", i, len(files))
        name = path.relative_to(src).as_posix()
        _check_member_name(src, name)
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        hashes[name] = _copy_hashing(path, target)
    return hashes


def _verify_manifest(src: Path, staged: Path, hashes: dict[str, str]) -> dict:
    if MANIFEST not in hashes:
        raise BackupRejected(f"{src} has no {MANIFEST}: not an hwbench backup, or an incomplete one; nothing restored")
    try:
        manifest = json.loads((staged / MANIFEST).read_text())
        listed = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupRejected(f"{src}: {MANIFEST} is damaged ({exc}); nothing restored") from None
    if manifest.get("format") != BACKUP_FORMAT:
        raise BackupRejected(f"{src}: {MANIFEST} is not an hwbench backup manifest; nothing restored")
    present = {k: v for k, v in hashes.items() if k != MANIFEST}
    missing = sorted(set(listed) - set(present))
    if missing:
        raise BackupRejected(f"{src} is incomplete: {len(missing)} files in the manifest are missing "
                             f"(first: {missing[0]}); nothing restored")
    extra = sorted(set(present) - set(listed))
    if extra:
        raise BackupRejected(f"{src} holds {len(extra)} files not in its manifest (first: {extra[0]}); "
                             f"nothing restored")
    damaged = sorted(name for name, sha in listed.items() if present[name] != sha)
    if damaged:
        raise BackupRejected(f"{src} is corrupt: {len(damaged)} files do not match their sha256 "
                             f"(first: {damaged[0]}); nothing restored")
    return manifest


def restore(wh: Warehouse, src: str | Path, *, progress: Progress = _noop) -> RestoreReport:
    """Replace the warehouse with a verified backup, in one swap; the catalog is rebuilt for this location."""
    src = Path(src).resolve()
    if not src.exists():
        raise MaintenanceError(f"backup {src} does not exist")
    with _maintenance(wh), _staging(wh, "restore") as staging:
        content = staging / "content"
        content.mkdir()
        unpack = _unpack_directory if src.is_dir() else _unpack_archive
        hashes = unpack(src, content, progress)
        manifest = _verify_manifest(src, content, hashes)
        new = content / "warehouse"
        new.mkdir(exist_ok=True)
        total = sum(entry["bytes"] for entry in manifest["files"].values())
        with wh.warehouse_lock():
            replaced = len(_data_files(wh)[0])
            wh.data_dir.mkdir(parents=True, exist_ok=True)
            old = _swap(wh, new, wh.parquet_dir)
            shutil.rmtree(old, ignore_errors=True)
            wh.refresh_catalog()
    progress("restored", len(manifest["files"]), len(manifest["files"]))
    return RestoreReport(src, len(manifest["files"]), total, replaced)


# ---- check -------------------------------------------------------------------------------------------------
@dataclass
class Finding:
    kind: str  # corrupt, schema, orphan_temp, unknown_table, outside_layout, duplicate_run, view, catalog, staging,
    # interrupted_swap
    path: str
    message: str
    severity: str = "error"  # "error" makes check fail; "note" does not


@dataclass
class CheckReport:
    data_dir: str
    files: int = 0
    rows: int = 0
    bytes: int = 0
    views: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, kind: str, path: Path | str, message: str, severity: str = "error") -> None:
        self.findings.append(Finding(kind, str(path), message, severity))

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def describe(self) -> str:
        state = "OK" if self.ok else f"{len(self.errors)} problems"
        return (f"{state}: {self.files} files, {self.rows} rows, {self.bytes / 2**20:.1f} MiB, "
                f"{self.views} views checked")


def _check_schema(report: CheckReport, table: str, path: Path, schema: pa.Schema) -> None:
    expected = {f.name: f.type for f in TABLES[table]} | {name: typ for name, typ in META_COLUMNS}
    unknown = [n for n in schema.names if n not in expected]
    if unknown:
        report.add("schema", path, f"columns not in the {table} schema: {', '.join(unknown)}")
    wrong = [f"{f.name} is {f.type}, expected {expected[f.name]}" for f in schema
             if f.name in expected and not f.type.equals(expected[f.name])]
    if wrong:
        report.add("schema", path, "; ".join(wrong))
    missing_meta = [name for name, _ in META_COLUMNS if name not in schema.names]
    if missing_meta:
        report.add("schema", path, f"missing writer columns {', '.join(missing_meta)}")
    missing = [f.name for f in TABLES[table] if f.name not in schema.names]
    if missing:  # files written before a column was added: the views fill it with nulls
        report.add("schema", path, f"older schema, lacks {', '.join(missing)} (read as null)", "note")


def _check_file(report: CheckReport, table: str, path: Path) -> None:
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        num_rows = 0
        for i in range(parquet.num_row_groups):  # one row group at a time: bounded memory
            num_rows += parquet.read_row_group(i).num_rows
    except Exception as exc:  # noqa: BLE001 - any failure to read is what we report
        report.add("corrupt", path, f"unreadable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return
    report.files += 1
    report.rows += num_rows
    report.bytes += path.stat().st_size
    _check_schema(report, table, path, parquet.schema_arrow)
    if is_compacted_file(path):
        try:
            rows = sum(seg["rows"] for seg in read_segments(path))
        except (MaintenanceError, ValueError, KeyError, TypeError) as exc:
            report.add("corrupt", path, f"compacted file without valid segment metadata: {exc}")
            return
        if rows != num_rows:
            report.add("corrupt", path, f"segments list {rows} rows, the file holds {num_rows}")


def _partition_free(wh: Warehouse, table: str, partition: str) -> bool:
    try:
        with wh.partition_lock(table, partition, blocking=False):
            return True
    except BlockingIOError:
        return False


def _check_partition(wh: Warehouse, report: CheckReport, table: str, folder: Path) -> None:
    free = None
    runs: dict[str, int] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            report.add("outside_layout", entry, "folder inside a partition folder")
        elif entry.name.endswith(".tmp"):
            free = _partition_free(wh, table, folder.name) if free is None else free
            if free:
                report.add("orphan_temp", entry, "temporary file of a writer that died (invisible to readers; "
                                                 "`hwbench db compact` removes it)")
            else:
                report.add("orphan_temp", entry, "temporary file of a write in progress", "note")
        elif is_compacted_file(entry):
            _check_file(report, table, entry)
            with contextlib.suppress(MaintenanceError, ValueError, KeyError, TypeError, OSError):
                for seg in read_segments(entry):
                    runs[seg["run_id"]] = runs.get(seg["run_id"], 0) + 1
        elif is_run_file(entry):
            _check_file(report, table, entry)
            runs[entry.stem] = runs.get(entry.stem, 0) + 1
        elif entry.suffix == ".parquet":
            report.add("outside_layout", entry, "Parquet file with a name hwbench never writes (the views read it)")
        else:
            report.add("outside_layout", entry, "not a Parquet file of the layout")
    for run_id, copies in sorted(runs.items()):
        if copies > 1:
            report.add("duplicate_run", folder, f"run {run_id} is stored {copies} times (the history view shows "
                                                "its rows twice)")


def _check_catalog(wh: Warehouse, report: CheckReport) -> None:
    with_files = {t for t in TABLES if wh.files(t)}
    if not wh.catalog_path.exists():
        if with_files:
            report.add("catalog", wh.catalog_path, "catalog missing (`hwbench db compact` rebuilds it)")
        return
    try:
        con = duckdb.connect(str(wh.catalog_path), read_only=True)
    except duckdb.Error as exc:
        report.add("catalog", wh.catalog_path, f"cannot open the catalog: {str(exc).splitlines()[0]}")
        return
    with con:
        try:
            built_for = con.execute("SELECT parquet_dir FROM _catalog_info").fetchone()[0]
            kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
        except duckdb.Error as exc:
            report.add("catalog", wh.catalog_path, f"not an hwbench catalog: {str(exc).splitlines()[0]}")
            return
        if built_for != str(wh.parquet_dir):
            report.add("catalog", wh.catalog_path, f"views read {built_for}, not {wh.parquet_dir}; "
                                                   "`hwbench db compact` rebuilds the catalog")
        for table in TABLES:
            if table in with_files and kinds.get(table) != "VIEW":
                report.add("catalog", wh.catalog_path, f"{table} has files but the catalog holds no view of them")
            for name in (table, f"{table}_latest"):
                try:
                    con.execute(f"SELECT count(*) FROM {name}").fetchone()
                    report.views += 1
                except duckdb.Error as exc:
                    report.add("view", f"{wh.catalog_path}:{name}", str(exc).splitlines()[0])


def _check_staging(wh: Warehouse, report: CheckReport) -> None:
    root = wh.data_dir / STAGING_DIR
    for swap in interrupted_swaps(root):
        report.add("interrupted_swap", swap.old, f"holds the contents of {swap.live}, which a crash left between "
                   "the two renames of a swap; the next `hwbench db` maintenance command puts them back")
    leftovers = sorted(root.iterdir()) if root.is_dir() else []
    if not leftovers:
        return
    try:
        with wh._flock("maintenance.lock", exclusive=True, blocking=False):
            for path in leftovers:
                report.add("staging", path, "left by an interrupted compact or restore (the next one removes it)")
    except BlockingIOError:
        pass  # a maintenance operation is running and owns them


def _check_transactions(wh: Warehouse, report: CheckReport) -> None:
    """Transactions of writers that died (a live writer's is its own business); nothing is changed here."""
    from hwbench_pipeline.warehouse.transaction import dead_transactions

    for folder, committed in dead_transactions(wh):
        what = ("committed: the next write or `hwbench db` command puts its files in place" if committed else
                "never committed: the next write or `hwbench db` command removes it")
        report.add("staging", folder, f"left by a writer that died, {what}")


def check(wh: Warehouse, *, progress: Progress = _noop) -> CheckReport:
    """Read every file, check schemas, the catalog's views and the layout; nothing is changed."""
    report = CheckReport(str(wh.data_dir))
    if wh.parquet_dir.is_dir():
        for entry in sorted(wh.parquet_dir.iterdir()):
            if entry.is_file():
                report.add("outside_layout", entry, "file directly in the warehouse folder")
            elif entry.name not in TABLES:
                count = sum(1 for p in entry.rglob("*") if p.is_file())
                report.add("unknown_table", entry, f"folder of no known table ({count} files)")
        folders = [(t, p) for t in TABLES if (p := wh.parquet_dir / t).is_dir()]
        partitions = []
        for table, root in folders:
            for entry in sorted(root.iterdir()):
                if entry.is_dir() and SAFE_NAME.match(entry.name):
                    partitions.append((table, entry))
                else:
                    report.add("outside_layout", entry, "not a partition folder")
        for i, (table, folder) in enumerate(partitions):
            progress(f"checking {table}/{folder.name}", i, len(partitions))
            _check_partition(wh, report, table, folder)
        progress("checked", len(partitions), len(partitions))
    _check_catalog(wh, report)
    _check_staging(wh, report)
    _check_transactions(wh, report)
    return report
