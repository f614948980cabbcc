"""The host-wide measurement lock is held until the last measuring process of its holder is gone."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from hwbench_pipeline.bench.host_lock import MEASURING_LOCK_ENV, host_measurement_lock
from hwbench_pipeline.paths import REPO_ROOT

# The holder takes the lock and starts an owner (as the pipeline's driver starts a Ray worker) whose measuring
# process outlives the holder: the worker keeps running for its grace period after the driver is killed.
HOLDER = """
import subprocess, sys, time
from pathlib import Path
from hwbench_pipeline.bench.host_lock import host_measurement_lock

with host_measurement_lock(Path(sys.argv[1]), log=lambda _: None):
    subprocess.Popen([sys.executable, sys.argv[2], sys.argv[3]])
    time.sleep(300)
"""

OWNER = """
import os, sys, time
from hwbench_pipeline.bench.launchers.process import measure_in_fresh_process

def measure(path, run_id):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(4)  # the workload's duration is all this test needs of a measurement
    return {}

if __name__ == "__main__":
    measure_in_fresh_process(measure, sys.argv[1], "lock-test", timeout_s=600)
"""


def _wait_for_pid(pid_file: Path, holder: subprocess.Popen) -> int:
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and holder.poll() is None, "the measuring process never started"
        time.sleep(0.1)
    return int(pid_file.read_text())


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_run_killed_mid_measurement_keeps_the_host_until_its_measuring_process_is_gone(tmp_path):
    lock_dir, owner, pid_file = tmp_path / "locks", tmp_path / "owner.py", tmp_path / "child.pid"
    owner.write_text(OWNER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir), str(owner), str(pid_file)], env=env)
    try:
        child = _wait_for_pid(pid_file, holder)
    finally:
        holder.kill()  # SIGKILL: the kernel releases measure.lock now
        holder.wait()
    assert _running(child), "the measuring process must still be running for this test to mean anything"
    waits: list[str] = []
    with host_measurement_lock(lock_dir, log=waits.append):
        assert not _running(child), "the lock was granted while the killed run's measuring process still ran"
        assert os.environ[MEASURING_LOCK_ENV] == str(lock_dir / "measuring.lock")
    assert any("still running" in w for w in waits)
    assert MEASURING_LOCK_ENV not in os.environ


def test_a_measuring_process_is_given_the_measuring_lock_only_while_the_host_lock_is_held(tmp_path):
    from hwbench_pipeline.bench.launchers.process import measure_in_fresh_process

    assert measure_in_fresh_process(_environment_of_the_process, None, "no-lock", timeout_s=120).get(
        MEASURING_LOCK_ENV) is None
    with host_measurement_lock(tmp_path, log=lambda _: None):
        seen = measure_in_fresh_process(_environment_of_the_process, None, "lock", timeout_s=120)
    assert seen[MEASURING_LOCK_ENV] == str(tmp_path / "measuring.lock")


def _environment_of_the_process(cfg, run_id):
    return dict(os.environ)
