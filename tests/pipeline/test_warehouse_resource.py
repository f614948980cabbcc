"""WarehouseResource: a real data directory written through Warehouse and read through dagster-duckdb's
DuckDBResource, read-only, with the reader settings it is configured with."""

import os
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.store import Warehouse


def write_models(data_dir, *runs: tuple[str, int]) -> Warehouse:
    """One ``models`` file per (run id, parameter count) of bert/small, written in order (the last is the newest)."""
    warehouse = Warehouse(data_dir)
    for run_id, params in runs:
        warehouse.write("models", [{"run_id": run_id, "family": "bert", "preset": "small", "params": params}],
                        run_id=run_id)
    return warehouse


@dg.asset
def bert_params(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """A reader asset: the newest parameter count of bert/small, through the catalog's views."""
    with warehouse.get_connection() as connection:
        (params,) = connection.execute("SELECT params FROM models_latest WHERE family = 'bert'").fetchone()
        (memory_limit,) = connection.execute("SELECT current_setting('memory_limit')").fetchone()
    return dg.MaterializeResult(metadata={"params": params, "memory_limit": memory_limit})


def test_rows_written_through_the_warehouse_are_read_through_the_connection(tmp_path):
    write_models(tmp_path, ("run-1", 100), ("run-2", 110))
    with WarehouseResource(data_dir=str(tmp_path)).get_connection() as connection:
        assert connection.execute("SELECT count(*) FROM models").fetchone() == (2,)
        assert connection.execute("SELECT run_id, params FROM models_latest").fetchall() == [("run-2", 110)]
        assert connection.execute("SELECT current_setting('access_mode')").fetchone() == ("read_only",)


def test_the_connection_builds_a_missing_catalog_and_sees_empty_tables(tmp_path):
    with WarehouseResource(data_dir=str(tmp_path / "new")).get_connection() as connection:
        assert connection.execute("SELECT count(*) FROM inference_results_latest").fetchone() == (0,)
    assert (tmp_path / "new" / "hwbench.duckdb").exists()


@pytest.mark.parametrize("statement", [
    "INSERT INTO _catalog_info VALUES ('now', 'elsewhere')",
    "CREATE TABLE scratch (a INTEGER)",
    "CREATE OR REPLACE VIEW models AS SELECT 1 AS a",
    "DROP VIEW models_latest",
])
def test_the_connection_refuses_to_change_the_catalog(tmp_path, statement):
    warehouse = write_models(tmp_path, ("run-1", 100))
    before = warehouse.catalog_path.read_bytes()
    with (WarehouseResource(data_dir=str(tmp_path)).get_connection() as connection,
          pytest.raises(duckdb.Error, match="read-only")):
        connection.execute(statement)
    assert warehouse.catalog_path.read_bytes() == before and warehouse.catalog_problem() is None


def test_memory_limit_threads_and_other_settings_reach_the_connection(tmp_path):
    resource = WarehouseResource(data_dir=str(tmp_path), memory_limit="1GiB", threads=1,
                                 connection_config={"preserve_insertion_order": False})
    with resource.get_connection() as connection:
        settings = connection.execute("SELECT current_setting('memory_limit'), current_setting('threads'), "
                                      "current_setting('preserve_insertion_order')").fetchone()
    assert settings == ("1.0 GiB", 1, False)


def test_unset_limits_leave_duckdbs_own_defaults(tmp_path):
    with duckdb.connect() as plain:
        defaults = plain.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()
    with WarehouseResource(data_dir=str(tmp_path)).get_connection() as connection:
        assert connection.execute("SELECT current_setting('memory_limit'), "
                                  "current_setting('threads')").fetchone() == defaults


@pytest.mark.parametrize(("config", "message"), [
    ({"connection_config": {"access_mode": "READ_WRITE"}}, "READ_ONLY only"),
    ({"threads": -1}, "threads -1"),
])
def test_settings_that_would_break_the_readers_are_refused(tmp_path, config, message):
    resource = WarehouseResource(data_dir=str(tmp_path), **config)
    with pytest.raises(ValueError, match=message), resource.get_connection():
        pass


def test_a_failed_query_closes_its_connection(tmp_path):
    # An open reader would hold the catalog with its own settings: the Warehouse could not open it any more.
    warehouse = write_models(tmp_path, ("run-1", 100))
    with (pytest.raises(duckdb.CatalogException),
          WarehouseResource(data_dir=str(tmp_path), threads=1).get_connection() as connection):
        connection.execute("SELECT * FROM no_such_table")
    assert warehouse.catalog_problem() is None
    assert warehouse.query("SELECT params FROM models").rows() == [(100,)]


def test_an_asset_reads_through_the_resource_it_is_given(tmp_path):
    write_models(tmp_path, ("run-1", 100), ("run-2", 110))
    result = dg.materialize([bert_params], resources={
        "warehouse": WarehouseResource(data_dir=str(tmp_path), memory_limit="512MiB")})
    assert result.success
    metadata = result.asset_materializations_for_node("bert_params")[0].metadata
    assert (metadata["params"].value, metadata["memory_limit"].value) == (110, "512.0 MiB")


def test_the_launchpads_run_config_picks_the_data_dir_and_limits(tmp_path):
    write_models(tmp_path / "elsewhere", ("run-1", 120))
    run_config = {"resources": {"warehouse": {"config": {"data_dir": str(tmp_path / "elsewhere"),
                                                         "memory_limit": "256MiB"}}}}
    result = dg.materialize([bert_params], resources={"warehouse": WarehouseResource(data_dir=str(tmp_path))},
                            run_config=run_config)
    assert result.success
    metadata = result.asset_materializations_for_node("bert_params")[0].metadata
    assert (metadata["params"].value, metadata["memory_limit"].value) == (120, "256.0 MiB")


def test_the_code_locations_data_dir_defaults_to_hwbench_data_dir(tmp_path):
    shown = subprocess.run(
        [sys.executable, "-c", "from hwbench_pipeline.definitions import defs; "
                               "print(defs.resources['warehouse'].data_dir)"],
        env={**os.environ, "HWBENCH_DATA_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == str(tmp_path)
