"""``hwbench bench --scenario generation``: the generation configurations the options name, and their table.

    hwbench bench --scenario generation --model llama --preset small --prompt 128,512 --new-tokens 64
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from hwbench_pipeline.cli import check_bench_model, csv_ints, precision_cell

DEFAULT_NEW_TOKENS = 32


def _names(raw: str | None, option: str, accepted: tuple[str, ...]) -> list[str]:
    values = [v.strip() for v in (raw or "").split(",") if v.strip()]
    unknown = [v for v in values if v not in accepted]
    if unknown:
        raise ValueError(f"{option}: unknown {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    return values


def generation_configs(args: argparse.Namespace, targets: list[str]) -> tuple:
    """(the scenario, its configurations) for the options; ValueError names a bad one. The caches each target's
    backend does not offer are left out for it; where it offers none of those named, its default runs."""
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.precision import CACHE_PRECISIONS, MODEL_CACHE_PRECISION
    from hwbench_pipeline.bench.scenarios.generation import (
        CACHE_NAMES,
        GENERATION_RULE,
        GenerationConfig,
        GenerationScenario,
    )

    default_prompt = check_bench_model(args.model, args.preset)
    if not models.generates_tokens(args.model):
        raise ValueError(f"--scenario generation needs a generative model ({models.generative_names()}); "
                         f"{args.model} is not one")
    prompts = csv_ints(args.prompt or args.seq, "--prompt") if (args.prompt or args.seq) else [default_prompt]
    caches = _names(args.cache, "--cache", CACHE_NAMES)
    kv = _names(args.kv_precision, "--kv-precision", CACHE_PRECISIONS) or [MODEL_CACHE_PRECISION]
    streams = tuple(csv_ints(args.stream_clients, "--stream-clients")) if args.stream_clients else ()
    rule = dataclasses.replace(GENERATION_RULE, ci_target=args.ci_target or GENERATION_RULE.ci_target,
                               max_seconds=args.max_seconds or GENERATION_RULE.max_seconds)
    configs = []
    for target in targets:
        parsed = parse_target(target)
        offered = load_backend(parsed.backend).generation_caches(parsed.device_kind)
        if not offered:
            raise ValueError(f"{target}: {parsed.backend} has no decode loop on {parsed.device_kind} here")
        for cache in [c for c in caches if c in offered] or list(offered[:1]):
            configs += [
                GenerationConfig(family=args.model, preset=args.preset, target=target, batch_size=batch,
                                 seq_len=prompt, new_tokens=args.new_tokens or DEFAULT_NEW_TOKENS, precision=p,
                                 quantization=q, cache=cache, cache_precision=k, residual_length=args.residual_length,
                                 threads=args.threads or (os.cpu_count() or 1), rule=rule, stream_clients=streams)
                for p, q in args.precision for batch in csv_ints(args.batch, "--batch") for prompt in prompts
                for k in kv
            ]
    return GenerationScenario(), configs


def generation_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("target", "batch", "prompt", "new", "precision", "cache", "KV", "TTFT p50 ms", "ITL p50 ms",
                "ITL p99 ms", "tokens/s", "KV bytes/token", "peak RSS MiB", "same as generate()", "sequences"):
        table.add_column(col, justify="right")
    for row in rows:
        if row["status"] != "ok":
            table.add_row(row["target"], str(row["batch_size"]), str(row["seq_len"]), str(row["new_tokens"]),
                          precision_cell(row), row["cache_implementation"], row["cache_precision"], "[red]failed[/]",
                          row["failure_class"], "", "", "", "", "", row["message"].splitlines()[0][:60])
            continue
        per_token = row.get("kv_cache_bytes_per_token")
        table.add_row(
            row["target"], str(row["batch_size"]), str(row["seq_len"]), str(row["new_tokens"]), precision_cell(row),
            row["cache_ran"], row["cache_precision_ran"], f"{row['ttft_p50_ms']:.1f}",
            f"{row['itl_p50_ms']:.2f}" if row.get("itl_p50_ms") else "n/a",
            f"{row['itl_p99_ms']:.2f}" if row.get("itl_p99_ms") else "n/a", f"{row['tokens_per_s']:.1f}",
            f"{per_token:.0f}" if per_token is not None else "n/a", f"{row['peak_rss_mb']:.0f}",
            f"{row['tokens_matching_reference']}/{row['new_tokens']}",
            f"{row['n_samples']} ({row['stop_reason']}{', busy' if row.get('contaminated') else ''})")
    return table
