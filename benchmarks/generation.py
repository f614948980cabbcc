"""Generation on every runtime and cache, side by side in one run: time to first token, inter-token latency,
tokens/s and KV-cache bytes per model.

Every (model, target, cache, prompt, batch) configuration is measured by the generation scenario in its own
fresh process, all in one run through the engine's process launcher. Printed per model: each configuration's
TTFT p50/p99, ITL p50/p99, tokens/s (end to end and decode only), KV bytes per token, peak RSS and how many
of its greedy tokens equal transformers' generate(); then each one's decode speed against torch's dynamic cache
(ratio of median inter-token latencies, above 1 is faster).

``--models architectures`` decodes every generative architecture of the installed transformers (text decoders
with a causal-LM head, encoder-decoders with a sequence-to-sequence LM head), and the run ends with how many
of them decode the same tokens as generate(), diverge, or fail (by failure class), per target:

    .venv/bin/python benchmarks/generation.py --models architectures --preset tiny --prompt 16 --new-tokens 8 \\
        --targets cpu-torch --caches dynamic --max-seconds 1

    .venv/bin/python benchmarks/generation.py [--models llama,qwen2] [--preset small] [--prompt 128] \\
        [--new-tokens 64] [--batch 1] [--targets cpu-torch,cpu-onnxruntime,cpu-openvino] \\
        [--caches dynamic,static,compiled] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.hardware import detect_targets, parse_target
from hwbench_pipeline.bench.launchers.process import start_server
from hwbench_pipeline.bench.scenarios.generation import GENERATION_RULE, GenerationConfig, GenerationScenario
from hwbench_pipeline.paths import host_lock_dir


def _csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def model_names(text: str) -> list[str]:
    if text == "architectures":
        from hwbench_pipeline.bench.catalog.generative import generative_architectures

        return generative_architectures()
    return _csv(text)


def configurations(args: argparse.Namespace, targets: list[str]) -> list[GenerationConfig]:
    rule = dataclasses.replace(GENERATION_RULE, max_seconds=args.max_seconds)
    configs = []
    for target in targets:
        parsed = parse_target(target)
        offered = load_backend(parsed.backend).generation_caches(parsed.device_kind)
        caches = [c for c in _csv(args.caches) if c in offered] or list(offered[:1])
        configs += [GenerationConfig(family, args.preset, target, batch_size=batch, seq_len=prompt,
                                     new_tokens=args.new_tokens, cache=cache, threads=args.threads, rule=rule)
                    for family in model_names(args.models) for cache in caches for prompt in map(int, _csv(args.prompt))
                    for batch in map(int, _csv(args.batch))]
    return configs


def print_rows(rows: list[dict]) -> None:
    header = (f"{'target':<16} {'model':<12} {'cache':<9} {'bs':>3} {'prompt':>6} {'TTFT p50':>9} {'p99':>8} "
              f"{'ITL p50':>8} {'p99':>8} {'tok/s':>8} {'decode':>8} {'KV B/tok':>9} {'RSS MiB':>8} {'=gen':>6}")
    print(header)
    for row in rows:
        model = f"{row['family']}/{row['preset']}"
        what = f"{row['target']:<16} {model:<12} {row['cache_implementation']:<9} {row['batch_size']:>3} " \
               f"{row['seq_len']:>6}"
        if row["status"] != "ok":
            print(f"{what} FAILED {row['failure_class']}: {row['message'].splitlines()[0][:90]}")
            continue
        nan = float("nan")  # a figure not measured (no inter-token latency with one new token)
        per_token = row["kv_cache_bytes_per_token"]
        print(f"{what} {row['ttft_p50_ms']:>9.1f} {row['ttft_p99_ms']:>8.1f} {row['itl_p50_ms'] or nan:>8.2f} "
              f"{row['itl_p99_ms'] or nan:>8.2f} {row['tokens_per_s']:>8.1f} {row['decode_tokens_per_s'] or nan:>8.1f} "
              f"{per_token if per_token is not None else nan:>9.0f} {row['peak_rss_mb']:>8.0f} "
              f"{row['tokens_matching_reference']:>3}/{row['new_tokens']}"
              + (" busy" if row.get("contaminated") else ""))


def print_ratios(rows: list[dict]) -> None:
    """Each configuration's decode speed against torch's dynamic cache at the same model, prompt and batch."""
    ok = [r for r in rows if r["status"] == "ok" and r["itl_p50_ms"]]
    shape = ("family", "preset", "seq_len", "batch_size")
    base = {tuple(r[k] for k in shape): r for r in ok
            if r["target"] == "cpu-torch" and r["cache_implementation"] == "dynamic"}
    print("\ndecode speed against cpu-torch dynamic (median ITL ratio; > 1 is faster) and TTFT ratio")
    for row in ok:
        ref = base.get(tuple(row[k] for k in shape))
        if ref is None or row is ref:
            continue
        print(f"  {row['target']:<16} {row['family']}/{row['preset']} {row['cache_implementation']:<9} "
              f"prompt {row['seq_len']} bs {row['batch_size']}: ITL x{ref['itl_p50_ms'] / row['itl_p50_ms']:.2f}, "
              f"TTFT x{ref['ttft_p50_ms'] / row['ttft_p50_ms']:.2f}")


def print_outcomes(rows: list[dict]) -> None:
    """Per target: configurations whose greedy tokens all equal generate()'s, those that diverged, and failures
    by class, with the architectures of each."""
    from collections import defaultdict

    outcomes: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["status"] != "ok":
            outcome = f"failed: {row['failure_class']}"
        elif row["tokens_matching_reference"] == row["new_tokens"]:
            outcome = "tokens equal generate()"
        else:
            outcome = "tokens diverged from generate()"
        outcomes[row["target"]][outcome].append(row["family"])
    print("\noutcomes per target")
    for target, groups in outcomes.items():
        total = sum(len(names) for names in groups.values())
        print(f"  {target}: {total} configurations")
        for outcome, names in sorted(groups.items(), key=lambda item: -len(item[1])):
            print(f"    {len(names):>4}  {outcome}: {', '.join(sorted(set(names)))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="llama,qwen2",
                        help="comma-separated models, or 'architectures': every generative architecture")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--prompt", default="128")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", default="1")
    parser.add_argument("--targets", default=None, help="default: every target detected here")
    parser.add_argument("--caches", default="dynamic,static,compiled")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-seconds", type=float, default=GENERATION_RULE.max_seconds)
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per configuration")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    start_server()
    targets = _csv(args.targets) if args.targets else [t.key for t in detect_targets()]
    configs = configurations(args, targets)
    print(f"{len(configs)} configurations on {', '.join(targets)}, {args.threads} threads")
    rows = run_configurations(GenerationScenario(), configs, "generation-benchmark", dispatch="process",
                              timeout_s=args.timeout_s, lock_dir=host_lock_dir(),
                              on_result=lambda i, n, cfg, row: print(f"[{i}/{n}] {cfg.label}", flush=True))
    print()
    print_rows(rows)
    print_ratios(rows)
    print_outcomes(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
        print(f"\nrows written to {args.json}")


if __name__ == "__main__":
    main()
