"""``hwbench plan``: which configurations to measure next, chosen to teach the predictor most for their cost.

    hwbench plan --budget 10 --targets cpu-torch                  # 10 configurations per target, the committee
    hwbench plan --budget 30m --targets cpu-torch --strategy uncertainty
    hwbench plan --budget 5 --targets cpu-torch --run             # measure them, store them, retrain, compare

The candidate space is the profile's ``planner:`` section (its own grid without one). A budget in machine time is
spent against each configuration's predicted wall time, learned from the stored runs (predict/wall_time.py).
With ``--run`` the picks are measured like any configuration (fresh processes, the host-wide lock), stored, the
predictor is retrained, and its held-out error before and after is printed (docs/planner.md).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from hwbench_pipeline.cli import UsageError, make_console
from hwbench_pipeline.paths import default_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    from hwbench_pipeline.predict.planner import STRATEGIES

    p = sub.add_parser("plan", help="choose the configurations to measure next (and, with --run, measure them)")
    p.add_argument("--budget", help="per target: a number of configurations (10) or machine time (90s, 30m, 2h); "
                                    "default: the profile's planner section, else 10")
    p.add_argument("--targets", help="comma-separated targets (default: every target with measured peaks)")
    p.add_argument("--strategy", choices=STRATEGIES, help="default: the profile's planner section, else committee")
    p.add_argument("--profile", default="quick", help="whose planner section is the candidate space")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", action="store_true", help="measure the plan, store it, retrain the predictor")
    p.add_argument("--data-dir", default=None, help="data directory (default: $HWBENCH_DATA_DIR or data/)")
    p.add_argument("--json", action="store_true", help="print the plan's rows as JSON")
    p.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from hwbench_pipeline.bench.profiles import ProfileError, load_profile
    from hwbench_pipeline.predict import data
    from hwbench_pipeline.predict.planner import PlanError, parse_budget
    from hwbench_pipeline.predict.planning import plan_round, plan_rows
    from hwbench_pipeline.predict.predictor import Predictor
    from hwbench_pipeline.predict.shapes import FlopCounter
    from hwbench_pipeline.warehouse.store import Warehouse

    try:
        if args.budget is not None:
            parse_budget(args.budget)
        profile = load_profile(args.profile)
    except (PlanError, ProfileError) as exc:
        raise UsageError(str(exc)) from exc
    data_dir = Path(args.data_dir or default_data_dir())
    warehouse = Warehouse(data_dir)
    inputs = data.load(warehouse)
    if not inputs.targets.height:
        raise UsageError(f"no hardware targets in {data_dir}: run `hwbench run` (or materialize hardware_targets) "
                         "first")
    known = sorted(set(inputs.targets["target"].to_list()))
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else known
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise UsageError(f"no measured peaks for {', '.join(unknown)} in {data_dir}; known: {', '.join(known)}")
    predictor_dir = data_dir / "predictor"
    predictor = Predictor.load(predictor_dir) if (predictor_dir / "latency_model.schema.json").exists() else None
    counter = FlopCounter.from_results(inputs.results, predictor_dir / "flops_cache.json")
    section = profile.planner_section()
    try:
        planned = plan_round(inputs, section, targets, profile.threads, predictor, counter, strategy=args.strategy,
                             budget=args.budget, seed=args.seed)
    except PlanError as exc:
        raise UsageError(str(exc)) from exc
    run_id = f"plan-{time.strftime('%Y%m%dT%H%M%S')}"
    rows = plan_rows(planned, run_id, predictor)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    else:
        print_plan(planned, predictor)
    if not planned.plans:
        return 1
    if rows:
        warehouse.write("benchmark_plans", rows, run_id=run_id)
    if args.run:
        return run_plan(planned, section, profile, warehouse, run_id, predictor)
    return 0


def print_plan(planned, predictor) -> None:
    console = make_console()
    held_out = (predictor.schema.get("evaluation") or {}).get("mape") if predictor else None
    console.print(f"strategy {planned.strategy}, budget {planned.budget.describe()} per target; candidate space "
                  f"{planned.n_space} configurations: {planned.n_measured} measured, {planned.n_known_to_fail} known "
                  "to fail")
    quality = "none saved (roofline only)" if predictor is None else f"held-out MAPE {_pct(held_out)}"
    console.print(f"predictor: {quality}; wall time: {planned.wall_model or 'no stored run records one'}")
    for target, why in planned.skipped.items():
        console.print(f"  {target}: no plan: {why}")
    for plan in planned.plans:
        console.print(f"\n{plan.target}: {plan.picks.height} of {plan.n_candidates} candidates"
                      + (f", about {plan.predicted_wall_s / 60:.1f} machine-min" if math.isfinite(plan.predicted_wall_s)
                         else ""))
        for pick in plan.picks.iter_rows(named=True):
            figure = ""
            if pick.get("predicted_ms") is not None:
                high = pick["predicted_high_ms"]
                figure = (f"{pick['predicted_ms']:.3g} ms [{pick['predicted_low_ms']:.3g}–"
                          f"{'∞' if not math.isfinite(high) else f'{high:.3g}'}] ({pick['prediction_source']})")
            wall = f"{pick['predicted_wall_s']:.0f} s" if pick.get("predicted_wall_s") is not None else ""
            console.print(f"  {pick['rank']:>3}. {pick['family']}/{pick['preset']} bs={pick['batch_size']} "
                          f"seq={pick['seq_len']} {pick['precision']}  {figure}  {wall}  {pick['expected_lesson']}",
                          highlight=False)


def run_plan(planned, section, profile, warehouse, run_id: str, before) -> int:
    """Measure the plan, store it, retrain the predictor, print its held-out error before and after."""
    import polars as pl

    from hwbench_pipeline.predict import data
    from hwbench_pipeline.predict.planning import measure_picks
    from hwbench_pipeline.predict.predictor import NotEnoughDataError, held_out_predictions, train

    picks = pl.concat([plan.picks for plan in planned.plans], how="diagonal_relaxed")
    measured = measure_picks(picks, section.space.stopping, warehouse, run_id, profile_name=profile.name,
                             timeout_s=profile.timeout_s, memory_limit_mb=profile.memory_limit_mb)
    ok = [r for r in measured.rows if r["status"] == "ok"]
    print(f"\nmeasured {len(ok)} of {len(measured.rows)} planned configurations; stored as run {run_id}")
    key = ["target", "family", "preset", "batch_size", "seq_len"]
    predicted = {tuple(p[k] for k in key): p.get("predicted_ms") for p in picks.iter_rows(named=True)}
    errors_before = []
    for row in ok:
        guess = predicted.get(tuple(row[k] for k in key))
        if guess:
            errors_before.append(abs(guess - row["p50_ms"]) / row["p50_ms"])
            print(f"  {row['target']} {row['family']}/{row['preset']} bs={row['batch_size']} seq={row['seq_len']}: "
                  f"measured {row['p50_ms']:.3g} ms, predicted {guess:.3g} ms ({errors_before[-1]:.0%} off)")
    fresh = data.load(warehouse)
    out_dir = Path(warehouse.data_dir) / "predictor"
    try:
        schema = train(fresh.results, fresh.models, fresh.targets, out_dir)
    except NotEnoughDataError as exc:
        print(f"predictor not retrained: {exc}")
        return 0
    old = (before.schema.get("evaluation") or {}).get("mape") if before else None
    new = (schema.get("evaluation") or {}).get("mape")
    print(f"predictor retrained on {schema['n_rows']} rows: leave-architecture-out MAPE {_pct(old)} before, "
          f"{_pct(new)} after")
    if errors_before:
        # the picks' own error: predicted before they were measured, and with their architecture held out after
        held_out = held_out_predictions(out_dir)
        mine = held_out.join(pl.DataFrame(ok).select(key).unique(), on=key, how="semi") \
            if held_out is not None else pl.DataFrame()
        after = float((abs(mine["value"] / mine["measured_p50_ms"] - 1)).mean()) if mine.height else None
        before_mape = sum(errors_before) / len(errors_before)
        print(f"on the {len(errors_before)} measured pick(s): MAPE {_pct(before_mape)} predicted before they were "
              f"measured, {_pct(after)} with their architecture held out after")
    return 0


def _pct(value) -> str:
    return "unknown" if value is None or value != value else f"{value:.1%}"
