"""The warehouse (Parquet + DuckDB views) against a directory of JSON result files: size and query time.

Generates N rows shaped like ``inference_results`` - every family and preset of the model catalog, batch sizes,
sequence lengths, precisions, six hardware targets, one run per target per night - with realistic-looking value
distributions. They are SYNTHETIC: data volume for a storage benchmark, not measurements. The same rows are
stored (a) through ``Warehouse.write``, one Parquet file per (run, target), and (b) the way ``hwbench bench
--json`` writes results: one JSON file per run and target, ``json.dumps(rows, indent=2)``. Then three typical
questions are answered both ways - a filter, a group-by, a join with the models table - by DuckDB through the
catalog's views, and by ``json.load`` of every file plus plain Python (faster than building a pandas frame
from a million dicts). Answers are checked equal. Each query runs several times; medians are printed with
ratios against the targets: >= 20x faster, >= 5x smaller.

    .venv/bin/python benchmarks/warehouse_vs_json.py [--rows 1000000] [--repeats 5] [--json-repeats 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from hwbench_pipeline.bench import models
from hwbench_pipeline.warehouse.schema import INFERENCE_RESULTS
from hwbench_pipeline.warehouse.store import Warehouse

# target -> (host, cpu model, cores, memory GB, runtime speed-up over torch, peak GFLOP/s of the device)
TARGETS = {
    "cpu-torch": ("bench-cpu-01", "AMD EPYC 9575F 64-Core Processor", 64, 256.0, 1.0, 2400.0),
    "cpu-onnxruntime": ("bench-cpu-01", "AMD EPYC 9575F 64-Core Processor", 64, 256.0, 1.3, 2400.0),
    "cpu-openvino": ("bench-cpu-01", "AMD EPYC 9575F 64-Core Processor", 64, 256.0, 1.6, 2400.0),
    "cuda0-torch": ("bench-gpu-01", "Intel(R) Xeon(R) Platinum 8480+", 112, 2048.0, 1.0, 60000.0),
    "cuda0-onnxruntime": ("bench-gpu-01", "Intel(R) Xeon(R) Platinum 8480+", 112, 2048.0, 1.1, 60000.0),
    "cuda1-torch": ("bench-gpu-02", "AMD EPYC 9654 96-Core Processor", 192, 1536.0, 1.0, 45000.0),
}
BATCHES = [1, 2, 4, 8, 16, 32]
PACKAGES = ("dagster=1.13.27;duckdb=2.0.1;numpy=2.3.4;onnx=1.23.2;onnxruntime=1.32.0;openvino=2026.4.1;"
            "optimum=2.1.0;polars=2.1.0;pyarrow=26.0.1;ray=2.60.0;torch=2.13.0;transformers=5.24.0")


def configurations(target: str, catalog: dict[tuple[str, str], dict]) -> list[dict]:
    """Every (family, preset, batch, seq, precision) a nightly full run of one target would measure."""
    precisions = ["fp32", "bf16"] + (["fp16"] if target.startswith("cuda") else [])
    configs = []
    for (family, preset), model in sorted(catalog.items()):
        default = models.default_seq_len(family)
        seqs = [1] if default == 1 else [max(1, default // 4), default, default * 4]
        for batch in BATCHES:
            for seq in seqs:
                for precision in precisions:
                    configs.append({"family": family, "preset": preset, "batch_size": batch, "seq_len": seq,
                                    "precision": precision, "params": model["params"]})
    return configs


def run_rows(rng: np.random.Generator, target: str, configs: list[dict], run_id: str, started: datetime,
             git_revision: str) -> pa.Table:
    """One run's rows as an Arrow table in the inference_results schema (synthetic values)."""
    host, cpu, cores, memory, speed, peak = TARGETS[target]
    n = len(configs)
    col = {k: np.array([c[k] for c in configs]) for k in configs[0]}
    params = col["params"].astype(float)
    tokens = col["batch_size"] * col["seq_len"]
    precision_speed = np.select([col["precision"] == "bf16", col["precision"] == "fp16"],
                                [1.8 if target.startswith("cpu") else 2.5, 2.6], 1.0)
    flops = 2.0 * params * tokens
    efficiency = rng.uniform(0.1, 0.35, n)  # of the device's peak, per configuration
    p50 = (flops / (peak * 1e9 * efficiency * precision_speed * speed) * 1e3 + 0.05) * rng.lognormal(0.0, 0.05, n)
    cv = rng.lognormal(math.log(0.02), 0.5, n)
    p90 = p50 * (1 + np.abs(rng.normal(0.03, 0.02, n)))
    p99 = p90 * (1 + np.abs(rng.normal(0.05, 0.05, n)))
    # hwbench's stopping rule: at least 10 samples, stop when the 95 % CI of the median is within +-1 %
    # (about 1.96 * 1.2533 * cv / sqrt(n)), or at the 10 s time cap.
    ci_samples = np.ceil((1.96 * 1.2533 * cv / 0.01) ** 2 * rng.uniform(0.8, 1.3, n))
    time_cap = np.floor(10_000.0 / p50)
    n_samples = np.maximum(np.minimum(ci_samples, time_cap), np.minimum(10, np.maximum(time_cap, 3))).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_samples)])
    samples = np.repeat(p50, n_samples) * rng.lognormal(0.0, np.repeat(cv, n_samples))
    half = cv * 1.96 / np.sqrt(n_samples) * 1.25
    busy = rng.beta(1.2, 12.0, n)
    seconds = np.cumsum(p50 * n_samples / 1e3 + rng.uniform(2.0, 20.0, n))
    start = np.datetime64(started.replace(tzinfo=None), "us") + (seconds * 1e6).astype("timedelta64[us]")
    device_kind = "cuda" if target.startswith("cuda") else "cpu"
    bytes_per_param = np.select([col["precision"] == "fp32"], [4.0], 2.0)
    baseline_rss = rng.normal(420.0, 15.0, n)
    columns = {
        "run_id": np.full(n, run_id), "target": np.full(n, target), "family": col["family"],
        "preset": col["preset"], "batch_size": col["batch_size"], "seq_len": col["seq_len"],
        "precision": col["precision"], "threads": np.full(n, cores if device_kind == "cpu" else 1),
        "precision_ran": col["precision"], "backend": np.full(n, target.split("-", 1)[1]),
        "device_kind": np.full(n, device_kind), "status": np.full(n, "ok"), "params": col["params"],
        "n_samples": n_samples, "warmup_calls": rng.integers(5, 40, n),
        "stop_reason": np.where(ci_samples <= time_cap, "ci_reached", "time_cap"),
        "ci_target": np.full(n, 0.01), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
        "mean_ms": p50 * (1 + rng.normal(0.01, 0.005, n)), "std_ms": p50 * cv,
        "cv": cv, "min_ms": p50 * (1 - np.abs(rng.normal(0.02, 0.01, n))), "max_ms": p99 * rng.uniform(1.0, 1.5, n),
        "median_ci_low_ms": p50 * (1 - half), "median_ci_high_ms": p50 * (1 + half), "ci_rel_halfwidth": half,
        "throughput_samples_s": col["batch_size"] / (p50 / 1e3),
        "throughput_tokens_s": np.where(col["seq_len"] > 1, tokens / (p50 / 1e3), np.nan),
        "first_call_ms": p50 * rng.uniform(1.5, 6.0, n), "load_s": params / 2e8 * rng.uniform(0.8, 1.5, n) + 0.2,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": baseline_rss + params * bytes_per_param / 2**20 * rng.uniform(1.05, 1.4, n),
        "device_peak_mb": np.where(device_kind == "cuda", params * bytes_per_param / 2**20 * 1.2, np.nan),
        "flops_per_call": flops, "achieved_gflops": flops / (p50 / 1e3) / 1e9,
        "pct_of_peak": flops / (p50 / 1e3) / 1e9 / peak * 100, "above_peak": np.zeros(n, bool),
        "max_abs_diff": np.where(col["precision"] == "fp32", rng.uniform(1e-7, 5e-6, n), rng.uniform(1e-3, 3e-2, n)),
        "max_rel_diff": np.where(col["precision"] == "fp32", rng.uniform(1e-7, 1e-5, n), rng.uniform(1e-3, 5e-2, n)),
        "machine_busy_fraction": busy, "foreign_busy_fraction": busy * rng.uniform(0.0, 0.3, n),
        "steal_fraction": rng.beta(1.0, 200.0, n), "loadavg_1m": rng.gamma(2.0, 0.6, n),
        "contaminated": busy > 0.3, "attempts": np.ones(n, np.int64),
        "samples_ms": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(samples)),
        "worker_pid": rng.integers(10_000, 4_000_000, n), "source": np.full(n, "hwbench"),
        "started_at": start, "finished_at": start + (p50 * n_samples * 1e3).astype("timedelta64[us]"),
        "host": np.full(n, host), "cpu_model": np.full(n, cpu), "cpu_cores": np.full(n, cores),
        "memory_gb": np.full(n, memory), "python_version": np.full(n, "3.11.7"),
        "torch_version": np.full(n, "2.13.0"), "transformers_version": np.full(n, "5.24.0"),
        "package_versions": np.full(n, PACKAGES), "git_revision": np.full(n, git_revision),
    }
    arrays = [columns[f.name] if isinstance(columns[f.name], pa.Array)
              else pa.array(columns[f.name], from_pandas=True).cast(f.type) for f in INFERENCE_RESULTS]
    return pa.Table.from_arrays(arrays, schema=INFERENCE_RESULTS)


def generate(rows: int, wh: Warehouse, json_dir: Path, seed: int) -> tuple[int, int, float, float]:
    """Write the catalog and runs both ways until ``rows`` rows; returns (rows, files, warehouse s, json s)."""
    rng = np.random.default_rng(seed)
    catalog = {(f, p): models.describe(f, p) for f in models.FAMILIES for p in models.PRESETS}
    model_rows = [{"run_id": "catalog", **row, "in_profile": True} for row in catalog.values()]
    wh.write("models", model_rows, run_id="catalog")
    (json_dir / "models.json").write_text(json.dumps(model_rows, indent=2, default=str))
    per_target = {t: configurations(t, catalog) for t in TARGETS}
    written = files = night = 0
    wh_s = json_s = 0.0
    first_night = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    while written < rows:
        started = first_night + timedelta(days=night)
        git = f"{rng.integers(0, 2**63):016x}{rng.integers(0, 2**63):016x}{rng.integers(0, 2**31):08x}"[:40]
        for target, configs in per_target.items():
            if written >= rows:
                break
            configs = configs[: rows - written]
            run_id = f"{rng.integers(0, 2**32):08x}-{rng.integers(0, 2**16):04x}-4{rng.integers(0, 2**12):03x}-" \
                     f"{rng.integers(0, 2**16):04x}-{rng.integers(0, 2**48):012x}"  # shaped like a Dagster run id
            table = run_rows(rng, target, configs, run_id, started, git)
            t0 = time.perf_counter()
            wh.write("inference_results", table, run_id=run_id, partition=target)
            t1 = time.perf_counter()
            folder = json_dir / target
            folder.mkdir(exist_ok=True)
            (folder / f"{run_id}.json").write_text(json.dumps(table.to_pylist(), indent=2, default=str))
            t2 = time.perf_counter()
            wh_s, json_s = wh_s + t1 - t0, json_s + t2 - t1
            written += table.num_rows
            files += 1
        night += 1
        print(f"\r  generated {written:,} of {rows:,} rows ({files} runs)", end="", flush=True)
    print()
    return written, files, wh_s, json_s


# ---- the three questions -----------------------------------------------------------------------------------
FILTER = dict(target="cpu-onnxruntime", family="bert", preset="base", precision="fp32")
FILTER_SQL = """SELECT run_id, batch_size, seq_len, p50_ms FROM inference_results
WHERE target = 'cpu-onnxruntime' AND family = 'bert' AND preset = 'base' AND precision = 'fp32' AND status = 'ok'
ORDER BY run_id, batch_size, seq_len"""
GROUP_SQL = """SELECT target, family, count(*), avg(p50_ms), max(throughput_samples_s) FROM inference_results
WHERE status = 'ok' GROUP BY target, family ORDER BY target, family"""
JOIN_SQL = """SELECT m.category, r.target, count(*), avg(r.achieved_gflops) FROM inference_results r
JOIN models_latest m USING (family, preset) WHERE m.params > 100000000 AND r.status = 'ok'
GROUP BY m.category, r.target ORDER BY m.category, r.target"""


def _json_rows(json_dir: Path):
    for path in sorted(json_dir.glob("*/*.json")):
        with open(path) as fh:
            yield from json.load(fh)


def json_filter(json_dir: Path) -> list[tuple]:
    out = [(r["run_id"], r["batch_size"], r["seq_len"], r["p50_ms"]) for r in _json_rows(json_dir)
           if r["status"] == "ok" and all(r[k] == v for k, v in FILTER.items())]
    return sorted(out)


def json_group(json_dir: Path) -> list[tuple]:
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0.0, -math.inf])
    for r in _json_rows(json_dir):
        if r["status"] == "ok":
            a = acc[(r["target"], r["family"])]
            a[0] += 1
            a[1] += r["p50_ms"]
            a[2] = max(a[2], r["throughput_samples_s"])
    return [(t, f, n, s / n, m) for (t, f), (n, s, m) in sorted(acc.items())]


def json_join(json_dir: Path) -> list[tuple]:
    with open(json_dir / "models.json") as fh:
        catalog = {(m["family"], m["preset"]): m for m in json.load(fh)}
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
    for r in _json_rows(json_dir):
        model = catalog.get((r["family"], r["preset"]))
        if model and model["params"] > 100_000_000 and r["status"] == "ok":
            a = acc[(model["category"], r["target"])]
            a[0] += 1
            a[1] += r["achieved_gflops"]
    return [(c, t, n, s / n) for (c, t), (n, s) in sorted(acc.items())]


def _same(a: list[tuple], b: list[tuple]) -> bool:
    def close(x, y):
        return math.isclose(x, y, rel_tol=1e-9) if isinstance(x, float) else x == y
    return len(a) == len(b) and all(len(x) == len(y) and all(map(close, x, y)) for x, y in zip(a, b, strict=True))


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def compact_and_requery(wh: Warehouse, repeats: int, json_s: dict[str, float]) -> str:
    """`hwbench db compact` on the warehouse, then the same queries again: what merging small files buys."""
    from hwbench_pipeline.warehouse.maintenance import compact

    files = len(wh.files("inference_results"))
    t0 = time.perf_counter()
    report = compact(wh, small_mb=64, target_mb=256)
    out = [f"\nafter `hwbench db compact` ({time.perf_counter() - t0:.0f} s: {report.describe()}; inference_results "
           f"{files} -> {len(wh.files('inference_results'))} files, {_size(wh.parquet_dir) / 2**20:.1f} MiB):"]
    for name, sql in (("filter", FILTER_SQL), ("group-by", GROUP_SQL), ("join models", JOIN_SQL)):
        wh_s, _ = timed(lambda sql=sql: wh.query(sql).rows(), repeats)
        out.append(f"{name:<16}{wh_s:>12.3f} s{json_s[name] / wh_s:>10.1f}x faster than the JSON files")
    return "\n".join(out)


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="inference_results rows to generate")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each warehouse query")
    parser.add_argument("--json-repeats", type=int, default=3, help="runs of each JSON query (slow)")
    parser.add_argument("--dir", help="where to write both stores (default: a new temporary directory)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--compact", action="store_true", help="then compact the warehouse and query it again")
    args = parser.parse_args()
    if args.rows < 1 or args.repeats < 1 or args.json_repeats < 1:
        parser.error("--rows, --repeats and --json-repeats must be positive")

    root = Path(args.dir or tempfile.mkdtemp(prefix="hwbench-wh-vs-json-"))
    root.mkdir(parents=True, exist_ok=True)
    wh, json_dir = Warehouse(root / "data"), root / "json"
    json_dir.mkdir(exist_ok=True)
    print(f"warehouse vs JSON result files: {args.rows:,} SYNTHETIC rows shaped like inference_results "
          f"(storage volume, not measurements); files under {root}; {os.cpu_count()} cores")
    try:
        t0 = time.perf_counter()
        rows, runs, wh_write_s, json_write_s = generate(args.rows, wh, json_dir, args.seed)
        print(f"  {rows:,} rows in {runs} runs (one Parquet file and one JSON file per run) over {len(TARGETS)} "
              f"targets; generated and written in {time.perf_counter() - t0:.0f} s")
        wh_bytes, json_bytes = _size(wh.parquet_dir), _size(json_dir)
        lines = [("write (total)", wh_write_s, json_write_s, "s", None)]
        results = {}
        for name, sql, json_fn in (("filter", FILTER_SQL, json_filter), ("group-by", GROUP_SQL, json_group),
                                   ("join models", JOIN_SQL, json_join)):
            wh_s, wh_rows = timed(lambda sql=sql: wh.query(sql).rows(), args.repeats)
            js_s, js_rows = timed(lambda fn=json_fn: fn(json_dir), args.json_repeats)
            results[name] = (len(wh_rows), _same(wh_rows, js_rows))
            lines.append((name, wh_s, js_s, "s", 20.0))
            print(f"  {name}: warehouse {wh_s:.3f} s, JSON {js_s:.1f} s, {len(wh_rows)} result rows, "
                  f"answers {'agree' if results[name][1] else 'DIFFER'}")
        if args.compact:
            compacted = compact_and_requery(wh, args.repeats, {name: js for name, _, js, _, _ in lines[1:]})
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\nmedians of {args.repeats} (warehouse, DuckDB over the Parquet views) and {args.json_repeats} (JSON: "
          f"json.load every file + plain Python) runs, warm page cache")
    print(f"{'':<16}{'warehouse':>14}{'JSON files':>14}{'ratio':>14}{'target':>10}")
    ratio = json_bytes / wh_bytes
    verdict = "met" if ratio >= 5 else "MISSED"
    print(f"{'on-disk size':<16}{wh_bytes / 2**20:>10.1f} MiB{json_bytes / 2**20:>10.1f} MiB"
          f"{ratio:>8.1f}x less{'>= 5x':>10}  {verdict}")
    for name, wh_s, js_s, unit, target in lines:
        ratio = js_s / wh_s
        goal = f">= {target:.0f}x" if target else ""
        verdict = ("met" if ratio >= target else "MISSED") if target else ""
        print(f"{name:<16}{wh_s:>12.3f} {unit}{js_s:>12.3f} {unit}{ratio:>8.1f}x {'faster' if target else '    '}"
              f"{goal:>10}  {verdict}")
    if args.compact:
        print(compacted)
    if not all(same for _, same in results.values()):
        raise SystemExit("the two stores gave different answers")


if __name__ == "__main__":
    main()
