"""training_runs[target]: train the profile's models on one target (step latency, memory, convergence,
batch-size sweep), validate, store."""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.partition_target import MEASUREMENT_ASSET, device_peaks, resolve_target
from hwbench_pipeline.assets.storing import store_measurements
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.peaks import compare_with_peak
from hwbench_pipeline.bench.scenarios.training import (
    TrainingConfig,
    mark_batch_scaling,
    run_training_configuration,
    sweep_skip_reason,
    training_failure_row,
    unsupported_precision_reason,
)
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.warehouse.validation import (
    failures_suite,
    latency_samples_suite,
    training_suite,
)

SCENARIO = "training"


def _progress_logger(context: dg.AssetExecutionContext):
    def on_result(i: int, n: int, cfg: TrainingConfig, row: dict) -> None:
        if row["status"] != "ok":
            context.log.warning(f"[{i}/{n}] {cfg.label}: FAILED {row['failure_class']}: "
                                f"{row['message'].splitlines()[0][:200]}")
            return
        busy = " (busy machine)" if row.get("contaminated") else ""
        budget = "" if row["within_budget"] else f", OVER the {row['memory_budget_mb']:.0f} MiB budget"
        context.log.info(f"[{i}/{n}] {cfg.label}: step p50 {row['p50_ms']:.1f} ms, "
                         f"{row['throughput_samples_s']:.1f} samples/s, peak {row['peak_rss_mb']:.0f} MiB{budget}"
                         f"{busy}")
        if row.get("convergence_note"):
            log = context.log.info if row["converged"] else context.log.warning
            log(f"[{i}/{n}] {cfg.label}: {row['convergence_note']}")
    return on_result


def _not_run_rows(requested: list[TrainingConfig], rows: list[dict], run_id: str) -> list[dict]:
    """A failure row for each batch size the profile asked for that its sweep skipped (a smaller batch was
    already over the memory budget): the batch cannot fit, and the table says so."""
    done = {tuple(r[k] for k in ("family", "preset", "batch_size", "seq_len", "precision")) for r in rows}
    missing = []
    for cfg in requested:
        if (cfg.family, cfg.preset, cfg.batch_size, cfg.seq_len, cfg.precision) in done:
            continue
        reason = sweep_skip_reason(cfg, rows) or "not run"
        missing.append(training_failure_row(cfg, run_id, "out_of_memory", f"not run: {reason}"))
    return missing


@dg.asset(
    **MEASUREMENT_ASSET,
    check_specs=[
        check_spec("training_results", "training_runs",
                   "Great Expectations suite on the training rows this run stored: schema, non-null unique keys, "
                   "positive ordered step latencies, throughput = batch / p50, a memory budget, forward+backward "
                   "FLOPs above the forward's, sane convergence figures; at least one configuration measured "
                   "when the target can train."),
        check_spec("failures", "training_runs", "Every training failure row is classified, has a message and a "
                                                "unique key."),
        check_spec("latency_samples", "training_runs", "One positive raw step latency per configuration and "
                                                       "sample index."),
    ],
)
def training_runs(context: dg.AssetExecutionContext, settings: HwbenchSettings, ray: RayResource):
    """The profile's training configurations on this partition's target: forward, backward and an AdamW step
    per configuration, each in a fresh Ray worker, with a convergence run on the family's standard task and a
    batch-size sweep up to the memory budget. Failures become classified rows; rows that fail validation go
    to quarantine."""
    target_key = context.partition_key
    target = resolve_target(target_key, ray)
    profile = settings.load_profile()
    warehouse = settings.warehouse()
    # One Dagster run may materialize inference_runs and training_runs of one partition: the scenario gets its
    # own measurement run id, so their files (failures, runs, latency_samples) never overwrite each other.
    run_id = f"{context.run.run_id}-{SCENARIO}"
    started = datetime.now(UTC)

    configs = profile.training_configs(target_key)
    requested_batches = set(profile.training.batch_sizes) if profile.training else set()
    refused: list[dict] = []
    runnable: list[TrainingConfig] = []
    for cfg in configs:
        if target.backend != "torch":
            why = f"training runs on torch targets; {target_key} is a {target.backend} inference runtime"
        else:
            why = unsupported_precision_reason(cfg.precision, target.device_kind)
        if why is None:
            runnable.append(cfg)
        elif cfg.batch_size in requested_batches:  # sweep extensions of a refused configuration say nothing new
            refused.append(training_failure_row(cfg, run_id, "unsupported_configuration", why))
    context.log.info(f"{target_key}: {len(runnable)} training configurations of profile {profile.name}; "
                     f"{len(refused)} refused" + ("" if profile.training else " (the profile has no training section)"))
    rows = run_configurations(
        runnable, run_id,
        ray_address=ray.cluster_address,
        timeout_s=ray.timeout_s or (profile.training.timeout_s if profile.training else profile.timeout_s),
        lock_dir=host_lock_dir(),
        on_result=_progress_logger(context),
        log=context.log.info,
        measure=run_training_configuration,
        failure=training_failure_row,
        skip_reason=sweep_skip_reason,
    )
    rows += _not_run_rows([c for c in runnable if c.batch_size in requested_batches], rows, run_id)
    mark_batch_scaling(rows)
    above_peak = compare_with_peak(rows, device_peaks(warehouse, target_key))
    rows += refused

    stored = store_measurements(warehouse, rows, results_table="training_results", suite=training_suite(),
                                scenario=SCENARIO, run_id=run_id, partition=target_key,
                                dagster_run_id=context.run.run_id, profile=profile.name, started=started,
                                expected=bool(runnable), with_samples=True)
    valid, invalid, failed, outcome = stored.valid, stored.invalid, stored.failed, stored.outcome
    metadata: dict[str, object] = {}
    if "training_results" in stored.paths:
        metadata["results_path"] = dg.MetadataValue.path(str(stored.paths["training_results"]))

    checks = [
        stored_table_check(warehouse, "training_results", training_suite(), run_id, target_key,
                           required=bool(runnable)),
        stored_table_check(warehouse, "failures", failures_suite(), run_id, target_key, required=False),
        stored_table_check(warehouse, "latency_samples", latency_samples_suite(), run_id, target_key,
                           required=bool(valid)),
    ]
    with_convergence = [r for r in valid if r.get("convergence_steps")]
    classes = Counter(r["failure_class"] for r in failed)
    metadata.update({
        "profile": profile.name,
        "run_id": run_id,
        "configurations": len(rows),
        "measured": len(valid),
        "failed": len(failed),
        "quarantined": len(invalid),
        "failure_classes": ", ".join(f"{k}: {v}" for k, v in sorted(classes.items())) or "none",
        "converged": f"{sum(bool(r['converged']) for r in with_convergence)} of {len(with_convergence)}",
        "not_converged": ", ".join(f"{r['family']}/{r['preset']} bs={r['batch_size']}"
                                   for r in with_convergence if not r["converged"]) or "none",
        "largest_batch_in_budget": dg.MetadataValue.md("\n".join(
            f"- {r['family']}/{r['preset']} seq={r['seq_len']} {r['precision']}: {r['max_batch_in_budget']} "
            f"(stop: {r['batch_scaling_stop']})"
            for r in {(r['family'], r['preset'], r['seq_len'], r['precision']): r for r in valid}.values()) or "none"),
        "above_measured_peak": above_peak,
        "validation": outcome.summary(),
    })
    yield dg.MaterializeResult(metadata={k: v for k, v in metadata.items() if v is not None}, check_results=checks)
