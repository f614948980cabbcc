"""The predictor learns from the coverage sweep: probes of architectures it has no benchmark of join its
training rows, keep the shape they measured, and are held out by architecture."""

import numpy as np
import polars as pl
import pytest
from fixture_data import seed_warehouse

from hwbench_pipeline.bench.catalog.probe import ProbeConfig, probe_architecture
from hwbench_pipeline.predict.data import load, probes_as_results
from hwbench_pipeline.predict.evaluation import leave_architecture_out
from hwbench_pipeline.predict.features import training_frame
from hwbench_pipeline.warehouse.schema import ARCHITECTURE_COVERAGE


@pytest.fixture(scope="module")
def coverage() -> pl.DataFrame:
    rows = [probe_architecture(ProbeConfig(t), "probe-run") for t in ("roberta", "mistral", "vit_mae", "bert")]
    rows.append(dict(rows[0], model_type="gpt2", status="failed", p50_ms=None, failure_class="export_error"))
    rows.append(dict(rows[0], model_type="llava_onevision", complete=False))  # its text tower only
    return pl.DataFrame([{k: r.get(k) for k in ARCHITECTURE_COVERAGE.names} for r in rows],
                        schema=pl.Schema(ARCHITECTURE_COVERAGE))


def test_completed_timed_probes_become_inference_rows_of_their_architecture(coverage):
    rows = probes_as_results(coverage)
    # bert's name is a curated family's (other presets); a failed probe and a text-tower-only probe are no rows
    assert sorted(rows["family"].to_list()) == ["mistral", "roberta", "vit_mae"]
    assert set(rows["measurement"]) == {"probe"} and set(rows["mode"]) == {"inference"}
    assert set(rows["backend"]) == {"torch"} and set(rows["device_kind"]) == {"cpu"}
    np.testing.assert_allclose(rows["throughput_samples_s"], 1e3 / rows["p50_ms"])


def test_a_warehouse_with_coverage_probes_trains_on_them_beside_the_benchmarks(coverage, measurements, hardware,
                                                                              tmp_path):
    warehouse = seed_warehouse(tmp_path, measurements, hardware)
    warehouse.write("architecture_coverage", coverage.to_dicts(), run_id="probe-run", partition="cpu-torch")
    results = load(warehouse).results
    assert set(results["measurement"]) == {"benchmark", "probe"}
    assert sorted(results.filter(pl.col("measurement") == "probe")["family"]) == ["mistral", "roberta", "vit_mae"]
    assert results.height == measurements.filter(pl.col("status") == "ok").height + 3
    # a warehouse holding nothing but a sweep (and the peaks) trains on the probes alone
    swept_only = seed_warehouse(tmp_path / "swept_only", measurements.clear(), hardware)
    swept_only.write("architecture_coverage", coverage.to_dicts(), run_id="probe-run", partition="cpu-torch")
    assert load(swept_only).results.height == 3


def test_probe_rows_keep_their_own_shape_and_are_held_out_by_architecture(coverage, measurements, hardware):
    results = pl.concat([measurements.with_columns(mode=pl.lit("inference"), measurement=pl.lit("benchmark")),
                         probes_as_results(coverage)], how="diagonal_relaxed")
    frame = training_frame(results, None, hardware)
    mistral = frame.filter(pl.col("family") == "mistral").row(0, named=True)
    probed = coverage.filter(pl.col("model_type") == "mistral").row(0, named=True)
    assert (mistral["leaf_modules"], mistral["kv_heads"], mistral["attention_kind"]) == (
        probed["leaf_modules"], probed["kv_heads"], probed["attention_kind"])
    assert mistral["category"] == "text decoder" and mistral["architecture"] == "mistral"
    # a curated family's category is the registry's, so one vocabulary describes every architecture
    assert set(frame.filter(pl.col("family") == "bert")["category"]) == {"text encoder"}
    result, oof = leave_architecture_out(frame)
    assert {"roberta", "mistral", "vit_mae", "bert"} <= set(result["held_out"])
    held = oof.filter(pl.col("architecture") == "roberta")
    assert held.height == 1 and held["predicted_ms"][0] > 0


def test_a_published_size_decoder_of_any_type_is_counted_on_the_meta_device_not_estimated():
    from hwbench_pipeline.predict.shapes import FlopCounter, ModelSpec, describe

    spec = ModelSpec("mistral", "full")  # 7 B parameters: counted without allocating a weight
    flops, how = FlopCounter().per_sample(spec, 128)
    assert how == "counted"
    # matmuls dominate: close to 2 x parameters x tokens, plus attention, minus the embedding lookup
    assert 0.9 < flops / (2 * describe(spec)["params"] * 128) < 1.1
