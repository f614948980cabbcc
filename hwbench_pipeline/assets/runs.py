"""inference_runs[target]: measure the profile's configurations on one target, validate, store."""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from hwbench_pipeline.assets.catalog import model_catalog
from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.hardware import hardware_targets
from hwbench_pipeline.bench import hardware
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.environment import environment_fields
from hwbench_pipeline.bench.peaks import compare_with_peak
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, failure_row
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.warehouse.store import row_json
from hwbench_pipeline.warehouse.validation import (
    failures_suite,
    inference_suite,
    latency_samples_suite,
    split_valid_rows,
)


def latency_sample_rows(rows: list[dict], scenario: str = "inference") -> list[dict]:
    """The raw samples of measured rows, one row per sample in call order."""
    key = ["run_id", "target", "family", "preset", "batch_size", "seq_len", "precision", "threads"]
    return [{**{k: row[k] for k in key}, "scenario": scenario, "sample_index": i, "latency_ms": float(v)}
            for row in rows for i, v in enumerate(row.get("samples_ms") or [])]


def _progress_logger(context: dg.AssetExecutionContext):
    def on_result(i: int, n: int, cfg: InferenceConfig, row: dict) -> None:
        if row["status"] == "ok":
            busy = " (busy machine)" if row.get("contaminated") else ""
            context.log.info(f"[{i}/{n}] {cfg.label}: p50 {row['p50_ms']:.3f} ms, "
                             f"{row['throughput_samples_s']:.1f} samples/s, {row['n_samples']} samples, "
                             f"{row['stop_reason']}{busy}")
        else:
            context.log.warning(f"[{i}/{n}] {cfg.label}: FAILED {row['failure_class']}: "
                                f"{row['message'].splitlines()[0][:200]}")
    return on_result


def _device_peaks(warehouse, target_key: str) -> dict[str, float | None]:
    """The newest measured peaks of this target on this host (empty until hardware_targets has run)."""
    host = environment_fields()["host"]
    targets = warehouse.read("hardware_targets", latest=False).filter(
        (pl.col("target") == target_key) & (pl.col("host") == host)).sort("_written_at", descending=True)
    if not targets.height:
        return {}
    row = targets.row(0, named=True)
    return {p: row.get(f"peak_gflops_{p}") for p in ("fp32", "bf16", "fp16")}


@dg.asset(
    partitions_def=hardware_target_partitions,
    deps=[model_catalog, hardware_targets],
    group_name="benchmarks",
    pool="hwbench_warehouse",
    check_specs=[
        check_spec("inference_results", "inference_runs",
                   "Great Expectations suite on the rows this run stored: schema, non-null unique keys, positive "
                   "latencies, p50 ≤ p90 ≤ p99, throughput consistent with batch/latency; at least one "
                   "configuration measured."),
        check_spec("failures", "inference_runs", "Every failure row is classified, has a message and a unique key."),
        check_spec("latency_samples", "inference_runs",
                   "One positive raw latency per configuration and sample index."),
    ],
)
def inference_runs(context: dg.AssetExecutionContext, settings: HwbenchSettings, ray: RayResource):
    """Every inference configuration of the profile on this partition's target, each measured in a fresh
    Ray worker process. Failures become classified rows; rows that fail validation go to quarantine."""
    target_key = context.partition_key
    try:
        target = hardware.parse_target(target_key)
    except hardware.UnknownTargetError as exc:
        raise dg.Failure(str(exc)) from exc
    if not ray.cluster_address and target_key not in {t.key for t in hardware.detect_targets()}:
        raise dg.Failure(f"hardware target {target_key} is not available on this host and RAY_ADDRESS is unset; "
                         f"available here: {', '.join(t.key for t in hardware.detect_targets())}")
    profile = settings.load_profile()
    warehouse = settings.warehouse()
    run_id = context.run.run_id
    started = datetime.now(UTC)

    supported = load_backend(target.backend).precisions(target.device_kind)
    configs = profile.inference_configs(target_key, precisions_available=supported)
    refused = [c for c in profile.inference_configs(target_key) if c.precision not in supported]
    context.log.info(f"{target_key}: {len(configs)} configurations of profile {profile.name}; "
                     f"{len(refused)} refused (precision not supported here)")
    rows = run_configurations(
        configs, run_id,
        ray_address=ray.cluster_address,
        timeout_s=ray.timeout_s or profile.timeout_s,
        lock_dir=host_lock_dir(),
        on_result=_progress_logger(context),
        log=context.log.info,
    )
    above_peak = compare_with_peak(rows, _device_peaks(warehouse, target_key))
    if above_peak:
        context.log.warning(f"{above_peak} rows above the measured peak: the roofline reference is wrong for them")
    rows += [failure_row(c, run_id, "unsupported_configuration",
                         f"precision {c.precision} is not supported on {target_key} "
                         f"(supported: {', '.join(supported)})")
             for c in refused]

    measured = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    valid, invalid, outcome = split_valid_rows(measured, inference_suite())
    metadata: dict[str, object] = {}
    if valid:
        metadata["results_path"] = dg.MetadataValue.path(str(
            warehouse.write("inference_results", valid, run_id=run_id, partition=target_key)))
        warehouse.write("latency_samples", latency_sample_rows(valid), run_id=run_id, partition=target_key)
    if failed:
        warehouse.write("failures", failed, run_id=run_id, partition=target_key)
    if invalid:
        warehouse.write("quarantine", [
            {"run_id": run_id, "source_table": "inference_results", "failed_expectations": "; ".join(why),
             "row_json": row_json(row), "quarantined_at": datetime.now(UTC)} for row, why in invalid
        ], run_id=run_id, partition=target_key)
    warehouse.write("runs", [{
        "run_id": run_id, "dagster_run_id": context.run.run_id, "profile": profile.name, "target": target_key,
        "scenario": "inference", "n_configs": len(rows), "n_ok": len(valid), "n_failed": len(failed),
        "n_quarantined": len(invalid), "started_at": started, "finished_at": datetime.now(UTC),
        "status": "ok" if valid else "failed", **environment_fields(),
    }], run_id=run_id, partition=target_key)

    # The blocking checks read back what landed, so they prove the stored data, not the rows in memory.
    checks = [
        stored_table_check(warehouse, "inference_results", inference_suite(), run_id, target_key, required=True),
        stored_table_check(warehouse, "failures", failures_suite(), run_id, target_key, required=False),
        stored_table_check(warehouse, "latency_samples", latency_samples_suite(), run_id, target_key,
                           required=bool(valid)),
    ]
    classes = Counter(r["failure_class"] for r in failed)
    p50s = sorted(r["p50_ms"] for r in valid)
    metadata.update({
        "profile": profile.name,
        "configurations": len(rows),
        "measured": len(valid),
        "failed": len(failed),
        "quarantined": len(invalid),
        "failure_classes": ", ".join(f"{k}: {v}" for k, v in sorted(classes.items())) or "none",
        "contaminated_retried": sum(1 for r in measured if (r.get("attempts") or 1) > 1),
        "above_measured_peak": above_peak,
        "fastest_p50_ms": p50s[0] if p50s else None,
        "slowest_p50_ms": p50s[-1] if p50s else None,
        "validation": outcome.summary(),
    })
    yield dg.MaterializeResult(
        metadata={k: v for k, v in metadata.items() if v is not None},
        check_results=checks,
    )
