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
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from hwbench_pipeline.cli import UsageError, make_console
from hwbench_pipeline.commands.argtypes import non_negative_int
from hwbench_pipeline.paths import default_data_dir

if TYPE_CHECKING:
    from hwbench_pipeline.bench.profiles import PlannerProfile, Profile
    from hwbench_pipeline.predict.planning import Round
    from hwbench_pipeline.predict.predictor import Predictor
    from hwbench_pipeline.warehouse.store import Warehouse


def register(sub: argparse._SubParsersAction) -> None:
    from hwbench_pipeline.predict.planner import STRATEGIES

    p = sub.add_parser("plan", help="choose the configurations to measure next (and, with --run, measure them)")
    p.add_argument("--budget", help="per target: a number of configurations (10) or machine time (90s, 30m, 2h); "
                                    "default: the profile's planner section, else 10")
    p.add_argument("--targets", help="comma-separated targets (default: every target with measured peaks)")
    p.add_argument("--strategy", choices=STRATEGIES, help="default: the profile's planner section, else committee")
    p.add_argument("--profile", default="quick", help="whose planner section is the candidate space")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="the committee's bootstrap samples and the random baseline's order")
    p.add_argument("--run", action="store_true", help="measure the plan, store it, retrain the predictor")
    p.add_argument("--data-dir", default=None, help="data directory (default: $HWBENCH_DATA_DIR or data/)")
    p.add_argument("--json", action="store_true", help="print the plan's rows as JSON")
    p.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from hwbench_pipeline.bench.profiles import ProfileError, load_profile
    from hwbench_pipeline.predict import data
    from hwbench_pipeline.predict.planner import PlanError, parse_budget
    from hwbench_pipeline.predict.planning import plan_round, plan_rows, saved_predictor, targets_here
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
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else targets_here(known)
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise UsageError(f"no measured peaks for {', '.join(unknown)} in {data_dir}; known: {', '.join(known)}")
    if not targets:
        raise UsageError(f"none of the targets with measured peaks in {data_dir} ({', '.join(known)}) is on this "
                         "host: name them with --targets to plan for another host")
    predictor_dir = data_dir / "predictor"
    predictor, predictor_line = saved_predictor(predictor_dir)
    counter = FlopCounter.from_results(inputs.results, predictor_dir / "flops_cache.json")
    section = profile.planner_section()
    try:
        planned = plan_round(inputs, section, targets, profile.threads, predictor, counter, strategy=args.strategy,
                             budget=args.budget, seed=args.seed)
    except PlanError as exc:
        raise UsageError(str(exc)) from exc
    if not planned.plans:
        raise UsageError("nothing to plan: " + "; ".join(f"{t}: {why}" for t, why in planned.skipped.items()))
    run_id = f"plan-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    rows = plan_rows(planned, run_id, predictor)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    else:
        print_plan(planned, predictor_line)
    warehouse.write("benchmark_plans", rows, run_id=run_id)
    if args.run:
        return run_plan(rows, section, profile, warehouse, run_id, predictor)
    return 0


def print_plan(planned: Round, predictor_line: str) -> None:
    console = make_console()
    console.print(f"strategy {planned.strategy}, budget {planned.budget.describe()} per target; candidate space "
                  f"{planned.n_space} configurations: {planned.n_measured} measured, {planned.n_known_to_fail} known "
                  "to fail")
    console.print(f"predictor: {predictor_line}; wall time: {planned.wall_model or 'no stored run records one'}")
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


def run_plan(rows: list[dict], section: PlannerProfile, profile: Profile, warehouse: Warehouse, run_id: str,
             before: Predictor | None) -> int:
    """Measure the plan, store it, retrain the predictor, print its held-out error before and after."""
    import polars as pl

    from hwbench_pipeline.predict import data
    from hwbench_pipeline.predict.planning import held_out_mape, measure_picks, measured_since, pick_key
    from hwbench_pipeline.predict.predictor import NotEnoughDataError, held_out_predictions, train

    picks = pl.DataFrame(rows, infer_schema_length=None)
    measured = measure_picks(picks, section.space.stopping, warehouse, run_id, profile_name=profile.name,
                             timeout_s=profile.timeout_s, memory_limit_mb=profile.memory_limit_mb)
    ok = [r for r in measured.rows if r["status"] == "ok"]
    print(f"\nmeasured {len(ok)} of {len(measured.rows)} planned configurations; stored as run {run_id}")
    found = measured_since(picks, pl.DataFrame(measured.rows, infer_schema_length=None)).filter(
        pl.col("measured_p50_ms").is_not_null() & pl.col("predicted_ms").is_not_null())
    errors_before = (found["predicted_ms"] / found["measured_p50_ms"] - 1).abs().to_list()
    for pick, error in zip(found.iter_rows(named=True), errors_before, strict=True):
        print(f"  {pick['target']} {pick['family']}/{pick['preset']} bs={pick['batch_size']} seq={pick['seq_len']} "
              f"{pick['precision']}: measured {pick['measured_p50_ms']:.3g} ms, predicted {pick['predicted_ms']:.3g} "
              f"ms ({error:.0%} off)")
    fresh = data.load(warehouse)
    out_dir = Path(warehouse.data_dir) / "predictor"
    try:
        schema = train(fresh.results, fresh.models, fresh.targets, out_dir)
    except NotEnoughDataError as exc:
        print(f"predictor not retrained: {exc}")
        return 0
    old = held_out_mape(before.schema if before is not None else None)
    print(f"predictor retrained on {schema['n_rows']} rows: leave-architecture-out MAPE {_pct(old)} before, "
          f"{_pct(held_out_mape(schema))} after")
    if errors_before:
        # the picks' own error: predicted before they were measured, and with their architecture held out after
        held_out = held_out_predictions(out_dir)
        keys = {pick_key(p) for p in found.iter_rows(named=True)}
        after = [abs(r["value"] / r["measured_p50_ms"] - 1) for r in held_out.iter_rows(named=True)
                 if r["mode"] == "inference" and pick_key(r) in keys] if held_out is not None else []
        print(f"on the {len(errors_before)} measured pick(s): MAPE {_pct(sum(errors_before) / len(errors_before))} "
              f"predicted before they were measured, {_pct(sum(after) / len(after) if after else None)} with their "
              "architecture held out after")
    return 0


def _pct(value) -> str:
    return "unknown" if value is None or value != value else f"{value:.1%}"
