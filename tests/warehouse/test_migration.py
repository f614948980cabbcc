"""A data directory written by an earlier hwbench (tests/warehouse/fixtures/data_dir_17c18cb, see its README)
opens with this version without loss: every row reads, the catalog heals, check passes, new writes land."""

import gzip
import shutil
from pathlib import Path

import duckdb

from hwbench_pipeline.warehouse import maintenance
from hwbench_pipeline.warehouse.queries import WarehouseQueries
from hwbench_pipeline.warehouse.store import Warehouse

FIXTURE = Path(__file__).parent / "fixtures" / "data_dir_17c18cb"
#: what version 17c18cb read from it: (history rows, latest rows, runs) per table
WRITTEN = {"inference_results": (7, 7, 4), "latency_samples": (685, 685, 4), "runs": (5, 5, 4)}
LATEST_P50 = sorted([("cpu-onnxruntime", 1, 0.123078), ("cpu-onnxruntime", 2, 0.17419125000000002),
                     ("cpu-torch", 1, 214.655165), ("cpu-torch", 2, 179.427208), ("cpu-torch", 2, 31.171770999208093),
                     ("cpu-torch", 4, 1.7529), ("cpu-torch", 8, 309.8458435)])


def _copy(tmp_path: Path) -> Warehouse:
    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURE / "warehouse", data_dir / "warehouse")
    with gzip.open(FIXTURE / "hwbench.duckdb.gz") as src, open(data_dir / "hwbench.duckdb", "wb") as dest:
        shutil.copyfileobj(src, dest)
    return Warehouse(data_dir)


def test_an_earlier_versions_data_directory_reads_row_for_row(tmp_path):
    wh = _copy(tmp_path)
    for table, (history, latest, runs) in WRITTEN.items():
        frame = wh.read(table)
        assert (frame.height, wh.read(table, latest=True).height, frame["run_id"].n_unique()) == (history, latest,
                                                                                                   runs), table
    rows = sorted(wh.read("inference_results", latest=True).select("target", "batch_size", "p50_ms").rows())
    assert rows == LATEST_P50


def test_its_catalog_built_for_another_place_heals_and_serves_the_api(tmp_path):
    wh = _copy(tmp_path)
    assert "/tmp/olddata" in (wh.catalog_problem() or "")  # views with the old absolute paths
    frame, _ = WarehouseQueries(wh.data_dir).sql_capped("SELECT count(*) AS n FROM latency_samples", None,
                                                        max_rows=10)
    assert frame["n"][0] == 685
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM inference_results_latest").fetchone()[0] == 7
    assert maintenance.check(wh).ok


def test_it_takes_new_transactions_and_maintenance_without_losing_a_row(tmp_path):
    wh = _copy(tmp_path)
    row = {"run_id": "new", "target": "cpu-torch", "family": "bert", "preset": "tiny", "batch_size": 16,
           "seq_len": 16, "precision": "fp32", "threads": 2, "status": "ok", "p50_ms": 3.0}
    with wh.transaction() as tx:
        tx.write("inference_results", [row], run_id="new", partition="cpu-torch")
        tx.write("runs", [{"run_id": "new", "target": "cpu-torch", "scenario": "inference"}], run_id="new",
                 partition="cpu-torch")
    maintenance.compact(wh, small_mb=64)
    assert wh.read("inference_results").height == 8 and wh.read("runs").height == 6
    assert wh.read("latency_samples").height == 685
    assert maintenance.check(wh).ok
