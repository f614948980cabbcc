"""Sensors: new hardware → its partition and its runs; new results → refresh everything downstream."""

import dagster as dg

from hwbench_pipeline.bench.hardware import detect_targets
from hwbench_pipeline.jobs import inference_job, profile_run_config, refresh_job
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.resources.settings import default_profile


def new_target_keys(instance: dg.DagsterInstance) -> list[str]:
    known = set(instance.get_dynamic_partitions(hardware_target_partitions.name))
    return [t.key for t in detect_targets() if t.key not in known]


@dg.sensor(job=inference_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Detects hardware targets on this host; a new one gets its partition and its runs "
                       "(the backfill for new hardware).")
def new_hardware_target_sensor(context: dg.SensorEvaluationContext):
    new = new_target_keys(context.instance)
    if not new:
        return dg.SkipReason("no new hardware target")
    context.log.info(f"new hardware targets: {', '.join(new)}")
    profile = default_profile()
    return dg.SensorResult(
        dynamic_partitions_requests=[hardware_target_partitions.build_add_request(new)],
        run_requests=[dg.RunRequest(run_key=f"new-target-{k}", partition_key=k,
                                    run_config=profile_run_config(profile), tags={"hwbench/profile": profile})
                      for k in new],
    )


@dg.asset_sensor(asset_key=dg.AssetKey("inference_runs"), job=refresh_job, minimum_interval_seconds=30,
                 default_status=dg.DefaultSensorStatus.RUNNING,
                 description="After new inference results land (from any run: a job, the UI, a backfill): "
                             "refresh the catalog, retrain the predictor, rebuild recommendations and the report.")
def refresh_after_measurement_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    return dg.RunRequest(run_key=f"refresh-after-{asset_event.run_id}")
