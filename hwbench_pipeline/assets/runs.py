"""inference_runs[target]: measure the profile's configurations on one target, validate, store."""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.partition_target import MEASUREMENT_ASSET, device_peaks, resolve_target
from hwbench_pipeline.assets.storing import store_measurements
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.peaks import compare_with_peak
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, failure_row
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.warehouse.validation import (
    failures_suite,
    inference_suite,
    latency_samples_suite,
)


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


@dg.asset(
    **MEASUREMENT_ASSET,
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
    target = resolve_target(target_key, ray)
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
    above_peak = compare_with_peak(rows, device_peaks(warehouse, target_key))
    if above_peak:
        context.log.warning(f"{above_peak} rows above the measured peak: the roofline reference is wrong for them")
    rows += [failure_row(c, run_id, "unsupported_configuration",
                         f"precision {c.precision} is not supported on {target_key} "
                         f"(supported: {', '.join(supported)})")
             for c in refused]

    stored = store_measurements(warehouse, rows, results_table="inference_results", suite=inference_suite(),
                                scenario="inference", run_id=run_id, partition=target_key,
                                dagster_run_id=context.run.run_id, profile=profile.name, started=started,
                                expected=True, with_samples=True)
    valid, invalid, failed, outcome = stored.valid, stored.invalid, stored.failed, stored.outcome
    metadata: dict[str, object] = {}
    if "inference_results" in stored.paths:
        metadata["results_path"] = dg.MetadataValue.path(str(stored.paths["inference_results"]))

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
        "contaminated_retried": sum(1 for r in valid + [r for r, _ in invalid] if (r.get("attempts") or 1) > 1),
        "above_measured_peak": above_peak,
        "fastest_p50_ms": p50s[0] if p50s else None,
        "slowest_p50_ms": p50s[-1] if p50s else None,
        "validation": outcome.summary(),
    })
    yield dg.MaterializeResult(
        metadata={k: v for k, v in metadata.items() if v is not None},
        check_results=checks,
    )
