"""The predictor on the fixture of real measurements: held-out accuracy, calibration, saving, fallbacks."""

import json

import numpy as np
import polars as pl
import pytest

from hwbench_pipeline.predict.evaluation import leave_architecture_out, metrics
from hwbench_pipeline.predict.features import query_frame, training_frame
from hwbench_pipeline.predict.predictor import (
    MIN_USABLE_ROWS,
    Predictor,
    fingerprint,
    load,
    predict_latency_ms,
    roofline_beats_boosters,
    train,
)
from hwbench_pipeline.predict.shapes import FlopCounter, ModelSpec

# The stated band for the 90 % intervals on held-out architectures, fixed before looking at the result: the
# binomial spread of ~200 held-out rows is about ±4 points, and the calibration itself is estimated from
# the other architectures' residuals (another few points).
COVERAGE_BAND = (0.80, 0.97)


@pytest.fixture(scope="module")
def family_out(frame):
    return leave_architecture_out(frame)


def test_fixture_is_real_and_broad(measurements, frame):
    assert frame["family"].n_unique() >= 10 and frame.height >= 100
    assert (frame["p50_ms"] > 0).all() and (frame["flops_per_call"] > 0).all()
    assert measurements["host"].n_unique() == 1 and measurements["run_id"].is_not_null().all()


def test_predictor_beats_the_roofline_baseline_on_held_out_architectures(family_out):
    result, _ = family_out
    predictor, baseline = result["predictor"], result["roofline_baseline"]
    assert result["n_groups"] >= 10
    assert predictor["mape"] < baseline["mape"], (predictor, baseline)
    assert predictor["median_ape"] < baseline["median_ape"], (predictor, baseline)
    assert predictor["within_20pct"] > baseline["within_20pct"], (predictor, baseline)


def test_intervals_are_calibrated_on_held_out_architectures(family_out):
    result, oof = family_out
    coverage = result["predictor"]["coverage"]
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], coverage
    assert oof["predicted_low"].is_not_null().all() and (oof["predicted_low"] <= oof["predicted_ms"]).all()
    assert (oof["predicted_high"] >= oof["predicted_ms"]).all()


def test_saved_model_round_trips_with_schema_and_fingerprint(measurements, hardware, tmp_path):
    results = measurements.with_columns(mode=pl.lit("inference"))
    schema = train(results, None, hardware, tmp_path, evaluate=False)
    assert (tmp_path / "latency_model.ubj").stat().st_size > 0 and (tmp_path / "memory_model.ubj").exists()
    saved = json.loads((tmp_path / "latency_model.schema.json").read_text())
    assert saved["training_fingerprint"] == schema["training_fingerprint"] and len(saved["features"]) > 20
    assert {"unseen_model", "seen_model"} <= set(saved["calibration"]["latency"])
    booster, loaded_schema = load(tmp_path)
    rows = training_frame(results.head(20))  # no hardware columns: the saved peaks fill them
    again = predict_latency_ms(booster, loaded_schema, rows)
    assert again.shape == (rows.height,) and (again > 0).all()
    reloaded = Predictor.load(tmp_path).predict(training_frame(results.head(20), None, hardware))
    np.testing.assert_allclose(reloaded["latency_ms"], again, rtol=1e-6)
    # one changed median gives another fingerprint
    frame = training_frame(results, None, hardware)
    assert fingerprint(frame) == schema["training_fingerprint"]
    changed = frame.with_columns(p50_ms=pl.when(pl.int_range(pl.len()) == 0).then(pl.col("p50_ms") * 2)
                                 .otherwise(pl.col("p50_ms")))
    assert fingerprint(changed) != schema["training_fingerprint"]


def _queries(frame, hardware):
    return query_frame([
        # measured family, unmeasured batch: the boosters answer
        {"family": "bert", "preset": "small", "target": "cpu-torch", "batch_size": 8, "seq_len": 64,
         "precision": "fp32", "threads": 1, "mode": "inference"},
        # training was never measured: the roofline answers, low confidence
        {"family": "bert", "preset": "small", "target": "cpu-torch", "batch_size": 8, "seq_len": 64,
         "precision": "fp32", "threads": 1, "mode": "training"},
        # FLOPs orders of magnitude beyond anything measured: the roofline answers
        {"family": "vit", "preset": "full", "target": "cpu-torch", "batch_size": 64, "seq_len": 1,
         "precision": "fp32", "threads": 1, "mode": "inference"},
    ], hardware, FlopCounter.from_results(frame))


def test_every_answer_names_its_source_and_confidence(frame, hardware, predictor):
    queries = _queries(frame, hardware)
    answer = predictor.predict(queries)
    assert answer["source"].to_list() == ["predicted", "roofline", "roofline"]
    assert answer["confidence"][1] == "low" and answer["confidence"][2] == "low"
    assert (answer["latency_low_ms"] <= answer["latency_ms"]).all()
    assert (answer["latency_ms"] <= answer["latency_high_ms"]).all()
    # throughput is batch / latency, interval included
    batch = queries["batch_size"].to_numpy()
    np.testing.assert_allclose(answer["throughput_samples_s"], batch / answer["latency_ms"] * 1e3)
    np.testing.assert_allclose(answer["throughput_low"], batch / answer["latency_high_ms"] * 1e3)


def test_every_answer_quotes_the_held_out_error_of_the_estimator_that_gave_it(family_out, frame, hardware,
                                                                             predictor):
    result, oof = family_out
    estimators = result["estimators"]
    # the fallback is scored on what it answers (two-term model x the backend's ratio), not on the bare bound
    fallback = metrics(oof["p50_ms"].to_numpy(), oof["fallback_ms"].to_numpy())
    assert estimators["roofline"]["mape"] == pytest.approx(fallback["mape"])
    assert estimators["roofline"]["mape"] != pytest.approx(result["roofline_bound_only"]["mape"])
    inside = oof.filter(pl.col("in_domain"))
    assert estimators["predicted"]["n"] == inside.height
    assert estimators["predicted"]["mape"] == pytest.approx(
        metrics(inside["p50_ms"].to_numpy(), inside["booster_ms"].to_numpy())["mape"])
    answering = Predictor(dict(predictor.schema, evaluation={"estimators": estimators}), predictor.latency,
                          predictor.memory, predictor.names)
    answer = answering.predict(_queries(frame, hardware))
    for source, quoted in zip(answer["source"], answer["held_out_mape"], strict=True):
        assert quoted == pytest.approx(estimators[source]["mape"])
    assert predictor.predict(_queries(frame, hardware))["held_out_mape"].is_nan().all()  # never evaluated


def test_unseen_architectures_get_the_roofline_when_it_was_better_held_out(frame):
    assert roofline_beats_boosters({"mape": 0.315, "baseline_mape": 0.160})
    assert not roofline_beats_boosters({"mape": 0.132, "baseline_mape": 0.401})
    assert not roofline_beats_boosters({"mape": None, "baseline_mape": None})  # too few architectures to evaluate
    trained = frame.filter(pl.col("family") != "vit")
    queries = pl.concat([frame.filter(pl.col("family") == "bert").head(3),
                         frame.filter(pl.col("family") == "vit").head(3)])
    predictor = Predictor.fit(trained, calibrate_intervals=False)
    boosters = predictor.predict(queries)
    assert boosters["source"].to_list() == ["predicted"] * 6
    predictor.schema["unseen_architectures_from_roofline"] = True
    answer = predictor.predict(queries)
    assert answer["source"].to_list() == ["predicted"] * 3 + ["roofline"] * 3
    np.testing.assert_allclose(answer["latency_ms"][:3], boosters["latency_ms"][:3])
    assert (answer["latency_ms"][3:] != boosters["latency_ms"][3:]).all()


def test_too_few_rows_means_every_answer_is_the_roofline(frame, hardware):
    few = frame.filter(pl.col("family").is_in(["bert", "t5"])).head(MIN_USABLE_ROWS - 1)
    predictor = Predictor.fit(few, calibrate_intervals=False)
    assert not predictor.usable
    answer = predictor.predict(frame.head(5))
    assert set(answer["source"]) == {"roofline"} and set(answer["confidence"]) == {"low"}


def test_no_measurements_at_all_gives_the_bare_bound(frame):
    answer = Predictor(schema={}).predict(frame.head(3))
    np.testing.assert_allclose(answer["latency_ms"], frame.head(3)["roofline_ms"])
    assert np.isinf(answer["latency_high_ms"].to_numpy()).all() and answer["interval_level"].is_nan().all()


def test_meta_device_flop_count_matches_the_measured_count(frame):
    row = frame.filter((pl.col("family") == "bert") & (pl.col("preset") == "tiny")).row(0, named=True)
    counted, how = FlopCounter().per_sample(ModelSpec("bert", "tiny"), row["seq_len"])
    assert how == "counted"
    assert counted * row["batch_size"] == pytest.approx(row["flops_per_call"], rel=1e-9)


def test_contaminated_and_noisy_rows_count_less_in_training():
    from hwbench_pipeline.predict.predictor import CONTAMINATED_WEIGHT, NOISY_WEIGHT, measurement_weights

    frame = pl.DataFrame({
        "p50_ms": [10.0, 10.0, 10.0, 10.0],
        "median_ci_low_ms": [9.9, 9.0, 9.0, None],  # ±0.5 %, ±10 %, ±10 %, unknown
        "median_ci_high_ms": [10.0, 11.0, 11.0, None],
        "contaminated": [False, False, True, None],
    })
    assert measurement_weights(frame).tolist() == [1.0, NOISY_WEIGHT, CONTAMINATED_WEIGHT, 1.0]
    assert measurement_weights(frame.select("p50_ms")).tolist() == [1.0] * 4  # older rows without the columns
