"""``hwbench query``: read the warehouse from the shell (read-only; nothing is written).

    hwbench query compare --model bert [--preset tiny] [--batch 1] [--seq 128] [--precision fp32]
    hwbench query history --target cpu-torch --model bert --preset tiny --batch 1 --seq 128 [--precision] [--threads]
    hwbench query coverage [--cells | --by category|architecture]
    hwbench query failures
    hwbench query tables
    hwbench query sql "SELECT ... WHERE family = ?" --param bert

A table by default; ``--format csv`` or ``--format json`` (a list of records) for scripts.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hwbench_pipeline.cli import UsageError, make_console
from hwbench_pipeline.commands.argtypes import positive_int
from hwbench_pipeline.paths import default_data_dir

if TYPE_CHECKING:
    import polars as pl

# The query layer (duckdb, polars, pyarrow: ~1 s) is imported when a query runs, not whenever `hwbench` starts.
MAX_ROWS = 1000
CELL_WIDTH = 60  # long cells (raw samples, messages) are cut in the table view only
#: what the table view shows of the wide named queries; csv and json carry every column
TABLE_COLUMNS = {
    "compare": ["preset", "batch_size", "seq_len", "precision", "target", "threads", "attention", "status",
                "p50_ms", "p90_ms", "throughput_samples_s", "pct_of_peak", "p50_vs_best", "contaminated",
                "failure_class", "run_id"],
    "history": ["measured_at", "run_id", "status", "failure_class", "p50_ms", "p90_ms", "throughput_samples_s",
                "pct_of_peak", "contaminated", "precision", "threads", "measurement_method", "git_revision",
                "torch_version", "host"],
    "failures": ["count", "failure_class", "cause", "fix", "architectures", "targets"],
    "coverage by architecture": ["model_type", "category", "target", "status", "failure_class", "recipe", "complete",
                                 "params"],
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else value


def _print(frame: pl.DataFrame, fmt: str, title: str, shown: list[str] | None = None) -> None:
    from hwbench_pipeline.warehouse.queries import to_records

    if fmt == "json":
        json.dump(to_records(frame), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(frame.columns)
        writer.writerows([_csv_cell(r[c]) for c in frame.columns] for r in to_records(frame))
    else:
        from rich.table import Table

        if shown:
            frame = frame.select([c for c in shown if c in frame.columns])
        table = Table(title=title)
        for name, dtype in frame.schema.items():
            table.add_column(name, justify="right" if dtype.is_numeric() else "left")
        for row in frame.iter_rows():
            table.add_row(*(_cell(v) for v in row))
        make_console().print(table if frame.height else f"{title}: no rows")


def _run(args: argparse.Namespace) -> int:
    from hwbench_pipeline.warehouse.queries import QueryError, WarehouseQueries
    from hwbench_pipeline.warehouse.sql_guard import RefusedStatement

    queries = WarehouseQueries(args.data_dir or default_data_dir())
    truncated = False
    try:
        if args.query == "compare":
            frame = queries.compare_targets(args.model, preset=args.preset, batch_size=args.batch, seq_len=args.seq,
                                            precision=args.precision)
            title = f"{args.model}: targets compared"
        elif args.query == "history":
            frame = queries.history(target=args.target, family=args.model, preset=args.preset, batch_size=args.batch,
                                    seq_len=args.seq, precision=args.precision, threads=args.threads)
            title = f"{args.model}/{args.preset} batch {args.batch} seq {args.seq} on {args.target}"
        elif args.query == "coverage" and args.by:
            frame = queries.architecture_coverage(args.by)
            title = f"architecture coverage by {args.by} x target"
        elif args.query == "coverage":
            frame = queries.coverage_cells() if args.cells else queries.coverage()
            title = "coverage: model family x target"
        elif args.query == "failures":
            frame, title = queries.failure_patterns(), "failure patterns"
        elif args.query == "tables":
            frame, title = queries.tables(), "warehouse views"
        else:
            # rendered by DuckDB's to_json, which has a form for every type (polars refuses intervals and panics
            # on infinite dates)
            import polars

            answer = queries.sql_json(args.statement, args.param or None, max_rows=args.max_rows)
            records = [json.loads(r) for r in answer.records]
            frame = (polars.DataFrame(records, infer_schema_length=None).select(answer.columns) if records
                     else polars.DataFrame(schema=answer.columns))
            truncated, title = answer.truncated, "sql"
    except (QueryError, RefusedStatement) as exc:
        raise UsageError(str(exc)) from None
    if frame.height > args.max_rows:
        frame, truncated = frame.head(args.max_rows), True
    view = "coverage by architecture" if args.query == "coverage" and args.by == "architecture" else args.query
    _print(frame, args.format, title, TABLE_COLUMNS.get(view))
    if truncated:
        print(f"hwbench: showing the first {args.max_rows} rows; more exist (raise --max-rows)", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=None, help="data directory (default: $HWBENCH_DATA_DIR or data/)")
    common.add_argument("--format", choices=["table", "csv", "json"], default="table",
                        help="table (default; the main columns), or csv / json (every column; json is a list of "
                             "records) for scripts")
    common.add_argument("--max-rows", type=positive_int, default=MAX_ROWS,
                        help=f"print at most this many rows (default {MAX_ROWS})")

    query = sub.add_parser("query", help="read the warehouse: compare targets, history, coverage, read-only SQL")
    named = query.add_subparsers(dest="query", required=True)

    compare = named.add_parser("compare", parents=[common], help="every target's newest result for one model")
    compare.add_argument("--model", required=True, help="model family, e.g. bert")
    compare.add_argument("--preset", help="only this preset")
    compare.add_argument("--batch", type=positive_int, help="only this batch size")
    compare.add_argument("--seq", type=positive_int, help="only this sequence length")
    compare.add_argument("--precision", help="only this precision, e.g. fp32")

    history = named.add_parser("history", parents=[common], help="every run of one configuration, oldest first")
    history.add_argument("--target", required=True, help="hardware target, e.g. cpu-torch")
    history.add_argument("--model", required=True, help="model family, e.g. bert")
    history.add_argument("--preset", required=True)
    history.add_argument("--batch", type=positive_int, required=True)
    history.add_argument("--seq", type=positive_int, required=True)
    history.add_argument("--precision", help="needed when the configuration ran at several precisions")
    history.add_argument("--threads", type=positive_int, help="needed when it ran with several thread counts")

    coverage = named.add_parser("coverage", parents=[common], help="model family x target: measured/failed/untested")
    coverage.add_argument("--cells", action="store_true", help="one row per family and target, with counts")
    coverage.add_argument("--by", choices=["category", "architecture"],
                          help="the architecture sweep instead: per category (shares) or per architecture")

    named.add_parser("tables", parents=[common], help="the warehouse's views")
    named.add_parser("failures", parents=[common],
                     help="failures grouped into patterns: count, probable cause, fix to try, where they hit")

    sql = named.add_parser("sql", parents=[common], help="one read-only SQL statement")
    sql.add_argument("statement", help="SELECT / WITH / DESCRIBE / SHOW / SUMMARIZE; use ? for values")
    sql.add_argument("--param", action="append", metavar="VALUE",
                     help="a value for the next ? placeholder (repeatable; passed as text, DuckDB casts it)")

    for parser in (compare, history, coverage, sql, named.choices["tables"], named.choices["failures"]):
        parser.set_defaults(func=_run)
