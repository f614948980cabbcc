"""The comparison report's benchmark-planner section, from real inputs: learning curves made by the pool evaluation
(hwbench_pipeline.predict.pool_eval) on a slice of the committed pool of real measurements (tiny presets of 16
architectures, 2 strategies, 1 seed, 2 rounds of 10 configurations), and two real plans of the planner over the
slice's held-out architectures, the newer one's first pick measured for real after it was made and its second pick
measured just before."""

import html
import json
from pathlib import Path

import polars as pl
import pytest
import report_pages

from hwbench_pipeline.bench.scenarios.inference.config import InferenceConfig
from hwbench_pipeline.bench.scenarios.inference.measure import measure_inference
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.predict.planner import Budget, plan_target
from hwbench_pipeline.predict.planning import Round, plan_rows
from hwbench_pipeline.predict.pool_eval import (
    LEARNING_CURVES_FILE,
    Split,
    curves_json,
    full_grid,
    learning_curve,
    load_pool,
    split,
)
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.wall_time import WallTimeModel
from hwbench_pipeline.report.comparison import render_comparison_report
from hwbench_pipeline.report.comparison_sections import load_report_data
from hwbench_pipeline.report.planner_section import (
    EVAL_COMMAND,
    NO_CURVES,
    NO_PLAN,
    PLAN_COLUMNS,
    SUMMARY_COLUMNS,
    TITLE,
    at_third,
    first_reach,
    planner_section,
    read_curves,
)
from hwbench_pipeline.warehouse.store import Warehouse

FIXTURES = Path(__file__).resolve().parents[1] / "predict" / "fixtures"
POOL, HARDWARE = FIXTURES / "planner_pool.parquet", FIXTURES / "planner_pool_hardware.json"
ARCHITECTURES = 16
STRATEGIES = ("committee", "random")
PER_ROUND = Budget(configurations=10)
COMMAND = "benchmarks/planner_eval.py --seeds 1 --strategies committee,random --per-round 10"
TARGET = "cpu-torch"
RULE = StoppingRule(ci_target=0.05, min_samples=10, max_seconds=0.2, warmup_min_calls=2, warmup_window=2,
                    warmup_max_seconds=0.1, processes=1, max_processes=1)


@pytest.fixture(scope="module")
def pool_split() -> Split:
    """The tiny presets of the pool's first architectures (the pool grows by its small presets: this slice stays)."""
    pool = load_pool(POOL, HARDWARE).filter(pl.col("preset") == "tiny")
    chosen = sorted(pool["architecture"].unique().to_list())[:ARCHITECTURES]
    return split(pool.filter(pl.col("architecture").is_in(chosen)), seed=0)


@pytest.fixture(scope="module")
def curves(pool_split) -> dict:
    """What benchmarks/planner_eval.py saves, for this slice."""
    found = [learning_curve(pool_split, s, PER_ROUND, seed=0, rounds=2) for s in STRATEGIES]
    meta = {"command": COMMAND, "pool": POOL.name, "train_rows_mean": pool_split.train.height, "seeds": 1,
            "per_round": ["10"]}
    return json.loads(json.dumps(curves_json(found, {0: full_grid(pool_split)}, meta)))


def _measure(pick: dict, run_id: str) -> dict:
    cfg = InferenceConfig(pick["family"], pick["preset"], pick["target"], pick["batch_size"], pick["seq_len"],
                          threads=pick["threads"], rule=RULE)
    row = measure_inference(cfg, run_id)
    assert row["status"] == "ok", row.get("message")
    return row


@pytest.fixture(scope="module")
def planned(pool_split, curves, tmp_path_factory) -> dict:
    """A data dir with the learning curves, two plans (random, then uncertainty) over the held-out tiny
    configurations, the newer plan's second pick measured before it was made and its first pick after; and the
    report rendered from it."""
    tmp = tmp_path_factory.mktemp("planner")
    warehouse = Warehouse(tmp / "data")
    (warehouse.data_dir / LEARNING_CURVES_FILE).parent.mkdir(parents=True)
    (warehouse.data_dir / LEARNING_CURVES_FILE).write_text(json.dumps(curves))
    train = pool_split.train
    predictor = Predictor.fit(train, calibrate_intervals=True, memory=False)  # the plan asks about latency only
    wall = WallTimeModel.fit(train)
    candidates = pool_split.test
    plans = {}
    for run_id, strategy, budget in (("plan-old", "random", Budget(configurations=2)),
                                     ("plan-new", "uncertainty", Budget(configurations=3))):
        plans[run_id] = plan_target(TARGET, train, candidates, predictor, strategy, budget, wall)
    newest = list(plans["plan-new"].picks.iter_rows(named=True))
    before = _measure(newest[1], "measured-before")  # finished before plan-new's rows say it was made
    for run_id, plan in plans.items():  # plan-old is written first: plan-new is the newest
        rows = plan_rows(Round([plan], plan.strategy, plan.budget, candidates.height, train.height, 0,
                               wall.describe(), {}), run_id, predictor)
        warehouse.write("benchmark_plans", rows, run_id=run_id)
    after = _measure(newest[0], "measured-after")
    for row in (before, after):
        warehouse.write("inference_results", [row], run_id=row["run_id"], partition=TARGET)
    report = render_comparison_report(warehouse, tmp / "report")
    return {"report": report, "picks": newest, "before": before, "after": after, "warehouse": warehouse}


def test_learning_curves_are_drawn_per_strategy_beside_the_full_grid(curves, planned):
    report = planned["report"]
    assert "planner" not in report.empty_sections
    label = PER_ROUND.describe()
    assert list(curves["averaged"]) == [label]
    figures = report_pages.figures(report.html.read_text())
    slug = "10-configurations"
    mape, by_time, within = (figures[f"planner-{kind}-{slug}"] for kind in ("mape", "mape-time", "within"))
    grid = curves["full_grid_mean"]
    for figure, x, y, scale in ((mape, "n_measured", "mape", 1), (by_time, "machine_s", "mape", 1 / 60),
                                (within, "n_measured", "within_10pct", 1)):
        traces = {t["name"]: t for t in figure["data"]}
        assert [n for n in traces if not n.startswith("full grid")] == list(STRATEGIES)
        for strategy in STRATEGIES:
            points = curves["averaged"][label][strategy]
            assert len(points) == 3  # the 10 rows every strategy starts from, and 2 rounds of 10
            assert traces[strategy]["x"] == pytest.approx([p[x] * scale for p in points])
            assert traces[strategy]["y"] == pytest.approx([100 * p[y] for p in points])
        reference = next(t for n, t in traces.items() if n.startswith("full grid"))
        assert reference["y"] == pytest.approx([100 * grid[y]] * 2)
    # each chart is drawn as a PNG for the Markdown and the PDF too
    md = report.markdown.read_text()
    assert f"## {TITLE}" in md
    for kind in ("mape", "mape-time", "within"):
        assert f"comparison_report_files/planner-{kind}-{slug}.png" in md
        assert (report.markdown.parent / "comparison_report_files" / f"planner-{kind}-{slug}.png").stat().st_size > 0


def test_summary_table_says_where_each_strategy_reaches_the_full_grid(curves, pool_split, planned):
    report = planned["report"]
    section = report_pages.section_html(report.html.read_text(), "planner")
    summary, plan = report_pages.tables(section)
    assert list(summary[0]) == SUMMARY_COLUMNS and list(plan[0]) == PLAN_COLUMNS
    rows = {r["strategy"]: r for r in summary}
    assert list(rows) == list(STRATEGIES)
    grid_mape, pool = curves["full_grid_mean"]["mape"], pool_split.train.height
    for strategy in STRATEGIES:
        points = curves["averaged"][PER_ROUND.describe()][strategy]
        reach = next((p["n_measured"] for p in points if p["mape"] <= grid_mape), None)
        row = rows[strategy]
        assert row["reaches the full grid's MAPE at (configurations)"] == (f"{reach:.0f}" if reach else "not reached")
        assert row["share of the pool"] == (f"{reach / pool:.0%}" if reach else "n/a")
        third = min(points, key=lambda p: abs(p["n_measured"] - pool / 3))
        assert points[-1]["n_measured"] >= pool / 3  # the slice is small enough for 2 rounds to pass a third
        assert (row["MAPE at 1/3 of the pool"], row["at (configurations)"]) == (
            f"{third['mape']:.1%}", f"{third['n_measured']:.0f}")
        assert row["kind"] == ("informed" if strategy == "committee" else "baseline")
    text = html.unescape(section)
    assert f"Produced by {COMMAND}" in text
    assert f"a pool of {pool} configurations to pick from" in text
    assert f"held-out MAPE {grid_mape:.1%}" in text
    assert NO_CURVES not in text


def test_the_newest_plan_shows_what_its_picks_measured_since(planned):
    report, picks, after = planned["report"], planned["picks"], planned["after"]
    _, plan = report_pages.tables(report_pages.section_html(report.html.read_text(), "planner"))
    # plan-new only (plan-old, by the random strategy, was written before it)
    assert [r["rank"] for r in plan] == [str(p["rank"]) for p in picks]
    assert {r["strategy"] for r in plan} == {"uncertainty"}
    first, second, third = plan
    assert first["model"] == f"{picks[0]['family']}/{picks[0]['preset']}"
    assert first["predicted ms"] == f"{picks[0]['predicted_ms']:.3g}"
    assert first["interval ms"] == f"{picks[0]['predicted_low_ms']:.3g} – {picks[0]['predicted_high_ms']:.3g}"
    assert first["predicted wall s"] == f"{picks[0]['predicted_wall_s']:.1f}"
    assert first["expected lesson"] == picks[0]["expected_lesson"]
    # the first pick was measured after the plan: its median and the prediction's error
    assert first["measured p50 ms"] == f"{after['p50_ms']:.3g}"
    error = abs(picks[0]["predicted_ms"] - after["p50_ms"]) / after["p50_ms"]
    assert first["error %"] == f"{100 * error:.1f}"
    # the second was measured before the plan was made (that measurement taught nothing the plan expects), the
    # third not at all
    assert (second["measured p50 ms"], second["error %"]) == ("not yet", "n/a")
    assert (third["measured p50 ms"], third["error %"]) == ("not yet", "n/a")
    page = html.unescape(report.html.read_text())
    assert "The newest plan, plan-new" in page and "1 of the picks have been measured since" in page
    assert f"off by {error:.1%} on average" in page
    assert "| uncertainty |" in report.markdown.read_text()


def test_without_learning_curves_or_a_plan_the_section_names_the_command(tmp_path):
    report = render_comparison_report(Warehouse(tmp_path / "data"), tmp_path / "out")
    assert "planner" in report.empty_sections
    page, md = html.unescape(report.html.read_text()), report.markdown.read_text()
    section = report_pages.section_html(page, "planner")
    assert NO_CURVES in section and NO_PLAN in section
    assert f"## {TITLE}" in md and EVAL_COMMAND in md and "planner-" not in md
    pdf = report_pages.pdf_text(report.pdf, first_page=0)
    assert TITLE in pdf and EVAL_COMMAND in pdf


def test_a_plan_without_learning_curves_is_shown_with_the_note(planned):
    warehouse = planned["warehouse"]
    data = load_report_data(warehouse, None)
    section = planner_section(None, data.plans, data.history)
    assert section.empty is None and not section.charts
    assert NO_CURVES in section.notes
    [plan] = section.tables
    assert len(plan.rows) == len(planned["picks"]) and plan.columns == PLAN_COLUMNS


def test_a_strategy_that_never_reaches_the_full_grid_or_a_third_of_the_pool_says_so(curves, pool_split):
    points = curves["averaged"][PER_ROUND.describe()]["committee"]
    best = min(p["mape"] for p in points)
    assert first_reach(points, best) == next(p for p in points if p["mape"] == best)
    assert first_reach(points, best - 1e-9) is None  # rendered "not reached"
    assert at_third(points, None) is None
    # a pool three times longer than the curve: a third of it lies beyond the last point
    assert at_third(points, 3 * points[-1]["n_measured"] + 1) is None
    assert at_third(points, pool_split.train.height)["n_measured"] in {p["n_measured"] for p in points}


def test_a_half_written_learning_curves_file_is_a_one_line_error(tmp_path):
    path = tmp_path / LEARNING_CURVES_FILE
    path.parent.mkdir(parents=True)
    path.write_text('{"meta": {')
    with pytest.raises(ValueError, match="not JSON"):
        read_curves(tmp_path)
    path.write_text('{"meta": {}}')
    with pytest.raises(ValueError, match="lacks full_grid_mean, averaged"):
        read_curves(tmp_path)
    assert read_curves(tmp_path / "elsewhere") is None
