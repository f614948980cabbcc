"""The benchmark planner: budgets, strategies, diversity within a batch, the wall-time model and the pool-based
evaluation, on the committed pool of real probes (tests/predict/fixtures/README.md, "The planner's pool")."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from fixture_data import FIXTURES

from hwbench_pipeline.bench.profiles import ProfileError, load_profile
from hwbench_pipeline.predict.planner import (
    PLAN_KEY,
    Budget,
    PlanError,
    Scored,
    committee_log_ms,
    decision_value,
    parse_budget,
    plan_target,
    score,
    select,
)
from hwbench_pipeline.predict.planning import measured_since
from hwbench_pipeline.predict.pool_eval import average_curves, learning_curve, load_pool, split
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.wall_time import NoWallTimesError, WallTimeModel


@pytest.fixture(scope="module")
def pool() -> pl.DataFrame:
    return load_pool(FIXTURES / "planner_pool.parquet", FIXTURES / "planner_pool_hardware.json")


@pytest.fixture(scope="module")
def halves(pool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(measured, candidates): the tiny preset's rows of half the architectures, and every other row."""
    names = sorted(pool["architecture"].unique().to_list())[::2]
    seen = pl.col("architecture").is_in(names) & (pl.col("preset") == "tiny")
    return pool.filter(seen), pool.filter(~seen)


def test_a_budget_is_machine_time_with_a_unit_and_configurations_without_one():
    assert parse_budget("30m") == Budget(machine_s=1800.0)
    assert parse_budget("2h").machine_s == 7200.0
    assert parse_budget("90s").machine_s == 90.0
    assert parse_budget("12") == Budget(configurations=12)
    for bad in ("ten minutes", "0", "-5m", "30 parsecs", ""):
        with pytest.raises(PlanError, match="budget"):
            parse_budget(bad)


def _frame(architectures: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"architecture": architectures})


def test_a_batch_of_picks_spreads_over_architectures_instead_of_taking_one_models_sizes():
    candidates = _frame(["a", "a", "a", "a", "b", "c"])
    scored = Scored(np.array([1.0, 0.99, 0.98, 0.97, 0.6, 0.3]), [""] * 6)
    assert select(candidates, scored, Budget(configurations=3), None) == [0, 4, 1]
    assert select(candidates, scored, Budget(configurations=3), None, diverse=False) == [0, 1, 2]


def test_a_machine_time_budget_is_never_exceeded_and_skips_what_no_longer_fits():
    candidates = _frame(["a", "b", "c", "d"])
    scored = Scored(np.array([4.0, 3.0, 2.0, 1.0]), [""] * 4)
    wall = np.array([10.0, 50.0, 30.0, 5.0])
    picked = select(candidates, scored, Budget(machine_s=45.0), wall, cost_weighted=False)
    assert picked == [0, 2, 3]  # b (50 s) does not fit after a; c and d do
    assert wall[picked].sum() <= 45.0
    # per second, b is the worst buy: cost weighting ranks it last
    assert select(candidates, scored, Budget(machine_s=1e9), wall)[-1] == 1
    with pytest.raises(PlanError, match="wall-time model"):
        select(candidates, scored, Budget(machine_s=45.0), None)


def test_decision_value_is_highest_where_the_committee_splits_on_which_option_is_best():
    measured = pl.DataFrame({"family": ["m", "n"], "preset": ["tiny", "tiny"], "seq_len": [16, 16],
                             "mode": ["inference"] * 2, "batch_size": [1, 1], "p50_ms": [10.0, 10.0]})
    candidates = pl.DataFrame({"family": ["m", "n"], "preset": ["tiny", "tiny"], "seq_len": [16, 16],
                               "mode": ["inference"] * 2, "batch_size": [2, 2]})
    # m at batch 2: 15 or 25 ms, half the members each, so half of them find it the higher throughput (2/15 >
    # 1/10) and none the lower latency; n at batch 2: 12 ms in every member, so every member agrees on both picks
    committee = np.log(np.array([[15.0, 12.0], [25.0, 12.0], [15.0, 12.0], [25.0, 12.0]]))
    value = decision_value(measured, candidates, committee)
    assert value[0] == pytest.approx(0.5)
    assert value[1] == pytest.approx(0.0)


def test_the_committee_disagrees_more_about_architectures_it_never_measured(pool):
    # at one preset: the measured architectures' own rows against the rows of the others
    tiny = pool.filter(pl.col("preset") == "tiny")
    names = sorted(tiny["architecture"].unique().to_list())[::2]
    measured = tiny.filter(pl.col("architecture").is_in(names))
    unseen = tiny.filter(~pl.col("architecture").is_in(names))
    spread = committee_log_ms(measured, pl.concat([measured, unseen]), seed=0).std(axis=0)
    assert spread.shape == (measured.height + unseen.height,)
    assert np.median(spread[measured.height:]) > np.median(spread[:measured.height])


def test_a_rounds_decision_weighs_each_targets_options_against_the_other_targets(halves):
    measured, candidates = halves
    candidates = candidates.filter(pl.col("preset") == "tiny")
    # a second target whose roofline bound is a thousand times the first's: every member of the committee
    # answers it slower, so in one decision across both targets none of its options can change a pick
    slow = candidates.with_columns(target=pl.lit("cpu-slow"), roofline_ms=pl.col("roofline_ms") * 1000)
    both = pl.concat([candidates, slow])
    committee = committee_log_ms(measured, both)
    assert (committee[:, candidates.height:] > committee[:, :candidates.height]).all()
    scored_all = score("decision", measured, both, None)
    alone = plan_target("cpu-slow", measured, slow, None, "decision", Budget(configurations=5), None)
    joint = plan_target("cpu-slow", measured, both, None, "decision", Budget(configurations=5), None,
                        scored_all=scored_all)
    assert alone.picks["expected_lesson"].str.starts_with("could change").any()
    assert joint.picks["expected_lesson"].str.starts_with("no pick in sight").all()
    fast = plan_target("cpu-torch", measured, both, None, "decision", Budget(configurations=5), None,
                       scored_all=scored_all)
    assert fast.picks["expected_lesson"].str.starts_with("could change").any()
    with pytest.raises(ValueError, match="scored"):
        plan_target("cpu-torch", measured, both, None, "decision", Budget(configurations=5), None,
                    scored_all=score("decision", measured, candidates, None))


@pytest.fixture(scope="module")
def halves_predictor(halves) -> Predictor:
    return Predictor.fit(halves[0])


@pytest.mark.parametrize("strategy", ["uncertainty", "committee", "decision", "random", "grid"])
def test_every_strategy_plans_within_budget_and_says_what_each_pick_should_teach(halves, halves_predictor, strategy):
    measured, candidates = halves
    predictor = halves_predictor
    wall = WallTimeModel.fit(measured)
    plan = plan_target("cpu-torch", measured, candidates, predictor, strategy, Budget(configurations=6), wall)
    picks = plan.picks
    assert picks.height == 6 and picks["rank"].to_list() == [1, 2, 3, 4, 5, 6]
    assert picks["strategy"].unique().to_list() == [strategy]
    assert all(lesson for lesson in picks["expected_lesson"].to_list())
    assert picks["predicted_wall_s"].min() > 0 and picks["predicted_ms"].min() > 0
    assert picks.select(PLAN_KEY).is_unique().all()  # no configuration picked twice
    assert picks["architecture"].n_unique() >= 3  # diversity: not six shapes of one or two models


def test_the_grid_baseline_covers_every_model_at_the_first_shape_before_the_next_shape(pool):
    scored_plan = plan_target("cpu-torch", pool.head(0), pool, None, "grid", Budget(configurations=20), None)
    shapes = scored_plan.picks.select("batch_size", "seq_len").rows()
    assert shapes == sorted(shapes)
    assert scored_plan.picks.select("family", "preset").n_unique() == 20


def test_the_wall_time_model_learns_from_stored_runs_and_quotes_its_held_out_error(pool):
    model = WallTimeModel.fit(pool)
    predicted = model.predict(pool)
    assert model.held_out_mape is not None and 0 < model.held_out_mape < 1
    assert (predicted > 0).all()
    # it explains the pool's wall times better than one median for every run
    median = float(pool["wall_s"].median())
    actual = pool["wall_s"].to_numpy()
    assert np.mean(np.abs(predicted - actual) / actual) < np.mean(np.abs(median - actual) / actual)
    assert "held-out MAPE" in model.describe()
    with pytest.raises(NoWallTimesError, match="time on the machine"):
        WallTimeModel.fit(pool.drop("wall_s"))


def test_a_learning_curve_picks_only_from_the_pool_and_counts_the_machine_time_it_spent(pool):
    data = split(pool, seed=0)
    held_out = set(data.test["architecture"].to_list())
    assert held_out and not held_out & set(data.train["architecture"].to_list())
    curve = learning_curve(data, "committee", Budget(configurations=10), seed=0, rounds=2)
    assert [p.n_measured for p in curve.points] == [10, 20, 30]
    first = data.train.filter(pl.col("pool_index").is_in(data.initial))
    assert curve.points[0].machine_s == pytest.approx(float(first["wall_s"].sum()))
    assert all(math.isfinite(p.mape) and 0 <= p.within_10pct <= 1 for p in curve.points)
    # the same seed gives the same curve; averaging one curve returns it
    again = learning_curve(data, "committee", Budget(configurations=10), seed=0, rounds=2)
    assert [p.mape for p in again.points] == [p.mape for p in curve.points]
    averaged = average_curves([curve])["10 configurations"]["committee"]
    assert [p["mape"] for p in averaged] == [p.mape for p in curve.points]


def test_a_profile_planner_section_names_its_space_budget_and_strategy(tmp_path):
    base = "families: [bert]\npresets: [tiny]\nbatch_sizes: [1]\nseq_lens: [32]\nprecisions: [fp32]\n"
    good = tmp_path / "good.yaml"
    good.write_text(base + "planner:\n  families: ci-sample\n  batch_sizes: [1, 4]\n  budget: 20m\n"
                           "  strategy: decision\n")
    section = load_profile(str(good)).planner_section()
    assert "roberta" in section.space.families and len(section.space.families) > 20
    assert section.space.batch_sizes == (1, 4) and section.space.presets == ("tiny",)
    assert (section.budget, section.strategy) == ("20m", "decision")
    for bad, message in (("  budget: soon\n", "budget"), ("  strategy: psychic\n", "strategy"),
                         ("  colour: red\n", "keys among")):
        path = tmp_path / "bad.yaml"
        path.write_text(base + "planner:\n" + bad)
        with pytest.raises(ProfileError, match=message):
            load_profile(str(path))


def test_the_baselines_keep_their_own_order_under_a_machine_time_budget(halves):
    measured, candidates = halves
    wall = WallTimeModel.fit(measured)
    budget = Budget(machine_s=float(wall.predict(candidates).sum()) / 4)
    for strategy in ("random", "grid"):
        timed = plan_target("cpu-torch", measured, candidates, None, strategy, budget, wall).picks
        counted = plan_target("cpu-torch", measured, candidates, None, strategy,
                              Budget(configurations=candidates.height), wall).picks
        # the time budget cuts the same order short (skipping what no longer fits), it does not reorder it
        order = {key: i for i, key in enumerate(counted.select("family", "preset", "batch_size", "seq_len").rows())}
        ranks = [order[key] for key in timed.select("family", "preset", "batch_size", "seq_len").rows()]
        assert ranks == sorted(ranks) and timed["predicted_wall_s"].sum() <= budget.machine_s


def test_a_budget_below_every_wall_time_and_too_few_measured_rows_are_refused(halves):
    measured, candidates = halves
    wall = WallTimeModel.fit(measured)
    with pytest.raises(PlanError, match="less than the shortest predicted wall time"):
        plan_target("cpu-torch", measured, candidates, None, "committee", Budget(machine_s=0.01), wall)
    for few in (measured.head(0), measured.head(3)):
        with pytest.raises(PlanError, match="at least 4 measured rows"):
            plan_target("cpu-torch", few, candidates, None, "committee", Budget(configurations=2), None)


def test_a_score_or_wall_time_that_is_not_a_number_is_never_picked():
    candidates = _frame(["a", "b", "c", "d"])
    scored = Scored(np.array([np.nan, 2.0, np.inf, 1.0]), [""] * 4)
    assert select(candidates, scored, Budget(configurations=4), None) == [1, 3]
    wall = np.array([1.0, np.nan, 1.0, 1.0])
    finite = Scored(np.array([3.0, 2.0, 1.5, 1.0]), [""] * 4)
    assert select(candidates, finite, Budget(machine_s=10.0), wall) == [0, 2, 3]


def test_a_measurement_answers_a_pick_only_at_its_precision_recipe_and_threads_and_after_the_plan():
    planned = datetime(2026, 12, 7, 12, tzinfo=UTC)
    pick = {"run_id": "p", "target": "cpu-torch", "family": "bert", "preset": "tiny", "batch_size": 1, "seq_len": 32,
            "threads": 1, "planned_at": planned}
    plan = pl.DataFrame([{**pick, "rank": 1, "precision": "int8-static"}, {**pick, "rank": 2, "precision": "fp32"}])
    row = {k: v for k, v in pick.items() if k not in ("run_id", "planned_at")} | {"status": "ok"}
    later, earlier = planned + timedelta(minutes=5), planned - timedelta(minutes=5)
    rows = pl.DataFrame([  # as read back from inference_results: the format and the recipe apart
        {**row, "precision": "int8", "quantization": "static", "p50_ms": 2.0, "finished_at": later},
        {**row, "precision": "int8", "quantization": "dynamic", "p50_ms": 3.0, "finished_at": later},
        {**row, "precision": "fp32", "quantization": "none", "p50_ms": 4.0, "finished_at": earlier},
        {**row, "precision": "fp32", "quantization": "none", "threads": 2, "p50_ms": 5.0, "finished_at": later},
    ])
    found = measured_since(plan, rows)
    assert found["measured_p50_ms"].to_list() == [2.0, None]
    assert found["measured_status"].to_list() == ["ok", None]


def test_a_pick_on_a_target_nothing_was_measured_on_says_so(halves):
    measured, candidates = halves
    elsewhere = candidates.with_columns(target=pl.lit("cpu-openvino"))
    lessons = plan_target("cpu-openvino", measured, elsewhere, None, "committee", Budget(configurations=3),
                          None).picks["expected_lesson"].to_list()
    assert all(lesson.endswith("; the first rows of cpu-openvino") for lesson in lessons)
    here = plan_target("cpu-torch", measured, candidates, None, "committee", Budget(configurations=3), None)
    assert not any("first rows" in lesson for lesson in here.picks["expected_lesson"].to_list())
