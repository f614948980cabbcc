"""Read-only questions to the warehouse, answered as polars DataFrames.

    compare_targets  how each hardware target does on one model: the newest result of every configuration
    history          every run of one configuration, in time order, with the environment each ran in
    coverage         model family x target: measured, failed:<class>, or untested
    sql              any single read-only query (refused otherwise: see sql_guard)
    sql_json         the same, answered as JSON text rendered by DuckDB (for the REST API)

Everything runs on a sandboxed connection (``sql_guard.open_sandboxed``), and values from the user only
ever travel as bound parameters: the SQL text of the named queries is fixed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from hwbench_pipeline.warehouse.schema import CONFIG_KEY, TABLE_KEYS, TABLES
from hwbench_pipeline.warehouse.sql_guard import RefusedStatement, check_statement, open_sandboxed
from hwbench_pipeline.warehouse.store import Warehouse

DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_SECONDS = 30.0
# rows fetched from DuckDB at a time by sql_json: small, so a byte cap stops the fetching early
JSON_FETCH_ROWS = 64
_MEMORY_LIMIT = re.compile(r"\s*(\d+(\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*")

#: environment columns shown with every run of a configuration's history
HISTORY_ENVIRONMENT = ["git_revision", "torch_version", "transformers_version", "python_version", "host",
                       "cpu_model", "cpu_cores"]


class QueryError(ValueError):
    """A question the warehouse cannot answer as asked; the message is one line."""


class UnknownValueError(QueryError):
    """A family, target, preset, ... with no rows in the warehouse; the message lists those that have rows."""


class NoWarehouseError(QueryError):
    """The data directory holds no usable warehouse catalog."""


@dataclass(frozen=True)
class JsonRows:
    """A query's answer as JSON text: ``records`` holds one JSON object per row, in order, keyed by
    ``columns``; ``truncated`` says that rows of the result were left out."""

    columns: list[str]
    records: list[str]
    truncated: bool


def check_memory_limit(limit: str) -> str:
    """``limit`` if it is a positive DuckDB memory size such as "512MB" or "2GiB"; ValueError otherwise.
    (DuckDB itself reads a negative size as "no limit".)"""
    match = _MEMORY_LIMIT.fullmatch(limit) if isinstance(limit, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"a memory limit is a positive number and a unit (KB, MB, GB, TB, KiB, MiB, GiB, TiB), "
                         f"such as 512MB; got {limit!r}")
    return limit.strip()


# Newest row of every configuration, measured or failed: a configuration that measured once and fails now
# is shown as failed, and the other way round.
_CURRENT = f"""
WITH stored AS (
    SELECT {", ".join(CONFIG_KEY)}, status, precision_ran,
           p50_ms, p90_ms, p99_ms, cv, throughput_samples_s, achieved_gflops, pct_of_peak, contaminated,
           NULL::VARCHAR AS failure_class, NULL::VARCHAR AS message, run_id,
           coalesce(finished_at, _written_at) AS measured_at, _written_at
    FROM inference_results_latest
    UNION ALL BY NAME
    SELECT {", ".join(CONFIG_KEY)}, status, failure_class,
           split_part(message, chr(10), 1) AS message, run_id,
           coalesce(finished_at, _written_at) AS measured_at, _written_at
    FROM failures_latest
), current AS (
    SELECT * EXCLUDE (_rank) FROM (
        SELECT *, row_number() OVER (PARTITION BY {", ".join(CONFIG_KEY)} ORDER BY measured_at DESC, _written_at DESC)
               AS _rank
        FROM stored)
    WHERE _rank = 1
)
"""

_COMPARE_COLUMNS = """preset, batch_size, seq_len, precision, target, threads, attention, measurement_method, status,
    p50_ms, p90_ms, throughput_samples_s, pct_of_peak, achieved_gflops,
    p50_ms / min(p50_ms) OVER (PARTITION BY preset, batch_size, seq_len, precision, measurement_method) AS p50_vs_best,
    precision_ran, contaminated, failure_class, message, run_id, measured_at"""

_HISTORY_MEASURED = f"""coalesce(finished_at, _written_at) AS measured_at, run_id, status,
    NULL::VARCHAR AS failure_class, p50_ms, p90_ms, p99_ms, cv, throughput_samples_s, pct_of_peak, contaminated,
    stop_reason, n_samples, precision, precision_ran, threads, config_hash, attention, measurement_method,
    {", ".join(HISTORY_ENVIRONMENT)},
    NULL::VARCHAR AS message"""
_HISTORY_FAILED = f"""coalesce(finished_at, _written_at) AS measured_at, run_id, status, failure_class,
    precision, threads, config_hash, attention, measurement_method, {", ".join(HISTORY_ENVIRONMENT)},
    split_part(message, chr(10), 1) AS message"""

_COVERAGE = _CURRENT + """
, families AS (SELECT family FROM models_latest UNION SELECT family FROM current),
targets AS (SELECT target FROM hardware_targets_latest UNION SELECT target FROM current),
cells AS (
    SELECT family, target,
           count(*) FILTER (WHERE status = 'ok') AS measured_configs,
           count(*) FILTER (WHERE status <> 'ok') AS failed_configs,
           string_agg(DISTINCT failure_class, ',' ORDER BY failure_class) AS failure_classes
    FROM current GROUP BY family, target
)
SELECT f.family, t.target,
       CASE WHEN coalesce(c.measured_configs, 0) > 0 THEN 'measured'
            WHEN coalesce(c.failed_configs, 0) > 0 THEN 'failed:' || coalesce(c.failure_classes, 'unknown')
            ELSE 'untested' END AS state,
       coalesce(c.measured_configs, 0) AS measured_configs, coalesce(c.failed_configs, 0) AS failed_configs,
       c.failure_classes
FROM families f CROSS JOIN targets t LEFT JOIN cells c ON c.family = f.family AND c.target = t.target
WHERE f.family IS NOT NULL AND t.target IS NOT NULL
ORDER BY f.family, t.target
"""

# (column, what one value is called, what several are called)
_FILTER_NAMES = {
    "target": ("target", "targets"),
    "family": ("model family", "families"),
    "preset": ("preset", "presets"),
    "batch_size": ("batch size", "batch sizes"),
    "seq_len": ("sequence length", "sequence lengths"),
    "precision": ("precision", "precisions"),
    "threads": ("threads", "thread counts"),
}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _finite_json(text: str) -> str:
    """DuckDB's JSON text with its NaN / Infinity / -Infinity (not JSON) as null."""
    if "NaN" not in text and "Infinity" not in text:  # the common case: no parsing
        return text
    value = json.loads(text, parse_constant=lambda _: None)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json_row_expression(columns: Sequence[str], types: Sequence[str]) -> str:
    """SQL for one row of a result as a JSON object keyed by ``columns`` (unique names), its columns taken by
    position (#1, #2, ...): no column name is ever written as an identifier. Timestamps are written as
    ISO 8601 (timestamps with a time zone in UTC, as +00:00), the way the other endpoints answer; an
    infinite one as 'infinity' / '-infinity'."""
    fields = []
    for position, (name, type_name) in enumerate(zip(columns, types, strict=True), start=1):
        ref = f"#{position}"
        if type_name == "TIMESTAMP WITH TIME ZONE":
            value = f"strftime(timezone('UTC', {ref}), '%Y-%m-%dT%H:%M:%S.%f+00:00')"
        elif type_name in ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"):
            value = f"strftime({ref}, '%Y-%m-%dT%H:%M:%S.{'%n' if type_name == 'TIMESTAMP_NS' else '%f'}')"
        else:
            value = ref
        if value != ref:
            value = f"CASE WHEN isfinite({ref}) THEN {value} ELSE CAST({ref} AS VARCHAR) END"
        key = "'" + name.replace("'", "''") + "'"
        fields.append(f"{key}: {value}")
    return "to_json({" + ", ".join(fields) + "})"


def _listing(values: Sequence) -> str:
    return ", ".join(str(v) for v in sorted(v for v in values if v is not None)) or "none"


def _narrow(choices: pl.DataFrame, filters: Sequence[tuple[str, Any]]) -> pl.DataFrame:
    """Apply each given filter in turn; the first that matches nothing raises, naming what would match."""
    applied: list[str] = []
    for column, value in filters:
        if value is None:
            continue
        single, plural = _FILTER_NAMES[column]
        if value not in choices[column].to_list():
            where = f" with {', '.join(applied)}" if applied else ""
            raise UnknownValueError(f"no results for {single} {value!r}{where}; {plural} with results"
                                    f"{' there' if applied else ''}: {_listing(choices[column].unique().to_list())}")
        choices = choices.filter(pl.col(column) == value)
        applied.append(f"{single} {value!r}")
    return choices


class WarehouseQueries:
    """Named read-only queries and guarded SQL over one data directory's warehouse."""

    def __init__(self, data_dir: str | Path, *, max_seconds: float = DEFAULT_MAX_SECONDS,
                 memory_limit: str | None = None, threads: int | None = None) -> None:
        """``memory_limit`` (e.g. "512MB") and ``threads`` bound each query's DuckDB instance; left out,
        DuckDB's defaults (80 % of RAM, every core)."""
        if max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.warehouse = Warehouse(data_dir)
        self.max_seconds = max_seconds
        self.memory_limit = check_memory_limit(memory_limit) if memory_limit is not None else None
        self.threads = threads

    # ---- connections -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        wh = self.warehouse
        if wh.parquet_dir.is_dir() or wh.catalog_path.exists():
            with contextlib.suppress(OSError, duckdb.Error):  # a read-only data directory: read what is there
                wh.recover()
                wh.ensure_catalog()
        if not wh.catalog_path.exists():
            raise NoWarehouseError(f"no warehouse in {wh.data_dir}: {wh.catalog_path.name} does not exist "
                                   f"(run the pipeline first, e.g. 'hwbench run')")
        with self._translated_errors():
            con = open_sandboxed(wh.catalog_path, wh.parquet_dir, memory_limit=self.memory_limit,
                                 threads=self.threads)
        try:
            with self._translated_errors():
                built_for = con.sql("SELECT parquet_dir FROM _catalog_info").fetchall()[0][0]
            if Path(built_for) != wh.parquet_dir:
                raise NoWarehouseError(f"the catalog {wh.catalog_path} describes Parquet files under {built_for}, "
                                       f"not {wh.parquet_dir}; rebuild it with Warehouse.refresh_catalog()")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except duckdb.PermissionException as exc:
            raise RefusedStatement(f"access outside the warehouse is refused: {_first_line(exc)}") from None
        except duckdb.InterruptException:
            raise QueryError(f"query stopped after {self.max_seconds:g} s, the time limit") from None
        except duckdb.OutOfMemoryException as exc:
            limit = f"the {self.memory_limit} limit per query" if self.memory_limit else "the memory limit"
            raise QueryError(f"query needs more memory than {limit}: {_first_line(exc)}") from None
        except duckdb.Error as exc:
            message = _first_line(exc)
            if str(self.warehouse.parquet_dir) in message:  # a damaged file of the warehouse, named by DuckDB
                message += " (`hwbench db check --repair` sets damaged files aside; the rest of the table then reads)"
            raise QueryError(message) from None

    @contextlib.contextmanager
    def _deadline(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """Interrupt whatever ``con`` runs once the time limit has passed."""
        timer = threading.Timer(self.max_seconds, con.interrupt)
        timer.daemon = True
        timer.start()
        try:
            with self._translated_errors():
                yield
        finally:
            timer.cancel()

    def _frame(self, con: duckdb.DuckDBPyConnection, sql: str, params: Sequence | None = None) -> pl.DataFrame:
        with self._deadline(con):
            return con.sql(sql, params=list(params) if params else None).pl()

    # ---- named queries ---------------------------------------------------------------------------------
    def tables(self) -> pl.DataFrame:
        """The catalog's views: name, kind (history: every run; latest: newest row per key), key, columns."""
        with self._connect() as con:
            frame = self._frame(con, """
                SELECT table_name AS name, count(*) AS columns FROM information_schema.columns
                WHERE table_catalog = 'hwbench' AND table_schema = 'main' AND NOT starts_with(table_name, '_')
                GROUP BY table_name ORDER BY table_name""")
        base = pl.col("name").str.strip_suffix("_latest")
        return frame.with_columns(
            kind=pl.when(pl.col("name").str.ends_with("_latest")).then(pl.lit("latest")).otherwise(pl.lit("history")),
            key=base.replace_strict({t: ", ".join(TABLE_KEYS.get(t, [])) for t in TABLES}, default=""),
        ).select("name", "kind", "key", "columns")

    def compare_targets(self, family: str, *, preset: str | None = None, batch_size: int | None = None,
                        seq_len: int | None = None, precision: str | None = None) -> pl.DataFrame:
        """Every target's newest result for one model family (optionally one preset/batch/seq/precision):
        p50/p90, throughput and % of the target's measured peak, or the failure class; fastest first within
        each configuration, with ``p50_vs_best`` (1.0 = the fastest target)."""
        filters = [("family", family), ("preset", preset), ("batch_size", batch_size), ("seq_len", seq_len),
                   ("precision", precision)]
        with self._connect() as con:
            choices = self._frame(con, _CURRENT + "SELECT DISTINCT family, preset, batch_size, seq_len, precision "
                                                  "FROM current")
            _narrow(choices, filters)
            given = [(column, value) for column, value in filters if value is not None]
            where = " AND ".join(f"{column} = ?" for column, _ in given)
            return self._frame(con, f"{_CURRENT} SELECT {_COMPARE_COLUMNS} FROM current WHERE {where} "
                                    "ORDER BY preset, batch_size, seq_len, precision, status <> 'ok', p50_ms, target",
                               [value for _, value in given])

    def history(self, *, target: str, family: str, preset: str, batch_size: int, seq_len: int,
                precision: str | None = None, threads: int | None = None) -> pl.DataFrame:
        """Every stored run of one configuration, oldest first, measured and failed alike, with the run id and
        the environment it ran in. Precision and threads may be left out when only one was ever used."""
        filters = [("target", target), ("family", family), ("preset", preset), ("batch_size", batch_size),
                   ("seq_len", seq_len), ("precision", precision), ("threads", threads)]
        key = ", ".join(CONFIG_KEY)
        with self._connect() as con:
            choices = self._frame(con, f"SELECT DISTINCT {key} FROM inference_results "
                                       f"UNION SELECT DISTINCT {key} FROM failures")
            remaining = _narrow(choices, filters)
            for column, value in filters[-2:]:
                options = remaining[column].unique().to_list()
                if value is None and len(options) > 1:
                    raise QueryError(f"{family}/{preset} on {target} at batch {batch_size}, sequence {seq_len} ran "
                                     f"with several {_FILTER_NAMES[column][1]} ({_listing(options)}): choose one "
                                     f"with the {column} option")
            given = [(column, value) for column, value in filters if value is not None]
            where = " AND ".join(f"{column} = ?" for column, _ in given)
            params = [value for _, value in given]
            return self._frame(con, f"SELECT {_HISTORY_MEASURED} FROM inference_results WHERE {where} "
                                    f"UNION ALL BY NAME SELECT {_HISTORY_FAILED} FROM failures WHERE {where} "
                                    "ORDER BY measured_at, run_id", params + params)

    def coverage_cells(self) -> pl.DataFrame:
        """One row per model family x target: state (measured / failed:<classes> / untested) and counts of
        the configurations measured and failed in their newest runs. Families come from the model catalog
        and the results, targets from the detected targets and the results."""
        with self._connect() as con:
            return self._frame(con, _COVERAGE)

    def coverage(self) -> pl.DataFrame:
        """The coverage matrix: one row per family, one column per target, each cell a state."""
        cells = self.coverage_cells()
        if cells.is_empty():
            return pl.DataFrame({"family": []}, schema={"family": pl.String})
        targets = sorted(cells["target"].unique().to_list())
        matrix = cells.pivot(on="target", index="family", values="state", aggregate_function="first")
        return matrix.select("family", *targets).sort("family")

    def architecture_coverage(self, by: str = "category") -> pl.DataFrame:
        """The coverage sweep's newest outcome per architecture and target (``by="architecture"``), or per
        category and target: architectures probed, how many ran a full forward pass, how many their text tower
        only, the share, and the failure classes with their counts (``by="category"``)."""
        if by not in ("category", "architecture"):
            raise QueryError(f"coverage can be broken down by category or architecture, not {by!r}")
        with self._connect() as con:
            if by == "architecture":
                frame = self._frame(con, """
                    SELECT model_type, category, target, status, coalesce(failure_class, '') AS failure_class,
                           recipe, complete, params, message
                    FROM architecture_coverage_latest ORDER BY category, model_type, target""")
            else:
                frame = self._frame(con, """
                    WITH outcomes AS (
                        SELECT category, target, status, complete,
                               CASE WHEN status = 'ok' THEN NULL ELSE failure_class END AS failure_class
                        FROM architecture_coverage_latest),
                    failures AS (
                        SELECT category, target, string_agg(failure_class || ': ' || n, ', ' ORDER BY n DESC,
                                                            failure_class) AS failure_classes
                        FROM (SELECT category, target, failure_class, count(*) AS n FROM outcomes
                              WHERE failure_class IS NOT NULL GROUP BY ALL) GROUP BY ALL)
                    SELECT o.category, o.target, count(*) AS architectures,
                           count(*) FILTER (WHERE status = 'ok' AND complete IS NOT FALSE) AS ok,
                           count(*) FILTER (WHERE status = 'ok' AND complete IS FALSE) AS text_tower_only,
                           round(count(*) FILTER (WHERE status = 'ok' AND complete IS NOT FALSE) / count(*), 3)
                               AS share_ok,
                           any_value(f.failure_classes) AS failure_classes
                    FROM outcomes o LEFT JOIN failures f USING (category, target)
                    GROUP BY o.category, o.target ORDER BY o.category, o.target""")
        if frame.is_empty():
            raise QueryError("no architecture sweep in the warehouse yet: materialize architecture_coverage or run "
                             "'hwbench run --profile architectures'")
        return frame

    def failure_patterns(self) -> pl.DataFrame:
        """The newest grouping of failures into patterns (the ``failure_patterns`` asset), most frequent first."""
        with self._connect() as con:
            frame = self._frame(con, """
                SELECT count, failure_class, cause, fix, architectures, targets, signature, example
                FROM failure_patterns
                WHERE run_id = (SELECT max_by(run_id, _written_at) FROM failure_patterns)
                ORDER BY count DESC, signature""")
        if frame.is_empty():
            raise QueryError("no failure patterns in the warehouse yet: materialize failure_patterns (it runs with "
                             "the refresh after measurements)")
        return frame

    # ---- SQL ------------------------------------------------------------------------------------------
    def sql(self, query: str, params: Sequence | Mapping | None = None, *, max_rows: int | None = None) -> pl.DataFrame:
        """Run one read-only statement (see sql_guard) with bound parameters; at most ``max_rows`` rows."""
        return self.sql_capped(query, params, max_rows=max_rows)[0]

    def sql_capped(self, query: str, params: Sequence | Mapping | None = None, *,
                   max_rows: int | None = DEFAULT_MAX_ROWS) -> tuple[pl.DataFrame, bool]:
        """Like :meth:`sql`, and whether rows beyond ``max_rows`` were left out. Only ``max_rows + 1`` rows are
        ever fetched, so a huge result costs no memory here."""
        if max_rows is not None and max_rows < 1:
            raise QueryError(f"max_rows must be a positive integer, got {max_rows}")
        check_statement(query)
        if isinstance(params, str | bytes) or (params is not None and not isinstance(params, Sequence | Mapping)):
            raise QueryError("SQL parameters must be a list (for ? or $1) or a mapping (for $name)")
        bound = dict(params) if isinstance(params, Mapping) else (list(params) if params else None)
        with self._connect() as con, self._deadline(con):
            reader = con.sql(query, params=bound).to_arrow_reader(min(max_rows or 10_000, 10_000) + 1)
            batches, fetched = [], 0
            for batch in reader:
                batches.append(batch)
                fetched += batch.num_rows
                if max_rows is not None and fetched > max_rows:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        truncated = max_rows is not None and table.num_rows > max_rows
        if truncated:
            table = table.slice(0, max_rows)
        try:
            frame = pl.from_arrow(table)
        except (pl.exceptions.PolarsError, pa.ArrowException, TypeError) as exc:
            raise QueryError(f"the result has a column type that cannot be returned: {_first_line(exc)}") from None
        return frame, truncated

    def sql_json(self, query: str, params: Sequence | Mapping | None = None, *, max_rows: int = DEFAULT_MAX_ROWS,
                 max_bytes: int | None = None) -> JsonRows:
        """Run one read-only statement (see sql_guard) and render each row as a JSON object with DuckDB's own
        ``to_json``, which has a JSON form for every type: HUGEINT as an exact number, INTERVAL and infinite
        dates as text, MAP as an object, UNION as its member, nested types nested, BLOB as escaped text;
        timestamps as ISO 8601, NaN and infinities as null. At most ``max_rows`` rows, and rows stop once
        their text passes ``max_bytes`` (UTF-8); only the rows kept, and a few more, are ever fetched."""
        if max_rows < 1:
            raise QueryError(f"max_rows must be a positive integer, got {max_rows}")
        check_statement(query)
        if isinstance(params, str | bytes) or (params is not None and not isinstance(params, Sequence | Mapping)):
            raise QueryError("SQL parameters must be a list (for ? or $1) or a mapping (for $name)")
        bound = dict(params) if isinstance(params, Mapping) else (list(params) if params else None)
        records: list[str] = []
        size, truncated = 0, False
        with self._connect() as con, self._deadline(con):
            result = con.sql(query, params=bound)
            columns = result.project("*").columns  # a repeated name becomes name_1, name_2, ...: keys are unique
            row = _json_row_expression(columns, [str(t) for t in result.types])
            # One row past max_rows says whether more exist.
            texts = result.project(row).limit(max_rows + 1).to_arrow_reader(JSON_FETCH_ROWS)
            for batch in texts:
                for text in batch.column(0).to_pylist():
                    text = _finite_json(text)
                    size += len(text.encode()) + 1  # and the comma between records
                    if len(records) == max_rows or (max_bytes is not None and size > max_bytes):
                        truncated = True
                        break
                    records.append(text)
                if truncated:
                    break
        return JsonRows(columns, records, truncated)


def json_value(value: Any) -> Any:
    """A value from a DataFrame as plain JSON: NaN/inf become null, times ISO 8601, bytes base64."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def to_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dictionaries, columns in order."""
    return [{k: json_value(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
