"""Parquet files written atomically, and a DuckDB catalog of views over them.

Layout under the data directory::

    warehouse/<table>/<partition>/<run_id>.parquet   one file per (table, partition, run)
    hwbench.duckdb                                    views only: <table> (history), <table>_latest

A file is written under a hidden temporary name in its final folder and renamed into place, so a reader
or a crash never sees half a file. Writing the same (table, partition, run) again replaces that file:
re-running a step is idempotent. Views read the folders by glob, so new files show up without touching
the DuckDB file. The catalog is rebuilt (again atomically, by rename) whenever it no longer matches the
folders: a table got its first file or lost its last, the data directory moved. Writers and readers both
check, so a crash between a file's rename and the rebuild heals at the next write or read.
Readers open the catalog read-only and never block the pipeline.

Maintenance (``warehouse/compaction.py``) may merge old runs of a partition into ``_compacted-*.parquet``
files. Writers and maintenance coordinate through ``flock`` files under ``.locks/``: a writer holds its
partition's lock (and the warehouse lock shared) from creating its temporary file until the rename; backup and
restore take the warehouse lock exclusively. The kernel drops a lock when its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from hwbench_pipeline.warehouse.format import (
    COMPACTED_PREFIX,
    META_COLUMNS,
    PARQUET_WRITE_OPTIONS,
    SAFE_NAME,
    WarehouseError,
)
from hwbench_pipeline.warehouse.layout import drop_superseded_segments
from hwbench_pipeline.warehouse.schema import TABLE_KEYS, TABLES, legacy_key_sql
from hwbench_pipeline.warehouse.swap import fsync_dir


def history_sql(table: str, files: str) -> str:
    """SQL reading ``files`` (a quoted glob or list) of ``table``, with the key columns that rows written before
    them lack filled with what they meant then (schema.LEGACY_KEY_SQL). The typed empty relation makes every
    filled column exist even when no file has it yet."""
    base = f"SELECT * FROM read_parquet({files}, union_by_name = true)"
    fills = legacy_key_sql(table)
    types = {field.name: field.type for field in TABLES[table]}
    # key columns a scenario added later (failures' new_tokens) must exist for the latest view's PARTITION BY,
    # null in the files written before them
    later_keys = [c for c in TABLE_KEYS.get(table, []) if c in types and c not in fills and types[c] in _SQL_TYPES]
    needed = list(dict.fromkeys([*fills, *(["source"] if fills and "source" in types else []), *later_keys]))
    if not needed:
        return base
    empty = ", ".join(f"CAST(NULL AS {_SQL_TYPES[types[c]]}) AS {c}" for c in needed)
    union = f"{base} UNION ALL BY NAME SELECT {empty} WHERE false"
    if not fills:
        return f"SELECT * FROM ({union})"
    replace = ", ".join(f"coalesce({c}, {sql}) AS {c}" for c, sql in fills.items())
    return f"SELECT * REPLACE ({replace}) FROM ({union})"


_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT"}


def measured_at_sql(table: str) -> str:
    """When a row of ``table`` was measured: its ``finished_at`` where the table has one, else when it was written.
    "Latest" means the newest measurement, so importing an old file never displaces a newer result."""
    return "coalesce(finished_at, _written_at)" if "finished_at" in TABLES[table].names else "_written_at"


def newest_first_sql(table: str) -> str:
    """ORDER BY terms that put the newest measurement of a key first (ties: the newest write)."""
    return f"{measured_at_sql(table)} DESC, _written_at DESC"


def _check_name(kind: str, value: str) -> str:
    if not SAFE_NAME.match(value):
        raise WarehouseError(f"{kind} {value!r} is not a safe name (letters, digits, '_', '.', '-')")
    return value


def to_arrow(table: str, rows: Sequence[dict]) -> pa.Table:
    """Rows as an Arrow table in the table's schema; unknown columns are an error, missing ones null."""
    schema = TABLES[table]
    known = set(schema.names)
    unknown = sorted({k for row in rows for k in row} - known)
    if unknown:
        raise WarehouseError(f"rows for {table} have columns not in its schema: {', '.join(unknown)}")
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def prepared_table(wh: Warehouse, table: str, rows: Sequence[dict] | pa.Table, *, run_id: str,
                   partition: str) -> tuple[pa.Table, Path]:
    """One run's rows of one partition with the meta columns, and the file they belong in; bad names refused."""
    if table not in TABLES:
        raise WarehouseError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    _check_name("run id", run_id)
    _check_name("partition", partition)
    data = rows if isinstance(rows, pa.Table) else to_arrow(table, rows)
    now = datetime.now(UTC)
    data = data.append_column(pa.field(*META_COLUMNS[0]), pa.repeat(pa.scalar(partition, pa.string()),
                                                                    data.num_rows))
    data = data.append_column(pa.field(*META_COLUMNS[1]), pa.repeat(pa.scalar(now, META_COLUMNS[1][1]),
                                                                    data.num_rows))
    return data, wh.parquet_dir / table / partition / f"{run_id}.parquet"


class Warehouse:
    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.parquet_dir = self.data_dir / "warehouse"
        self.catalog_path = self.data_dir / "hwbench.duckdb"
        self.lock_dir = self.data_dir / ".locks"

    # ---- writing -------------------------------------------------------------------------------------------
    def write(self, table: str, rows: Sequence[dict] | pa.Table, *, run_id: str, partition: str = "all") -> Path:
        """Write one run's rows of one partition as a single Parquet file, atomically."""
        self.recover()
        data, final = prepared_table(self, table, rows, run_id=run_id, partition=partition)
        folder = final.parent
        tmp = folder / f".{run_id}.parquet.{os.getpid()}.tmp"
        with self.partition_lock(table, partition):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                pq.write_table(data, tmp, **PARQUET_WRITE_OPTIONS)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
                fsync_dir(folder)  # the rename itself survives a power cut
            finally:
                tmp.unlink(missing_ok=True)
            self.after_write(folder)
        self.ensure_catalog()
        return final

    def after_write(self, folder: Path) -> None:
        """What a partition folder needs once new run files are in it (its partition lock held)."""
        if any(folder.glob(f"{COMPACTED_PREFIX}*.parquet")):
            # An older copy of a run may sit in a compacted file: drop it, or history would hold it twice.
            drop_superseded_segments(folder)

    def transaction(self) -> contextlib.AbstractContextManager:
        """Several files of several tables that become visible together or not at all (warehouse/transaction.py)."""
        from hwbench_pipeline.warehouse.transaction import transaction

        return transaction(self)

    def recover(self) -> list[str]:
        """Finish or undo what writers that died left (warehouse/transaction.py); returns what was done."""
        if not (self.data_dir / ".transactions").is_dir():
            return []
        from hwbench_pipeline.warehouse.transaction import recover

        return recover(self)

    # ---- reading -------------------------------------------------------------------------------------------
    def files(self, table: str) -> list[Path]:
        return sorted((self.parquet_dir / table).glob("*/*.parquet"))

    def _glob(self, table: str) -> str:
        return str(self.parquet_dir / table / "*" / "*.parquet")

    def _history_sql(self, table: str) -> str:
        return history_sql(table, f"'{self._glob(table)}'")

    def _latest_sql(self, table: str, source: str) -> str:
        keys = ", ".join(TABLE_KEYS.get(table, ["_partition"]))
        return (f"SELECT * EXCLUDE (_rank) FROM (SELECT *, row_number() OVER "
                f"(PARTITION BY {keys} ORDER BY {newest_first_sql(table)}) AS _rank FROM {source}) WHERE _rank = 1")

    def read(self, table: str, *, latest: bool = False, where: str | None = None) -> pl.DataFrame:
        """A table (or its newest row per key) as polars, straight from the Parquet files."""
        if table not in TABLES:
            raise WarehouseError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        if not self.files(table):
            empty = pa.schema(list(TABLES[table]) + [pa.field(*c) for c in META_COLUMNS]).empty_table()
            return pl.from_arrow(empty)
        sql = self._history_sql(table)
        if latest:
            sql = self._latest_sql(table, f"({sql})")
        if where:
            sql = f"SELECT * FROM ({sql}) WHERE {where}"
        with duckdb.connect() as con:
            return con.sql(sql).pl()

    def read_newest_run(self, table: str) -> pl.DataFrame:
        """The rows of the run that wrote this table most recently (for tables rebuilt whole each run)."""
        if not self.files(table):
            return self.read(table)
        newest = f"SELECT max_by(run_id, _written_at) FROM ({self._history_sql(table)})"
        return self.read(table, where=f"run_id = ({newest})")

    # ---- locks ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def named_lock(self, name: str, *, exclusive: bool, blocking: bool = True) -> Iterator[None]:
        """Hold ``.locks/<name>``; without ``blocking`` raise BlockingIOError when someone else holds it."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_dir / name, "a+") as fh:
            mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
            fcntl.flock(fh, mode)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def partition_lock(self, table: str, partition: str, *, blocking: bool = True) -> Iterator[None]:
        """Held by whoever creates, replaces or removes files of one (table, partition)."""
        _check_name("partition", partition)
        with (self.named_lock("warehouse.lock", exclusive=False, blocking=blocking),
              self.named_lock(f"partition.{table}.{partition}.lock", exclusive=True, blocking=blocking)):
            yield

    def warehouse_lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive: no writer is between its temporary file and its rename (backup, restore)."""
        return self.named_lock("warehouse.lock", exclusive=True)

    # ---- the DuckDB catalog --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _catalog_lock(self) -> Iterator[None]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_dir / "catalog.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def refresh_catalog(self) -> Path:
        """Rebuild hwbench.duckdb (views over every table) under a new name and rename it into place."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._catalog_lock():
            tmp = self.catalog_path.with_name(f".{self.catalog_path.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            try:
                with duckdb.connect(str(tmp)) as con:
                    for table, schema in TABLES.items():
                        if self.files(table):
                            con.execute(f"CREATE VIEW {table} AS {self._history_sql(table)}")
                        else:
                            empty = pa.schema(list(schema) + [pa.field(*c) for c in META_COLUMNS]).empty_table()
                            con.register("empty_arrow", empty)
                            con.execute(f"CREATE TABLE {table} AS SELECT * FROM empty_arrow")
                            con.unregister("empty_arrow")
                        con.execute(f"CREATE VIEW {table}_latest AS {self._latest_sql(table, table)}")
                    con.execute("CREATE TABLE _catalog_info AS SELECT ? AS built_at, ? AS parquet_dir",
                                [datetime.now(UTC).isoformat(), str(self.parquet_dir)])
                os.replace(tmp, self.catalog_path)
            finally:
                tmp.unlink(missing_ok=True)
        return self.catalog_path

    def catalog_problem(self) -> str | None:
        """Why the catalog does not describe the folders as they are now, or None when it does."""
        if not self.catalog_path.exists():
            return "the catalog is missing"
        try:
            with duckdb.connect(str(self.catalog_path), read_only=True) as con:
                built_for = con.execute("SELECT parquet_dir FROM _catalog_info").fetchone()[0]
                views = {name for (name,) in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'").fetchall()}
        except duckdb.Error as exc:
            return f"the catalog cannot be read: {str(exc).splitlines()[0]}"
        if built_for != str(self.parquet_dir):
            return f"the catalog's views read {built_for}"
        with_files = {t for t in TABLES if self.files(t)}
        viewed = {t for t in TABLES if t in views}
        if with_files != viewed or any(f"{t}_latest" not in views for t in TABLES):
            return "the catalog's views do not match the tables that have files"
        return None

    def ensure_catalog(self) -> Path:
        """The catalog, rebuilt first when it does not match the folders (see the module docstring)."""
        if self.catalog_problem() is not None:
            self.refresh_catalog()
        return self.catalog_path

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the catalog (rebuilt first when stale or missing)."""
        self.ensure_catalog()
        return duckdb.connect(str(self.catalog_path), read_only=True)

    def query(self, sql: str, params: Sequence | None = None) -> pl.DataFrame:
        with self.connect() as con:
            return con.sql(sql, params=list(params or [])).pl()


def row_json(row: dict) -> str:
    return json.dumps(row, default=str, sort_keys=True)
