"""A disk that fills up in the middle of a write: a clear error, the warehouse as it was, and the same write
going through once there is room again. The test mounts a small tmpfs (it needs root; skipped elsewhere)."""

import errno
import subprocess
import uuid
from pathlib import Path

import pytest

from hwbench_pipeline.warehouse import maintenance
from hwbench_pipeline.warehouse.importer import ImportRejected, import_paths
from hwbench_pipeline.warehouse.store import Warehouse

SIZE = "2m"
#: a real optimum-benchmark report (see the fixture's README)
OPTIMUM = Path(__file__).parents[1] / "warehouse" / "fixtures" / "optimum_benchmark" / "tiny_bert_cpu_pytorch"


@pytest.fixture
def small_disk(tmp_path: Path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _rows(run_id: str, n: int) -> list[dict]:
    # random-looking sample lists do not compress: n rows of these take real space
    return [{"run_id": run_id, "target": "cpu-torch", "family": "bert", "preset": "tiny", "batch_size": b,
             "seq_len": 16, "precision": "fp32", "threads": 1, "status": "ok", "p50_ms": 1.0,
             "samples_ms": [uuid.uuid4().int % 10**6 / 997.0 for _ in range(200)]} for b in range(1, n + 1)]


def test_a_transaction_that_fills_the_disk_fails_clearly_and_leaves_the_warehouse_as_it_was(small_disk):
    wh = Warehouse(small_disk / "data")
    wh.write("inference_results", _rows("small", 2), run_id="small", partition="cpu-torch")
    before = wh.read("inference_results").height
    with pytest.raises(OSError) as caught, wh.transaction() as tx:
        tx.write("runs", [{"run_id": "big", "target": "cpu-torch", "scenario": "inference"}], run_id="big",
                 partition="cpu-torch")
        tx.write("inference_results", _rows("big", 2000), run_id="big", partition="cpu-torch")
    assert caught.value.errno == errno.ENOSPC or "No space left" in str(caught.value)
    assert wh.read("inference_results").height == before and wh.read("runs").height == 0
    assert not any((wh.data_dir / ".transactions").iterdir()), "the staged files were removed"
    assert maintenance.check(wh).ok


def test_an_import_that_fills_the_disk_is_refused_in_one_line_and_then_goes_through(small_disk):
    wh = Warehouse(small_disk / "data")
    wh.write("inference_results", _rows("small", 2), run_id="small", partition="cpu-torch")
    ballast = small_disk / "ballast"
    free = int(subprocess.run(["df", "--output=avail", "-B1", str(small_disk)], capture_output=True,
                              text=True).stdout.split()[-1])
    ballast.write_bytes(b"\0" * max(free - 16 * 1024, 0))  # leave 16 KiB: less than the import's files
    with pytest.raises(ImportRejected) as caught:
        import_paths(wh, [OPTIMUM])
    assert "No space left on device" in str(caught.value) and "\n" not in str(caught.value)
    assert set(wh.read("inference_results")["run_id"].to_list()) == {"small"}
    ballast.unlink()
    import_paths(wh, [OPTIMUM])
    assert wh.read("inference_results").height == 2 + 1 and wh.read("latency_samples").height > 0
