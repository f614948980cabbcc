"""distributed_runs[target]: train the profile's models on Ray Train (DDP, FSDP, pipeline) over 1..N workers on
one target, validate, store."""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.partition_target import MEASUREMENT_ASSET, resolve_target
from hwbench_pipeline.assets.storing import store_measurements
from hwbench_pipeline.bench.scenarios.distributed import (
    DistributedConfig,
    failure_row,
    run_distributed,
    unsupported_target_reason,
)
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.warehouse.validation import distributed_suite, failures_suite

SCENARIO = "distributed"


def _loggers(context: dg.AssetExecutionContext):
    seen: dict[str, tuple[int, int]] = {}

    def on_progress(cfg: DistributedConfig, status: dict) -> None:
        # a line when an attempt starts (a restart after a lost worker shows here) and at each quarter
        quarter = 4 * status["step"] // max(status["steps"], 1)
        mark = (status["attempt"], quarter)
        if seen.get(cfg.label) != mark:
            seen[cfg.label] = mark
            context.log.info(f"{cfg.label}: attempt {status['attempt']}, step {status['step']}/{status['steps']}")

    def on_result(i: int, n: int, cfg: DistributedConfig, row: dict) -> None:
        if row["status"] != "ok":
            context.log.warning(f"[{i}/{n}] {cfg.label}: FAILED {row['failure_class']}: "
                                f"{row['message'].splitlines()[0][:300]}")
            return
        busy = " (busy machine)" if row.get("contaminated") else ""
        ranks = ", ".join(f"{v:.1f}" for v in row["per_rank_throughput"])
        context.log.info(f"[{i}/{n}] {cfg.label}: {row['throughput_samples_s']:.1f} samples/s (ranks: {ranks}), "
                         f"step p50 {row['p50_ms']:.1f} ms, loss {row['loss_start']:.3f} -> {row['loss_end']:.3f}, "
                         f"attempts {row['attempts']}{busy}")
    return on_progress, on_result


@dg.asset(
    **MEASUREMENT_ASSET,
    check_specs=[
        check_spec(
            "distributed_results", "distributed_runs",
            "Great Expectations suite on the distributed rows this run stored: keys with strategy and "
                        "workers, every rank reported a positive throughput, positive ordered step latencies, "
                        "throughput = batch / p50, scaling efficiency in (0, 2], losses present; at least one "
                        "configuration measured when the target can train."),
        check_spec("failures", "distributed_runs",
                   "Every distributed failure row is classified, has a message and a unique key."),
    ],
)
def distributed_runs(context: dg.AssetExecutionContext, settings: HwbenchSettings, ray: RayResource):
    """The profile's distributed training configurations on this partition's target: Ray Train runs DDP, FSDP
    and pipeline-parallel training over 1..N workers placed on nodes that advertise the target, each rank's
    throughput is collected, scaling efficiency is computed against the 1-worker run, and every node's resource
    use is sampled. Failures (a worker lost beyond its retries, a configuration the cluster cannot place)
    become classified rows; rows that fail validation go to quarantine."""
    target_key = context.partition_key
    resolve_target(target_key, ray)
    profile = settings.load_profile()
    warehouse = settings.warehouse()
    # Its own measurement run id, so files of other scenarios materialized in the same Dagster run never collide.
    run_id = f"{context.run.run_id}-{SCENARIO}"
    started = datetime.now(UTC)

    configs = profile.distributed_configs(target_key)
    why_not = unsupported_target_reason(target_key)
    refused = [failure_row(c, run_id, "unsupported_configuration", why_not) for c in configs] if why_not else []
    runnable = [] if why_not else configs
    context.log.info(f"{target_key}: {len(runnable)} distributed configurations of profile {profile.name}"
                     + (f"; refused: {why_not}" if why_not else "")
                     + ("" if profile.distributed else " (the profile has no distributed section)"))
    on_progress, on_result = _loggers(context)
    rows = run_distributed(runnable, run_id, ray_address=ray.cluster_address, lock_dir=host_lock_dir(),
                           on_progress=on_progress, on_result=on_result, log=context.log.info) if runnable else []
    rows += refused

    stored = store_measurements(warehouse, rows, results_table="distributed_results", suite=distributed_suite(),
                                scenario=SCENARIO, run_id=run_id, partition=target_key,
                                dagster_run_id=context.run.run_id, profile=profile.name, started=started,
                                expected=bool(runnable), with_samples=False)
    checks = [
        stored_table_check(warehouse, "distributed_results", distributed_suite(), run_id, target_key,
                           required=bool(runnable)),
        stored_table_check(warehouse, "failures", failures_suite(), run_id, target_key, required=False),
    ]
    valid = stored.valid
    classes = Counter(r["failure_class"] for r in stored.failed)
    scaling = [f"- {r['strategy']} x{r['workers']} {r['family']}/{r['preset']}: {r['throughput_samples_s']:.1f} "
               f"samples/s, efficiency {r['scaling_efficiency']:.2f}" for r in valid if r["scaling_efficiency"]]
    metadata: dict[str, object] = {
        "profile": profile.name,
        "run_id": run_id,
        "configurations": len(rows),
        "measured": len(valid),
        "failed": len(stored.failed),
        "quarantined": len(stored.invalid),
        "failure_classes": ", ".join(f"{k}: {v}" for k, v in sorted(classes.items())) or "none",
        "retried": sum(1 for r in valid if (r.get("attempts") or 1) > 1),
        "contaminated": sum(1 for r in valid if r.get("contaminated")),
        "scaling_efficiency": dg.MetadataValue.md("\n".join(scaling) or "none"),
        "validation": stored.outcome.summary(),
    }
    if "distributed_results" in stored.paths:
        metadata["results_path"] = dg.MetadataValue.path(str(stored.paths["distributed_results"]))
    yield dg.MaterializeResult(metadata=metadata, check_results=checks)
