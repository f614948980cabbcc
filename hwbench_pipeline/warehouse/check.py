"""Check: reading everything and reporting what is wrong, without changing anything.

``check`` reads every file in full (page checksums on), compares its columns with the table's schema,
opens the catalog read-only and selects from every view, and reports orphans: temporary files of dead
writers, unknown table folders, files outside the layout, leftover staging.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from hwbench_pipeline.warehouse.format import META_COLUMNS, SAFE_NAME
from hwbench_pipeline.warehouse.layout import is_compacted_file, is_run_file, read_segments
from hwbench_pipeline.warehouse.maintenance_common import STAGING_DIR, MaintenanceError, Progress, no_progress
from hwbench_pipeline.warehouse.schema import TABLES
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.swap import fsync_dir, interrupted_swaps


@dataclass
class Finding:
    kind: str  # corrupt, schema, orphan_temp, unknown_table, outside_layout, duplicate_run, view, catalog, staging,
    # interrupted_swap, unfinished_measurement
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
        with wh.named_lock("maintenance.lock", exclusive=True, blocking=False):
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


def _check_journals(wh: Warehouse, report: CheckReport) -> None:
    """Measurements journaled but not stored: not a fault, but work a user may want to finish or drop."""
    from hwbench_pipeline.bench.checkpoint import unfinished_journals

    for journal in unfinished_journals(wh.data_dir):
        scenario, target = journal.path.parent.name, journal.path.name.split(".")[0]
        held = (f"{journal.measured} configuration(s) measured, {journal.settled - journal.measured} settled without "
                f"a row, {journal.processes} measuring process(es) of unfinished ones")
        if journal.path.name.endswith(".other-plan.jsonl"):
            why = "set aside because a later run had another plan; nothing reads it, delete it once not needed"
        else:
            why = (f"not yet stored (being measured now, or left by a run that stopped): the next {scenario} run "
                   f"of {target} with the same profile resumes from it")
        report.add("unfinished_measurement", journal.path, f"{held}; {why}", severity="note")


def check(wh: Warehouse, *, progress: Progress = no_progress) -> CheckReport:
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
    _check_journals(wh, report)
    return report


#: where ``repair`` moves files it sets aside, under the data directory (kept, never deleted)
DAMAGED_DIR = ".damaged"


def repair(wh: Warehouse, report: CheckReport) -> list[tuple[Path, Path, str]]:
    """Set aside every data file ``report`` found unreadable or of a conflicting schema, so that the rest of its
    table reads again: each moves to ``.damaged/`` (same relative path) with a note saying why, under its
    partition's lock, and the catalog is rebuilt. Returns (file, where it went, why)."""
    bad: dict[Path, str] = {}
    for finding in report.errors:
        path = Path(finding.path)
        if finding.kind in ("corrupt", "schema") and path.is_file() and wh.parquet_dir in path.parents:
            bad.setdefault(path, finding.message)
    moved = []
    for path, why in sorted(bad.items()):
        relative = path.relative_to(wh.parquet_dir)
        dest = wh.data_dir / DAMAGED_DIR / relative
        table, partition = relative.parts[0], relative.parts[1]
        with wh.partition_lock(table, partition):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            fsync_dir(path.parent)
            dest.with_name(dest.name + ".why.txt").write_text(f"{why}\n")
        moved.append((path, dest, why))
    if moved:
        wh.refresh_catalog()
    return moved
