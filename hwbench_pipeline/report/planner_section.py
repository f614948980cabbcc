"""The comparison report's benchmark-planner section: how fast each strategy teaches the predictor, and the newest
plan.

* Learning curves (``benchmarks/planner_eval.py`` saves them under the data dir, ``LEARNING_CURVES_FILE``): the
  held-out MAPE against configurations measured and against machine time, and the share within ±10 % against
  configurations measured, a line per strategy (mean over seeds) beside the full grid's error; one set of charts
  per round size. A table says where each strategy first reaches the full grid's MAPE and its MAPE at a third of
  the pool.
* The newest plan of the ``benchmark_plans`` table: each pick with its prediction and, where the configuration has
  been measured since the plan was made, the measured median and the prediction's error.

Without either the section still shows its title and says how to get them, so that users learn the planner exists.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import polars as pl

from hwbench_pipeline.predict.planner import INFORMED, STRATEGIES
from hwbench_pipeline.predict.planning import measured_since
from hwbench_pipeline.predict.pool_eval import LEARNING_CURVES_FILE
from hwbench_pipeline.report import charts
from hwbench_pipeline.report.charts import Series, XYChart
from hwbench_pipeline.report.comparison_sections import Section, Table
from hwbench_pipeline.report.text import number, slug

TITLE = "Benchmark planner"
EVAL_COMMAND = ".venv/bin/python benchmarks/planner_eval.py"
NO_CURVES = (f"No learning curves yet: {EVAL_COMMAND} measures how fast each planner strategy teaches the predictor "
             f"on a pool of real measurements and saves them as {LEARNING_CURVES_FILE} under the data dir.")
NO_PLAN = ("No plan yet: `hwbench plan --budget 10` (or the benchmark_plan asset) chooses the configurations "
           "to measure next and stores them in the benchmark_plans table.")
#: the meta field of the learning curves that holds the pool's size (its part the strategies pick from)
POOL_SIZE_FIELD = "train_rows_mean"
GRID_COLOR = "#444444"
SUMMARY_COLUMNS = ["per round", "strategy", "kind", "reaches the full grid's MAPE at (configurations)",
                   "share of the pool", "machine-min by then", "MAPE at 1/3 of the pool", "at (configurations)",
                   "last MAPE", "last (configurations)"]
PLAN_COLUMNS = ["target", "rank", "model", "batch", "seq", "precision", "strategy", "predicted ms", "interval ms",
                "source", "predicted wall s", "expected lesson", "measured p50 ms", "error %"]


def read_curves(data_dir: Path) -> dict | None:
    """The learning curves planner_eval saved under ``data_dir``, or None where there are none."""
    path = Path(data_dir) / LEARNING_CURVES_FILE
    if not path.is_file():
        return None
    try:
        curves = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc}); run {EVAL_COMMAND} again") from None
    missing = [k for k in ("full_grid_mean", "averaged") if k not in curves]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: not learning curves of {EVAL_COMMAND}")
    return curves


def strategy_order(names: list[str]) -> list[str]:
    """The planner's strategies in its own order, then any other name."""
    return [s for s in STRATEGIES if s in names] + sorted(set(names) - set(STRATEGIES))


def first_reach(points: list[dict], grid_mape: float) -> dict | None:
    """The first point whose mean MAPE is at or below the full grid's, or None."""
    return next((p for p in points if p["mape"] <= grid_mape), None)


def at_third(points: list[dict], pool_size: float | None) -> dict | None:
    """The point nearest a third of the pool, or None without a pool size or when the curve stops before it."""
    if not pool_size or not points or points[-1]["n_measured"] < pool_size / 3:
        return None
    return min(points, key=lambda p: abs(p["n_measured"] - pool_size / 3))


# ---- learning curves -----------------------------------------------------------------------------------------
def _curve_chart(key: str, title: str, x_label: str, y_label: str, by_strategy: dict[str, list[dict]],
                 x: str, y: str, grid_y: float, colors: dict[str, str]) -> XYChart:
    scale_x = (lambda v: v / 60) if x == "machine_s" else (lambda v: v)
    series = []
    for strategy in strategy_order(list(by_strategy)):
        points = by_strategy[strategy]
        hover = [f"{strategy}, round {p['round']} ({p['seeds']} seeds): {p['n_measured']:.0f} configurations, "
                 f"{p['machine_s'] / 60:.1f} machine-min<br>MAPE {p['mape']:.1%}, within ±10 % {p['within_10pct']:.0%}"
                 for p in points]
        series.append(Series(strategy, [scale_x(p[x]) for p in points], [100 * p[y] for p in points], hover=hover,
                             color=colors[strategy], dash=strategy not in INFORMED))
    xs = [v for s in series for v in s.x]
    if xs:
        series.append(Series(f"full grid ({100 * grid_y:.1f} %)", [min(xs), max(xs)], [100 * grid_y] * 2,
                             color=GRID_COLOR, dash=True, marker="none"))
    return XYChart(key, title, x_label, y_label, series)


def _summary_rows(label: str, by_strategy: dict[str, list[dict]], grid_mape: float,
                  pool_size: float | None) -> list[list[str]]:
    rows = []
    for strategy in strategy_order(list(by_strategy)):
        points = by_strategy[strategy]
        reach, third = first_reach(points, grid_mape), at_third(points, pool_size)
        share = reach["n_measured"] / pool_size if reach and pool_size else None
        rows.append([label, strategy, "informed" if strategy in INFORMED else "baseline",
                     f"{reach['n_measured']:.0f}" if reach else "not reached", number(share, ".0%"),
                     number(reach["machine_s"] / 60, ".1f") if reach else "n/a",
                     number(third["mape"], ".1%") if third else "n/a",
                     f"{third['n_measured']:.0f}" if third else "n/a",
                     number(points[-1]["mape"], ".1%"), f"{points[-1]['n_measured']:.0f}"])
    return rows


def _add_curves(section: Section, curves: dict) -> None:
    grid = curves["full_grid_mean"]
    meta = curves.get("meta") or {}
    pool_size = meta.get(POOL_SIZE_FIELD)
    colors = charts.palette(list(STRATEGIES) + [s for by in curves["averaged"].values() for s in by])
    summary = []
    for label, by_strategy in curves["averaged"].items():
        key = slug(label)
        section.charts += [
            _curve_chart(f"planner-mape-{key}", f"Held-out MAPE against configurations measured ({label} a round)",
                         "configurations measured", "held-out MAPE %", by_strategy, "n_measured", "mape",
                         grid["mape"], colors),
            _curve_chart(f"planner-mape-time-{key}", f"Held-out MAPE against machine time ({label} a round)",
                         "machine time of the measured configurations (min)", "held-out MAPE %", by_strategy,
                         "machine_s", "mape", grid["mape"], colors),
            _curve_chart(f"planner-within-{key}", f"Share within ±10 % against configurations measured ({label} a "
                         "round)", "configurations measured", "held-out predictions within ±10 % (%)", by_strategy,
                         "n_measured", "within_10pct", grid["within_10pct"], colors)]
        summary += _summary_rows(label, by_strategy, grid["mape"], pool_size)
    section.tables.append(Table(SUMMARY_COLUMNS, summary, [False, False, False, True, True, True, True, True, True,
                                                           True]))
    n = len(curves.get("full_grid") or {})
    seeds = f"{n} seed{'' if n == 1 else 's'}"
    section.notes.append(f"The full grid (a predictor trained on the whole pool, what every strategy ends at): "
                         f"held-out MAPE {grid['mape']:.1%}, within ±10 % {grid['within_10pct']:.0%} (mean over "
                         f"{seeds}). Informed strategies: {', '.join(curves.get('informed') or INFORMED)}; "
                         "dashed lines are the baselines.")
    pool = (f"a pool of {pool_size:.0f} configurations to pick from" if pool_size
            else "no pool size in the file's meta: shares of the pool are n/a")
    origin = f"Produced by {meta['command']}" if meta.get("command") else "Produced by benchmarks/planner_eval.py"
    when = f" at {meta['created_at']}" if meta.get("created_at") else ""
    section.notes.append(f"{origin}{when}: {pool}.")


# ---- the newest plan -----------------------------------------------------------------------------------------
def _plan_row(r: dict) -> list[str]:
    interval = (f"{number(r['predicted_low_ms'], '.3g')} – {number(r['predicted_high_ms'], '.3g')}"
                if r["predicted_low_ms"] is not None else "n/a")
    error = (abs(r["predicted_ms"] - r["measured_p50_ms"]) / r["measured_p50_ms"]
             if r["measured_p50_ms"] and r["predicted_ms"] is not None else None)
    return [r["target"], str(r["rank"]), f"{r['family']}/{r['preset']}", str(r["batch_size"]), str(r["seq_len"]),
            r["precision"], r["strategy"], number(r["predicted_ms"], ".3g"), interval, r["prediction_source"] or "n/a",
            number(r["predicted_wall_s"], ".1f"), r["expected_lesson"] or "",
            number(r["measured_p50_ms"], ".3g") if r["measured_p50_ms"] is not None else "not yet",
            number(100 * error, ".1f") if error is not None else "n/a"]


def _add_plan(section: Section, plans: pl.DataFrame, history: pl.DataFrame) -> None:
    newest = plans.sort("_written_at").row(-1, named=True)["run_id"] if "_written_at" in plans.columns \
        else plans["run_id"][0]
    plan = measured_since(plans.filter(pl.col("run_id") == newest), history).sort(["target", "rank"])
    section.tables.append(Table(PLAN_COLUMNS, [_plan_row(r) for r in plan.iter_rows(named=True)],
                                [False, True, False, True, True, False, False, True, False, False, True, False, True,
                                 True]))
    first = plan.row(0, named=True)
    planned_at = first["planned_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if first["planned_at"] else "n/a"
    done = plan.filter(pl.col("measured_p50_ms").is_not_null() & pl.col("predicted_ms").is_not_null())
    text = (f"The newest plan, {newest}, made {planned_at}: {plan.height} picks on "
            f"{', '.join(sorted(set(plan['target'])))} by the {', '.join(sorted(set(plan['strategy'])))} strategy, "
            f"budget {', '.join(sorted(set(plan['budget'].drop_nulls())))} per target")
    if first.get("predictor_held_out_mape") is not None:
        text += f"; the predictor's held-out MAPE then: {first['predictor_held_out_mape']:.1%}"
    if done.height:
        errors = (done["predicted_ms"] - done["measured_p50_ms"]).abs() / done["measured_p50_ms"]
        text += (f". {done.height} of the picks have been measured since: the prediction was off by "
                 f"{errors.mean():.1%} on average (|predicted − measured| ÷ measured)")
    else:
        text += ". None of the picks has been measured since"
    section.notes.append(text + ".")


def planner_section(curves: dict | None, plans: pl.DataFrame, history: pl.DataFrame) -> Section:
    """The section from the saved learning curves (``read_curves``; None without them), the ``benchmark_plans``
    rows of the newest plan (any rows: the newest run by ``_written_at`` is shown) and the successful inference
    rows (``ReportData.history``)."""
    section = Section("planner", TITLE,
                      "The planner (hwbench_pipeline/predict/planner.py) picks the configurations to "
                      "measure next: those that should teach the latency predictor most for the machine time they "
                      "cost. Its strategies were compared on a pool of real measurements: each starts from the same "
                      "random rows and picks a round at a time; the predictor, retrained on what was picked, is "
                      "scored on architectures held out of the pool (MAPE of the median latency, and the share of "
                      "predictions within ±10 %), against configurations measured and the machine time they took "
                      "(means over seeds). Below them, the newest plan and how its picks measured.")
    if curves is None and plans.is_empty():
        section.empty = f"{NO_CURVES} {NO_PLAN}"
        return section
    if curves is None:
        section.notes.append(NO_CURVES)
    else:
        _add_curves(section, curves)
    if plans.is_empty():
        section.notes.append(NO_PLAN)
    else:
        _add_plan(section, plans, history)
    return section
