"""Run-to-run stability: one configuration measured N times, each in a fresh worker process.

Prints each run's median, and the coefficient of variation of the medians. Target: 2 % or less.

    .venv/bin/python benchmarks/stability.py [--model bert --preset base --seq 128 --threads 2 --runs 5]
                                             [--dispatch process|ray]
"""

from __future__ import annotations

import argparse
import statistics

from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario
from hwbench_pipeline.bench.trackers.stats import StoppingRule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--target", default="cpu-torch")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dispatch", choices=["process", "ray"], default="process")
    args = parser.parse_args()

    config = InferenceConfig(args.model, args.preset, args.target, args.batch, args.seq, threads=args.threads,
                             rule=StoppingRule(ci_target=0.01, max_seconds=10.0))
    rows = run_configurations(InferenceScenario(), [config] * args.runs, "stability", dispatch=args.dispatch, log=print)
    medians = []
    for i, row in enumerate(rows, start=1):
        if row["status"] != "ok":
            print(f"run {i}: failed {row['failure_class']}: {row['message'].splitlines()[0]}")
            continue
        medians.append(row["p50_ms"])
        print(f"run {i}: p50 {row['p50_ms']:.3f} ms  ±{100 * row['ci_rel_halfwidth']:.2f} %  "
              f"{row['n_samples']} samples  {row['stop_reason']}  attempts {row['attempts']}  "
              f"busy machine: {row['contaminated']}  pid {row['worker_pid']}")
    if len(medians) >= 2:
        cv = statistics.stdev(medians) / statistics.mean(medians)
        print(f"{config.label}: CV of {len(medians)} medians = {100 * cv:.2f} % (target ≤ 2 %)")


if __name__ == "__main__":
    main()
