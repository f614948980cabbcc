"""``hwbench db``: look after the warehouse.

    hwbench db check [--repair]            read every file, check schemas, views and orphans (exit 1 on problems);
                                           --repair sets damaged files aside so the rest reads again
    hwbench db compact                     merge the small files of each partition (query results unchanged)
    hwbench db retain --keep-runs 10       drop old runs, never the newest row of any configuration
    hwbench db backup backups/wh.tar.gz    consistent copy with a sha256 manifest (.tar.gz, else a directory)
    hwbench db restore backups/wh.tar.gz   verify, then swap the backup in (a damaged one is refused)
    hwbench db import results/*.json       load result files written elsewhere
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from hwbench_pipeline.cli import UsageError, make_console
from hwbench_pipeline.commands.argtypes import age_in_days, positive_float
from hwbench_pipeline.paths import default_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="maintain the warehouse: check, compact, retain, backup, restore, import",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = db.add_subparsers(dest="db_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (default: $HWBENCH_DATA_DIR, else data/ in the checkout)")

    check = actions.add_parser("check", parents=[common], help="verify files, schemas, views; report orphans")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--repair", action="store_true",
                       help="set unreadable files and files of a conflicting schema aside (to .damaged/, kept), so "
                            "the rest of their tables reads again")
    check.set_defaults(func=cmd_check)

    compact = actions.add_parser("compact", parents=[common], help="merge small Parquet files per partition")
    compact.add_argument("--table", action="append", help="only this table (repeatable)")
    compact.add_argument("--small-mb", type=positive_float, default=64.0, help="merge files smaller than this (MiB)")
    compact.add_argument("--target-mb", type=positive_float, default=256.0, help="largest merged file (MiB)")
    compact.set_defaults(func=cmd_compact)

    retain = actions.add_parser("retain", parents=[common], help="remove old runs (keeps every newest row)",
                                description="A run is removed when it is older than --older-than-days (if given) "
                                            "and beyond the --keep-runs newest of its partition (if given), unless "
                                            "it holds the newest row of some configuration.")
    retain.add_argument("--older-than-days", type=age_in_days, help="runs written more than this many days ago")
    retain.add_argument("--keep-runs", type=int, help="keep this many newest runs per table and partition")
    retain.add_argument("--table", action="append", help="only this table (repeatable)")
    retain.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    retain.set_defaults(func=cmd_retain)

    backup = actions.add_parser("backup", parents=[common], help="copy the warehouse with a sha256 manifest")
    backup.add_argument("dest", help="a new .tar.gz file, or a new directory")
    backup.set_defaults(func=cmd_backup)

    restore = actions.add_parser("restore", parents=[common], help="replace the warehouse with a verified backup")
    restore.add_argument("src", help="a backup written by `hwbench db backup`")
    restore.set_defaults(func=cmd_restore)

    imp = actions.add_parser("import", parents=[common], help="import result files into the warehouse")
    imp.add_argument("paths", nargs="+", help="result files or directories")
    imp.set_defaults(func=cmd_import)


def _warehouse(args: argparse.Namespace, *, must_exist: bool = True):
    from hwbench_pipeline.warehouse.store import Warehouse

    wh = Warehouse(args.data_dir or default_data_dir())
    if must_exist and not (wh.parquet_dir.is_dir() or wh.catalog_path.exists()):
        raise UsageError(f"no warehouse in {wh.data_dir} (neither {wh.parquet_dir.name}/ nor "
                         f"{wh.catalog_path.name}); pass --data-dir")
    return wh


@contextlib.contextmanager
def _progress(console) -> Iterator:
    """A maintenance progress callback drawn as a rich progress bar (total 0: size unknown)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def update(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total or None)

        yield update


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    from hwbench_pipeline.warehouse.store import WarehouseError

    try:
        yield
    except WarehouseError as exc:
        raise UsageError(str(exc)) from None


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def cmd_check(args: argparse.Namespace) -> int:
    from rich.table import Table

    from hwbench_pipeline.warehouse.maintenance import check, repair

    wh = _warehouse(args)
    console = make_console()
    with _usage_errors(), _progress(console) as progress:
        report = check(wh, progress=progress)
    if args.repair:
        for path, dest, why in repair(wh, report):
            console.print(f"[yellow]set aside[/] {path} -> {dest} ({why})")
        with _usage_errors(), _progress(console) as progress:
            report = check(wh, progress=progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    if report.findings:
        table = Table(title=f"hwbench db check {wh.data_dir}")
        for col in ("severity", "kind", "path", "what"):
            table.add_column(col)
        for f in report.findings:
            style = "red" if f.severity == "error" else "yellow"
            table.add_row(f"[{style}]{f.severity}[/]", f.kind, f.path, f.message)
        console.print(table)
    console.print(("[green]" if report.ok else "[red]") + report.describe() + "[/]")
    return 0 if report.ok else 1


def cmd_compact(args: argparse.Namespace) -> int:
    from rich.table import Table

    from hwbench_pipeline.warehouse.maintenance import compact

    wh = _warehouse(args)
    console = make_console()
    with _usage_errors(), _progress(console) as progress:
        report = compact(wh, tables=args.table, small_mb=args.small_mb, target_mb=args.target_mb,
                         progress=progress)
    shown = [p for p in report.partitions if p.runs_merged or p.temp_files_removed or p.skipped]
    if shown:
        table = Table(title="compaction")
        for col in ("table/partition", "files", "runs merged", "rows merged", "size", "note"):
            table.add_column(col, justify="left" if col in ("table/partition", "note") else "right")
        for p in shown:
            note = p.skipped or (f"{p.temp_files_removed} orphan temp files removed" if p.temp_files_removed else "")
            table.add_row(f"{p.table}/{p.partition}", f"{p.files_before} -> {p.files_after}", str(p.runs_merged),
                          str(p.rows_merged), f"{_mib(p.bytes_before)} -> {_mib(p.bytes_after)}", note)
        console.print(table)
    console.print(report.describe())
    return 0


def cmd_retain(args: argparse.Namespace) -> int:
    from rich.table import Table

    from hwbench_pipeline.warehouse.maintenance import retain

    wh = _warehouse(args)
    console = make_console()
    with _usage_errors(), _progress(console) as progress:
        report = retain(wh, older_than_days=args.older_than_days, keep_runs=args.keep_runs, tables=args.table,
                        dry_run=args.dry_run, progress=progress)
    if report.removed:
        table = Table(title="runs that would be removed (dry run)" if report.dry_run else "runs removed")
        for col in ("table", "partition", "run", "rows", "written at", "file"):
            table.add_column(col)
        for u in report.removed:
            table.add_row(u.table, u.partition, u.run_id, str(u.rows), u.written_at.strftime("%Y-%m-%d %H:%M:%S"),
                          u.path.name)
        console.print(table)
    console.print(report.describe())
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from hwbench_pipeline.warehouse.maintenance import backup

    wh = _warehouse(args)
    console = make_console()
    with _usage_errors(), _progress(console) as progress:
        report = backup(wh, args.dest, progress=progress)
    for path in report.skipped:
        console.print(f"[yellow]skipped[/] {path} (outside the layout; see `hwbench db check`)")
    console.print(report.describe())
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from hwbench_pipeline.warehouse.maintenance import restore

    wh = _warehouse(args, must_exist=False)
    console = make_console()
    with _usage_errors(), _progress(console) as progress:
        report = restore(wh, args.src, progress=progress)
    console.print(report.describe())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    try:  # imported here: the importer is optional for every other db subcommand
        from hwbench_pipeline.warehouse.importer import ImportRejected, import_paths
    except ModuleNotFoundError as exc:
        if exc.name != "hwbench_pipeline.warehouse.importer":
            raise
        raise UsageError("this checkout has no importer (hwbench_pipeline/warehouse/importer.py)") from None
    wh = _warehouse(args, must_exist=False)
    console = make_console()
    with _usage_errors(), console.status(f"importing {len(args.paths)} paths"):
        try:
            summary = import_paths(wh, [Path(p) for p in args.paths])
        except ImportRejected as exc:
            raise UsageError(str(exc)) from None
    console.print(summary.describe())
    return 0
