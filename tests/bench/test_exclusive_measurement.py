"""Two hwbench processes on one host never measure at the same time (the host-wide measurement lock)."""

import json
import os
import subprocess
import sys
from datetime import datetime

import pytest


@pytest.mark.slow
def test_two_concurrent_bench_processes_do_not_overlap(tmp_path):
    env = {**os.environ, "HWBENCH_DATA_DIR": str(tmp_path / "data"), "HWBENCH_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("RAY_ADDRESS", None)
    procs = []
    for name in ("a", "b"):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "hwbench_pipeline.cli", "bench", "--model", "bert", "--preset", "tiny",
             "--batch", "1,2", "--seq", "16", "--max-seconds", "0.5", "--json", str(tmp_path / f"{name}.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    windows = []  # each run's, from its first process's start to its last one's end (its configurations interleave)
    for name in ("a", "b"):
        rows = json.loads((tmp_path / f"{name}.json").read_text())
        assert len(rows) == 2 and all(row["status"] == "ok" for row in rows), rows
        windows.append((min(datetime.fromisoformat(r["started_at"]) for r in rows),
                        max(datetime.fromisoformat(r["finished_at"]) for r in rows)))
    (_, first_end), (second_start, _) = sorted(windows)
    assert first_end <= second_start
    assert any("another hwbench process is measuring" in out for out in outputs)
