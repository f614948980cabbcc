"""Hostile SQL against a real warehouse: each layer refuses it on its own, and a plain SELECT still works."""

import duckdb
import pytest

from hwbench_pipeline.warehouse.queries import QueryError, WarehouseQueries
from hwbench_pipeline.warehouse.sql_guard import RefusedStatement, check_statement, open_sandboxed
from hwbench_pipeline.warehouse.store import Warehouse


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    wh = Warehouse(root / "data")
    wh.write("models", [{"run_id": "cat", "family": "bert", "preset": "tiny", "params": 4_400_000}], run_id="cat")
    # A file beside the data directory that no query may read, and a sibling folder sharing the name's prefix.
    (root / "secret.csv").write_text("user,password\nroot,hunter2\n")
    (root / "data" / "warehouse_other").mkdir()
    (root / "data" / "warehouse_other" / "x.csv").write_text("a\n1\n")
    return wh


HOSTILE = [
    ("DROP VIEW inference_results", "DROP statements are refused"),
    ("INSERT INTO models (family) VALUES ('x')", "INSERT statements are refused"),
    ("UPDATE models SET family = 'x'", "UPDATE statements are refused"),
    ("DELETE FROM models", "DELETE statements are refused"),
    ("CREATE TABLE stolen AS SELECT 1", "CREATE statements are refused"),
    ("CREATE TEMP MACRO m(a) AS a", "CREATE statements are refused"),
    ("ALTER VIEW models RENAME TO m2", "ALTER statements are refused"),
    ("COPY (SELECT * FROM models) TO '{out}'", "COPY is refused"),
    ("COPY models FROM '{secret}'", "COPY is refused"),
    ("ATTACH '{out}.db' AS other", "ATTACH is refused"),
    ("DETACH hwbench", "DETACH statements are refused"),
    ("SELECT 1; DROP VIEW models", "2 statements given; exactly one is accepted"),
    ("SELECT 1; SELECT 2", "2 statements given"),
    ("SET enable_external_access = true", "SET/RESET/USE statements are refused"),
    ("RESET lock_configuration", "SET/RESET/USE statements are refused"),
    ("SET VARIABLE v = 1", "SET/RESET/USE statements are refused"),
    ("PRAGMA version", "PRAGMA statements are refused"),
    ("CALL pragma_version()", "CALL statements are refused"),
    ("INSTALL httpfs", "INSTALL/LOAD statements are refused"),
    ("LOAD httpfs", "INSTALL/LOAD statements are refused"),
    ("EXPLAIN ANALYZE DROP VIEW models", "EXPLAIN is refused"),
    ("EXPORT DATABASE '{out}'", "EXPORT DATABASE is refused"),
    ("CHECKPOINT", "CALL statements are refused"),
    ("BEGIN TRANSACTION", "TRANSACTION statements are refused"),
    ("PREPARE p AS SELECT 1", "PREPARE statements are refused"),
    ("UPDATE EXTENSIONS", "unrecognised type"),
    ("SELEC 1", "not valid SQL"),
    ("", "no SQL statement given"),
    ("-- just a comment", "no SQL statement given"),
]


@pytest.mark.parametrize("sql, reason", HOSTILE)
def test_parser_refuses_everything_but_one_query(warehouse, tmp_path, sql, reason):
    sql = sql.format(out=tmp_path / "out.csv", secret=warehouse.data_dir.parent / "secret.csv")
    with pytest.raises(RefusedStatement, match=reason):
        check_statement(sql)
    with pytest.raises(RefusedStatement, match=reason):  # the same through the public query API
        WarehouseQueries(warehouse.data_dir).sql(sql)
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("sql", [
    "SELECT family FROM models",
    "  -- a comment\n select 1 ;  ",
    "WITH m AS (SELECT * FROM models) SELECT count(*) FROM m",
    "FROM models SELECT family",
    "VALUES (1), (2)",
    "DESCRIBE models",
    "SHOW TABLES",
    "SUMMARIZE models",
])
def test_read_only_queries_pass_the_parser_and_run(warehouse, sql):
    check_statement(sql)
    assert WarehouseQueries(warehouse.data_dir).sql(sql).height >= 1


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_blob('/proc/self/environ')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_csv('{parquet_dir}/../../secret.csv')",  # '..' out of the allowed folder
    "SELECT * FROM read_csv('{data_dir}/warehouse_other/x.csv')",  # shares the allowed folder's name prefix
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM read_csv('https://example.com/data.csv')",
])
def test_file_functions_cannot_read_outside_the_warehouse(warehouse, sql):
    sql = sql.format(secret=warehouse.data_dir.parent / "secret.csv", parquet_dir=warehouse.parquet_dir,
                     data_dir=warehouse.data_dir)
    check_statement(sql)  # a SELECT to the parser: only the sandboxed connection stops it
    with pytest.raises(RefusedStatement, match="access outside the warehouse is refused"):
        WarehouseQueries(warehouse.data_dir).sql(sql)


def test_control_the_secret_is_readable_without_the_sandbox(warehouse):
    # Proves the refusals above come from the sandbox, not from a missing or unreadable file.
    with duckdb.connect() as con:
        rows = con.sql(f"SELECT * FROM read_csv('{warehouse.data_dir.parent / 'secret.csv'}')").fetchall()
    assert rows == [("root", "hunter2")]


def test_warehouse_parquet_stays_readable(warehouse):
    df = WarehouseQueries(warehouse.data_dir).sql("SELECT family FROM read_parquet(?)",
                                                  [str(warehouse.parquet_dir / "models" / "*" / "*.parquet")])
    assert df["family"].to_list() == ["bert"]


@pytest.mark.parametrize("sql, error", [
    ("SET enable_external_access = true", "configuration has been locked"),
    ("SET allowed_directories = ['/']", "configuration has been locked"),
    ("RESET lock_configuration", "configuration has been locked"),
    ("INSTALL httpfs", "disabled"),
    ("LOAD httpfs", "disabled"),
    ("ATTACH '{out}.db' AS other", "disabled by configuration"),
    ("COPY (SELECT 1) TO '{out}'", "disabled by configuration"),
    ("DROP VIEW models", "read-only"),
    ("CREATE TABLE hwbench.main.stolen AS SELECT 1", "read-only"),
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
])
def test_sandboxed_connection_refuses_on_its_own(warehouse, tmp_path, sql, error):
    """The second layer, without the parser in front of it."""
    con = open_sandboxed(warehouse.catalog_path, warehouse.parquet_dir)
    try:
        with pytest.raises(duckdb.Error, match=error):
            con.execute(sql.format(out=tmp_path / "out.csv"))
        assert con.sql("SELECT count(*) FROM models").fetchall() == [(1,)]
        settings = dict(con.sql("SELECT name, value FROM duckdb_settings() WHERE name IN "
                                "('enable_external_access', 'lock_configuration', 'autoload_known_extensions')"
                                ).fetchall())
    finally:
        con.close()
    assert settings == {"enable_external_access": "false", "lock_configuration": "true",
                        "autoload_known_extensions": "false"}
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("sql", [
    "WITH d AS (DELETE FROM failures RETURNING *) SELECT count(*) FROM d",
    "WITH i AS (INSERT INTO failures (family) VALUES ('x') RETURNING *) SELECT * FROM i",
])
def test_data_modifying_cte_parses_as_select_but_meets_the_read_only_catalog(warehouse, sql):
    check_statement(sql)  # DuckDB reports the outer SELECT: the read-only attachment is what stops it
    with pytest.raises(QueryError, match="attached in read-only mode"):
        WarehouseQueries(warehouse.data_dir).sql(sql)
