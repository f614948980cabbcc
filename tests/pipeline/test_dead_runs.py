"""A run whose worker process was killed is seen as failed by run monitoring, so it stops holding the pool."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.events import EngineEventData
from dagster._core.launcher.base import WorkerStatus

from hwbench_pipeline.dead_runs import LocalRunLauncher, release_dead_runs, run_worker_pid
from hwbench_pipeline.paths import REPO_ROOT


@dg.op
def noop() -> None:
    return None


@dg.job
def one_step() -> None:
    noop()


def test_the_instance_settings_select_this_launcher_and_turn_run_monitoring_on():
    settings = yaml.safe_load((REPO_ROOT / ".dagster_home" / "dagster.yaml").read_text())
    assert settings["run_launcher"] == {"module": "hwbench_pipeline.dead_runs", "class": "LocalRunLauncher"}
    assert settings["run_monitoring"]["enabled"] is True
    assert settings["run_monitoring"]["free_slots_after_run_end_seconds"] > 0


def test_a_run_whose_worker_is_killed_is_reported_failed_and_a_live_one_running(tmp_path: Path):
    overrides = {"run_launcher": {"module": "hwbench_pipeline.dead_runs", "class": "LocalRunLauncher"}}
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, LocalRunLauncher) and launcher.supports_check_run_worker_health
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        try:
            run = instance.create_run_for_job(one_step)
            instance.handle_run_event(run.run_id, _started(run))
            assert launcher.check_run_worker_health(run).status == WorkerStatus.UNKNOWN  # no pid recorded yet
            instance.report_engine_event(f"Started process for run (pid: {worker.pid}).", run,
                                         EngineEventData.in_process(worker.pid))
            assert run_worker_pid(instance, run) == worker.pid
            assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
            worker.kill()  # as SIGKILL or the OOM killer would end it
            worker.wait()
            time.sleep(0.1)
            health = launcher.check_run_worker_health(run)
            assert health.status == WorkerStatus.FAILED and f"pid {worker.pid}" in health.msg
        finally:
            if worker.poll() is None:
                worker.kill()


def _started(run: dg.DagsterRun) -> dg.DagsterEvent:
    return dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name,
                           message="started")


def test_a_killed_hwbench_run_frees_its_pool_slot_for_the_next_one(tmp_path: Path):
    from hwbench_pipeline.dead_runs import HOST_TAG, PID_STARTED_TAG, PID_TAG

    settings = yaml.safe_load((REPO_ROOT / ".dagster_home" / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides={"concurrency": settings["concurrency"]}, temp_dir=str(tmp_path)) as instance:
        # the process that executed the run, as `hwbench run` tags it, then killed mid-step holding the slot
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        import socket

        import psutil

        tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(process.pid),
                PID_STARTED_TAG: f"{psutil.Process(process.pid).create_time():.3f}"}
        killed = instance.create_run_for_job(one_step, tags=tags)
        instance.handle_run_event(killed.run_id, _started(killed))
        storage = instance.event_log_storage
        storage.set_concurrency_slots("hwbench_warehouse", 1)  # the instance settings' limit, in place up front
        assert storage.claim_concurrency_slot("hwbench_warehouse", killed.run_id, "noop").is_claimed
        alive = instance.create_run_for_job(one_step, tags={**tags, PID_TAG: str(os.getpid()),
                                                            PID_STARTED_TAG: f"{psutil.Process().create_time():.3f}"})
        instance.handle_run_event(alive.run_id, _started(alive))
        assert release_dead_runs(instance, log=lambda _: None) == []  # its process still lives
        process.kill()
        process.wait()
        nxt = instance.create_run_for_job(one_step)
        instance.handle_run_event(nxt.run_id, _started(nxt))
        assert not storage.claim_concurrency_slot("hwbench_warehouse", nxt.run_id, "noop").is_claimed
        lines: list[str] = []
        assert release_dead_runs(instance, log=lines.append) == [killed.run_id]
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
        assert storage.claim_concurrency_slot("hwbench_warehouse", nxt.run_id, "noop").is_claimed
        assert "pool slots freed" in lines[0]
        # a claim left for a run the instance does not know (its record lost) is freed too
        storage.free_concurrency_slots_for_run(nxt.run_id)
        assert storage.claim_concurrency_slot("hwbench_warehouse", "vanished-run", "noop").is_claimed
        assert release_dead_runs(instance, log=lambda _: None) == ["vanished-run"]
        assert storage.claim_concurrency_slot("hwbench_warehouse", nxt.run_id, "noop").is_claimed
