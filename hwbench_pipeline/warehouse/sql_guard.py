"""What SQL from a user may do to the warehouse: read it, nothing else.

Two independent layers, so that a gap in one is caught by the other:

1. ``check_statement`` asks DuckDB's own parser (not a regex) how many statements the text holds and of
   which type, and accepts exactly one ``SELECT``. DESCRIBE, SHOW, SUMMARIZE, FROM-first queries, VALUES
   and WITH … SELECT all parse as ``SELECT``; EXPLAIN is refused because EXPLAIN ANALYZE runs what it
   explains.
2. ``open_sandboxed`` gives a connection on which even an accepted statement can only read: the catalog is
   attached READ_ONLY, file access is limited to the warehouse's Parquet folder (``allowed_directories``,
   then ``enable_external_access = false``), extensions are neither installed nor loaded, nothing spills
   to a temporary directory, and ``lock_configuration`` stops any statement from undoing this.

Each sandboxed connection is a fresh in-memory DuckDB instance: the Python client caches instances per
database file, so hardening a connection opened on the file itself would change (and lock) every other
connection in the process that happens to share it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

ACCEPTED = "a single read-only query (SELECT, WITH … SELECT, FROM …, VALUES, DESCRIBE, SHOW, SUMMARIZE)"

_WHY_REFUSED = {
    duckdb.StatementType.EXPLAIN: "EXPLAIN is refused (EXPLAIN ANALYZE executes the statement it explains)",
    duckdb.StatementType.SET: "SET/RESET/USE statements are refused: settings are fixed by the server",
    duckdb.StatementType.PRAGMA: "PRAGMA statements are refused",
    duckdb.StatementType.CALL: "CALL statements are refused",
    duckdb.StatementType.LOAD: "INSTALL/LOAD statements are refused: no extensions are loaded",
    duckdb.StatementType.ATTACH: "ATTACH is refused: only the warehouse catalog is attached",
    duckdb.StatementType.COPY: "COPY is refused: nothing is read from or written to files",
    duckdb.StatementType.EXPORT: "EXPORT DATABASE is refused",
    duckdb.StatementType.MULTI: "statements that expand into several (such as PIVOT without an IN list) are refused",
}


class RefusedStatement(ValueError):
    """SQL that the read-only interfaces will not run; the message says why, in one line."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def check_statement(sql: str) -> None:
    """Return if ``sql`` is exactly one read-only query; raise :class:`RefusedStatement` otherwise."""
    if not isinstance(sql, str):
        raise RefusedStatement("the SQL must be a string")
    try:
        statements = duckdb.extract_statements(sql)
        kinds = [statement.type for statement in statements]
    except duckdb.Error as exc:
        raise RefusedStatement(f"not valid SQL: {_first_line(exc)}") from None
    except ValueError:
        # The parser knew the statement but the Python client has no name for its type (e.g. UPDATE EXTENSIONS).
        raise RefusedStatement(f"statement of an unrecognised type refused; accepted: {ACCEPTED}") from None
    if not statements:
        raise RefusedStatement("no SQL statement given")
    if len(statements) > 1:
        raise RefusedStatement(f"{len(statements)} statements given; exactly one is accepted: {ACCEPTED}")
    if kinds[0] != duckdb.StatementType.SELECT:
        why = _WHY_REFUSED.get(kinds[0], f"{kinds[0].name} statements are refused")
        raise RefusedStatement(f"{why}; accepted: {ACCEPTED}")
    if statements[0].expected_result_type != [duckdb.ExpectedResultType.QUERY_RESULT]:
        raise RefusedStatement(f"the statement does not only return rows; accepted: {ACCEPTED}")


def open_sandboxed(catalog_path: Path, allowed_dir: Path, *, memory_limit: str | None = None,
                   threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to a fresh DuckDB instance that can read the catalog and the files under ``allowed_dir``
    and nothing else; its configuration is locked. ``memory_limit`` (e.g. "512MB") and ``threads`` bound what
    one query on it may use (DuckDB's defaults, 80 % of RAM and every core, when left out)."""
    config: dict[str, str | int | bool] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "temp_directory": "",  # no spilling: DuckDB would otherwise add the temp folder to the allowed paths
    }
    # Set at connect time: lock_configuration below stops any later SET, the server's included.
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("ATTACH ? AS hwbench (READ_ONLY)", [str(catalog_path)])
        con.execute("USE hwbench")
        con.execute("DETACH memory")  # leave no writable database behind the read-only catalog
        # The trailing separator keeps a sibling such as 'warehouse_other/' out of a 'warehouse' prefix.
        con.execute("SET allowed_directories = ?", [[str(allowed_dir).rstrip("/") + "/"]])
        # Order matters: allowed_directories cannot be changed once external access is off or config is locked.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except Exception:
        con.close()
        raise
    return con
