"""A compaction or restore killed between the two renames of a swap (filesystems without RENAME_EXCHANGE):
the next maintenance operation puts the partition back, never deletes its only copy."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from hwbench_pipeline.paths import REPO_ROOT
from hwbench_pipeline.warehouse import maintenance
from hwbench_pipeline.warehouse.store import Warehouse

TABLE = "inference_results"

# The child forces the two-rename swap (as on NFS) and SIGKILLs itself right after the first rename, the
# moment the live folder exists only under its .old name.
KILLED_BETWEEN_RENAMES = textwrap.dedent("""
    import errno, os, signal, sys
    from hwbench_pipeline.warehouse import maintenance, swap
    from hwbench_pipeline.warehouse.store import Warehouse

    def no_exchange(a, b):
        raise OSError(errno.EINVAL, "exchange not supported")

    real_rename = os.rename

    def rename_then_die(src, dst):
        real_rename(src, dst)
        if str(dst).endswith(".old"):
            os.kill(os.getpid(), signal.SIGKILL)

    swap.rename_exchange = no_exchange
    os.rename = rename_then_die
    wh = Warehouse(sys.argv[1])
    if sys.argv[2] == "compact":
        maintenance.compact(wh)
    else:
        maintenance.restore(wh, sys.argv[3])
""")


def _row(run_id, p50, batch=1):
    return {"run_id": run_id, "target": "cpu-torch", "family": "bert", "preset": "tiny", "batch_size": batch,
            "seq_len": 16, "precision": "fp32", "threads": 2, "status": "ok", "p50_ms": p50, "p90_ms": p50,
            "p99_ms": p50, "samples_ms": [p50]}


def _runs(wh, n=4):
    for i in range(n):
        wh.write(TABLE, [_row(f"r{i}", 1.0 + i), _row(f"r{i}", 2.0 + i, batch=8)], run_id=f"r{i}",
                 partition="cpu-torch")


def _kill_between_renames(data_dir, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(data_dir), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _rows(wh):
    return sorted(wh.read(TABLE).select("run_id", "batch_size", "p50_ms").rows())


def test_a_compaction_killed_between_its_renames_loses_no_row(tmp_path):
    wh = Warehouse(tmp_path)
    _runs(wh)
    before = _rows(wh)
    _kill_between_renames(tmp_path, "compact")
    assert not (wh.parquet_dir / TABLE / "cpu-torch").exists(), "the kill did not fall between the renames"
    report = maintenance.check(wh)
    assert "interrupted_swap" in [f.kind for f in report.errors]
    maintenance.compact(wh)  # the next maintenance operation recovers first, then compacts
    assert _rows(wh) == before
    assert maintenance.check(wh).ok


def test_a_run_written_while_a_partition_was_between_renames_is_kept_beside_the_recovered_ones(tmp_path):
    wh = Warehouse(tmp_path)
    _runs(wh)
    before = _rows(wh)
    _kill_between_renames(tmp_path, "compact")
    wh.write(TABLE, [_row("late", 9.0)], run_id="late", partition="cpu-torch")
    maintenance.retain(wh, keep_runs=100)
    assert _rows(wh) == sorted([*before, ("late", 1, 9.0)])


@pytest.mark.parametrize("second_write", [False, True])
def test_a_restore_killed_between_its_renames_leaves_the_previous_warehouse(tmp_path, second_write):
    wh = Warehouse(tmp_path / "data")
    _runs(wh)
    backup = tmp_path / "backup"
    maintenance.backup(wh, backup)
    wh.write(TABLE, [_row("after-backup", 5.0)], run_id="after-backup", partition="cpu-torch")
    before = _rows(wh)
    _kill_between_renames(wh.data_dir, "restore", str(backup))
    assert not wh.parquet_dir.exists()
    if second_write:
        wh.write(TABLE, [_row("late", 9.0)], run_id="late", partition="cpu-onnxruntime")
    maintenance.compact(wh)
    expected = sorted([*before, ("late", 1, 9.0)]) if second_write else before
    assert _rows(wh) == expected
