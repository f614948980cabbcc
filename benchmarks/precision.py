"""Every precision against fp32, side by side in one run: speed and the quality each costs, per model and runtime.

First the training scenario trains each model on its task in fp32 (convergence run) and keeps the weights;
then every (model, target, precision) is measured by the inference scenario, all configurations in one run
through the engine's process launcher, so their measuring processes are spread in rounds over the same window
of the host (a slow stretch lands on all precisions alike). Each row gets its output error against torch fp32
on the same inputs and, from the kept weights, the held-out task accuracy at that precision.

Printed per model and target: each precision's median latency, its speed-up over fp32 (fp32 median ÷ its
median: above 1 is faster) with the between-process intervals, what ran, max and mean output error, task
accuracy and its drop from torch fp32 (points); a precision a runtime or CPU cannot run is listed with its reason.

    .venv/bin/python benchmarks/precision.py [--models bert,vit,llama] [--preset small] \\
        [--targets cpu-torch,cpu-onnxruntime,cpu-openvino] [--precisions all] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.hardware import detect_targets, parse_target
from hwbench_pipeline.bench.launchers.process import start_server
from hwbench_pipeline.bench.precision import SPECS, canonical_spec, parse_spec, spec_name
from hwbench_pipeline.bench.profiles import effective_seq_len
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario
from hwbench_pipeline.bench.scenarios.training import TrainingConfig, TrainingScenario
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.paths import host_lock_dir


def train(families: list[str], preset: str, steps: int, weights_dir: Path, threads: int) -> dict[str, str]:
    """family -> kept weights file, from one fp32 convergence run each."""
    configs = [TrainingConfig(family, preset, "cpu-torch", batch_size=4, seq_len=16, threads=threads,
                              convergence_steps=steps, keep_weights_dir=str(weights_dir),
                              rule=StoppingRule(max_seconds=1.0, min_samples=3)) for family in families]
    rows = run_configurations(TrainingScenario(), configs, "precision-training", dispatch="process",
                              timeout_s=1800, lock_dir=host_lock_dir())
    kept = {}
    for row in rows:
        if row.get("trained_weights"):
            kept[row["family"]] = row["trained_weights"]
            print(f"trained {row['family']}/{preset}: held-out accuracy {row.get('final_accuracy', float('nan')):.2f} "
                  f"after {steps} steps -> {row['trained_weights']}")
        else:
            print(f"trained {row['family']}/{preset}: no weights kept ({row.get('status')}: "
                  f"{row.get('message') or 'did not learn above chance'})")
    return kept


def speedup_interval(row: dict, fp32: dict) -> str:
    """The speed-up over fp32 with the between-process intervals of both medians combined (their extremes)."""
    low, high = row.get("median_ci_low_ms"), row.get("median_ci_high_ms")
    f_low, f_high = fp32.get("median_ci_low_ms"), fp32.get("median_ci_high_ms")
    if None in (low, high, f_low, f_high) or not low:
        return ""
    return f"[{f_low / high:.2f}, {f_high / low:.2f}]"


def show(rows: list[dict], refused: list[tuple[str, str, str, str]]) -> None:
    by_model: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_model.setdefault((row["family"], row["target"]), []).append(row)
    header = (f"{'precision':<13} {'ran':<5} {'p50 ms':>9} {'× fp32':>7} {'interval':>13} {'max err':>8} "
              f"{'mean err':>9} {'task acc':>9} {'drop pts':>9}")
    for (family, target), group in sorted(by_model.items()):
        print(f"\n{family} on {target}")
        print(header)
        fp32 = next((r for r in group if spec_name(r["precision"], r["quantization"]) == "fp32"
                     and r["status"] == "ok"), None)
        for row in sorted(group, key=lambda r: SPECS.index(spec_name(r["precision"], r["quantization"]))):
            spec = spec_name(row["precision"], row["quantization"])
            if row["status"] != "ok":
                print(f"{spec:<13} failed: {row['failure_class']}: {(row.get('message') or '').splitlines()[0][:90]}")
                continue
            speedup = f"{fp32['p50_ms'] / row['p50_ms']:.2f}" if fp32 else "n/a"
            acc, drop = row.get("task_accuracy"), row.get("accuracy_drop")
            print(f"{spec:<13} {row['precision_ran']:<5} {row['p50_ms']:>9.3f} {speedup:>7} "
                  f"{speedup_interval(row, fp32) if fp32 else '':>13} {row['max_rel_diff']:>8.2g} "
                  f"{row['mean_rel_diff']:>9.2g} {'' if acc is None else f'{acc:.3f}':>9} "
                  f"{'' if drop is None else f'{100 * drop:+.1f}':>9}")
    for family, target, spec, why in refused:
        print(f"refused: {family} on {target} {spec}: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bert,vit,llama")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--targets", default="cpu-torch,cpu-onnxruntime,cpu-openvino")
    parser.add_argument("--precisions", default="all", help="comma-separated specs, or all")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--processes", type=int, default=3, help="measuring processes per configuration")
    parser.add_argument("--max-seconds", type=float, default=3.0, help="sampling time cap per configuration")
    parser.add_argument("--train-steps", type=int, default=60, help="0: no training, output error only")
    parser.add_argument("--json", help="write every row here")
    args = parser.parse_args()
    families = [m.strip() for m in args.models.split(",") if m.strip()]
    specs = list(SPECS) if args.precisions == "all" else [canonical_spec(p) for p in args.precisions.split(",")]
    available = {t.key for t in detect_targets()}
    targets = [t for t in args.targets.split(",") if t in available]
    for missing in sorted(set(args.targets.split(",")) - available):
        print(f"skipping {missing}: not available here (hwbench targets says why)")
    start_server()
    with tempfile.TemporaryDirectory(prefix="hwbench-trained-") as weights_dir:
        kept = train(families, args.preset, args.train_steps, Path(weights_dir), args.threads) \
            if args.train_steps else {}
        rule = StoppingRule(ci_target=0.01, max_seconds=args.max_seconds, processes=args.processes,
                            max_processes=args.processes)
        configs, refused = [], []
        for target in targets:
            backend = load_backend(parse_target(target).backend)
            for family in families:
                seq = effective_seq_len(family, args.preset, args.seq)
                for spec in specs:
                    why = backend.unsupported_reason(spec, parse_target(target).device_kind)
                    if why:
                        refused.append((family, target, spec, why))
                        continue
                    precision, quantization = parse_spec(spec)
                    configs.append(InferenceConfig(family, args.preset, target, args.batch, seq, precision=precision,
                                                   quantization=quantization, threads=args.threads, rule=rule,
                                                   trained_weights=kept.get(family)))
        print(f"\n{len(configs)} configurations, {args.processes} processes each in rounds, batch {args.batch}, "
              f"{args.threads} threads; {len(refused)} refused")
        rows = run_configurations(InferenceScenario(), configs, "precision", dispatch="process", timeout_s=1800,
                                  lock_dir=host_lock_dir(),
                                  on_result=lambda i, n, cfg, row: print(f"[{i}/{n}] {cfg.label}: {row['status']}"))
    show(rows, refused)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
        print(f"rows written to {args.json}")


if __name__ == "__main__":
    main()
