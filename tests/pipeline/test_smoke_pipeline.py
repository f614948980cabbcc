"""The smoke profile through the whole graph: real Ray, real tiny models, a real Dagster instance."""

from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from hwbench_pipeline.bench.models import FAMILIES
from hwbench_pipeline.pipeline_runner import run_pipeline
from hwbench_pipeline.predict.features import training_frame
from hwbench_pipeline.predict.predictor import load, predict_latency_ms
from hwbench_pipeline.warehouse.store import Warehouse

ASSETS = ["model_catalog", "hardware_targets", "inference_runs", "training_runs", "distributed_runs", "generation_runs",
          "inference_results", "performance_predictor", "predictions", "hardware_recommendations",
          "regression_report", "comparison_report", "failure_patterns", "interleaved_comparisons"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    with dg.instance_for_test() as instance:
        summary = run_pipeline("smoke", ["cpu-torch"], data_dir=str(data_dir), instance=instance)
        materialized = {key: instance.get_latest_materialization_event(dg.AssetKey(key)) for key in ASSETS}
        yield summary, Warehouse(data_dir), materialized


@pytest.mark.slow
def test_every_stage_materializes_and_is_recorded_in_dagster(smoke_run):
    summary, _, materialized = smoke_run
    assert summary.success, summary.stages  # success includes every blocking suite passing on stored rows
    assert all(materialized[k] is not None for k in ASSETS), [k for k in ASSETS if materialized[k] is None]
    meta = materialized["inference_runs"].asset_materialization.metadata
    assert meta["profile"].value == "smoke"
    wh = smoke_run[1]
    assert not list((wh.data_dir / ".checkpoints").rglob("*.jsonl")), "a stored partition leaves no journal"
    assert not any((wh.data_dir / ".transactions").iterdir()), "every store committed and cleaned up"
    assert meta["measured"].value + meta["failed"].value == len(FAMILIES)


@pytest.mark.slow
def test_every_family_is_measured_for_real_or_a_classified_failure(smoke_run):
    _, warehouse, _ = smoke_run
    results = warehouse.read("inference_results")
    failures = warehouse.read("failures")
    assert set(results["family"]) | set(failures["family"]) == set(FAMILIES)
    assert results.height >= 10, failures.select("family", "failure_class", "message").to_dicts()
    assert (failures["failure_class"].is_not_null()).all()
    assert (results["p50_ms"] > 0).all() and (results["n_samples"] >= 3).all()
    assert results["samples_ms"].list.len().min() >= 3
    samples = warehouse.read("latency_samples").filter(pl.col("scenario") == "inference")
    assert samples.height == results["samples_ms"].list.len().sum()  # every raw sample, in its own table
    assert (samples["latency_ms"] > 0).all()
    assert (results["flops_per_call"] > 0).all()
    # compared against the target's measured peak (the roofline reference) and the torch fp32 output
    targets = warehouse.read("hardware_targets")
    assert (targets["peak_gflops_fp32"] > 0).all() and (targets["peak_gbps"] > 0).all()
    assert results["pct_of_peak"].is_not_null().all() and (results["pct_of_peak"] > 0).all()
    assert results["max_rel_diff"].is_not_null().all()
    # each configuration was measured by two fresh processes of its own (the smoke profile's rule), in rounds:
    # every configuration's first process started before any configuration's last one finished
    assert (results["processes"] == 2).all()
    pids = results["process_pids"].explode()
    assert pids.n_unique() == pids.len() == results["processes"].sum()
    assert results["started_at"].max() < results["finished_at"].min()


@pytest.mark.slow
def test_catalog_views_predictor_and_recommendations(smoke_run):
    _, warehouse, _ = smoke_run
    with duckdb.connect(str(warehouse.catalog_path), read_only=True) as con:
        n_latest = con.execute("SELECT count(*) FROM inference_results_latest").fetchone()[0]
        n_models = con.execute("SELECT count(DISTINCT family) FROM models_latest").fetchone()[0]
    assert n_latest == warehouse.read("inference_results").height
    assert n_models == len(FAMILIES)

    predictor_dir = warehouse.data_dir / "predictor"
    booster, schema = load(predictor_dir)
    assert (predictor_dir / "latency_model.ubj").stat().st_size > 0
    frame = training_frame(warehouse.read("inference_results", latest=True), warehouse.read("models", latest=True))
    predicted = predict_latency_ms(booster, schema, frame)
    assert len(predicted) == frame.height and (predicted > 0).all()
    assert schema["evaluation"]["mape"] is not None  # held-out error over whole families

    recs = warehouse.read("recommendations")
    assert set(recs["objective"]) == {"latency", "throughput"}
    assert recs.select("family", "preset", "objective").is_unique().all()  # one row per model and objective
    assert set(recs["source"]) <= {"measured", "predicted", "roofline"}
    # a figure nobody measured says so
    for row in recs.filter(pl.col("source") != "measured").iter_rows(named=True):
        assert "not measured" in row["note"], row
    measured = warehouse.read("inference_results").select("family", "preset").unique()
    assert measured.join(recs.select("family", "preset"), on=["family", "preset"], how="anti").height == 0


@pytest.mark.slow
def test_training_distributed_regressions_and_comparison_report(smoke_run):
    summary, warehouse, materialized = smoke_run
    training = warehouse.read("training_results")
    assert set(training["family"]) | set(warehouse.read("failures").filter(
        pl.col("scenario") == "training")["family"]) == {"bert", "vit", "whisper", "llama"}
    assert (training["p50_ms"] > 0).all() and training["loss_curve"].list.len().min() > 1
    steps = warehouse.read("latency_samples").filter(pl.col("scenario") == "training")
    assert steps.height == training["samples_ms"].list.len().sum()
    # the smoke profile has no distributed section (tests/bench/test_distributed.py sweeps it): the asset says so
    distributed = materialized["distributed_runs"].asset_materialization.metadata
    assert distributed["configurations"].value == 0 and not warehouse.files("distributed_results")
    regressions = warehouse.read("regressions")
    # first run: every configuration is new, and none is judged slower or faster without a history
    assert set(regressions["verdict"]) == {"new"}
    assert regressions.filter(pl.col("scenario") == "inference").height == warehouse.read("inference_results").height
    meta = materialized["comparison_report"].asset_materialization.metadata
    html = Path(meta["html"].value).read_text()
    assert "<html" in html and '<script src="http' not in html  # one file that works offline
    assert "bert" in Path(meta["markdown"].value).read_text()
    assert Path(meta["pdf"].value).read_bytes().startswith(b"%PDF-")
    assert Path(meta["pdf"].value) == summary.comparison_pdf


@pytest.mark.slow
def test_the_profiles_comparison_is_measured_interleaved_stored_and_reported(smoke_run):
    summary, warehouse, materialized = smoke_run
    assert [name for name, *_ in summary.stages].count("interleaved comparisons") == 1
    (row,) = warehouse.read("comparisons").iter_rows(named=True)
    assert (row["purpose"], row["kind"], row["label_a"], row["label_b"]) == (
        "comparison", "precisions", "fp32", "int8-dynamic")
    assert row["target_a"] == row["target_b"] == "cpu-torch" and row["pairs_asked"] == 2
    # two pairs are too few for a verdict whatever they measured; a busy host may drop them, never fail them
    assert row["verdict"] == "inconclusive" and row["pairs"] + row["dropped_pairs"] == 2
    assert len(row["medians_a_ms"]) == len(row["medians_b_ms"]) == row["pairs"]
    assert all(m > 0 for m in row["medians_a_ms"] + row["medians_b_ms"])
    meta = materialized["comparison_report"].asset_materialization.metadata
    markdown = Path(meta["markdown"].value).read_text()
    assert "Interleaved comparisons" in markdown and row["sentence"].split(":")[0] in markdown


@pytest.mark.slow
def test_generation_rows_are_stored_validated_and_decode_as_generate_does(smoke_run):
    _, warehouse, materialized = smoke_run
    rows = warehouse.read("generation_results")
    assert sorted(rows["family"]) == ["llama", "t5"]
    assert (rows["tokens_matching_reference"] == rows["new_tokens"]).all()  # greedy tokens equal generate()'s
    assert (rows["ttft_p50_ms"] > 0).all() and (rows["itl_p50_ms"] > 0).all() and (rows["n_samples"] >= 3).all()
    assert (rows["itl_samples_ms"].list.len() == rows["n_samples"] * (rows["new_tokens"] - 1)).all()
    assert (rows["kv_cache_bytes"] > rows["kv_cache_bytes_prompt"]).all()
    meta = materialized["generation_runs"].asset_materialization.metadata
    assert meta["measured"].value == 2 and meta["tokens_differ_from_generate"].value == "none"
    # the smoke profile streams each configuration to 1 and 2 clients over serve-generate's WebSocket too
    assert rows["stream_clients"].to_list() == [[1, 2], [1, 2]], rows["stream_note"].to_list()
    assert rows["stream_tokens_match"].all() and rows["stream_overhead_ttft_ms"].is_not_null().all()


@pytest.mark.slow
def test_report_names_every_configuration_measured(smoke_run):
    summary, warehouse, _ = smoke_run
    markdown = summary.report_markdown.read_text()
    html = summary.report_html.read_text()
    for row in warehouse.read("inference_results").iter_rows(named=True):
        line = f"| {row['target']} | {row['family']}/{row['preset']} | {row['batch_size']} | {row['seq_len']} |"
        assert line in markdown
        assert f"<td>{row['family']}/{row['preset']}</td>" in html
    for row in warehouse.read("failures").iter_rows(named=True):
        assert f"| {row['family']}/{row['preset']} |" in markdown and row["failure_class"] in markdown
    assert "Mann–Whitney" in markdown
    assert pl.read_parquet(warehouse.files("runs")[0])["profile"][0] == "smoke"
