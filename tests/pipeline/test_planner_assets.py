"""The benchmark planner's assets on a warehouse holding the predictor's fixture of real measurements: the plan
per target, a bad budget refused, and the newest plan's pick measured and stored."""

import shutil

import dagster as dg
import polars as pl
import pytest
from predict.fixture_data import FIXTURES, seed_warehouse

from hwbench_pipeline.assets.planning import benchmark_plan, planned_runs
from hwbench_pipeline.bench.hardware import detect_targets
from hwbench_pipeline.predict import data
from hwbench_pipeline.predict.predictor import train
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.store import Warehouse

#: a small planner space (bert and vit at their tiny preset, three batches, one sequence) and a short stopping
#: rule, so that planning takes seconds and a pick measures in one short process
PROFILE = """description: the planner's test space
families: [bert, vit]
presets: [tiny]
batch_sizes: [1]
seq_lens: [32]
precisions: [fp32]
threads: 1
timeout_s: 300
planner:
  batch_sizes: [1, 2, 3]
  budget: "2"
  strategy: grid
  stopping:
    max_seconds: 0.3
    min_samples: 3
    warmup_max_seconds: 0.3
    processes: 1
    max_processes: 1
"""
PLAN_COLUMNS = ["family", "preset", "target", "batch_size", "seq_len", "precision", "threads"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A data directory with the fixture's cpu-torch rows at the tiny preset, every target's peaks, and the
    predictor trained on them (with its held-out evaluation), built once for the module."""
    root = tmp_path_factory.mktemp("planner")
    rows = pl.read_parquet(FIXTURES / "measurements.parquet").filter(
        (pl.col("target") == "cpu-torch") & (pl.col("preset") == "tiny"))  # enough to train on, quick to train
    warehouse = seed_warehouse(root / "data", rows, pl.read_parquet(FIXTURES / "hardware_targets.parquet"))
    inputs = data.load(warehouse)
    train(inputs.results, inputs.models, inputs.targets, WarehouseResource(data_dir=str(root / "data")).predictor_dir)
    return root / "data"


@pytest.fixture
def data_dir(trained, tmp_path):
    """A copy of the trained warehouse of this test's own."""
    return shutil.copytree(trained, tmp_path / "data")


def resources(data_dir, tmp_path) -> dict:
    profile = tmp_path / "planner.yaml"
    profile.write_text(PROFILE)
    return {"settings": HwbenchSettings(profile=str(profile)), "warehouse": WarehouseResource(data_dir=str(data_dir)),
            "ray": RayResource(address="")}


def plan_config(**config) -> dict:
    return {"ops": {"benchmark_plan": {"config": config}}}


def test_a_committee_plan_stores_its_budget_of_picks_per_target_each_with_its_expected_lesson(data_dir, tmp_path):
    result = dg.materialize([benchmark_plan], resources=resources(data_dir, tmp_path), raise_on_error=False,
                            run_config=plan_config(strategy="committee", budget="3"))
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    with_peaks = set(pl.read_parquet(FIXTURES / "hardware_targets.parquet")["target"])
    planned = {t.key for t in detect_targets()} & with_peaks
    assert planned  # the fixture's targets are CPU ones: this host has at least cpu-torch

    plan = Warehouse(data_dir).read("benchmark_plans")
    assert set(plan["run_id"]) == {result.run_id} and set(plan["target"]) == planned
    for target, picks in plan.partition_by("target", as_dict=True).items():
        assert sorted(picks["rank"]) == [1, 2, 3], target
        assert picks.select(PLAN_COLUMNS).unique().height == 3  # three distinct configurations
    assert (plan["expected_lesson"].str.len_chars() > 0).all()
    assert set(plan["strategy"]) == {"committee"} and set(plan["budget"]) == {"3 configurations"}
    assert (plan["predicted_ms"] > 0).all() and plan["predictor_held_out_mape"].is_not_null().all()
    # nothing planned is measured already: the fixture's rows of those configurations are not picked again
    measured = pl.read_parquet(FIXTURES / "measurements.parquet").filter(pl.col("status") == "ok")
    assert plan.join(measured, on=PLAN_COLUMNS, how="semi").height == 0

    meta = result.asset_materializations_for_node("benchmark_plan")[0].metadata
    assert meta["strategy"].value == "committee" and meta["budget_per_target"].value == "3 configurations"
    assert meta["picks"].value == 3 * len(planned) and meta["skipped"].value == "none"
    assert meta["candidate_space"].value == 2 * 3 * len(planned)  # bert and vit x three batches per target
    assert meta["predictor_held_out_mape"].value == pytest.approx(plan["predictor_held_out_mape"][0], abs=1e-4)
    table = meta["plan"].value
    assert table.startswith("| target | rank | model |") and table.count("\n") == 1 + plan.height
    assert all(f"| {t} | 1 |" in table for t in planned) and "boosters disagree" in table


def test_a_budget_that_is_neither_a_count_nor_a_duration_fails_with_the_budgets_message(data_dir, tmp_path):
    result = dg.materialize([benchmark_plan], resources=resources(data_dir, tmp_path), raise_on_error=False,
                            run_config=plan_config(budget="ten minutes"))
    assert not result.success
    failure = result.failure_data_for_node("benchmark_plan").user_failure_data
    assert failure.description.startswith("budget 'ten minutes': give a number of configurations")
    assert not Warehouse(data_dir).files("benchmark_plans")


def test_planned_runs_measures_the_newest_plans_pick_and_stores_exactly_that_configuration(data_dir, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("HWBENCH_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = dg.materialize([benchmark_plan, planned_runs], resources=resources(data_dir, tmp_path),
                            raise_on_error=False,
                            run_config=plan_config(strategy="uncertainty", budget="1", targets=["cpu-torch"]))
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"inference_results_suite": True, "failures_suite": True, "latency_samples_suite": True}

    warehouse = Warehouse(data_dir)
    plan = warehouse.read("benchmark_plans")
    assert plan.height == 1 and plan["target"][0] == "cpu-torch"
    stored = warehouse.read("inference_results", where=f"run_id = '{result.run_id}'")
    assert stored.height == 1 and stored["_partition"][0] == "cpu-torch"
    assert stored.select(PLAN_COLUMNS).rows() == plan.select(PLAN_COLUMNS).rows()
    assert stored["status"][0] == "ok" and stored["p50_ms"][0] > 0 and stored["processes"][0] == 1
    runs = warehouse.read("runs", where=f"run_id = '{result.run_id}'")
    assert runs.select("target", "scenario", "n_ok").rows() == [("cpu-torch", "inference", 1)]

    meta = result.asset_materializations_for_node("planned_runs")[0].metadata
    assert (meta["planned"].value, meta["measured"].value, meta["failed"].value) == (1, 1, 0)
    assert meta["plan_run_id"].value == result.run_id and meta["picks_mape"].value >= 0
    taught = meta["what_the_picks_taught"].value.splitlines()
    assert len(taught) == 3 and f"{stored['p50_ms'][0]:.4g}" in taught[2]
    predicted = plan["predicted_ms"][0]
    assert f"{predicted / stored['p50_ms'][0] - 1:+.0%}" in taught[2]  # the pick's error, measured

    # materialized again, the plan has nothing left to measure: nothing is measured twice
    again = dg.materialize([planned_runs], resources=resources(data_dir, tmp_path), raise_on_error=False)
    assert not again.success
    failure = again.failure_data_for_node("planned_runs").user_failure_data
    assert "was measured since it was made" in failure.description
    assert warehouse.read("inference_results", where=f"run_id = '{again.run_id}'").height == 0
    assert not (data_dir / ".checkpoints" / "planned").exists() or not any(
        (data_dir / ".checkpoints" / "planned").iterdir())  # the journal went once the round was stored
