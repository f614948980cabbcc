"""The three predict assets materialized on a warehouse holding the fixture, their blocking checks included."""

import dagster as dg
import polars as pl
import pytest
from fixture_data import seed_warehouse

from hwbench_pipeline.assets.predictions import predictions
from hwbench_pipeline.assets.predictor import performance_predictor
from hwbench_pipeline.assets.recommendations import hardware_recommendations
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource

PROFILE = """description: two families, one measured batch and one that was not
families: [bert, vit]
presets: [small]
batch_sizes: [1, 8]
seq_lens: [128]
precisions: [fp32]
threads: 1
"""


@pytest.mark.slow
def test_predictor_predictions_and_recommendations_materialize(tmp_path, measurements, hardware, monkeypatch):
    warehouse = seed_warehouse(tmp_path / "data", measurements, hardware)
    profile = tmp_path / "two.yaml"
    profile.write_text(PROFILE)
    monkeypatch.delenv("HWBENCH_PRICES", raising=False)
    resources = {"settings": HwbenchSettings(profile=str(profile)),
                 "warehouse": WarehouseResource(data_dir=str(tmp_path / "data"))}
    result = dg.materialize([performance_predictor, predictions, hardware_recommendations],
                            resources=resources, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"predictions_suite": True, "recommendations_suite": True}

    meta = result.asset_materializations_for_node("performance_predictor")[0].metadata
    assert meta["held_out_architectures"].value >= 10 and meta["held_out_mape"].value > 0
    assert "roofline baseline" in meta["evaluation"].value and "leave_preset_out" in meta["evaluation"].value
    assert "recommendation_throughput_picked_optimum" in meta

    stored = warehouse.read("predictions")
    measured = measurements.filter(pl.col("status") == "ok")
    keys = ["family", "preset", "target", "batch_size", "seq_len", "precision", "threads"]
    assert stored.join(measured, on=keys, how="semi").height == 0  # nothing measured is predicted
    assert set(stored["batch_size"]) == {8} and set(stored["metric"]) == {"latency_ms", "throughput_samples_s",
                                                                           "peak_memory_mb"}
    assert set(stored["source"]) <= {"predicted", "roofline"} and stored["model_fingerprint"].n_unique() == 1

    recs = warehouse.read("recommendations")
    assert set(recs["objective"]) == {"latency", "throughput"}  # no price set: no cost objective
    assert set(zip(recs["family"], recs["preset"], strict=True)) == {("bert", "small"), ("vit", "small")}
    unmeasured = recs.filter(pl.col("source") != "measured")
    assert unmeasured["note"].str.contains("not measured").all()
