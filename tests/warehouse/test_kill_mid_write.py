"""A writer SIGKILLed in the middle of a large write: readers keep the previous data and see no half file."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from hwbench_pipeline.paths import REPO_ROOT
from hwbench_pipeline.warehouse import maintenance
from hwbench_pipeline.warehouse.store import Warehouse

TABLE = "latency_samples"

# Millions of random latencies: Parquet cannot compress them, so writing takes long enough to be caught.
WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import pyarrow as pa
    from hwbench_pipeline.warehouse.schema import TABLES
    from hwbench_pipeline.warehouse.store import Warehouse

    n = int(sys.argv[2])
    rng = np.random.default_rng(0)
    columns = {}
    for field in TABLES["latency_samples"]:
        if field.name == "sample_index":
            columns[field.name] = pa.array(np.arange(n))
        elif field.name == "latency_ms":
            columns[field.name] = pa.array(rng.lognormal(2.0, 0.3, n))
        elif pa.types.is_integer(field.type):
            columns[field.name] = pa.array(rng.integers(1, 64, n))
        else:
            columns[field.name] = pa.array([f"v{i}" for i in range(1000)]).take(rng.integers(0, 1000, n))
    table = pa.table(columns).cast(TABLES["latency_samples"])
    print("ready", flush=True)
    Warehouse(sys.argv[1]).write("latency_samples", table, run_id="big", partition="cpu-torch")
    print("finished", flush=True)
""")


def _previous(run_id: str) -> list[dict]:
    return [{"run_id": run_id, "scenario": "inference", "target": "cpu-torch", "family": "bert", "preset": "tiny",
             "batch_size": 1, "seq_len": 16, "precision": "fp32", "threads": 2, "sample_index": i,
             "latency_ms": 1.0 + i / 10} for i in range(5)]


def test_sigkill_during_a_large_write_leaves_previous_data_intact_and_an_orphan_temp_file(tmp_path):
    wh = Warehouse(tmp_path)
    old_file = wh.write(TABLE, _previous("old"), run_id="old", partition="cpu-torch")
    folder = old_file.parent
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "2000000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        deadline = time.monotonic() + 60
        temps: list[Path] = []
        while not temps and time.monotonic() < deadline and proc.poll() is None:
            temps = list(folder.glob(".big.parquet.*.tmp"))
            time.sleep(0.002)
        if not temps:
            pytest.fail(f"the writer finished before its temp file was seen (exit {proc.poll()})")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    temp = temps[0]
    assert temp.exists() and not (folder / "big.parquet").exists()
    with pytest.raises(Exception):  # noqa: B017 - any reader error: the temp file really is half a file
        pq.read_table(temp)
    # Readers see exactly the previous data: the half file is not matched by the views' glob.
    assert wh.files(TABLE) == [old_file]
    assert wh.read(TABLE)["latency_ms"].to_list() == [1.0, 1.1, 1.2, 1.3, 1.4]
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute(f"SELECT count(*), count(DISTINCT run_id) FROM {TABLE}").fetchone() == (5, 1)
    report = maintenance.check(wh)
    assert [(f.kind, f.path) for f in report.errors] == [("orphan_temp", str(temp))]
    assert "writer that died" in report.errors[0].message
    # The partition keeps working: the next write lands, and compaction sweeps the orphan away.
    wh.write(TABLE, _previous("next"), run_id="next", partition="cpu-torch")
    maintenance.compact(wh)
    assert not temp.exists() and maintenance.check(wh).ok and wh.read(TABLE).height == 10
