"""Browser targets beside cpu-onnxruntime: the same ONNX export's latency in each browser, with the ratio to
ONNX Runtime's, cold start and bytes downloaded.

Each model's configurations on every target are measured together, a fresh process per measurement in
rounds over the targets (the dispatcher's spread), so a slow stretch of the host falls on all of them.

    .venv/bin/python benchmarks/browser_targets.py                      # bert, vit, whisper small, batch 1
    .venv/bin/python benchmarks/browser_targets.py --models bert --preset tiny --max-seconds 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.hardware import BROWSER_DEVICE, detect_targets, skipped_targets
from hwbench_pipeline.bench.host_lock import host_measurement_lock
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.paths import host_lock_dir

BASELINE = "cpu-onnxruntime"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert,vit,whisper")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--targets", default="", help="default: every browser target here, and cpu-onnxruntime")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=10.0, help="time cap per process")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--min-samples", type=int, default=5, help="software WebGPU takes seconds per call")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args()

    targets = [t for t in args.targets.split(",") if t] or \
        [BASELINE] + [t.key for t in detect_targets() if t.device_kind == BROWSER_DEVICE]
    for key, why in skipped_targets():
        if key.startswith(f"{BROWSER_DEVICE}-"):
            print(f"absent: {key}: {why}")
    rule = StoppingRule(ci_target=0.02, min_samples=args.min_samples, max_seconds=args.max_seconds,
                        warmup_max_seconds=2.0,
                        processes=args.processes, max_processes=args.processes)
    rows: list[dict] = []
    with host_measurement_lock(host_lock_dir(), log=print):
        for model in args.models.split(","):
            configs = [InferenceConfig(model, args.preset, target, args.batch, args.seq, threads=args.threads,
                                       rule=rule) for target in targets]
            rows += run_configurations(InferenceScenario(), configs, f"browser-targets-{model}", dispatch="process",
                                       timeout_s=args.timeout, log=lambda _: None)
    if args.json:
        args.json.write_text(json.dumps(rows, default=str, indent=1))

    print(f"\n{args.preset} presets, batch {args.batch}, seq {args.seq}, {args.threads} threads, "
          f"{args.processes} processes each, cap {args.max_seconds:g} s per process")
    print(f"{'model':8s} {'target':24s} {'p50 ms':>10s} {'±CI':>7s} {'x ORT':>7s} {'first ms':>9s} "
          f"{'cold start ms':>14s} {'download MB':>12s} {'features ms':>12s}  adapter / failure")
    for model in args.models.split(","):
        mine = [r for r in rows if r["family"] == model]
        base = next((r for r in mine if r["target"] == BASELINE and r["status"] == "ok"), None)
        for row in mine:
            if row["status"] != "ok":
                print(f"{model:8s} {row['target']:24s} {'failed':>10s}  {row['failure_class']}: "
                      f"{row['message'].splitlines()[0][:120]}")
                continue
            ratio = f"{row['p50_ms'] / base['p50_ms']:7.2f}" if base else f"{'-':>7s}"
            cold = f"{row['cold_start_ms']:14.0f}" if row.get("cold_start_ms") else f"{'-':>14s}"
            mb = f"{row['download_bytes'] / 1e6:12.1f}" if row.get("download_bytes") else f"{'-':>12s}"
            features = f"{row['features_ms']:12.2f}" if row.get("features_ms") else f"{'-':>12s}"
            print(f"{model:8s} {row['target']:24s} {row['p50_ms']:10.2f} "
                  f"{100 * (row.get('ci_rel_halfwidth') or 0):6.1f}% {ratio} {row['first_call_ms']:9.1f} "
                  f"{cold} {mb} {features}  {row.get('adapter') or ''}")


if __name__ == "__main__":
    main()
