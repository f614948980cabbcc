"""Helpers shared by the predictor's tests: where the fixture lives, and a warehouse seeded with it."""

from pathlib import Path

import polars as pl

from hwbench_pipeline.warehouse.schema import FAILURES, HARDWARE_TARGETS, INFERENCE_RESULTS
from hwbench_pipeline.warehouse.store import Warehouse

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def seed_warehouse(data_dir: Path, measurements: pl.DataFrame, hardware: pl.DataFrame) -> Warehouse:
    """A warehouse holding the fixture's rows: results, failures and the measured peaks."""
    warehouse = Warehouse(data_dir)
    ok = measurements.filter(pl.col("status") == "ok")
    keep = [c for c in INFERENCE_RESULTS.names if c in ok.columns]
    for run_id, rows in ok.partition_by("run_id", as_dict=True).items():
        warehouse.write("inference_results", rows.select(keep).to_dicts(), run_id=run_id[0], partition="fixture")
    failed = measurements.filter(pl.col("status") != "ok").with_columns(
        scenario=pl.lit("inference"), message=pl.col("failure_message"))
    if failed.height:
        keep = [c for c in FAILURES.names if c in failed.columns]
        warehouse.write("failures", failed.select(keep).to_dicts(), run_id="fixture-failures", partition="fixture")
    keep = [c for c in HARDWARE_TARGETS.names if c in hardware.columns]
    warehouse.write("hardware_targets", hardware.select(keep).to_dicts(), run_id="fixture-peaks")
    return warehouse
