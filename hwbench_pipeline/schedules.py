"""Schedules: the nightly quick profile on every known target."""

import dagster as dg

from hwbench_pipeline.jobs import inference_job, profile_run_config
from hwbench_pipeline.partitions import hardware_target_partitions


@dg.schedule(job=inference_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
             description="Every night at 02:00 UTC: the quick profile on every hardware target partition.")
def nightly_quick_schedule(context: dg.ScheduleEvaluationContext):
    keys = context.instance.get_dynamic_partitions(hardware_target_partitions.name)
    if not keys:
        return dg.SkipReason("no hardware target partitions yet: materialize hardware_targets first")
    stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(run_key=f"nightly-quick-{stamp}-{k}", partition_key=k,
                          run_config=profile_run_config("quick"), tags={"hwbench/profile": "quick"})
            for k in keys]
