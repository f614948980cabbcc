"""A run whose worker process was killed is seen as failed by run monitoring, so it stops holding the pool."""

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.events import EngineEventData
from dagster._core.launcher.base import WorkerStatus

from hwbench_pipeline.paths import REPO_ROOT
from hwbench_pipeline.run_launcher import LocalRunLauncher, run_worker_pid


@dg.op
def noop() -> None:
    return None


@dg.job
def one_step() -> None:
    noop()


def test_the_instance_settings_select_this_launcher_and_turn_run_monitoring_on():
    settings = yaml.safe_load((REPO_ROOT / ".dagster_home" / "dagster.yaml").read_text())
    assert settings["run_launcher"] == {"module": "hwbench_pipeline.run_launcher", "class": "LocalRunLauncher"}
    assert settings["run_monitoring"]["enabled"] is True
    assert settings["run_monitoring"]["free_slots_after_run_end_seconds"] > 0


def test_a_run_whose_worker_is_killed_is_reported_failed_and_a_live_one_running(tmp_path: Path):
    overrides = {"run_launcher": {"module": "hwbench_pipeline.run_launcher", "class": "LocalRunLauncher"}}
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
