"""A multi-table write killed at any point leaves the whole run or none of it once the warehouse is opened again."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hwbench_pipeline.paths import REPO_ROOT
from hwbench_pipeline.warehouse.store import Warehouse, WarehouseError
from hwbench_pipeline.warehouse.transaction import TRANSACTIONS_DIR

TABLES = ("inference_results", "latency_samples", "failures", "runs")


def run_rows(run_id: str, n: int = 3) -> dict[str, list[dict]]:
    """One run's rows in each of four tables, as a measurement stage stores them."""
    key = {"run_id": run_id, "target": "cpu-torch", "family": "bert", "preset": "tiny", "seq_len": 16,
           "precision": "fp32", "threads": 1}
    return {
        "inference_results": [{**key, "batch_size": b, "status": "ok", "p50_ms": 1.0 + b, "p90_ms": 1.1 + b,
                               "p99_ms": 1.2 + b, "samples_ms": [1.0 + b]} for b in range(1, n + 1)],
        "latency_samples": [{**key, "batch_size": b, "scenario": "inference", "sample_index": 0,
                             "latency_ms": 1.0 + b} for b in range(1, n + 1)],
        "failures": [{**key, "batch_size": 99, "status": "failed", "failure_class": "timeout", "message": "slow"}],
        "runs": [{"run_id": run_id, "target": "cpu-torch", "scenario": "inference", "n_configs": n + 1,
                  "n_ok": n, "n_failed": 1, "status": "ok"}],
    }


def write_run(wh: Warehouse, run_id: str) -> None:
    with wh.transaction() as tx:
        for table, rows in run_rows(run_id).items():
            tx.write(table, rows, run_id=run_id, partition="cpu-torch")


def visible_runs(wh: Warehouse) -> dict[str, set[str]]:
    """For each run id: the tables that show it."""
    seen: dict[str, set[str]] = {}
    for table in TABLES:
        for run_id in wh.read(table)["run_id"].unique().to_list():
            seen.setdefault(run_id, set()).add(table)
    return seen


def test_a_committed_transaction_lands_in_every_table(tmp_path):
    wh = Warehouse(tmp_path)
    write_run(wh, "r1")
    assert visible_runs(wh) == {"r1": set(TABLES)}
    assert not any((tmp_path / TRANSACTIONS_DIR).iterdir())
    assert wh.query("SELECT count(*) AS n FROM latency_samples")["n"][0] == 3  # the catalog sees it too


def test_a_transaction_that_raises_leaves_nothing(tmp_path):
    wh = Warehouse(tmp_path)
    write_run(wh, "r1")
    with pytest.raises(WarehouseError, match="not in its schema"), wh.transaction() as tx:
        tx.write("inference_results", run_rows("r2")["inference_results"], run_id="r2", partition="cpu-torch")
        tx.write("runs", [{"run_id": "r2", "bogus": 1}], run_id="r2", partition="cpu-torch")
    assert visible_runs(wh) == {"r1": set(TABLES)}
    assert not any((tmp_path / TRANSACTIONS_DIR).iterdir())


# The child writes runs in a loop; the parent SIGKILLs it at a random moment (or the child kills itself at a
# chosen point: before the commit, or between the renames that follow it).
WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[3])
    from test_transaction import write_run
    from hwbench_pipeline.warehouse.store import Warehouse

    point = sys.argv[2]
    if point != "random":
        real_replace = os.replace
        def replace_then_maybe_die(src, dst):
            if point == "before_commit" and str(dst).endswith("COMMIT"):
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
            if point == "between_renames" and str(dst).endswith(".parquet") and "warehouse" in str(dst):
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace_then_maybe_die
    wh = Warehouse(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        write_run(wh, f"r{i}")
        i += 1
""")


def _writer(tmp_path, point):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), point, os.path.dirname(__file__)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(("point", "expected"), [("before_commit", set()), ("between_renames", {"r0"})])
def test_a_writer_killed_at_a_chosen_point_leaves_the_whole_run_or_none(tmp_path, point, expected):
    proc = _writer(tmp_path, point)
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    wh = Warehouse(tmp_path)
    assert wh.recover(), "the dead writer left a transaction to finish or undo"
    assert set(visible_runs(wh)) == expected
    assert all(tables == set(TABLES) for tables in visible_runs(wh).values())
    assert not any((tmp_path / TRANSACTIONS_DIR).iterdir())


def test_writers_killed_at_random_moments_never_leave_a_partial_run(tmp_path):
    rng = random.Random(7)
    for trial in range(3):
        data = tmp_path / f"trial{trial}"
        proc = _writer(data, "random")
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc.wait()
        wh = Warehouse(data)
        wh.recover()
        partial = {run: tables for run, tables in visible_runs(wh).items() if tables != set(TABLES)}
        assert not partial, f"trial {trial}: runs visible in only some tables: {partial}"
