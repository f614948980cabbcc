"""Recommendations on the fixture of real measurements: constraints hold, predicted figures say so."""

import polars as pl
import pytest

from hwbench_pipeline.predict.prices import PriceFileError, load_prices
from hwbench_pipeline.predict.recommender import Constraints, advise, describe_miss, recommendation_row
from hwbench_pipeline.predict.shapes import FlopCounter, ModelSpec

BERT = ModelSpec("bert", "small")


@pytest.fixture(scope="module")
def results(measurements):
    return measurements.filter(pl.col("status") == "ok").with_columns(mode=pl.lit("inference"))


@pytest.fixture(scope="module")
def failures(measurements):
    return measurements.filter(pl.col("status") != "ok").with_columns(scenario=pl.lit("inference"))


def _advise(spec, predictor, results, failures, hardware, *, constraints=None, prices=None,
            objectives=("latency", "throughput"), batches=(1, 2, 4, 16), seq=128, precisions=None):
    return advise(spec, seq_len=seq, mode="inference", objectives=objectives, constraints=constraints or Constraints(),
                  targets=hardware, results=results, failures=failures, predictor=predictor,
                  counter=FlopCounter.from_results(results), prices=prices, batches=batches, precisions=precisions)


def test_measured_figures_are_used_where_they_exist_and_predictions_are_labelled(predictor, results, failures,
                                                                                 hardware):
    advice = _advise(BERT, predictor, results, failures, hardware)
    ranked = advice.rankings["latency"].feasible
    measured = results.filter((pl.col("family") == "bert") & (pl.col("preset") == "small")
                              & (pl.col("seq_len") == 128))
    for row in ranked.iter_rows(named=True):
        match = measured.filter((pl.col("target") == row["target"]) & (pl.col("batch_size") == row["batch_size"]))
        if match.height:
            assert row["source"] == "measured" and row["latency_ms"] == match["p50_ms"][0]
            assert row["source_run_id"] == match["run_id"][0]
        else:
            assert row["source"] in ("predicted", "roofline") and row["confidence"] in ("high", "medium", "low")
    assert {"measured", "predicted"} <= set(ranked["source"])  # batch 2 was never measured
    row = recommendation_row(advice, "throughput", "test-run")
    assert row["source"] == ranked.filter(
        (pl.col("target") == row["target"]) & (pl.col("batch_size") == row["batch_size"]))["source"][0]
    assert (row["note"] is None) == (row["source"] == "measured")


def test_constraints_are_respected(predictor, results, failures, hardware):
    free = _advise(BERT, predictor, results, failures, hardware).rankings["throughput"].feasible
    limit = float(free["latency_ms"].median())
    floor = float(free["throughput_samples_s"].median())
    advice = _advise(BERT, predictor, results, failures, hardware,
                     constraints=Constraints(max_latency_ms=limit, min_throughput=floor))
    ranked = advice.rankings["throughput"].feasible
    assert 0 < ranked.height < free.height
    assert (ranked["latency_ms"] <= limit).all() and (ranked["throughput_samples_s"] >= floor).all()
    assert ranked["throughput_samples_s"].is_sorted(descending=True)


def test_nobody_meets_the_constraints_names_the_nearest_miss(predictor, results, failures, hardware):
    advice = _advise(BERT, predictor, results, failures, hardware, constraints=Constraints(max_latency_ms=1e-3,
                                                                                            memory_gb=0.01))
    ranking = advice.rankings["latency"]
    assert ranking.pick is None and ranking.feasible.height == 0
    assert set(ranking.nearest_miss["violations"]) == {"max_latency_ms", "memory"}


def test_budget_and_cost_use_only_priced_targets(predictor, results, failures, hardware, tmp_path):
    prices_file = tmp_path / "prices.yaml"
    prices_file.write_text("currency: EUR\nprices:\n  cpu-torch:\n    per_hour: 0.5\n"
                           "    source: test input, not a real price\n"
                           "  cpu-*:\n    per_hour: null\n    source: unset\n")
    prices = load_prices(prices_file)
    advice = _advise(BERT, predictor, results, failures, hardware, prices=prices, objectives=("cost", "latency"),
                     constraints=Constraints(budget_per_hour=1.0))
    for objective in ("cost", "latency"):
        assert set(advice.rankings[objective].feasible["target"]) == {"cpu-torch"}
    cost = advice.rankings["cost"].feasible
    expected = 0.5 / (cost["throughput_samples_s"] * 3600) * 1e6
    assert (cost["cost_per_million"] - expected).abs().max() < 1e-9 and cost["cost_per_million"].is_sorted()


def test_memory_analysis_finds_the_largest_batch_that_fits(predictor, results, failures, hardware):
    advice = _advise(BERT, predictor, results, failures, hardware, constraints=Constraints(memory_gb=64))
    memory = advice.memory
    assert set(memory["target"]) == set(hardware["target"])
    assert memory["fits_at_batch_1"].all() and (memory["max_batch_that_fits"] >= 1).all()
    tight = _advise(BERT, predictor, results, failures, hardware, constraints=Constraints(memory_gb=0.05)).memory
    assert not tight["fits_at_batch_1"].any() and tight["max_batch_that_fits"].is_null().all()


def test_configurations_known_to_fail_are_never_candidates(predictor, results, failures, hardware):
    failed = failures.filter(pl.col("failure_class") == "export_error").row(0, named=True)
    spec = ModelSpec(failed["family"], failed["preset"])
    # the export failed at one shape; every other shape on that target fails the same way
    other_seq = failed["seq_len"] // 2
    advice = _advise(spec, predictor, results, failures, hardware, batches=(failed["batch_size"], 4), seq=other_seq)
    ranked = advice.rankings["latency"].feasible
    assert ranked.height and failed["target"] not in set(ranked["target"])
    assert any(line.startswith(failed["target"]) and "export_error" in line for line in advice.excluded)


def test_unmeasured_space_leaves_out_measured_and_known_failures(measurements, hardware, results, failures):
    from hwbench_pipeline.bench.profiles import load_profile
    from hwbench_pipeline.predict.space import profile_space, unmeasured

    profile = load_profile("quick")  # bert, llama, vit, whisper, clip, xclip small; batch 1 and 8; seq 128
    space = profile_space(profile, hardware).with_columns(threads=pl.lit(1, pl.Int64))
    todo, n_measured, n_failed = unmeasured(space, results, failures)
    keys = ["family", "preset", "target", "batch_size", "seq_len", "precision", "threads"]
    assert n_measured == space.join(results.select(keys), on=keys, how="semi").height > 0
    assert todo.join(results.select(keys), on=keys, how="semi").height == 0
    assert todo.height + n_measured + n_failed == space.height
    assert set(todo["batch_size"]) == {8}  # the fixture measured every batch-1 configuration of this profile


def test_a_training_row_or_failure_does_not_answer_an_inference_configuration(hardware, results):
    from hwbench_pipeline.bench.profiles import load_profile
    from hwbench_pipeline.predict.space import profile_space, unmeasured

    space = profile_space(load_profile("quick"), hardware).with_columns(threads=pl.lit(1, pl.Int64))
    none = results.head(0)
    # the measured rows, once as results, once as export failures (which hold for every shape of their model)
    export_failures = results.with_columns(failure_class=pl.lit("export_error"), scenario=pl.lit("inference"))
    assert unmeasured(space, results, none)[1] > 0 and unmeasured(space, none, export_failures)[2] > 0
    todo, n_measured, n_failed = unmeasured(space, results.with_columns(mode=pl.lit("training")),
                                            export_failures.with_columns(scenario=pl.lit("training")))
    assert (n_measured, n_failed) == (0, 0) and todo.height == space.height


@pytest.mark.parametrize("text, expected", [
    ("prices: [1, 2]", "expected a mapping"),
    ("prices:\n  cpu-torch:\n    per_hour: 1.2\n", "has a price but no 'source'"),
    ("prices:\n  cpu-torch:\n    per_hour: -1\n    source: x\n", "must be a non-negative number or null"),
    ("prices:\n  cpu-torch: 3\n", "needs 'per_hour'"),
    ("prices: {", "not valid YAML"),
])
def test_bad_price_files_say_what_is_wrong(tmp_path, text, expected):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceFileError, match=expected):
        load_prices(path)


def test_packaged_price_file_is_all_placeholders():
    from hwbench_pipeline.predict.prices import DEFAULT_PRICES

    prices = load_prices(DEFAULT_PRICES)
    assert prices.entries and all(price is None and "placeholder" in source for _, price, source in prices.entries)
    assert prices.per_hour("cpu-torch") is None and "placeholder" in prices.source("cuda0-torch")


def test_a_measured_figure_is_high_confidence_only_when_quiet_and_tight(results):
    from hwbench_pipeline.bench.trackers.stats import NOISY_HALFWIDTH
    from hwbench_pipeline.predict.recommender import measured_figures

    keys = ["target", "batch_size", "seq_len", "precision", "threads"]
    rows = results.filter((pl.col("family") == "bert") & (pl.col("preset") == "small")).with_columns(
        halfwidth=(pl.col("median_ci_high_ms") - pl.col("median_ci_low_ms")) / 2 / pl.col("p50_ms"))
    figures = measured_figures(results, BERT, "inference").join(rows, on=keys, how="left", validate="1:1")
    assert figures.height == rows.height
    for row in figures.iter_rows(named=True):
        if row["contaminated"]:
            assert row["confidence"] == "low"  # measured beside other work: never trusted as a clean figure
        else:
            assert row["confidence"] == ("high" if row["halfwidth"] <= NOISY_HALFWIDTH else "medium")
    assert {"high", "low"} <= set(figures["confidence"])  # the fixture's bert/small has quiet and busy rows


def test_a_configuration_measured_by_two_methods_is_one_candidate_the_newest(results):
    from datetime import timedelta

    from hwbench_pipeline.predict.recommender import measured_figures

    bert = results.filter((pl.col("family") == "bert") & (pl.col("preset") == "small"))
    # the same rows measured again later with the default attention (a configuration of its own in the warehouse)
    again = bert.with_columns(started_at=pl.col("started_at") + timedelta(days=1), p50_ms=pl.col("p50_ms") * 0.9,
                              attention=pl.lit("default"))
    both = pl.concat([bert.with_columns(attention=pl.lit("eager")), again], how="diagonal_relaxed")
    figures = measured_figures(both, BERT, "inference")
    assert figures.height == bert.height
    assert sorted(figures["latency_ms"].to_list()) == sorted(again["p50_ms"].to_list())


def test_an_accuracy_bound_keeps_only_precisions_whose_measured_drop_meets_it(predictor, results, failures, hardware):
    # The fixture's real fp32 rows of bert/small on cpu-torch, and beside them int8 rows of the same shapes whose
    # quality figures are set here: this tests the constraint, so the drop is an input, not a measurement.
    fp32 = results.filter((pl.col("family") == "bert") & (pl.col("preset") == "small") & (pl.col("seq_len") == 128)
                          & (pl.col("target") == "cpu-torch"))
    int8 = fp32.with_columns(precision=pl.lit("int8-dynamic"), precision_ran=pl.lit("int8"),
                             p50_ms=pl.col("p50_ms") / 2, accuracy_drop=pl.lit(0.02), mean_rel_diff=pl.lit(0.01))
    static = fp32.with_columns(precision=pl.lit("int8-static"), precision_ran=pl.lit("int8"),
                               p50_ms=pl.col("p50_ms") / 3)  # drop never measured
    rows = pl.concat([results, int8, static], how="diagonal_relaxed")
    targets = hardware.filter(pl.col("target") == "cpu-torch").with_columns(
        precisions=pl.lit("fp32,int8-dynamic,int8-static"))

    def advice(bound, precisions=None):
        return _advise(BERT, predictor, rows, failures, targets, batches=tuple(fp32["batch_size"].to_list()),
                       constraints=Constraints(max_accuracy_drop=bound), precisions=precisions)

    def feasible(bound) -> set[str]:
        return set(advice(bound).rankings["latency"].feasible["precision"])

    free = advice(None).rankings["latency"].feasible
    assert set(free["precision"]) == {"fp32", "int8-dynamic", "int8-static"}
    assert free["precision"][0] == "int8-static"  # the fastest, when quality is not asked about
    assert feasible(0.05) == {"fp32", "int8-dynamic"}  # a drop nobody measured cannot meet a bound
    assert feasible(0.01) == feasible(0.0) == {"fp32"}  # fp32 is the reference: its drop is 0
    row = recommendation_row(advice(0.05), "latency", "run")
    assert (row["precision"], row["quantization"], row["accuracy_drop"]) == ("int8", "dynamic", 0.02)
    miss = advice(0.01, precisions=("int8-dynamic", "int8-static")).rankings["latency"]
    assert miss.pick is None and miss.nearest_miss["precision"] == "int8-dynamic"
    assert "accuracy drop 2 points > 1" in describe_miss(miss.nearest_miss, Constraints(max_accuracy_drop=0.01))

    # an int8 request a runtime left in fp32 is not ranked under the int8 name
    rows = pl.concat([results, int8.with_columns(precision_ran=pl.lit("fp32")), static], how="diagonal_relaxed")
    left_in_fp32 = advice(None)
    assert set(left_in_fp32.rankings["latency"].feasible["precision"]) == {"fp32", "int8-static"}
    assert "cpu-torch int8-dynamic: measured, but it ran fp32" in left_in_fp32.excluded
