"""The measurement assets, one per scenario, from one factory: plan the profile's configurations on the
partition's target, dispatch them, finish, validate and store, and check what landed."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.partition_target import MEASUREMENT_ASSET, resolve_target
from hwbench_pipeline.bench.checkpoint import JOURNALS_DIR, Checkpoint
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.profiles import Profile
from hwbench_pipeline.bench.scenarios.base import Scenario
from hwbench_pipeline.bench.trained import TRAINED_DIR
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.peaks import device_peaks
from hwbench_pipeline.warehouse.storing import StoredRun, store_measurements
from hwbench_pipeline.warehouse.validation import failures_suite, latency_samples_suite


@dataclass(frozen=True)
class MeasurementAsset:
    """What one scenario's asset says about itself in the UI, and the figures its materializations show."""

    scenario: Scenario
    description: str
    results_check: str  # what the results table's blocking check proves
    suite: Callable[[], object]  # the results table's Great Expectations suite
    timeout_s: Callable[[Profile], float]
    #: whether a run that measured nothing failed even when nothing was runnable (inference: the profile is
    #: about this target)
    results_required: bool = False
    extra_metadata: Callable[[StoredRun], dict] = field(default=lambda stored: {})  # scenario-specific figures


def measurement_asset(spec: MeasurementAsset) -> dg.AssetsDefinition:
    scenario = spec.scenario
    name = f"{scenario.name}_runs"
    checks = [check_spec(scenario.results_table, name, spec.results_check),
              check_spec("failures", name, f"Every {scenario.name} failure row is classified, has a message and a "
                                           "unique key.")]
    if scenario.keeps_samples:
        checks.append(check_spec("latency_samples", name, "One positive raw latency per configuration and sample "
                                                          "index."))

    @dg.asset(name=name, description=spec.description, check_specs=checks, **MEASUREMENT_ASSET)
    def measure(context: dg.AssetExecutionContext, settings: HwbenchSettings, warehouse: WarehouseResource,
                ray: RayResource):
        target_key = context.partition_key
        resolve_target(target_key, ray)
        warehouse = warehouse.warehouse()  # from here on, the store the resource points at
        profile = settings.load_profile().with_trained_dir(warehouse.data_dir / TRAINED_DIR)
        run_id = f"{context.run.run_id}{scenario.run_id_suffix}"
        started = datetime.now(UTC)

        plan = scenario.plan(profile, target_key, run_id)
        context.log.info(f"{target_key}: {len(plan.runnable)} {scenario.name} configurations of profile "
                         f"{profile.name}; {len(plan.refused)} refused" + (f" ({plan.note})" if plan.note else ""))

        def on_result(i: int, n: int, cfg: object, row: dict) -> None:
            log = context.log.warning if scenario.is_warning(row) else context.log.info
            log(f"[{i}/{n}] {scenario.describe(cfg, row)}")

        # what a killed or failed run of this partition measured is kept here, and reused by the next one
        checkpoint = Checkpoint(warehouse.data_dir / JOURNALS_DIR / scenario.name / f"{target_key}.jsonl",
                                plan.runnable)
        rows = run_configurations(scenario, plan.runnable, run_id, ray_address=ray.cluster_address,
                                  timeout_s=ray.timeout_s or spec.timeout_s(profile), lock_dir=host_lock_dir(),
                                  memory_limit_mb=profile.memory_limit_mb, checkpoint=checkpoint, on_result=on_result,
                                  log=context.log.info) if plan.runnable else []
        rows = scenario.finish(rows, plan, run_id, device_peaks(warehouse, target_key))
        above_peak = sum(bool(r.get("above_peak")) for r in rows)
        if above_peak:
            context.log.warning(f"{above_peak} rows above the measured peak: the roofline reference is wrong for "
                                "them")

        expected = spec.results_required or bool(plan.runnable)
        stored = store_measurements(warehouse, rows, results_table=scenario.results_table, suite=spec.suite(),
                                    scenario=scenario.name, run_id=run_id, partition=target_key,
                                    dagster_run_id=context.run.run_id, profile=profile.name, started=started,
                                    expected=expected, with_samples=scenario.keeps_samples)
        checkpoint.remove()  # stored: the next run measures afresh
        # The blocking checks read back what landed, so they prove the stored data, not the rows in memory.
        results = [
            stored_table_check(warehouse, scenario.results_table, spec.suite(), run_id, target_key, required=expected),
            stored_table_check(warehouse, "failures", failures_suite(), run_id, target_key, required=False),
        ]
        if scenario.keeps_samples:
            results.append(stored_table_check(warehouse, "latency_samples", latency_samples_suite(), run_id,
                                              target_key, required=bool(stored.valid)))
        classes = Counter(r["failure_class"] for r in stored.failed)
        measured = stored.valid + [r for r, _ in stored.invalid]
        metadata: dict[str, object] = {
            "profile": profile.name,
            "run_id": run_id,
            "configurations": len(rows),
            "measured": len(stored.valid),
            "failed": len(stored.failed),
            "quarantined": len(stored.invalid),
            "failure_classes": ", ".join(f"{k}: {v}" for k, v in sorted(classes.items())) or "none",
            "contaminated_retried": sum(1 for r in measured if _measured_again(r))
            if scenario.retry_contaminated else None,
            "contaminated": sum(1 for r in measured if r.get("contaminated")),
            "noisy": sum(1 for r in measured if r.get("noisy")) if scenario.keeps_samples else None,
            "above_measured_peak": above_peak,
            **spec.extra_metadata(stored),
            "validation": stored.outcome.summary(),
        }
        if scenario.results_table in stored.paths:
            metadata["results_path"] = dg.MetadataValue.path(str(stored.paths[scenario.results_table]))
        yield dg.MaterializeResult(metadata={k: v for k, v in metadata.items() if v is not None},
                                   check_results=results)

    return measure


def _measured_again(row: dict) -> bool:
    """Whether the host's other work made a configuration take another process (or another attempt)."""
    if row.get("processes") is not None:
        return (row.get("processes_disturbed") or 0) > 0
    return (row.get("attempts") or 1) > 1
