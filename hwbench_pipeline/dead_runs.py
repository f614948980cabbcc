"""Dagster runs whose process was killed: they must not hold the warehouse pool for ever.

Every hwbench asset that measures or writes sits in one pool that admits one step at a time. A run whose
worker process is killed (SIGKILL, the OOM killer) stays STARTED for ever and keeps the pool's slot, so every
later run would wait behind it. Two kinds of run, two remedies (docs/warehouse.md, "Crash safety"):

* runs launched from the UI, a schedule or a sensor: Dagster's run monitoring marks such a run failed and frees
  its slots, with a launcher that can check a run worker's health, which the default one cannot.
  :class:`LocalRunLauncher` can: the worker is a local process whose pid Dagster records when it starts it
  ("Started process for run"). ``.dagster_home/dagster.yaml`` selects it and turns run monitoring on.
* runs of ``hwbench run``, which executes in its own process (no daemon watches it): each is tagged with that
  process's host, pid and start time (:func:`process_tags`), and :func:`release_dead_runs`, called before the
  next ``hwbench run`` starts, marks the runs whose process is gone failed and frees their slots.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import psutil
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, DefaultRunLauncher, RunsFilter
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

#: tags of a run executed in an hwbench process: where it runs, and which process it is
HOST_TAG, PID_TAG, PID_STARTED_TAG = "hwbench/host", "hwbench/pid", "hwbench/pid_started"
_UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def run_worker_pid(instance: DagsterInstance, run: DagsterRun) -> int | None:
    """The pid Dagster recorded when it started the run's worker process, if it did."""
    for record in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT).records:
        event = record.event_log_entry.dagster_event
        if event is not None and (event.message or "").startswith("Started process for run"):
            pid = event.engine_event_data.metadata.get("pid")
            if pid is not None and str(pid.value).isdigit():
                return int(pid.value)
    return None


def worker_health(pid: int | None, started_at: float | None) -> CheckRunHealthResult:
    """RUNNING while the process lives (and is the one started for the run, not a later one given its pid)."""
    if pid is None:
        return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run worker's pid is not recorded yet")
    try:
        process = psutil.Process(pid)
        alive = process.status() != psutil.STATUS_ZOMBIE
        reused = started_at is not None and process.create_time() > started_at + 1.0
    except psutil.NoSuchProcess:
        alive, reused = False, False
    if alive and not reused:
        return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
    return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker process (pid {pid}) is gone: it was killed "
                                                     "or crashed without ending the run", run_worker_id=str(pid))


class LocalRunLauncher(DefaultRunLauncher):
    """The default launcher (runs in local processes) with run-worker health checks for run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        record = self._instance.get_run_record_by_id(run.run_id)
        started = record.start_time if record is not None else None
        return worker_health(run_worker_pid(self._instance, run), started)


def process_tags() -> dict[str, str]:
    """Tags that say which process of which host executes a run (for :func:`release_dead_runs`)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            PID_STARTED_TAG: f"{psutil.Process().create_time():.3f}"}


def release_dead_runs(instance: DagsterInstance, log: Callable[[str], None] = print) -> list[str]:
    """Mark failed, and free the pool slots of, every unfinished run executed by a process of this host that is
    gone (tagged by :func:`process_tags`), and free the slots still held for runs that are finished or unknown;
    returns those runs' ids."""
    released = []
    for run in instance.get_runs(filters=RunsFilter(statuses=_UNFINISHED)):
        tags = run.tags
        if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
            continue
        started = float(tags[PID_STARTED_TAG]) if tags.get(PID_STARTED_TAG) else None
        health = worker_health(int(tags[PID_TAG]), started)
        if health.status != WorkerStatus.FAILED:
            continue
        instance.report_run_failed(run, f"hwbench: {health.msg}")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(f"run {run.run_id} was left unfinished by a process that is gone (pid {tags[PID_TAG]}): marked failed, "
            "its pool slots freed")
        released.append(run.run_id)
    storage = instance.event_log_storage
    for run_id in sorted(storage.get_concurrency_run_ids()) if storage.supports_global_concurrency_limits else []:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:  # slots no live run will give back (the daemon frees these, when it runs)
            storage.free_concurrency_slots_for_run(run_id)
            log(f"pool slots of {'finished' if run else 'unknown'} run {run_id} freed")
            released.append(run_id)
    return released
