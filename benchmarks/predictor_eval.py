"""The predictor's and the recommender's held-out accuracy against the targets of issue 6.

    .venv/bin/python benchmarks/predictor_eval.py                     # on the committed fixture of real rows
    .venv/bin/python benchmarks/predictor_eval.py --data-dir data     # on a warehouse
    .venv/bin/python benchmarks/predictor_eval.py --json out.json     # also write every figure
    .venv/bin/python benchmarks/predictor_eval.py --generation rows.json   # prefill and decode rows of
                                                  # benchmarks/generation.py --json, with this host's peaks
    .venv/bin/python benchmarks/predictor_eval.py --journal data/sweeps/architectures.jsonl   # coverage probes
    ... --journal J --repeat R     # R: the same probes run again (architecture_sweep.py --only ... --journal R)
    ... --data-dir D --repeat-data-dir E   # E: another warehouse that measured the same configurations (two
                                           # `make run`s): the noise floor of the rows as the pipeline measures them

With ``--journal`` (sweep journals, benchmarks/architecture_sweep.py), the rows are the completed, timed
probes of those journals, and this host's peaks are measured now at the probes' thread count (the journals
must come from this host). Whole architectures are left out either way.

Targets (CPU targets, leaving out whole architectures): 90 % of latency predictions within ±10 %, MAPE <= 7 %,
90 % intervals covering 88–92 % of held-out medians; recommendations: the measured optimum picked in 95 % of
held-out cases, mean regret <= 2 %. Every split is printed beside the roofline-only baseline. Nothing here
is tuned to these targets: the figures are what the committed predictor reaches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwbench_pipeline.bench.precision import PRECISIONS  # noqa: E402
from hwbench_pipeline.predict.evaluation import evaluate_all, repeat_error  # noqa: E402
from hwbench_pipeline.predict.features import training_frame  # noqa: E402

FIXTURE = REPO / "tests" / "predict" / "fixtures"


def journal_probes(journals: list[str]) -> pl.DataFrame:
    """The newest probe per architecture and target of the journals, as training rows."""
    from hwbench_pipeline.bench.catalog.sweep import read_journal
    from hwbench_pipeline.predict.data import probes_as_results
    from hwbench_pipeline.warehouse.schema import ARCHITECTURE_COVERAGE

    newest = {}
    for journal in journals:
        for row in read_journal(Path(journal)):
            newest[(row["model_type"], row["preset"], row["target"])] = row
    rows = [{k: r.get(k) for k in ARCHITECTURE_COVERAGE.names if k != "finished_at"} for r in newest.values()]
    schema = pl.Schema({n: t for n, t in pl.Schema(ARCHITECTURE_COVERAGE).items() if n != "finished_at"})
    frame = pl.DataFrame(rows, schema=schema).with_columns(finished_at=pl.lit(None, pl.Datetime("us", "UTC")))
    return probes_as_results(frame)


def probe_noise_floor(frame: pl.DataFrame, repeat: str) -> dict:
    """How far a second probe of the same architecture lands from the first: the noise floor of probe medians."""
    again = journal_probes([repeat]).select("family", "target", other_ms="p50_ms")
    pairs = frame.select("family", "target", "p50_ms").join(again, on=["family", "target"])
    if not pairs.height:
        return {}
    return {"probes_repeated": repeat_error(pairs["p50_ms"].to_numpy(), pairs["other_ms"].to_numpy())}


def host_peaks(targets: list[str], threads: int) -> pl.DataFrame:
    """This host's peaks, measured now, as hardware_targets rows of ``targets``."""
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.environment import environment_fields
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.peaks import measure_peaks

    env = environment_fields()
    by_device, rows = {}, []
    for key in targets:
        target = parse_target(key)
        # per device and runtime: the int8 peak is each runtime's own GEMM (bench/peaks.py)
        if (target.torch_device, target.backend) not in by_device:
            precisions = load_backend(target.backend).precisions(target.device_kind)
            by_device[target.torch_device, target.backend] = measure_peaks(
                target.torch_device, tuple(precisions), threads, backend=target.backend)
        peaks = by_device[target.torch_device, target.backend]
        compute = peaks["compute_gflops"]
        rows.append({"target": key, "device_kind": target.device_kind, "backend": target.backend,
                     "peak_threads": threads, "peak_gbps": peaks["copy_gbps"]["value"],
                     **{f"peak_gflops_{p}": compute[p]["value"] if p in compute else None
                        for p in PRECISIONS},
                     "cpu_cores": env["cpu_cores"], "memory_gb": env["memory_gb"]})
    print("peaks measured now: " + "; ".join(f"{r['target']} fp32 {r['peak_gflops_fp32']:.1f} GFLOP/s, "
                                            f"{r['peak_gbps']:.1f} GB/s" for r in rows))
    return pl.DataFrame(rows)


def generation_rows(paths: list[str]) -> pl.DataFrame:
    """Rows written by ``benchmarks/generation.py --json`` as the predictor's prefill and decode rows."""
    from hwbench_pipeline.predict.generation_modes import generation_as_results

    rows = [row for path in paths for row in json.loads(Path(path).read_text())]
    keep = {"status", "family", "preset", "target", "batch_size", "seq_len", "new_tokens", "precision",
            "quantization", "cache_precision", "cache_implementation", "threads", "ttft_p50_ms", "itl_p50_ms",
            "peak_rss_mb", "baseline_rss_mb", "contaminated", "run_id", "backend", "device_kind"}
    frame = pl.DataFrame([{k: r.get(k) for k in keep} for r in rows], infer_schema_length=None)
    return generation_as_results(frame)


def load_frame(data_dir: str | None, clean_only: bool, journals: list[str] | None = None,
               generation: list[str] | None = None) -> pl.DataFrame:
    if generation:
        from hwbench_pipeline.bench.hardware import parse_target

        results = generation_rows(generation)
        kinds = {t: parse_target(t) for t in results["target"].unique().to_list()}
        results = results.with_columns(
            backend=pl.col("target").replace_strict({t: k.backend for t, k in kinds.items()}),
            device_kind=pl.col("target").replace_strict({t: k.device_kind for t, k in kinds.items()}))
        targets = host_peaks(sorted(kinds), int(results["threads"].max()))
    elif journals:
        results = journal_probes(journals)
        targets = host_peaks(sorted(results["target"].unique().to_list()), int(results["threads"].max()))
    elif data_dir:
        from hwbench_pipeline.predict import data
        from hwbench_pipeline.warehouse.store import Warehouse

        inputs = data.load(Warehouse(data_dir))
        results, targets = inputs.results, inputs.targets
    else:
        results = pl.read_parquet(FIXTURE / "measurements.parquet")
        targets = pl.read_parquet(FIXTURE / "hardware_targets.parquet")
    if clean_only:
        results = results.filter(~pl.col("contaminated").fill_null(False))
    frame = training_frame(results, None, targets)
    return frame.filter(pl.col("device_kind") == "cpu")


def warehouse_noise_floor(frame: pl.DataFrame, other_dir: str) -> dict:
    """How far the same configurations (the whole configuration key: model config, shape, precision, attention,
    threads and measuring method) land in another warehouse's newest rows: the noise floor of rows measured
    by the pipeline's method, split by measuring method."""
    from hwbench_pipeline.predict import data
    from hwbench_pipeline.warehouse.schema import CONFIG_KEY
    from hwbench_pipeline.warehouse.store import Warehouse

    other = data.load(Warehouse(other_dir)).results
    key = [*CONFIG_KEY, *(["mode"] if "mode" in frame.columns and "mode" in other.columns else [])]
    pairs = frame.select(*key, "p50_ms").join(other.select(*key, other_ms="p50_ms"), on=key)
    out = {}
    for (method,), rows in pairs.group_by("measurement_method", maintain_order=True):
        out[f"two warehouses, method {method}"] = repeat_error(rows["p50_ms"].to_numpy(), rows["other_ms"].to_numpy())
    return out


BUSY = 0.6  # foreign busy fraction above which make_fixture.py measured a configuration again


def noise_floor() -> dict:
    """How far a second measurement of the same configuration lands from the first (the fixture's repeats):
    pairs measured in similar conditions (the noise floor no predictor can beat on this data), and pairs where
    the first ran beside heavy foreign load (what contention does)."""
    path = FIXTURE / "repeats.parquet"
    if not path.exists():
        return {}
    keys = ["target", "family", "preset", "batch_size", "seq_len", "precision", "threads"]
    kept = pl.read_parquet(FIXTURE / "measurements.parquet").select(*keys, "p50_ms")
    pairs = pl.read_parquet(path).filter(pl.col("status") == "ok").select(
        *keys, other_ms="p50_ms", other_busy="foreign_busy_fraction").join(kept, on=keys)
    out = {}
    for name, rows in (("similar_conditions", pairs.filter(pl.col("other_busy") <= BUSY)),
                       ("beside_heavy_load", pairs.filter(pl.col("other_busy") > BUSY))):
        if rows.height:
            out[name] = repeat_error(rows["p50_ms"].to_numpy(), rows["other_ms"].to_numpy())
    return out


def verdict(value: float | None, ok: bool) -> str:
    return "n/a" if value is None else ("met" if ok else "MISSED")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="a warehouse instead of the committed fixture")
    parser.add_argument("--clean-only", action="store_true", help="drop rows flagged contaminated")
    parser.add_argument("--journal", action="append", help="a coverage sweep journal of this host (repeatable)")
    parser.add_argument("--repeat", help="a journal of the same probes run again: their noise floor is printed")
    parser.add_argument("--repeat-data-dir", help="with --data-dir: another warehouse that measured the same "
                                                  "configurations; their noise floor is printed")
    parser.add_argument("--generation", action="append",
                        help="rows of benchmarks/generation.py --json from this host (repeatable): their prefill "
                             "and decode steps are the rows")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()

    t0 = time.perf_counter()
    frame = load_frame(args.data_dir, args.clean_only, args.journal, args.generation)
    print(f"{frame.height} measured rows, {frame['architecture'].n_unique()} architectures, targets "
          f"{', '.join(sorted(frame['target'].unique()))}; contaminated rows: "
          f"{int(frame['contaminated'].fill_null(False).sum())}")
    evaluations = evaluate_all(frame)
    evaluations.pop("unseen_architecture_residuals", None)
    recommendations = evaluations.pop("recommendations", {})
    elapsed = time.perf_counter() - t0

    def pct(v):
        return "n/a" if v is None else f"{v * 100:5.1f} %"

    print("\nsplit                                     | model     |   n | MAPE    | median  | ±10 %   | ±20 %   | "
          "90 % cover")
    for method, result in evaluations["splits"].items():
        for who in ("predictor", "roofline_baseline"):
            m = result[who]
            print(f"{method[:41]:41s} | {who[:9]:9s} | {m['n']:3d} | {pct(m['mape'])} | {pct(m['median_ape'])} | "
                  f"{pct(m['within_10pct'])} | {pct(m['within_20pct'])} | {pct(m['coverage'])}")
        print(f"{'':41s} | answered by the roofline fallback: {pct(result['share_answered_by_roofline'])}")
        if "memory_predictor" in result:
            m = result["memory_predictor"]
            print(f"{'':41s} | peak memory: MAPE {pct(m['mape'])}, ±10 % {pct(m['within_10pct'])}, "
                  f"coverage {pct(m['coverage'])}")

    by_mode = evaluations["splits"].get("leave_architecture_out", {}).get("by_mode", {})
    if len(by_mode) > 1 or set(by_mode) - {"inference"}:
        print("\nleave-architecture-out per mode | rows | MAPE    | median  | ±10 %   | ±20 %   | 90 % cover")
        for mode, m in by_mode.items():
            print(f"{mode:31s} | {m['n']:4d} | {pct(m['mape'])} | {pct(m['median_ape'])} | {pct(m['within_10pct'])} | "
                  f"{pct(m['within_20pct'])} | {pct(m['coverage'])}")

    print("\nrecommendations, architectures held out | objective | decisions | picked optimum | mean regret")
    for who, objectives in recommendations.items():
        for objective, r in objectives.items():
            print(f"{who:37s} | {objective:10s} | {r['decisions']:9d} | {pct(r['picked_optimum']):>14s} | "
                  f"{pct(r['mean_regret'])}")

    family = evaluations["splits"].get("leave_architecture_out", {}).get("predictor", {})
    rec = recommendations.get("predictor", {})
    picked = [r["picked_optimum"] for r in rec.values()]
    regret = [r["mean_regret"] for r in rec.values()]
    rows = [
        ("leave-architecture-out: share within ±10 %", ">= 90 %", family.get("within_10pct"),
         family.get("within_10pct") is not None and family["within_10pct"] >= 0.90),
        ("leave-architecture-out: MAPE", "<= 7 %", family.get("mape"),
         family.get("mape") is not None and family["mape"] <= 0.07),
        ("leave-architecture-out: 90 % interval coverage", "88–92 %", family.get("coverage"),
         family.get("coverage") is not None and 0.88 <= family["coverage"] <= 0.92),
        ("recommendation: picked the measured optimum (worst objective)", ">= 95 %", min(picked) if picked else None,
         bool(picked) and min(picked) >= 0.95),
        ("recommendation: mean regret (worst objective)", "<= 2 %", max(regret) if regret else None,
         bool(regret) and max(regret) <= 0.02),
    ]
    print("\nissue 6 targets                                            | target   | reached  | verdict")
    for name, target, value, ok in rows:
        print(f"{name:58s} | {target:8s} | {pct(value):>8s} | {verdict(value, ok)}")
    estimators = evaluations["splits"].get("leave_architecture_out", {}).get("estimators", {})
    for source, m in estimators.items():
        print(f"\nanswers labelled {source!r}, scored held out on the {m['n']} rows that estimator answers: "
              f"MAPE {pct(m['mape'])}, within ±10 % {pct(m['within_10pct'])}, coverage {pct(m['coverage'])}")
    if args.repeat:
        floor = probe_noise_floor(frame, args.repeat)
    elif args.repeat_data_dir:
        floor = warehouse_noise_floor(frame, args.repeat_data_dir)
    else:
        floor = {} if args.data_dir or args.journal or args.generation else noise_floor()
    for name, f in floor.items():
        print(f"\nnoise floor, {name.replace('_', ' ')}: {f['n']} configurations measured twice differ by MAPE "
              f"{pct(f['mape'])}, median {pct(f['median_ape'])}; {pct(f['within_10pct'])} within ±10 %, "
              f"{pct(f['within_20pct'])} within ±20 %")
    print(f"\nevaluation took {elapsed:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"splits": evaluations, "recommendations": recommendations,
                                               "noise_floor": floor},
                                              indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
