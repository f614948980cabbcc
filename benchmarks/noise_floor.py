"""The noise floor, one measuring window against samples spread over processes, side by side.

A seeded sample of configurations of the predictor fixture's plan (tests/predict/fixtures/make_fixture.py:
every family at its tiny and small presets, batch 1 and 4, sequence 32 and 128, one thread) is measured as a
partition four times, the modes alternating: window, spread, window, spread. Each partition run measures
all the configurations as the pipeline does (``run_configurations``: in spread mode, in rounds over them).
Printed per mode: how far the second run's figures land from the first's (the repeat MAPE that
``benchmarks/predictor_eval.py`` calls the noise floor; target ≤ 5 % with the new method), the share within
±10 %, and the wall time of a run.

    .venv/bin/python benchmarks/noise_floor.py [--configs 24 --seed 0 --max-seconds 2 --targets cpu-torch]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwbench_pipeline.bench.dispatch import run_configurations  # noqa: E402
from hwbench_pipeline.bench.families import FAMILIES  # noqa: E402
from hwbench_pipeline.bench.profiles import effective_seq_len  # noqa: E402
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario  # noqa: E402
from hwbench_pipeline.bench.trackers.stats import StoppingRule  # noqa: E402
from hwbench_pipeline.predict.evaluation import repeat_error  # noqa: E402

MODES = {"window": {"processes": 1, "max_processes": 1}, "spread": {"processes": 3, "max_processes": 6}}


def candidates(targets: list[str]) -> list[tuple]:
    seen = set()
    for target in targets:
        for preset in ("tiny", "small"):
            for family in sorted(FAMILIES):
                for seq in sorted({effective_seq_len(family, preset, s) for s in (32, 128)}):
                    for batch in (1, 4):
                        seen.add((target, family, preset, batch, seq))
    return sorted(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=2.0)
    parser.add_argument("--targets", default="cpu-torch")
    parser.add_argument("--json", type=Path, help="write every run's rows here")
    args = parser.parse_args()

    picked = random.Random(args.seed).sample(candidates(args.targets.split(",")), args.configs)
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    for repeat in (1, 2):
        for mode, counts in MODES.items():
            rule = StoppingRule(ci_target=0.01, min_samples=5, max_seconds=args.max_seconds, warmup_max_seconds=0.5,
                                **counts)
            configs = [InferenceConfig(f, p, t, b, s, threads=1, rule=rule) for t, f, p, b, s in picked]
            t0 = time.perf_counter()
            rows = run_configurations(InferenceScenario(), configs, f"noise-{mode}-{repeat}", dispatch="process",
                                      log=lambda _: None)
            walls[mode].append(time.perf_counter() - t0)
            runs[mode].append({cfg.label: row for cfg, row in zip(configs, rows, strict=True)})
            ok = sum(r["status"] == "ok" for r in rows)
            print(f"run {repeat} {mode}: {ok}/{len(rows)} measured in {walls[mode][-1]:.0f} s", flush=True)
    print()
    print(f"{args.configs} configurations (seed {args.seed}), time cap {args.max_seconds:g} s each, one thread")
    results = {}
    for mode in MODES:
        first, second = runs[mode]
        both = [label for label in first if first[label]["status"] == "ok" and second[label]["status"] == "ok"]
        floor = repeat_error([first[k]["p50_ms"] for k in both], [second[k]["p50_ms"] for k in both])
        results[mode] = floor
        print(f"{mode:6s}: repeat MAPE {100 * floor['mape']:5.2f} %, median {100 * floor['median_ape']:5.2f} %, "
              f"within ±10 % {100 * floor['within_10pct']:5.1f} %, n {floor['n']}, "
              f"run wall time {sum(walls[mode]) / 2:.0f} s")
    print(f"spread / window MAPE: {results['spread']['mape'] / results['window']['mape']:.2f}; "
          "target: spread ≤ 5 %")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "noise_floor": results}, default=str))


if __name__ == "__main__":
    main()
