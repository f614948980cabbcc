"""The nightly quick, weekly full, weekly architectures and daily planned-round schedules, evaluated against a
real Dagster instance."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from hwbench_pipeline.definitions import defs
from hwbench_pipeline.schedules import (
    NO_PARTITIONS,
    daily_planned_round_schedule,
    nightly_quick_schedule,
    weekly_architectures_schedule,
    weekly_full_schedule,
)

#: the code location with the schedules, whether or not definitions.py lists them all yet
CODE_LOCATION = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=defs.resources,
                               schedules=[nightly_quick_schedule, weekly_full_schedule,
                                          weekly_architectures_schedule, daily_planned_round_schedule])
SUNDAY_3AM = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
TARGETS = ["cpu-torch", "cpu-onnxruntime", "cpu-openvino"]


def tick(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, when: datetime):
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                        repository_def=CODE_LOCATION.get_repository_def())
    return schedule.evaluate_tick(context)


def test_cron_times_and_both_start_stopped():
    assert (nightly_quick_schedule.cron_schedule, weekly_full_schedule.cron_schedule) == ("0 2 * * *", "0 3 * * 0")
    assert {nightly_quick_schedule.execution_timezone, weekly_full_schedule.execution_timezone} == {"UTC"}
    assert {nightly_quick_schedule.default_status, weekly_full_schedule.default_status} == {
        dg.DefaultScheduleStatus.STOPPED}
    # Both run every measurement asset of the benchmarks group, the partitioned ones.
    graph = CODE_LOCATION.resolve_asset_graph()
    for schedule in (nightly_quick_schedule, weekly_full_schedule):
        job = CODE_LOCATION.resolve_job_def(schedule.job_name)
        assert job.partitions_def.name == "hardware_targets"
        assert dg.AssetKey("inference_runs") in dg.AssetSelection.groups("benchmarks").resolve(graph)


def test_the_architecture_sweep_schedule_starts_stopped_and_runs_only_the_coverage_sweep():
    assert weekly_architectures_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    job = CODE_LOCATION.resolve_job_def(weekly_architectures_schedule.job_name)
    assert job.partitions_def.name == "hardware_targets"
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"architecture_coverage"}


@pytest.mark.parametrize(("schedule", "profile"), [(nightly_quick_schedule, "quick"),
                                                   (weekly_full_schedule, "full"),
                                                   (weekly_architectures_schedule, "architectures")])
def test_one_run_per_target_partition_with_the_schedules_profile(schedule, profile):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("hardware_targets", TARGETS)
        result = tick(schedule, instance, SUNDAY_3AM)
        assert sorted(r.partition_key for r in result.run_requests) == sorted(TARGETS)
        for request in result.run_requests:
            assert request.run_config == {"resources": {"settings": {"config": {"profile": profile}}}}
            assert request.tags["hwbench/profile"] == profile
        # One key per tick and target: a tick evaluated twice launches nothing twice, the next night's does.
        keys = {r.run_key for r in result.run_requests}
        assert len(keys) == len(TARGETS)
        assert keys == {r.run_key for r in tick(schedule, instance, SUNDAY_3AM).run_requests}
        next_week = datetime(2026, 3, 8, 3, 0, tzinfo=UTC)
        assert keys.isdisjoint(r.run_key for r in tick(schedule, instance, next_week).run_requests)


@pytest.mark.parametrize("schedule", [nightly_quick_schedule, weekly_full_schedule, weekly_architectures_schedule])
def test_skips_with_a_reason_while_no_target_partition_exists(schedule):
    with dg.instance_for_test() as instance:
        result = tick(schedule, instance, SUNDAY_3AM)
        assert not result.run_requests and result.skip_message == NO_PARTITIONS


def test_the_planned_round_runs_daily_once_per_tick_with_the_quick_profiles_planner_and_starts_stopped():
    assert daily_planned_round_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert (daily_planned_round_schedule.cron_schedule, daily_planned_round_schedule.execution_timezone) == (
        "0 5 * * *", "UTC")
    job = CODE_LOCATION.resolve_job_def(daily_planned_round_schedule.job_name)
    assert job.partitions_def is None  # one plan covers every target of the host
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "performance_predictor", "benchmark_plan", "planned_runs"}
    with dg.instance_for_test() as instance:  # no target partition needed
        result = tick(daily_planned_round_schedule, instance, SUNDAY_3AM)
        [request] = result.run_requests
        assert request.run_config == {"resources": {"settings": {"config": {"profile": "quick"}}}}
        assert request.tags["hwbench/profile"] == "quick"
        assert request.run_key == tick(daily_planned_round_schedule, instance, SUNDAY_3AM).run_requests[0].run_key
        next_day = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
        assert request.run_key != tick(daily_planned_round_schedule, instance, next_day).run_requests[0].run_key
