"""Run-to-run stability, one measuring window against samples spread over processes, side by side.

One configuration is measured ``--runs`` times on each target in each mode, the modes alternating (A B A B …)
so that both see the same stretch of the host. Each run is independent: a new launcher, new processes, a new
export. ``window`` is one process sampling for ``--max-seconds`` (how hwbench measured before, and how
optimum-benchmark measures); ``spread`` is the default rule, 3 to 6 processes sharing the same time cap.
Prints each run's figure and wall time, then per target and mode the CV of the figures (target: ≤ 2 %, and
at most half the window's), the spread's CV over the window's, the median wall time to a settled result, and
how often a run's interval holds the median of all its mode's runs (what the interval is worth).

The host's own speed is timed before every run (a fixed matrix multiply at the same thread count, in this
process): its CV over the runs, and its correlation with the figures, show how much of the run-to-run spread
is the host drifting, which no measuring rule inside a run can remove.

    .venv/bin/python benchmarks/stability.py [--model bert --preset base --seq 128 --threads 2 --runs 5]
        [--targets cpu-torch,cpu-onnxruntime,cpu-openvino] [--max-seconds 10] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario
from hwbench_pipeline.bench.trackers.stats import StoppingRule

MODES = {
    "window": {"processes": 1, "max_processes": 1},
    "spread": {"processes": 3, "max_processes": 6},
}


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values) if len(values) >= 2 else float("nan")


def host_speed_ms(threads: int, seconds: float = 1.0, size: int = 768) -> float:
    """Median time of a fixed fp32 matrix multiply at ``threads`` threads over ``seconds``: the host's pace now."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ b
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--targets", default="cpu-torch,cpu-onnxruntime,cpu-openvino")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--dispatch", choices=["process", "ray"], default="process")
    parser.add_argument("--json", type=Path, help="write every run's row here")
    args = parser.parse_args()

    targets = [t for t in args.targets.split(",") if t]
    figures: dict[tuple[str, str], list[float]] = {}
    intervals: dict[tuple[str, str], list[tuple[float, float]]] = {}
    host: dict[tuple[str, str], list[float]] = {}
    walls: dict[tuple[str, str], list[float]] = {}
    kept: list[dict] = []
    for run in range(1, args.runs + 1):
        for target in targets:
            for mode, counts in MODES.items():
                rule = StoppingRule(ci_target=0.01, max_seconds=args.max_seconds, **counts)
                config = InferenceConfig(args.model, args.preset, target, args.batch, args.seq, threads=args.threads,
                                         rule=rule)
                pace = host_speed_ms(args.threads)
                t0 = time.perf_counter()
                [row] = run_configurations(InferenceScenario(), [config], f"stability-{mode}-{run}",
                                           dispatch=args.dispatch, log=lambda _: None)
                wall = time.perf_counter() - t0
                if row["status"] != "ok":
                    print(f"run {run} {target} {mode}: failed {row['failure_class']}: "
                          f"{row['message'].splitlines()[0]}")
                    continue
                figures.setdefault((target, mode), []).append(row["p50_ms"])
                intervals.setdefault((target, mode), []).append((row["median_ci_low_ms"], row["median_ci_high_ms"]))
                host.setdefault((target, mode), []).append(pace)
                walls.setdefault((target, mode), []).append(wall)
                kept.append({**row, "stability_mode": mode, "wall_s": wall, "host_gemm_ms": pace})
                print(f"run {run} {target:16s} {mode:6s}: p50 {row['p50_ms']:8.3f} ms "
                      f"±{100 * row['ci_rel_halfwidth']:5.2f} % {row['stop_reason']:11s} "
                      f"processes {row.get('processes')} (disturbed {row.get('processes_disturbed')}) "
                      f"{row['n_samples']:5d} samples, wall {wall:5.1f} s, host GEMM {pace:6.2f} ms, "
                      f"busy machine: {row['contaminated']}",
                      flush=True)
    print()
    print(f"{args.model}/{args.preset} batch {args.batch} seq {args.seq}, {args.threads} threads, "
          f"{args.runs} runs per mode, time cap {args.max_seconds:g} s")
    print(f"{'target':16s} {'window CV':>10s} {'spread CV':>10s} {'ratio':>6s} {'window wall':>12s} "
          f"{'spread wall':>12s} {'ratio':>6s}")
    for target in targets:
        window, spread = figures.get((target, "window"), []), figures.get((target, "spread"), [])
        w_wall, s_wall = walls.get((target, "window"), []), walls.get((target, "spread"), [])
        if not window or not spread:
            print(f"{target:16s} (missing runs)")
            continue
        cv_w, cv_s = _cv(window), _cv(spread)
        print(f"{target:16s} {100 * cv_w:9.2f}% {100 * cv_s:9.2f}% {cv_s / cv_w:6.2f} "
              f"{statistics.median(w_wall):11.1f}s {statistics.median(s_wall):11.1f}s "
              f"{statistics.median(s_wall) / statistics.median(w_wall):6.2f}")
    print("target: spread CV ≤ 2 % and at most half the window's (ratio ≤ 0.5)")
    print()
    print(f"{'target':16s} {'mode':6s} {'interval holds the runs median':>31s} {'host GEMM CV':>13s} "
          f"{'r(figure, host)':>16s}")
    for (target, mode), values in figures.items():
        center = statistics.median(values)
        held = sum(lo <= center <= hi for lo, hi in intervals[(target, mode)])
        pace = host[(target, mode)]
        r = statistics.correlation(values, pace) if len(values) >= 3 else float("nan")
        print(f"{target:16s} {mode:6s} {held:>24d} of {len(values):<4d} {100 * _cv(pace):12.2f}% {r:16.2f}")
    if args.json:
        args.json.write_text(json.dumps(kept, default=str, indent=1))


if __name__ == "__main__":
    main()
