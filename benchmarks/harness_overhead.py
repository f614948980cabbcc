"""How much the harness adds to a measured median.

Builds one model in this process, then alternates, in rounds: hwbench's measurement loop (warm-up, stopping
rule, the runner's call path) and a bare ``perf_counter`` loop over the same forward call with the same number
of calls. Prints each round's two medians and the median ratio. Target: within ±2 %.

    .venv/bin/python benchmarks/harness_overhead.py [--family bert] [--preset small] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.scenarios.inference import time_calls
from hwbench_pipeline.bench.trackers.stats import StoppingRule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="bert")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = models.build_config(args.family, args.preset)
    model = models.build_model(args.family, args.preset)
    inputs = models.make_inputs(args.family, config, args.batch, args.seq)
    runner = load_backend("torch").prepare(model, inputs, models.forward, "cpu", "fp32")
    rule = StoppingRule(ci_target=0.01, min_samples=20, max_seconds=5.0, warmup_max_seconds=2.0)

    ratios = []
    print(f"{args.family}/{args.preset} bs={args.batch} seq={args.seq} threads={args.threads}")
    print("round  hwbench p50 ms  bare loop p50 ms  ratio")
    for i in range(1, args.rounds + 1):
        samples, _, _ = time_calls(runner, rule)
        bare = []
        with torch.inference_mode():
            for _ in range(len(samples)):
                t0 = time.perf_counter()
                models.forward(model, inputs)
                bare.append((time.perf_counter() - t0) * 1e3)
        h, b = statistics.median(samples), statistics.median(bare)
        ratios.append(h / b)
        print(f"{i:5d}  {h:14.3f}  {b:16.3f}  {h / b:5.3f}")
    print(f"median ratio hwbench/bare: {statistics.median(ratios):.3f} over {args.rounds} rounds "
          f"(target 0.98–1.02)")


if __name__ == "__main__":
    main()
