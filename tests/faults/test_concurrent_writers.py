"""Two partitions stored at once (two backfills) while the catalog is refreshed and compaction runs: every
committed run is visible once, whole, in every table; nothing is lost, nothing duplicated."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwbench_pipeline.paths import REPO_ROOT
from hwbench_pipeline.warehouse import maintenance
from hwbench_pipeline.warehouse.store import Warehouse

RUNS = 12
TABLES = ("inference_results", "latency_samples", "failures", "runs")

# Each process: a partition's runs, one transaction each, as a measurement stage stores them.
BACKFILL = """
import sys
sys.path.insert(0, sys.argv[3])
from test_transaction import run_rows
from hwbench_pipeline.warehouse.store import Warehouse

wh, partition = Warehouse(sys.argv[1]), sys.argv[2]
for i in range(int(sys.argv[4])):
    run_id = f"{partition}-{i}"
    with wh.transaction() as tx:
        for table, rows in run_rows(run_id).items():
            tx.write(table, [{**r, "target": partition} for r in rows], run_id=run_id, partition=partition)
"""

# Refreshes the catalog, reads through it, and compacts, until told to stop.
MAINTAINER = """
import os, sys
from pathlib import Path
from hwbench_pipeline.warehouse import maintenance
from hwbench_pipeline.warehouse.store import Warehouse

wh, stop = Warehouse(sys.argv[1]), Path(sys.argv[2])
rounds = 0
while not stop.exists():
    wh.refresh_catalog()
    wh.query("SELECT count(*) FROM inference_results_latest")
    maintenance.compact(wh, small_mb=64)
    rounds += 1
print(rounds)
"""


@pytest.mark.slow
def test_two_backfills_a_refresh_and_compaction_at_once_lose_and_duplicate_nothing(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    tests_dir = str(REPO_ROOT / "tests" / "warehouse")
    stop = tmp_path / "stop"
    Warehouse(tmp_path / "data").refresh_catalog()
    maintainer = subprocess.Popen([sys.executable, "-c", MAINTAINER, str(tmp_path / "data"), str(stop)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", BACKFILL, str(tmp_path / "data"), p, tests_dir, str(RUNS)],
                                env=env, stderr=subprocess.PIPE, text=True) for p in ("cpu-torch", "cpu-openvino")]
    errors = [w.communicate(timeout=600)[1] for w in writers]
    stop.touch()
    rounds, maintainer_errors = maintainer.communicate(timeout=600)
    assert all(w.returncode == 0 for w in writers), errors
    assert maintainer.returncode == 0 and int(rounds) >= 1, maintainer_errors
    wh = Warehouse(tmp_path / "data")
    expected = {f"{p}-{i}" for p in ("cpu-torch", "cpu-openvino") for i in range(RUNS)}
    for table in TABLES:
        frame = wh.read(table)
        assert set(frame["run_id"].to_list()) == expected, table
        per_run = frame.group_by("run_id").len()["len"].to_list()
        assert len(set(per_run)) == 1, f"{table}: some run has more or fewer rows than the others: {per_run}"
    assert maintenance.check(wh).ok
