"""Eager attention against transformers' default (SDPA) on torch, measured interleaved on the same model.

hwbench counts FLOPs with eager attention and times the default; this prints what timing eager would have
reported instead. Each round times a block of calls with one implementation, then the other (A B A B …), so a
slow stretch of the host lands on both; the figures are medians over all calls and the ratio of the medians.

    .venv/bin/python benchmarks/attention.py [--models bert/base,llama/small,vit/base] [--batch 1] [--seq 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hwbench_pipeline.bench import models


def _block(model: torch.nn.Module, inputs: dict, calls: int) -> list[float]:
    times = []
    with torch.inference_mode():
        for _ in range(calls):
            t0 = time.perf_counter()
            models.forward(model, inputs)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def compare(family: str, preset: str, batch: int, seq: int, rounds: int, calls: int) -> dict:
    config = models.build_config(family, preset)
    model = models.build_model(family, preset)
    inputs = models.make_inputs(family, config, batch, seq, model=model)
    default = models.use_default_attention(model)
    runs: dict[str, list[float]] = {"eager": [], default: []}
    for _ in range(rounds):
        for implementation in ("eager", default):
            model.set_attn_implementation(implementation)
            _block(model, inputs, 2)  # the switch may re-dispatch kernels: not timed
            runs[implementation] += _block(model, inputs, calls)
    eager, other = statistics.median(runs["eager"]), statistics.median(runs[default])
    return {"model": f"{family}/{preset}", "default": default, "eager_ms": eager, "default_ms": other,
            "ratio": eager / other}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bert/base,llama/small,vit/base")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, sequence {args.seq}, {args.threads} threads, {args.rounds} rounds of "
          f"{args.calls} calls each, interleaved")
    print(f"{'model':<14} {'default':>8} {'eager ms':>10} {'default ms':>11} {'eager / default':>16}")
    for name in args.models.split(","):
        family, preset = name.split("/")
        row = compare(family, preset, args.batch, args.seq, args.rounds, args.calls)
        print(f"{row['model']:<14} {row['default']:>8} {row['eager_ms']:>10.2f} {row['default_ms']:>11.2f} "
              f"{row['ratio']:>16.3f}")


if __name__ == "__main__":
    main()
