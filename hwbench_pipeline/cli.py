"""The ``hwbench`` command.

    hwbench run --profile quick          materialize the whole graph through Dagster (runs show in the UI)
    hwbench bench --model bert ...       measure configurations directly, outside Dagster
    hwbench targets                      the hardware targets of this host, and those that are absent
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from hwbench_pipeline.commands.argtypes import (
    non_negative_int,
    open_fraction,
    positive_float,
    positive_int,
    precision_specs,
    timeout_seconds,
)
from hwbench_pipeline.paths import REPO_ROOT, UnsafeLockDirError, default_data_dir, host_lock_dir


class UsageError(Exception):
    """Bad input: one line to the user, exit status 2, nothing stored."""


def precision_cell(row: dict) -> str:
    """The precision asked for, and what ran where the backend ran something else."""
    from hwbench_pipeline.bench.precision import spec_name

    asked = spec_name(row["precision"], row.get("quantization") or "none")
    ran = row.get("precision_ran")
    return asked if ran in (None, row["precision"]) else f"{asked} (ran {ran})"


def csv_ints(text: str, what: str) -> list[int]:
    """Comma-separated distinct positive integers (``--batch 1,8``); UsageError naming the option otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{what} must be comma-separated positive integers, got {text!r}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"{what} lists {', '.join(map(str, repeated))} more than once, got {text!r}")
    return values


def make_console():
    from rich.console import Console

    # Piped output (CI logs, tee) gets a wide table instead of rich's 80-column default.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 180)


# ---- hwbench targets ------------------------------------------------------------------------------------
def cmd_targets(args: argparse.Namespace) -> int:
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.hardware import detect_targets, skipped_targets

    console = make_console()
    for t in detect_targets():
        # a backend that runs elsewhere says where (a browser's version, its WebGPU adapter)
        detail = getattr(load_backend(t.backend), "detail", None)
        console.print(f"[green]available[/]  {t.key}" + (f": {detail()}" if detail else ""))
    for key, why in skipped_targets():
        console.print(f"[yellow]absent[/]     {key}: {why}")
    return 0


# ---- hwbench bench --------------------------------------------------------------------------------------
def _bench_dispatch(requested: str, ray_address: str | None) -> str:
    if requested == "auto":
        return "ray" if ray_address else "process"
    if requested == "process" and ray_address:
        raise UsageError(f"--dispatch process measures on this host only, but RAY_ADDRESS={ray_address} is set; "
                         "unset it or use --dispatch ray")
    return requested


def check_bench_model(model: str, preset: str) -> int:
    """Check ``--model`` and ``--preset``; returns the default sequence length. A curated family is checked
    without torch; any other architecture, config file or checkpoint through the registry (about 2 s)."""
    from hwbench_pipeline.bench.families import FAMILIES, check_model, default_seq_len

    if model in FAMILIES:
        check_model(model, preset)
        return default_seq_len(model)
    from hwbench_pipeline.bench.catalog.scaling import AS_IS, SCALED_PRESETS
    from hwbench_pipeline.bench.catalog.sources import resolve_model
    from hwbench_pipeline.bench.models import model_default_seq_len

    source = resolve_model(model)
    accepted = [AS_IS] if source.kind == "checkpoint" else [*SCALED_PRESETS, "full", AS_IS]
    if preset not in accepted:
        why = " (a checkpoint runs with its own weights, at its own size)" if source.kind == "checkpoint" else ""
        raise ValueError(f"unknown preset {preset!r} for {model}; accepted presets: {', '.join(accepted)}{why}")
    return model_default_seq_len(model)


def cmd_bench(args: argparse.Namespace) -> int:
    from hwbench_pipeline.bench.catalog.registry import UnknownArchitectureError
    from hwbench_pipeline.bench.catalog.sources import ModelSourceError
    from hwbench_pipeline.bench.families import UnknownModelError
    from hwbench_pipeline.bench.hardware import UnknownTargetError, parse_target
    from hwbench_pipeline.bench.trackers.stats import StoppingRule

    # What can be refused without torch is refused first: in milliseconds, and before a fork server starts.
    ray_address = os.environ.get("RAY_ADDRESS") or None
    dispatch = _bench_dispatch(args.dispatch, ray_address)
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    generation = args.scenario == "generation"
    if args.max_processes is not None and args.processes > args.max_processes:
        raise UsageError(f"--processes {args.processes} is more than --max-processes {args.max_processes}")
    if not generation:
        for option in ("prompt", "new_tokens", "cache", "kv_precision", "stream_clients"):
            if getattr(args, option) is not None:
                raise UsageError(f"--{option.replace('_', '-')} belongs to --scenario generation")
    try:
        if not targets:
            raise ValueError(f"--target needs at least one target key, got {args.target!r}")
        for target in targets:
            parse_target(target)
        if generation:
            from hwbench_pipeline.commands.bench_generation import generation_configs

            scenario, configs = generation_configs(args, targets)
        else:
            rule = StoppingRule(ci_target=args.ci_target or 0.01, max_seconds=args.max_seconds or 10.0,
                                processes=args.processes,
                                max_processes=args.max_processes or (1 if args.processes == 1 else
                                                                     2 * args.processes))
            scenario, configs = _inference_configs(args, targets, rule)
    except (UnknownModelError, UnknownTargetError, UnknownArchitectureError, ModelSourceError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if dispatch == "process":
        from hwbench_pipeline.bench.launchers.process import start_server

        start_server()  # its imports run while this process detects the targets

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hwbench_pipeline.bench.dispatch import run_configurations
    from hwbench_pipeline.bench.hardware import detect_targets

    available = [t.key for t in detect_targets()]
    absent = [t for t in targets if t not in available]
    if not ray_address and absent:
        raise UsageError(f"hardware target {', '.join(absent)} is not available on this host; available: "
                         f"{', '.join(available)} (see 'hwbench targets')")
    run_id = f"cli-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    console = make_console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task(f"measuring {len(configs)} configurations", total=len(configs))

        def on_result(i, n, cfg, row):
            progress.update(task, completed=i, description=f"done: {cfg.label}")

        rows = run_configurations(scenario, configs, run_id, ray_address=ray_address, dispatch=dispatch,
                                  timeout_s=args.timeout, lock_dir=host_lock_dir(), on_result=on_result,
                                  memory_limit_mb=args.memory_limit_mb, log=console.print)
    title = f"hwbench bench {args.model}/{args.preset} on {', '.join(targets)}"
    if generation:
        from hwbench_pipeline.commands.bench_generation import generation_table

        console.print(generation_table(rows, title))
    else:
        console.print(_inference_table(rows, title))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
        console.print(f"rows written to {args.json}")
    return 1 if sum(row["status"] != "ok" for row in rows) == len(rows) else 0


def _inference_configs(args: argparse.Namespace, targets: list[str], rule) -> tuple:
    from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario

    default_seq = check_bench_model(args.model, args.preset)
    seqs = csv_ints(args.seq, "--seq") if args.seq else [default_seq]
    return InferenceScenario(), [
        InferenceConfig(family=args.model, preset=args.preset, target=t, batch_size=b, seq_len=s,
                        precision=p, quantization=q, threads=args.threads or (os.cpu_count() or 1), rule=rule)
        for t in targets for p, q in args.precision for b in csv_ints(args.batch, "--batch") for s in seqs
    ]


def _inference_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("target", "batch", "seq", "precision", "attention", "p50 ms", "p90 ms", "p99 ms", "CV", "samples/s",
                "peak RSS MiB", "GFLOP/s", "error vs fp32", "samples", "stopped by"):
        table.add_column(col, justify="right")
    for row in rows:
        if row["status"] != "ok":
            table.add_row(row["target"], str(row["batch_size"]), str(row["seq_len"]), precision_cell(row),
                          row["attention"], "[red]failed[/]", row["failure_class"], "", "", "", "", "", "", "",
                          row["message"].splitlines()[0][:60])
            continue
        gflops = f"{row['achieved_gflops']:.1f}" if row.get("achieved_gflops") else "n/a"
        error = f"{row['max_rel_diff']:.2g}" if row.get("max_rel_diff") is not None else "n/a"
        table.add_row(row["target"], str(row["batch_size"]), str(row["seq_len"]), precision_cell(row),
                      row["attention_ran"], f"{row['p50_ms']:.3f}",
                      f"{row['p90_ms']:.3f}", f"{row['p99_ms']:.3f}", f"{row['cv']:.3f}",
                      f"{row['throughput_samples_s']:.1f}", f"{row['peak_rss_mb']:.0f}", gflops, error,
                      str(row["n_samples"]), row["stop_reason"] + (" (busy)" if row.get("contaminated") else ""))
    return table


# ---- hwbench run ----------------------------------------------------------------------------------------
def _dagster_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    return home


def cmd_run(args: argparse.Namespace) -> int:
    from hwbench_pipeline.bench.hardware import UnknownTargetError, detect_targets, parse_target, skipped_targets
    from hwbench_pipeline.bench.profiles import ProfileError, load_profile

    # Validate everything before anything is stored.
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    available = [t.key for t in detect_targets()]
    targets = available
    if args.targets:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        for key in targets:
            try:
                parse_target(key)
            except UnknownTargetError as exc:
                raise UsageError(str(exc)) from None
            if key not in available and not os.environ.get("RAY_ADDRESS"):
                raise UsageError(f"hardware target {key} is not available on this host; available: "
                                 f"{', '.join(available)}")

    from hwbench_pipeline.pipeline_runner import run_pipeline

    _dagster_home()
    console = make_console()
    console.print(f"[bold]hwbench[/] profile [cyan]{profile.name}[/]: {profile.description}")
    console.print(f"targets: {', '.join(targets)}; data: {default_data_dir()}; "
                  f"DAGSTER_HOME: {os.environ['DAGSTER_HOME']}")
    if not args.targets:  # what is not measured, and why: each reason says how to add the target
        for key, why in skipped_targets():
            console.print(f"  not measured: {key}: {why}")
    summary = run_pipeline(args.profile, targets, console=console)
    return 0 if summary.success else 1


#: modules under hwbench_pipeline/commands/, each with ``register(subparsers)`` adding its subcommand(s)
SUBCOMMAND_MODULES: tuple[str, ...] = ("query", "serve", "serve_generate", "db", "recommend", "report", "compare",
                                       "plan")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwbench", description="Benchmark ML models on every hardware target.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize the whole pipeline through Dagster")
    run.add_argument("--profile", default="quick", help="smoke, quick, full, or a path to a profile YAML")
    run.add_argument("--targets", help="comma-separated target keys (default: every target detected here)")
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="measure configurations directly (no Dagster, nothing stored)")
    bench.add_argument("--model", required=True,
                       help="a curated family (bert), any transformers model type (roberta), a config.json, or a "
                            "checkpoint folder (config.json + safetensors weights)")
    bench.add_argument("--preset", default="small",
                       help="tiny, small, base or full; as-is runs a config or checkpoint at its own size")
    bench.add_argument("--target", default="cpu-torch",
                       help="comma-separated hardware target keys, e.g. cpu-torch,cpu-onnxruntime")
    bench.add_argument("--scenario", choices=["inference", "generation"], default="inference",
                       help="inference: one forward pass; generation: greedy decoding token by token")
    bench.add_argument("--batch", default="1", help="comma-separated batch sizes")
    bench.add_argument("--seq", default=None, help="comma-separated sequence lengths (default: the family's)")
    bench.add_argument("--precision", type=precision_specs, default=[("fp32", "none")],
                       help="comma-separated precisions: fp32, bf16, fp16, int8-dynamic (int8), int8-static")
    bench.add_argument("--prompt", default=None,
                       help="generation: comma-separated prompt lengths in tokens (default: the family's sequence)")
    bench.add_argument("--new-tokens", type=positive_int, default=None,
                       help="generation: tokens generated per sequence, every one (default 32)")
    bench.add_argument("--cache", default=None,
                       help="generation: comma-separated caches (torch: dynamic, static, compiled; default: each "
                            "target's own)")
    bench.add_argument("--kv-precision", default=None,
                       help="generation: comma-separated KV-cache precisions: model, int8, int4, int3, int2 "
                            "(quantized caches on torch targets)")
    bench.add_argument("--residual-length", type=non_negative_int, default=0,
                       help="generation: recent tokens a quantized cache keeps unquantized")
    bench.add_argument("--stream-clients", default=None,
                       help="generation on torch targets: also stream each configuration over serve-generate's "
                            "WebSocket to these comma-separated numbers of concurrent clients (e.g. 1,2,4)")
    bench.add_argument("--threads", type=positive_int, default=None, help="threads (default: all cores)")
    bench.add_argument("--ci-target", type=open_fraction, default=None,
                       help="stop at this ± relative CI of the median (default 0.01; generation 0.02)")
    bench.add_argument("--max-seconds", type=positive_float, default=None,
                       help="time cap of a configuration's sampling, shared by its processes (default 10; "
                            "generation 20)")
    bench.add_argument("--processes", type=positive_int, default=3,
                       help="measuring processes per configuration, at least (1: a single measuring window)")
    bench.add_argument("--max-processes", type=positive_int, default=None,
                       help="measuring processes per configuration, at most (default: twice --processes; 1 after "
                            "--processes 1)")
    bench.add_argument("--timeout", type=timeout_seconds, default=600.0, help="per-configuration timeout in seconds")
    bench.add_argument("--memory-limit-mb", type=positive_float, default=None, metavar="MIB",
                       help="each measuring process's memory limit: past it, the configuration is an out_of_memory "
                            "row (a memory cgroup enforces it where one can be made, else its RSS is watched)")
    bench.add_argument("--json", help="also write the rows (raw samples included) to this JSON file")
    bench.add_argument("--dispatch", choices=["auto", "process", "ray"], default="auto",
                       help="fresh process per configuration: forked here (process) or a Ray task (ray); "
                            "auto: ray when RAY_ADDRESS is set, else process")
    bench.set_defaults(func=cmd_bench)

    targets = sub.add_parser("targets", help="list the hardware targets of this host")
    targets.set_defaults(func=cmd_targets)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"hwbench_pipeline.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, UnsafeLockDirError) as exc:
        print(f"hwbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: subcommand modules raise the UsageError of
    # hwbench_pipeline.cli, which is a different class from this copy's.
    from hwbench_pipeline.cli import main as package_main

    sys.exit(package_main())
