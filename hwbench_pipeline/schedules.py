"""Schedules: the quick profile every night and the full profile every week, on every hardware target; the
architectures sweep every week; a round of the benchmark planner every day.

All start stopped: measuring takes the host's cores for minutes (quick) or hours (full), so a user turns them
on in the UI (Automation) or with ``dagster schedule start``.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from hwbench_pipeline.jobs import planned_round_job, profile_run_config
from hwbench_pipeline.partitions import hardware_target_partitions

#: Every measurement asset partitioned by hardware target (inference, training, distributed): they share the
#: "benchmarks" group, so one added there is scheduled, backfilled for new hardware and watched for refreshes
#: without touching this file or sensors.py.
MEASUREMENTS = dg.AssetSelection.groups("benchmarks")

NO_PARTITIONS = ("no hardware target partitions yet: materialize hardware_targets "
                 "(or wait for new_hardware_target_sensor)")


def profile_run_requests(instance: dg.DagsterInstance, profile: str, scheduled_at: datetime,
                         label: str) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per known target partition, measuring ``profile``; a run key per tick and target, so a tick that
    is evaluated twice launches nothing twice."""
    keys = instance.get_dynamic_partitions(hardware_target_partitions.name)
    if not keys:
        return dg.SkipReason(NO_PARTITIONS)
    stamp = scheduled_at.strftime("%Y-%m-%dT%H%M")
    return [dg.RunRequest(run_key=f"{label}-{stamp}-{key}", partition_key=key, run_config=profile_run_config(profile),
                          tags={"hwbench/profile": profile, "hwbench/schedule": label})
            for key in keys]


@dg.schedule(target=MEASUREMENTS, cron_schedule="0 2 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Every night at 02:00 UTC: the quick profile on every hardware target partition.")
def nightly_quick_schedule(context: dg.ScheduleEvaluationContext):
    return profile_run_requests(context.instance, "quick", context.scheduled_execution_time, "nightly-quick")


@dg.schedule(target=MEASUREMENTS, cron_schedule="0 3 * * 0", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Every Sunday at 03:00 UTC: the full profile (base and published sizes, several batches, "
                         "sequences and precisions) on every hardware target partition. For big hosts and GPUs.")
def weekly_full_schedule(context: dg.ScheduleEvaluationContext):
    return profile_run_requests(context.instance, "full", context.scheduled_execution_time, "weekly-full")


@dg.schedule(job_name="coverage_job", cron_schedule="0 4 * * 6", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Every Saturday at 04:00 UTC: the architectures profile's coverage sweep on every hardware "
                         "target partition (only architectures whose transformers, runtime or config changed are "
                         "probed again).")
def weekly_architectures_schedule(context: dg.ScheduleEvaluationContext):
    return profile_run_requests(context.instance, "architectures", context.scheduled_execution_time,
                                "weekly-architectures")


#: the profile whose planner section the daily round plans from
PLANNED_ROUND_PROFILE = "quick"


@dg.schedule(job=planned_round_job, cron_schedule="0 5 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Every day at 05:00 UTC: one round of the benchmark planner with the quick profile's planner "
                         "section: retrain the predictor, plan the picks per target of this host, measure them.")
def daily_planned_round_schedule(context: dg.ScheduleEvaluationContext):
    stamp = context.scheduled_execution_time.strftime("%Y-%m-%dT%H%M")
    return dg.RunRequest(run_key=f"planned-round-{stamp}", run_config=profile_run_config(PLANNED_ROUND_PROFILE),
                         tags={"hwbench/profile": PLANNED_ROUND_PROFILE, "hwbench/schedule": "daily-planned-round"})
