"""Dagster's default run launcher, able to tell the daemon's run monitoring that a run's worker is gone.

Every hwbench asset that measures or writes sits in one pool that admits one step at a time. A run whose
worker process is killed (SIGKILL, the OOM killer) stays STARTED for ever and keeps the pool's slot, so every
later run would wait behind it. Dagster's run monitoring marks such a run failed, and then frees its slots,
but only with a launcher that can check a run worker's health, which the default one cannot. This one can:
the worker is a local process whose pid Dagster records when it starts it ("Started process for run").
``.dagster_home/dagster.yaml`` selects it and turns run monitoring on (docs/warehouse.md, "Crash safety").
"""

from __future__ import annotations

import psutil
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus


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
