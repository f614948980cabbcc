import os
import signal
import subprocess
import sys
import textwrap

import duckdb
import pyarrow.parquet as pq
import pytest
from key_columns import IDENTITY

from hwbench_pipeline.paths import REPO_ROOT
from hwbench_pipeline.warehouse.store import Warehouse, WarehouseError


def _row(run_id, family="bert", p50=1.0, **extra):
    return {"run_id": run_id, "target": "cpu-torch", "family": family, "preset": "tiny", "batch_size": 1,
            "seq_len": 16, "precision": "fp32", "threads": 2, "status": "ok", "p50_ms": p50, "p90_ms": p50,
            "p99_ms": p50, "samples_ms": [p50, p50], **extra}


def test_write_is_one_file_per_run_and_rewrite_is_idempotent(tmp_path):
    wh = Warehouse(tmp_path)
    path = wh.write("inference_results", [_row("r1")], run_id="r1", partition="cpu-torch")
    assert path == tmp_path / "warehouse" / "inference_results" / "cpu-torch" / "r1.parquet"
    wh.write("inference_results", [_row("r1", p50=2.0)], run_id="r1", partition="cpu-torch")
    table = wh.read("inference_results")
    assert table.height == 1 and table["p50_ms"][0] == 2.0
    assert not list(path.parent.glob(".*tmp"))  # no temporary file left behind


def test_latest_view_picks_newest_run_per_configuration_and_history_keeps_all(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write("inference_results", [_row("r1", p50=1.0), _row("r1", family="vit", p50=5.0)], run_id="r1",
             partition="cpu-torch")
    wh.write("inference_results", [_row("r2", p50=3.0)], run_id="r2", partition="cpu-torch")
    latest = wh.read("inference_results", latest=True).sort("family")
    assert latest["run_id"].to_list() == ["r2", "r1"] and latest["p50_ms"].to_list() == [3.0, 5.0]
    assert wh.read("inference_results").height == 3
    # The same through the DuckDB catalog, opened read-only as a notebook would.
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM inference_results").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM inference_results_latest").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM failures").fetchone()[0] == 0  # empty tables exist too
    # and through the Python API, parameterised, as polars
    latest_vit = wh.query("SELECT p50_ms FROM inference_results_latest WHERE family = ?", ["vit"])
    assert latest_vit["p50_ms"].to_list() == [5.0]


def test_rejects_unknown_columns_tables_and_unsafe_names(tmp_path):
    wh = Warehouse(tmp_path)
    with pytest.raises(WarehouseError, match="not in its schema: bogus"):
        wh.write("inference_results", [_row("r1", bogus=1)], run_id="r1")
    with pytest.raises(WarehouseError, match="unknown table"):
        wh.write("nope", [], run_id="r1")
    with pytest.raises(WarehouseError, match="not a safe name"):
        wh.write("inference_results", [_row("r1")], run_id="../escape")
    assert not (tmp_path / "warehouse" / "inference_results").exists() or not wh.files("inference_results")


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    wh = Warehouse(tmp_path)
    path = wh.write("inference_results", [_row("r1", p50=1.0)], run_id="r1", partition="cpu-torch")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError):
        wh.write("inference_results", [_row("r1", p50=9.0)], run_id="r1", partition="cpu-torch")
    assert pq.read_table(path).column("p50_ms").to_pylist() == [1.0]
    assert not list(path.parent.glob(".*tmp"))


def test_rows_written_before_the_key_columns_read_as_what_they_meant_and_stay_their_own_configuration(tmp_path):
    from hwbench_pipeline.warehouse.schema import LEGACY_KEY_VALUES
    from hwbench_pipeline.warehouse.store import to_arrow

    wh = Warehouse(tmp_path)
    # A file as early releases wrote it: neither the key columns nor where a row came from (source) exist in it.
    old = to_arrow("inference_results", [_row("r1", p50=1.0)]).drop_columns([*LEGACY_KEY_VALUES, "source"])
    wh.write("inference_results", old, run_id="r1", partition="cpu-torch")
    [row] = wh.read("inference_results", latest=True).iter_rows(named=True)
    assert {k: row[k] for k in LEGACY_KEY_VALUES} == LEGACY_KEY_VALUES
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        stored = con.execute("SELECT measurement_method, attention, config_hash FROM inference_results_latest")
        assert stored.fetchall() == [("hwbench-1", "eager", "unrecorded")]
    # A run of another method is another configuration: both stay in the latest view, neither replaces the other.
    identity = {**IDENTITY, "attention": "sdpa", "measurement_method": "hwbench-2"}
    wh.write("inference_results", [_row("r2", p50=2.0, **identity)], run_id="r2", partition="cpu-torch")
    latest = wh.read("inference_results", latest=True).sort("run_id")
    assert latest["measurement_method"].to_list() == ["hwbench-1", "hwbench-2"]
    assert latest["p50_ms"].to_list() == [1.0, 2.0]
    # A run under the old meaning continues the old configuration.
    wh.write("inference_results", [_row("r3", p50=3.0, **LEGACY_KEY_VALUES)], run_id="r3", partition="cpu-torch")
    latest = wh.read("inference_results", latest=True).sort("run_id")
    assert latest["run_id"].to_list() == ["r2", "r3"]


def test_failures_written_before_the_generation_key_columns_still_read_as_the_latest(tmp_path):
    from hwbench_pipeline.warehouse.store import to_arrow

    wh = Warehouse(tmp_path)
    failure = {"run_id": "r1", "scenario": "inference", "target": "cpu-torch", "family": "bert", "preset": "tiny",
               "batch_size": 1, "seq_len": 16, "precision": "fp32", "threads": 2, "status": "failed",
               "failure_class": "timeout", "message": "too slow", **IDENTITY}
    old = to_arrow("failures", [failure]).drop_columns(["new_tokens", "cache_implementation"])
    wh.write("failures", old, run_id="r1", partition="cpu-torch")
    [row] = wh.read("failures", latest=True).iter_rows(named=True)
    assert row["message"] == "too slow" and row["new_tokens"] is None and row["cache_implementation"] is None
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM failures_latest").fetchone()[0] == 1


def test_an_imported_optimum_benchmark_row_from_before_the_key_columns_keeps_its_own_method(tmp_path):
    from hwbench_pipeline.warehouse.schema import LEGACY_KEY_VALUES
    from hwbench_pipeline.warehouse.store import to_arrow

    wh = Warehouse(tmp_path)
    rows = [_row("import-1", source="optimum-benchmark", precision="int8"),
            _row("import-1", family="vit", source="optimum-benchmark")]
    wh.write("inference_results", to_arrow("inference_results", rows).drop_columns(list(LEGACY_KEY_VALUES)),
             run_id="import-1", partition="cpu-onnxruntime")
    read = wh.read("inference_results").sort("family")
    assert read["measurement_method"].to_list() == ["optimum-benchmark"] * 2
    assert read["attention"].to_list() == ["unrecorded"] * 2  # the report did not say
    assert read["quantization"].to_list() == ["unrecorded", "none"]  # nor which int8 recipe it ran


# The child writes a table's first file and is SIGKILLed before the catalog is rebuilt around it.
KILLED_BEFORE_THE_CATALOG = textwrap.dedent("""
    import os, signal, sys
    from hwbench_pipeline.warehouse.store import Warehouse

    Warehouse.refresh_catalog = lambda self: os.kill(os.getpid(), signal.SIGKILL)
    row = {"run_id": "r1", "target": "cpu-torch", "family": "bert", "preset": "tiny", "batch_size": 1,
           "seq_len": 16, "precision": "fp32", "threads": 2, "status": "ok", "p50_ms": 1.0}
    Warehouse(sys.argv[1]).write("inference_results", [row], run_id="r1", partition="cpu-torch")
""")


def test_a_catalog_left_stale_by_a_crash_heals_at_the_next_write_and_read(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write("models", [{"run_id": "m1", "family": "bert", "preset": "tiny", "params": 10}], run_id="m1")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_CATALOG, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert wh.files("inference_results") and wh.catalog_problem() is not None
    assert wh.query("SELECT count(*) AS n FROM inference_results")["n"][0] == 1  # a reader heals it
    wh.write("inference_results", [_row("r2")], run_id="r2", partition="cpu-onnxruntime")
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:  # as a notebook opens it
        assert con.execute("SELECT count(*) FROM inference_results").fetchone()[0] == 2


def test_a_write_that_is_not_the_tables_first_still_repairs_a_catalog_built_without_its_files(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write("inference_results", [_row("r1")], run_id="r1", partition="cpu-torch")
    (wh.parquet_dir / "inference_results" / "cpu-torch" / "r1.parquet").rename(tmp_path / "aside.parquet")
    wh.refresh_catalog()  # built while the table had no file: an empty table, no view
    (tmp_path / "aside.parquet").rename(wh.parquet_dir / "inference_results" / "cpu-torch" / "r1.parquet")
    wh.write("inference_results", [_row("r2")], run_id="r2", partition="cpu-onnxruntime")
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM inference_results").fetchone()[0] == 2


def test_latest_is_the_newest_measurement_so_an_old_file_written_later_never_displaces_a_newer_result(tmp_path):
    from datetime import UTC, datetime, timedelta

    from hwbench_pipeline.warehouse import maintenance

    wh = Warehouse(tmp_path)
    now = datetime.now(UTC)
    wh.write("inference_results", [_row("native", p50=2.0, finished_at=now)], run_id="native", partition="cpu-torch")
    wh.write("inference_results", [_row("imported-old", p50=9.0, finished_at=now - timedelta(days=365))],
             run_id="imported-old", partition="cpu-torch")
    assert wh.read("inference_results", latest=True)["run_id"].to_list() == ["native"]
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("SELECT run_id FROM inference_results_latest").fetchall() == [("native",)]
    maintenance.retain(wh, keep_runs=1)  # keeping only the newest write would drop the newest measurement
    assert wh.read("inference_results", latest=True)["run_id"].to_list() == ["native"]
