"""``hwbench compare``: two targets, two precisions, or a configuration against its baseline build, measured
interleaved (A B A B …) and tested pair by pair (docs/measurement.md, "Interleaved comparisons").

    hwbench compare --model bert --preset base --target cpu-torch,cpu-onnxruntime
    hwbench compare --model bert --precision fp32,bf16
    hwbench compare --model bert --baseline-python ../hwbench-main/.venv/bin/python --fail-if-slower

``--store`` keeps the comparison in the warehouse's comparisons table (the comparison report shows it);
``--json`` writes both sides' process rows and the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from hwbench_pipeline.cli import UsageError, csv_ints, make_console
from hwbench_pipeline.commands.argtypes import positive_float, positive_int, timeout_seconds
from hwbench_pipeline.paths import default_data_dir, host_lock_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="measure two configurations (or two builds) interleaved and test the "
                                       "paired differences")
    p.add_argument("--model", required=True, help="a curated family or any transformers model type")
    p.add_argument("--preset", default="small")
    p.add_argument("--target", default="cpu-torch", help="one target, or two to compare (comma-separated)")
    p.add_argument("--precision", default="fp32", help="one precision, or two to compare (comma-separated): fp32, "
                                                      "bf16, fp16, int8-dynamic (int8), int8-static")
    p.add_argument("--baseline-python", help="the interpreter of the baseline build (another checkout's "
                                             "virtual environment): compares this build against it")
    p.add_argument("--batch", default="1")
    p.add_argument("--seq", type=positive_int, default=None, help="sequence length (default: the family's)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--pairs", type=positive_int, default=8, help="interleaved pairs of processes (a verdict needs 6 "
                                                        "undisturbed ones)")
    p.add_argument("--seconds-per-process", type=positive_float, default=1.5,
                   help="sampling time cap of each process")
    p.add_argument("--threshold", type=positive_float, default=0.05,
                   help="a difference smaller than this fraction is no difference")
    p.add_argument("--timeout", type=timeout_seconds, default=600.0, help="per-process timeout in seconds")
    p.add_argument("--fail-if-slower", action="store_true", help="exit 1 when the second side is slower")
    p.add_argument("--json", help="write both sides' process rows and the comparison here")
    p.add_argument("--store", action="store_true", help="also store the comparison in the warehouse's comparisons "
                                                        "table (the comparison report shows it)")
    p.add_argument("--data-dir", default=None, help="the warehouse for --store (default: $HWBENCH_DATA_DIR or data/)")
    p.set_defaults(func=cmd_compare)


def _sides(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(label, target, precision) of the two sides, A first."""
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if args.baseline_python:
        if len(targets) != 1 or len(precisions) != 1:
            raise UsageError("--baseline-python compares one configuration across builds: give one --target and "
                             "one --precision")
        return [("baseline", targets[0], precisions[0]), ("current", targets[0], precisions[0])]
    if len(targets) * len(precisions) != 2 or len(targets) > 2 or len(precisions) > 2:
        raise UsageError("compare needs exactly two sides: two --target values, two --precision values, or "
                         f"--baseline-python; got targets {targets} and precisions {precisions}")
    if len(targets) == 2:
        return [(t, t, precisions[0]) for t in targets]
    return [(p, targets[0], p) for p in precisions]


def cmd_compare(args: argparse.Namespace) -> int:
    from hwbench_pipeline.bench.catalog.registry import UnknownArchitectureError
    from hwbench_pipeline.bench.families import UnknownModelError
    from hwbench_pipeline.bench.hardware import UnknownTargetError, detect_targets, parse_target
    from hwbench_pipeline.bench.precision import parse_spec
    from hwbench_pipeline.bench.scenarios.inference import InferenceConfig
    from hwbench_pipeline.bench.trackers.stats import StoppingRule
    from hwbench_pipeline.cli import check_bench_model

    sides = _sides(args)
    batches = csv_ints(args.batch, "--batch")
    if len(batches) != 1:
        raise UsageError(f"--batch takes one batch size here (the sides differ by target, precision or build), "
                         f"got {args.batch!r}")
    cores = os.cpu_count() or 1
    if args.threads is not None and not 1 <= args.threads <= cores:
        raise UsageError(f"--threads must be between 1 and this host's {cores} cores, got {args.threads}")
    try:
        for _, target, _ in sides:
            parse_target(target)
        formats = [parse_spec(p) for _, _, p in sides]
        seq = args.seq or check_bench_model(args.model, args.preset)
        rule = StoppingRule(max_seconds=args.seconds_per_process, processes=1, max_processes=1)
        configs = [InferenceConfig(family=args.model, preset=args.preset, target=t, batch_size=batches[0],
                                   seq_len=seq, precision=precision, quantization=quantization,
                                   threads=args.threads or cores, rule=rule)
                   for (_, t, _), (precision, quantization) in zip(sides, formats, strict=True)]
    except (UnknownModelError, UnknownTargetError, UnknownArchitectureError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    available = {t.key for t in detect_targets()}
    absent = sorted({t for _, t, _ in sides} - available)
    if absent:
        raise UsageError(f"hardware target {', '.join(absent)} is not available on this host; available: "
                         f"{', '.join(sorted(available))}")
    if args.json:
        try:
            Path(args.json).write_text("")  # a path that cannot be written is refused before measuring
        except OSError as exc:
            raise UsageError(f"--json {args.json}: {exc.strerror}") from None
    if args.store:
        store_dir = Path(args.data_dir or default_data_dir())
        try:  # a warehouse that cannot be written is refused before measuring
            store_dir.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=store_dir).close()
        except OSError as exc:
            raise UsageError(f"--store: the warehouse {store_dir} cannot be written: {exc.strerror}") from None
    return _run(args, sides, configs)


def _run(args: argparse.Namespace, sides: list[tuple[str, str, str]], configs: list) -> int:
    from datetime import UTC, datetime

    from hwbench_pipeline.bench.compare import comparison_row, run_interleaved
    from hwbench_pipeline.bench.launchers.build import BuildUnusableError

    console = make_console()
    run_id = f"compare-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    labels = (sides[0][0], sides[1][0])

    def on_pair(i: int, ra: dict, rb: dict) -> None:
        console.print(f"pair {i}/{args.pairs}: {labels[0]} {ra['p50_ms']:.3f} ms, {labels[1]} {rb['p50_ms']:.3f} ms"
                      + (" (disturbed)" if ra.get("contaminated") or rb.get("contaminated") else ""))

    console.print(f"comparing {configs[0].family}/{configs[0].preset} batch {configs[0].batch_size} seq "
                  f"{configs[0].seq_len}, threads {configs[0].threads}: {labels[0]} against {labels[1]}, "
                  f"{args.pairs} interleaved pairs")
    started = datetime.now(UTC)
    try:
        result = run_interleaved(tuple(configs), labels, args.pairs, run_id, lock_dir=host_lock_dir(),
                                 baseline_python=args.baseline_python, threshold=args.threshold,
                                 timeout_s=args.timeout, on_pair=on_pair, log=console.print)
    except BuildUnusableError as exc:
        raise UsageError(str(exc)) from None
    a, b = result.a, result.b
    if args.json:  # whatever came of it: both sides' rows, the failure, the comparison
        Path(args.json).write_text(json.dumps({
            "a": {"label": a.label, "rows": a.rows}, "b": {"label": b.label, "rows": b.rows},
            "dropped_pairs": result.dropped_pairs, "failure": result.failure,
            "comparison": result.comparison.as_dict() if result.comparison else None}, indent=2, default=str))
        console.print(f"written to {args.json}")
    row = comparison_row(result, run_id=run_id, started_at=started, purpose="comparison", pairs_asked=args.pairs)
    if args.store:
        _store(row, Path(args.data_dir or default_data_dir()), console)
    if result.failure is not None:
        console.print(f"[red]{row['sentence']}[/]")
        return 1
    if result.comparison is None:
        console.print(f"every pair was disturbed by the host's other work ({result.dropped_pairs}); nothing to "
                      "compare: measure again on a quieter host")
        return 1
    if result.dropped_pairs:
        console.print(f"{result.dropped_pairs} disturbed pair(s) left out")
    console.print(result.comparison.sentence(a.label, b.label))
    return 1 if args.fail_if_slower and result.comparison.verdict == "slower" else 0


def _store(row: dict, data_dir: Path, console) -> None:
    """Validate the comparison's row with the table's suite and store it (a row that fails is not stored)."""
    import pandas as pd

    from hwbench_pipeline.warehouse.store import Warehouse
    from hwbench_pipeline.warehouse.validation import comparisons_suite, validate

    flat = pd.DataFrame([{k: v for k, v in row.items() if not isinstance(v, list)}])
    outcome = validate(flat, comparisons_suite())
    if not outcome.success:
        console.print(f"[red]not stored[/]: the comparison's row fails validation ({outcome.summary()})")
        return
    path = Warehouse(data_dir).write("comparisons", [row], run_id=row["run_id"])
    console.print(f"stored in the comparisons table: {path}")
