"""Sensors: new hardware → its partition and its runs; new catalog models → their runs; new results → refresh.

The refresh is a sensor rather than declarative automation: ``AutomationCondition.eager()`` on an unpartitioned
asset downstream of the dynamically partitioned measurements waits until *every* target partition has been
materialized (its ``any_deps_missing`` clause), so one target that never measured would block the predictor and
the reports forever; it also cannot tell that a backfill is still measuring other targets. The sensor launches
one refresh after each batch of measurements instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import yaml

from hwbench_pipeline.bench.hardware import detect_targets
from hwbench_pipeline.bench.profiles import PROFILE_DIR, builtin_profiles, load_profile
from hwbench_pipeline.jobs import profile_run_config, refresh_job
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.schedules import MEASUREMENTS

#: the tag Dagster puts on every run of one partition
PARTITION_TAG = "dagster/partition"
#: a run in one of these states will still write results
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]


def new_target_keys(instance: dg.DagsterInstance) -> list[str]:
    known = set(instance.get_dynamic_partitions(hardware_target_partitions.name))
    return [t.key for t in detect_targets() if t.key not in known]


def partitions_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Target partitions with a run that is queued or running (measurements that have not landed yet)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED))
    return {run.tags[PARTITION_TAG] for run in runs if PARTITION_TAG in run.tags}


@dg.sensor(target=MEASUREMENTS, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Detects hardware targets on this host; a new one gets its partition and a run of every "
                       "measurement asset for it (the backfill for new hardware).")
def new_hardware_target_sensor(context: dg.SensorEvaluationContext, settings: HwbenchSettings):
    new = new_target_keys(context.instance)
    if not new:
        return dg.SkipReason("no new hardware target")
    context.log.info(f"new hardware targets: {', '.join(new)}")
    return dg.SensorResult(
        dynamic_partitions_requests=[hardware_target_partitions.build_add_request(new)],
        run_requests=[dg.RunRequest(run_key=f"new-target-{key}", partition_key=key,
                                    run_config=profile_run_config(settings.profile),
                                    tags={"hwbench/profile": settings.profile})
                      for key in new],
    )


def families_never_run(warehouse: WarehouseResource, families: Iterable[str],
                       targets: Iterable[str]) -> dict[str, list[str]]:
    """For each target that has results already: the families that never ran there (no measured and no failure
    row). Targets without any row are left out: their first runs come from new_hardware_target_sensor or a
    schedule, not from here."""
    store = warehouse.warehouse()
    if not (store.files("inference_results") or store.files("failures")):
        return {}
    with warehouse.get_connection() as connection:
        ran = connection.execute("SELECT DISTINCT target, family FROM inference_results "
                                 "UNION SELECT DISTINCT target, family FROM failures").fetchall()
    by_target: dict[str, set[str]] = {}
    for target, family in ran:
        by_target.setdefault(target, set()).add(family)
    return {target: missing for target in targets if target in by_target
            and (missing := sorted(set(families) - by_target[target]))}


def profile_for_families(base: str, families: list[str], out_dir: Path) -> Path:
    """A copy of profile ``base`` (a built-in name or a YAML path) that measures only ``families``, written under
    ``out_dir`` so the run it is handed to can load it like any profile file."""
    source = PROFILE_DIR / f"{base}.yaml" if base in builtin_profiles() else Path(base)
    data = yaml.safe_load(source.read_text())
    data["families"] = sorted(families)
    if isinstance(data.get("browsers"), dict) and "families" in data["browsers"]:
        data["browsers"]["families"] = sorted(families)
    data.pop("architectures", None)  # the coverage sweep is opt-in: a catch-up run of new families never starts it
    data["description"] = f"profile {source.stem} restricted to families new to the catalog: {', '.join(families)}"
    suffix = "-".join(sorted(families))
    if len(suffix) > 60:
        suffix = hashlib.sha256(suffix.encode()).hexdigest()[:12]
    path = out_dir / f"{source.stem}-new-{suffix}.yaml"
    text = yaml.safe_dump(data, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    load_profile(str(path))  # refuses a malformed copy here, not in the run
    return path


@dg.sensor(target=MEASUREMENTS, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Compares the profile's model families (the catalog in bench/models.py) with what each "
                       "measured target has run; families a target never ran get a run of just those families.")
def new_catalog_model_sensor(context: dg.SensorEvaluationContext, settings: HwbenchSettings,
                             warehouse: WarehouseResource):
    profile = settings.load_profile()
    targets = context.instance.get_dynamic_partitions(hardware_target_partitions.name)
    # a browser target's families are the profile's browsers: section's where it names them
    never_run = families_never_run(warehouse, profile.families, targets)
    missing = {target: wanted for target, fams in never_run.items()
               if (wanted := [f for f in fams if f in profile.grid_for(target).families])}
    busy = partitions_in_flight(context.instance)
    waiting = sorted(t for t in missing if t in busy)
    missing = {t: fams for t, fams in missing.items() if t not in busy}
    if not missing:
        why = f"; runs still in flight on {', '.join(waiting)}" if waiting else ""
        return dg.SkipReason(f"every family of profile {profile.name} has run on every measured target{why}")
    requests = []
    for target, families in sorted(missing.items()):
        path = profile_for_families(settings.profile, families, warehouse.profiles_dir)
        context.log.info(f"{target}: families never run there: {', '.join(families)} (profile {path})")
        requests.append(dg.RunRequest(run_key=f"new-models-{target}-{path.stem}", partition_key=target,
                                      run_config=profile_run_config(str(path)),
                                      tags={"hwbench/profile": path.stem, "hwbench/new_families": ",".join(families)}))
    return requests


#: what the refresh watches: every measurement asset, and the planner's measurements of its plan
WATCHED = MEASUREMENTS | dg.AssetSelection.assets("planned_runs")


def newest_measurement_after(context: dg.SensorEvaluationContext, storage_id: int) -> dict[str, int]:
    """The newest materialization of each measurement asset stored after ``storage_id`` (its storage id)."""
    keys = WATCHED.resolve(context.repository_def.asset_graph)
    newest = {}
    for key in keys:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=storage_id), limit=1).records
        if records:
            newest[key.to_user_string()] = records[0].storage_id
    return newest


@dg.sensor(job=refresh_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="After new measurements land (from any run: a schedule, the UI, a backfill, a planned "
                       "round) and no other "
                       "measurement is queued or running: refresh the catalog, retrain the predictor, rebuild "
                       "recommendations and reports, once for the whole batch.")
def refresh_after_measurement_sensor(context: dg.SensorEvaluationContext):
    # The cursor is the storage id of the newest measurement already refreshed for (anything else: start over).
    cursor = context.cursor or ""
    landed = newest_measurement_after(context, int(cursor) if cursor.isdigit() else 0)
    if not landed:
        return dg.SkipReason("no new measurement since the last refresh")
    busy = partitions_in_flight(context.instance)
    if busy:
        # The cursor stays put, so these materializations are seen again on the next tick.
        return dg.SkipReason(f"measurements still queued or running on {', '.join(sorted(busy))}: "
                             "refreshing once they land")
    newest = max(landed.values())
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"refresh-after-{newest}",
                                                       tags={"hwbench/refresh_after": ",".join(sorted(landed))})],
                           cursor=str(newest))
