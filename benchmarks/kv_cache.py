"""KV-cache precision side by side in one run: what each width saves, what it costs in decode time, and what it
costs a decoder that has learned something.

For every cache precision (model, int8, int4, int3, int2) at each residual length:

* memory: bytes per token the cache holds, measured with kv_cache.cache_bytes on llama/small (random weights:
  bytes do not depend on them) after a prompt of ``--prompt`` tokens and ``--new-tokens`` greedy tokens, at the
  end (``B/tok``) and the most over the decode steps (``max``: a residual buffer at its fullest);
* speed: the median decode step (inter-token latency) of the same runs through the torch generator, sequences
  interleaved round by round across the configurations so that a change of machine load hits them all, and its
  ratio to the plain cache's (``slowdown``);
* quality: kv_quality.kv_cache_quality on the learned copy-task decoder (trained once into ``--decoder-dir``),
  over ``--quality-prompts`` held-out prompts: task accuracy under the cache and the full cache, top-1 agreement
  and KL(full || quantized) of the next-token distributions (teacher-forced), perplexity of the answer.

The plain cache ignores residual_length, so its rows at each residual length are one configuration measured
twice: how far apart their speeds are shows the run's noise. 12 min on a shared 2-core host that other work kept
busy (the speed part: HQQ's steps at residual 0 take 60-110 ms each).

    .venv/bin/python benchmarks/kv_cache.py [--residual 0,128] [--prompt 128] [--new-tokens 129] [--rounds 3] \\
        [--threads 2] [--quality-prompts 64] [--decoder-dir DIR] [--json out.json] [--html chart.html]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from hwbench_pipeline.bench import kv_quality, models
from hwbench_pipeline.bench.backends.torch import kv_cache
from hwbench_pipeline.bench.backends.torch.generate import TorchGenerator
from hwbench_pipeline.bench.precision import CACHE_PRECISIONS, MODEL_CACHE_PRECISION
from hwbench_pipeline.bench.trackers.system_load import is_contaminated, load_between, read_cpu_times
from hwbench_pipeline.bench.trained import TRAINED_DIR
from hwbench_pipeline.paths import default_data_dir

FAMILY, PRESET = "llama", "small"


def _csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def sequence(generator: TorchGenerator, new_tokens: int, on_step: Any = None) -> list[float]:
    """One greedy sequence; the seconds of each decode step (the prefill is not one). ``on_step`` runs after
    each step, outside the timed span."""
    steps = []
    token = generator.start()
    for _ in range(new_tokens - 1):
        start = time.perf_counter()
        token = generator.next(token)
        steps.append(time.perf_counter() - start)
        if on_step is not None:
            on_step()
    return steps


def measure_speed_and_memory(configs: list[tuple[str, int]], args: argparse.Namespace) -> dict[tuple, dict]:
    """Bytes per token and decode-step times of each (precision, residual) on llama/small."""
    model = models.build_model(FAMILY, PRESET)
    models.use_default_attention(model)  # SDPA, as the generation scenario runs it
    inputs = models.make_inputs(FAMILY, model.config, 1, args.prompt)
    generators = {}
    results: dict[tuple, dict] = {}
    for precision, residual in configs:
        kv_cache.prepare(precision)  # imports, quanto's extension: not in any measurement
        generator = TorchGenerator(model, inputs, "cpu", "fp32", max_new_tokens=args.new_tokens, cache="dynamic",
                                   cache_precision=precision, residual_length=residual)
        per_token: list[float] = []

        def record(gen: TorchGenerator = generator, seen: list[float] = per_token) -> None:
            # positions held: the prompt, plus every token fed back so far
            seen.append(gen.cache_bytes() / (args.prompt + len(seen) + 1))

        sequence(generator, args.new_tokens, record)  # warm-up, untimed; reads the bytes as the cache grows
        generators[precision, residual] = generator
        results[precision, residual] = {"bytes_per_token": per_token[-1], "max_bytes_per_token": max(per_token),
                                        "positions": args.prompt + args.new_tokens - 1,
                                        "cache_precision_ran": generator.cache_precision, "steps_s": []}
    cpu_before = read_cpu_times()
    for round_index in range(args.rounds):
        # rotate the order each round: no configuration always runs first (or right after a slow one)
        order = configs[round_index % len(configs):] + configs[:round_index % len(configs)]
        for key in order:
            results[key]["steps_s"] += sequence(generators[key], args.new_tokens)
    load = load_between(cpu_before, read_cpu_times())
    base = statistics.median(results[MODEL_CACHE_PRECISION, configs[0][1]]["steps_s"])
    for row in results.values():
        steps = row.pop("steps_s")
        row["itl_p50_ms"] = statistics.median(steps) * 1e3
        row["slowdown"] = statistics.median(steps) / base
        row["decode_steps"] = len(steps)
    results["load"] = {"foreign_fraction": load.foreign_fraction, "loadavg_1m": load.loadavg_1m,
                       "busy": is_contaminated(load)}
    return results


def measure_quality(configs: list[tuple[str, int]], args: argparse.Namespace) -> tuple[dict[tuple, dict], dict]:
    decoder = kv_quality.learned_decoder(args.decoder_dir, log=print)
    prompts = kv_quality.held_out_prompts(kv_quality.TASK, args.quality_prompts)
    quality = {key: kv_quality.kv_cache_quality(decoder, key[0], residual_length=key[1], prompts=prompts)
               for key in configs}
    return quality, kv_quality.read_sidecar(args.decoder_dir) or {}


def table(configs: list[tuple[str, int]], speed: dict, quality: dict) -> list[dict[str, Any]]:
    rows = []
    for precision, residual in configs:
        plain = speed[MODEL_CACHE_PRECISION, residual]["bytes_per_token"]
        s, q = speed[precision, residual], quality[precision, residual]
        rows.append({"cache_precision": precision, "residual_length": residual, **s,
                     "memory_saved_pct": 100 * (1 - s["bytes_per_token"] / plain),
                     **{k: v for k, v in q.items() if k not in ("cache_precision", "residual_length")},
                     "accuracy_drop_pp": 100 * (q["task_accuracy_full"] - q["task_accuracy"])})
    return rows


def print_table(rows: list[dict[str, Any]], speed: dict, provenance: dict, args: argparse.Namespace) -> None:
    print(f"\nmemory and speed: {FAMILY}/{PRESET}, prompt {args.prompt} + {args.new_tokens} new tokens (bytes at "
          f"{args.prompt + args.new_tokens - 1} positions), {args.rounds} interleaved rounds, {args.threads} threads"
          + (" (machine busy: other work took CPU)" if speed["load"]["busy"] else ""))
    print(f"quality: {kv_quality.MODEL_NAME} ({provenance.get('parameters')} parameters, copy of "
          f"{kv_quality.TASK.length} tokens out of {kv_quality.TASK.symbols}, held-out accuracy "
          f"{provenance.get('final_accuracy')}), {rows[0]['prompts']} held-out prompts")
    print(f"{'cache':<6} {'resid':>5} {'ran':<14} {'B/tok':>7} {'max':>7} {'saved':>6} {'ITL ms':>7} {'slow':>6} "
          f"{'acc':>6} {'full':>6} {'seq':>5} {'agree':>6} {'KL':>8} {'ppl':>7}")
    for r in rows:
        print(f"{r['cache_precision']:<6} {r['residual_length']:>5} {r['cache_precision_ran']:<14} "
              f"{r['bytes_per_token']:>7.0f} {r['max_bytes_per_token']:>7.0f} {r['memory_saved_pct']:>5.1f}% "
              f"{r['itl_p50_ms']:>7.2f} {r['slowdown']:>5.2f}x {r['task_accuracy']:>6.3f} "
              f"{r['task_accuracy_full']:>6.3f} {r['sequence_accuracy']:>5.2f} {r['top1_agreement']:>6.3f} "
              f"{r['kl_divergence']:>8.4f} {r['perplexity']:>7.3f}")


def write_html(rows: list[dict[str, Any]], path: Path) -> None:
    """Memory saved (x) against quality lost (y: accuracy drop, and KL), colour = decode slowdown, one point per
    bit width and residual length; self-contained (plotly.js embedded)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "task accuracy lost (percentage points)", "KL(full || quantized), nats per decode step"))
    residuals = sorted({r["residual_length"] for r in rows})
    symbols = ["circle", "diamond", "square", "triangle-up"]
    slowest = max(r["slowdown"] for r in rows)
    for i, residual in enumerate(residuals):
        points = [r for r in rows if r["residual_length"] == residual]
        for col, field in ((1, "accuracy_drop_pp"), (2, "kl_divergence")):
            figure.add_trace(go.Scatter(
                x=[r["memory_saved_pct"] for r in points], y=[r[field] for r in points], mode="markers+text",
                text=[r["cache_precision"] for r in points], textposition="top center",
                name=f"residual_length {residual}", legendgroup=str(residual), showlegend=col == 1,
                marker={"size": 14, "symbol": symbols[i % len(symbols)], "color": [r["slowdown"] for r in points],
                        "colorscale": "Viridis", "cmin": 1.0, "cmax": max(slowest, 1.01),
                        "colorbar": {"title": "decode slowdown (x plain)"} if col == 1 and i == 0 else None,
                        "showscale": col == 1 and i == 0, "line": {"width": 1, "color": "black"}},
                customdata=[[r["slowdown"], r["task_accuracy"], r["top1_agreement"], r["bytes_per_token"]]
                            for r in points],
                hovertemplate=("%{text}: saved %{x:.1f} %, slowdown %{customdata[0]:.2f}x, accuracy "
                               "%{customdata[1]:.3f}, agreement %{customdata[2]:.3f}, %{customdata[3]:.0f} B/token"
                               "<extra></extra>")),
                row=1, col=col)
    for col in (1, 2):
        figure.update_xaxes(title_text="KV-cache memory saved against the plain fp32 cache (%)", row=1, col=col)
    figure.update_layout(title="KV-cache precision: memory saved vs quality lost vs decode speed", height=520)
    figure.write_html(str(path), include_plotlyjs=True, full_html=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default=",".join(CACHE_PRECISIONS))
    parser.add_argument("--residual", default="0,128", help="residual lengths (the first is the speed baseline's)")
    parser.add_argument("--prompt", type=int, default=128)
    # 128 + 129 - 1 = 256 positions held at the end: llama/small's whole context
    parser.add_argument("--new-tokens", type=int, default=129)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality-prompts", type=int, default=kv_quality.QUALITY_PROMPTS)
    parser.add_argument("--decoder-dir", type=Path,
                        default=Path(default_data_dir()) / TRAINED_DIR / kv_quality.DECODER_SUBDIR)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--html", type=Path)
    args = parser.parse_args()
    precisions = _csv(args.precisions)
    if MODEL_CACHE_PRECISION not in precisions:
        precisions.insert(0, MODEL_CACHE_PRECISION)  # the baseline every ratio and saving is against
    configs = [(p, int(r)) for r in _csv(args.residual) for p in precisions]
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    quality, provenance = measure_quality(configs, args)
    quality_s = time.perf_counter() - start
    speed = measure_speed_and_memory(configs, args)
    print(f"quality figures {quality_s:.0f} s (one thread: kv_quality.QUALITY_THREADS), memory and speed "
          f"{time.perf_counter() - start - quality_s:.0f} s")
    rows = table(configs, speed, quality)
    print_table(rows, speed, provenance, args)
    print(f"\n{time.perf_counter() - start:.0f} s in all; load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": speed["load"], "decoder": provenance,
                                         "settings": {k: str(v) for k, v in vars(args).items()}}, indent=2) + "\n")
    if args.html:
        write_html(rows, args.html)


if __name__ == "__main__":
    main()
