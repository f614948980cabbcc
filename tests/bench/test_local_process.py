"""Local process dispatch: each configuration in its own fresh process forked from the preloaded server;
a process that dies or hangs becomes a classified row and the rest carries on."""

import os
import signal
import subprocess
import sys
import time

import pytest

from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario, run_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.paths import REPO_ROOT

RULE = StoppingRule(ci_target=0.05, min_samples=5, max_seconds=0.3, warmup_min_calls=2, warmup_window=2,
                    warmup_max_seconds=0.2, processes=1, max_processes=1)


def _config(batch: int) -> InferenceConfig:
    return InferenceConfig("bert", "tiny", "cpu-torch", batch, 8, threads=1, rule=RULE)


class KilledOnBatch2(InferenceScenario):
    """Measures like the engine, except that the batch-2 configuration's process is killed outright (as the
    kernel's OOM killer would)."""

    def measure(self, cfg: InferenceConfig, run_id: str) -> dict:
        if cfg.batch_size == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return run_configuration(cfg, run_id)


def test_each_configuration_runs_in_its_own_fresh_process(tmp_path):
    rows = run_configurations(InferenceScenario(), [_config(1), _config(1), _config(3)], "local", dispatch="process",
                              lock_dir=tmp_path, retry_contaminated=0, timeout_s=120)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"], rows
    pids = [r["worker_pid"] for r in rows]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    for row in rows:
        assert row["p50_ms"] > 0 and row["n_samples"] >= 5 and row["flops_per_call"] > 0
        assert row["max_rel_diff"] < 1e-4  # SDPA against the eager reference from the counted forward
        assert row["peak_rss_mb"] >= row["baseline_rss_mb"] > 0


def test_a_killed_process_is_a_worker_crashed_row_and_the_rest_carries_on(tmp_path):
    rows = run_configurations(KilledOnBatch2(), [_config(1), _config(2), _config(3)], "local", dispatch="process",
                              lock_dir=tmp_path, retry_contaminated=0, timeout_s=120)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"], rows
    assert rows[1]["failure_class"] == "worker_crashed"
    assert "killed by SIGKILL" in rows[1]["message"]


def test_a_configuration_past_its_timeout_is_killed_and_recorded(tmp_path):
    slow = InferenceConfig("bert", "base", "cpu-torch", 1, 128, threads=1, rule=StoppingRule(max_seconds=60))
    t0 = time.monotonic()
    rows = run_configurations(InferenceScenario(), [slow], "local", dispatch="process", lock_dir=tmp_path,
                              retry_contaminated=0, timeout_s=1.0)
    assert rows[0]["failure_class"] == "timeout", rows
    assert rows[0]["message"].startswith("no result after")
    # killed at the limit: a bert-base run measuring for up to a minute is not waited for
    assert time.monotonic() - t0 < 8


def test_more_threads_than_cores_is_refused_before_starting(tmp_path):
    cfg = InferenceConfig("bert", "tiny", "cpu-torch", 1, 8, threads=(os.cpu_count() or 1) + 1, rule=RULE)
    rows = run_configurations(InferenceScenario(), [cfg], "local", dispatch="process", lock_dir=tmp_path)
    assert rows[0]["failure_class"] == "unsupported_configuration"
    assert "threads asked for" in rows[0]["message"]


def test_process_dispatch_refuses_a_ray_cluster(tmp_path):
    with pytest.raises(ValueError, match="this host only"):
        run_configurations(InferenceScenario(), [_config(1)], "local", dispatch="process",
                           ray_address="ray://cluster:10001")
    env = {**os.environ, "RAY_ADDRESS": "ray://cluster:10001", "HWBENCH_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-m", "hwbench_pipeline.cli", "bench", "--model", "bert",
                             "--dispatch", "process"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hwbench: error: --dispatch process measures on this host only, but RAY_ADDRESS=ray://cluster:10001 is "
        "set; unset it or use --dispatch ray"]


def grows_without_bound(cfg, run_id: str) -> dict:
    """Allocates (and touches) 64 MiB at a time until killed, as a model whose activations do not fit would."""
    held = []
    while True:
        held.append(bytearray(64 * 2**20))
        time.sleep(0.01)


def test_without_a_memory_cgroup_a_process_past_its_limit_is_killed_by_polling_its_rss(monkeypatch):
    from hwbench_pipeline.bench.launchers.process import WorkerOutOfMemory, measure_in_fresh_process
    from hwbench_pipeline.bench.trackers.oom import MemoryCgroup

    monkeypatch.setattr(MemoryCgroup, "create", classmethod(lambda cls, limit_mb: None))  # as on a host without
    t0 = time.monotonic()
    with pytest.raises(WorkerOutOfMemory, match=r"grew to \d+ MiB, past its limit of 600 MiB"):
        measure_in_fresh_process(grows_without_bound, None, "local", timeout_s=60, memory_limit_mb=600)
    assert time.monotonic() - t0 < 20


def test_where_a_memory_cgroup_can_be_made_the_kernel_enforces_the_limit_and_says_so():
    from hwbench_pipeline.bench.launchers.process import WorkerOutOfMemory, measure_in_fresh_process
    from hwbench_pipeline.bench.trackers.oom import MemoryCgroup

    probe = MemoryCgroup.create(100)
    if probe is None:
        pytest.skip("this process cannot create a memory cgroup here (not root, no delegated cgroup v2 subtree)")
    probe.remove()
    before = set(probe.path.parent.glob("hwbench-*"))  # other processes' cgroups are not this test's business
    t0 = time.monotonic()
    with pytest.raises(WorkerOutOfMemory, match=r"the kernel killed the measuring process at its memory limit of "
                                                r"600 MiB \(oom_kill in .*hwbench-"):
        measure_in_fresh_process(grows_without_bound, None, "local", timeout_s=60, memory_limit_mb=600)
    assert time.monotonic() - t0 < 20
    assert not set(probe.path.parent.glob("hwbench-*")) - before, "the cgroup outlived its process"


def test_a_process_the_kernels_out_of_memory_killer_ends_is_out_of_memory_not_a_crash(tmp_path):
    """The owner runs in a memory cgroup with a limit of its own (as a container would impose) and asks for no
    limit: only the kernel's counters can tell this SIGKILL from any other."""
    from hwbench_pipeline.bench.trackers.oom import MemoryCgroup

    box = MemoryCgroup.create(2500)
    if box is None:
        pytest.skip("this process cannot create a memory cgroup here (not root, no delegated cgroup v2 subtree)")
    script = tmp_path / "owner.py"
    script.write_text(OUT_OF_MEMORY_OWNER)
    try:
        result = subprocess.run([sys.executable, str(script), str(box.path)], capture_output=True, text=True,
                                timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    finally:
        gone = box.remove()
    assert result.returncode == 0, result.stderr
    assert gone, f"{box.path} outlived the processes in it"
    assert result.stdout.startswith("out_of_memory: the kernel's out-of-memory killer killed"), result.stdout


OUT_OF_MEMORY_OWNER = """
import sys
from pathlib import Path
from hwbench_pipeline.bench.trackers.oom import MemoryCgroup
from hwbench_pipeline.bench.launchers.process import measured_row

def grows(cfg, run_id):
    held = []
    while True:
        held.append(bytearray(64 * 2**20))

def failure(cfg, run_id, failure_class, message):
    return {"failure_class": failure_class, "message": message}

if __name__ == "__main__":
    MemoryCgroup(Path(sys.argv[1]), 2500).join()
    row = measured_row(grows, None, "oom-test", 120, failure)
    print(f"{row['failure_class']}: {row['message']}")
"""


def leaves_a_temporary_directory_and_dies(cfg: str, run_id: str) -> dict:
    """What an exporter killed mid-export leaves behind: a temporary directory holding a large file."""
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="export-"))
    (directory / "model.onnx").write_bytes(b"0" * 2**20)
    Path(cfg).write_text(str(directory))
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def test_a_killed_process_leaves_no_temporary_files_behind(tmp_path):
    from pathlib import Path

    from hwbench_pipeline.bench.launchers.process import WorkerCrashed, measure_in_fresh_process

    where = tmp_path / "where.txt"
    with pytest.raises(WorkerCrashed):
        measure_in_fresh_process(leaves_a_temporary_directory_and_dies, str(where), "local", timeout_s=60)
    left = Path(where.read_text())
    assert left.name.startswith("export-") and not left.exists() and not left.parent.exists()


OWNER_SCRIPT = """
import os, sys, time
from hwbench_pipeline.bench.launchers.process import measure_in_fresh_process

def measure(path, run_id):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(300)
    return {}

if __name__ == "__main__":
    measure_in_fresh_process(measure, sys.argv[1], "owner-test", timeout_s=600)
"""


def test_a_measuring_process_dies_with_the_process_that_owns_it(tmp_path):
    script, pid_file = tmp_path / "owner.py", tmp_path / "child.pid"
    script.write_text(OWNER_SCRIPT)
    owner = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and owner.poll() is None, "the measuring process never started"
            time.sleep(0.2)
        child = int(pid_file.read_text())
        os.kill(child, 0)  # alive while its owner is
        owner.kill()  # as a cancelled Ray worker or a killed CLI would die
        owner.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.kill(child, signal.SIGKILL)
        pytest.fail(f"the measuring process {child} outlived its owner by 20 s")
    finally:
        owner.kill()


def test_hwbench_bench_past_its_memory_limit_gives_an_out_of_memory_row(tmp_path):
    import json

    out = tmp_path / "rows.json"
    env = {**os.environ, "HWBENCH_DATA_DIR": str(tmp_path / "data"), "HWBENCH_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([sys.executable, "-m", "hwbench_pipeline.cli", "bench", "--model", "bert", "--preset",
                             "small", "--batch", "64", "--seq", "512", "--max-seconds", "1", "--processes", "1",
                             "--max-processes", "1", "--memory-limit-mb", "64", "--json", str(out)],
                            capture_output=True, text=True, env=env, timeout=300)
    rows = json.loads(out.read_text())
    assert [r["failure_class"] for r in rows] == ["out_of_memory"], result.stdout[-2000:]
    assert "64 MiB" in rows[0]["message"]
