"""How fast each planner strategy teaches the predictor, on a pool of real measurements (docs/planner.md).

    .venv/bin/python benchmarks/planner_eval.py                     # 10 seeds, 20 configurations a round and the
                                                                    # same machine time a round, every strategy
    .venv/bin/python benchmarks/planner_eval.py --seeds 2 --strategies committee,random --per-round 10

The pool is tests/predict/fixtures/planner_pool.parquet: coverage probes of the 80 architectures (of 100 drawn)
that ran, at two presets, two batches and up to two sequences, each with its wall time (its README says how it was
measured). Per seed, a quarter of its architectures is held out. Every strategy starts from the same 10 random
rows of the rest and picks a round at a time (20 configurations, or their machine time); the predictor is
retrained and scored on the held-out architectures. Prints the learning curves averaged over seeds (held-out MAPE
and share within ±10 % against configurations measured and machine time), the full grid's error, where each
strategy reaches it and at how many budgets it is below random; saves the curves for the comparison report
(data/planner/learning_curves.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwbench_pipeline.paths import default_data_dir  # noqa: E402
from hwbench_pipeline.predict.planner import STRATEGIES, PlanError, parse_budget  # noqa: E402
from hwbench_pipeline.predict.pool_eval import (  # noqa: E402
    LEARNING_CURVES_FILE,
    curves_json,
    full_grid,
    learning_curve,
    load_pool,
    split,
    versus_random,
)

FIXTURES = REPO / "tests" / "predict" / "fixtures"
PER_ROUND = 20  # configurations a round: about 4.5 % of the pool the strategies pick from


def one_curve(args: tuple) -> dict:
    pool_path, hardware_path, strategy, seed, per_round = args
    from dataclasses import asdict

    data = split(load_pool(pool_path, hardware_path), seed)
    t0 = time.monotonic()
    curve = learning_curve(data, strategy, parse_budget(per_round), seed=seed)
    return {**asdict(curve), "compute_s": time.monotonic() - t0}


def print_curves(averaged: dict, pool_size: int, grid_mape: float, grid_within: float) -> None:
    for per_round, by_strategy in averaged.items():
        strategies = [s for s in STRATEGIES if s in by_strategy]
        print(f"\nlearning curves, {per_round} a round (mean over seeds); full grid: MAPE {grid_mape:.1%}, "
              f"±10 % {grid_within:.0%}")
        print(f"{'round':>5} " + "".join(f"{s:>30}" for s in strategies))
        print(f"{'':>5} " + "".join(f"{'n  machine-min  MAPE  ±10%':>30}" for _ in strategies))
        for i in range(max(len(v) for v in by_strategy.values())):
            cells = []
            for s in strategies:
                points = by_strategy[s]
                if i < len(points):
                    p = points[i]
                    cells.append(f"{p['n_measured']:5.0f} {p['machine_s'] / 60:8.2f} {p['mape']:8.1%} "
                                 f"{p['within_10pct']:5.0%}".rjust(30))
                else:
                    cells.append(" " * 30)
            print(f"{i:>5} " + "".join(cells))
        print(f"\nsummary, {per_round} a round: pool of {pool_size} configurations (train part, mean over seeds)")
        random_points = by_strategy.get("random", [])
        for s in strategies:
            points = by_strategy[s]
            reach = next((p for p in points if p["mape"] <= grid_mape), None)
            third = min(points, key=lambda p: abs(p["n_measured"] - pool_size / 3))
            reached = (f"reaches the full grid's MAPE at {reach['n_measured']:.0f} configurations "
                       f"({reach['n_measured'] / pool_size:.0%} of the pool, {reach['machine_s'] / 60:.1f} machine-min)"
                       if reach else "never reaches the full grid's MAPE before the pool is spent")
            line = f"  {s:12} {reached}; at a third of the pool ({third['n_measured']:.0f}): MAPE {third['mape']:.1%}"
            if s != "random" and random_points:
                inner = range(1, min(len(points), len(random_points)) - 1)  # the first and last rounds are shared
                wins = sum(points[i]["mape"] < random_points[i]["mape"] for i in inner)
                line += f"; below random's MAPE at {wins} of {len(inner)} budgets"
            print(line)


def report(saved: dict) -> None:
    grid = saved["full_grid_mean"]
    print(f"{saved['meta']['command']} ({saved['meta']['created_at']}); full grid per seed: "
          + ", ".join(f"{v['mape']:.1%}" for v in saved["full_grid"].values()))
    print_curves(saved["averaged"], saved["meta"]["train_rows_mean"], grid["mape"], grid["within_10pct"])
    for per_round in saved["averaged"]:
        print(f"\nagainst random, {per_round} a round: per seed, the MAPE difference in points averaged over every "
              "budget (below zero: better than random)")
        for strategy, gaps in versus_random(saved["curves"], per_round).items():
            print(f"  {strategy:12} " + "  ".join(f"{100 * g:+5.1f}" for g in gaps)
                  + f"   better in {sum(g < 0 for g in gaps)} of {len(gaps)} seeds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(FIXTURES / "planner_pool.parquet"))
    parser.add_argument("--hardware", default=str(FIXTURES / "planner_pool_hardware.json"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--per-round", action="append",
                        help="configurations (20) or machine time (40s) a round; repeat for several; default: 20 "
                             "configurations, and 20 times the pool's median wall time")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(default_data_dir() / LEARNING_CURVES_FILE))
    parser.add_argument("--report-only", action="store_true", help="print the figures of the saved curves (--out)")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(Path(args.out).read_text())
        report(saved)
        return 0
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    pool = load_pool(args.pool, args.hardware)
    per_round = args.per_round or [str(PER_ROUND), f"{PER_ROUND * float(pool['wall_s'].median()):.0f}s"]
    for text in per_round:
        try:
            parse_budget(text)
        except PlanError as exc:
            parser.error(f"--per-round: {exc}")
    grids = {seed: full_grid(split(pool, seed)) for seed in range(args.seeds)}
    train_size = round(sum(split(pool, s).train.height for s in range(args.seeds)) / args.seeds)
    print(f"pool: {pool.height} timed configurations of {pool['architecture'].n_unique()} architectures, "
          f"{pool['wall_s'].sum() / 60:.1f} machine-min; {args.seeds} seeds; per round {per_round}")
    tasks = [(args.pool, args.hardware, s, seed, r) for r in per_round for s in strategies
             for seed in range(args.seeds)]
    t0 = time.monotonic()
    # spawned, not forked: polars' thread pool does not survive a fork (the workers would hang)
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as executor:
        futures = [executor.submit(one_curve, task) for task in tasks]
        for done, future in enumerate(as_completed(futures), 1):
            r = future.result()
            print(f"[{done}/{len(tasks)}] {r['strategy']} seed {r['seed']}, {r['per_round']} a round: "
                  f"{len(r['points'])} points in {r['compute_s']:.0f} s", flush=True)
        results = [f.result() for f in futures]
    print(f"{len(tasks)} learning curves in {(time.monotonic() - t0) / 60:.1f} min")
    from hwbench_pipeline.predict.pool_eval import Curve, CurvePoint

    curves = [Curve(r["strategy"], r["seed"], r["per_round"], [CurvePoint(**p) for p in r["points"]])
              for r in results]
    saved = curves_json(curves, grids, {
        "command": "benchmarks/planner_eval.py " + " ".join(sys.argv[1:]), "pool": Path(args.pool).name,
        "pool_rows": pool.height, "train_rows_mean": train_size, "seeds": args.seeds, "per_round": per_round,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    report(saved)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.tmp")  # the report never reads a file cut short
    partial.write_text(json.dumps(saved, indent=1))
    partial.replace(out)
    print(f"\nsaved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
