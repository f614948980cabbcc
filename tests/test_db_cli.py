"""`hwbench db ...` end to end in-process: exit codes and what it prints, on a small real warehouse."""

import json
from pathlib import Path

import pytest

from hwbench_pipeline.cli import main
from hwbench_pipeline.warehouse.store import Warehouse

TABLE = "inference_results"


def _row(run_id, family="bert", p50=1.0):
    return {"run_id": run_id, "target": "cpu-torch", "family": family, "preset": "tiny", "batch_size": 1,
            "seq_len": 16, "precision": "fp32", "threads": 2, "status": "ok", "p50_ms": p50, "p90_ms": p50,
            "p99_ms": p50, "samples_ms": [p50]}


@pytest.fixture
def wh(tmp_path):
    wh = Warehouse(tmp_path / "data")
    wh.write(TABLE, [_row("r1"), _row("r1", family="vit", p50=4.0)], run_id="r1", partition="cpu-torch")
    for i in (2, 3, 4):
        wh.write(TABLE, [_row(f"r{i}", p50=float(i))], run_id=f"r{i}", partition="cpu-torch")
    return wh


def _db(capsys, *args):
    code = main(["db", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_passes_then_fails_on_a_corrupted_file_and_an_orphan(wh, capsys):
    code, out, _ = _db(capsys, "check", "--data-dir", str(wh.data_dir))
    assert code == 0 and "OK: 4 files, 5 rows" in out
    victim = wh.parquet_dir / TABLE / "cpu-torch" / "r2.parquet"
    victim.write_bytes(victim.read_bytes()[:-40] + b"\x00" * 40)  # the footer overwritten
    (victim.parent / ".r5.parquet.999.tmp").write_bytes(b"PAR1")
    code, out, _ = _db(capsys, "check", "--data-dir", str(wh.data_dir))
    # The damaged footer also breaks both views of the table, which check selects from.
    assert code == 1 and "4 problems" in out and "corrupt" in out and "orphan_temp" in out
    code, out, _ = _db(capsys, "check", "--data-dir", str(wh.data_dir), "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert sorted(f["kind"] for f in report["findings"]) == ["corrupt", "orphan_temp", "view", "view"]
    assert {f["path"].rsplit(":", 1)[-1] for f in report["findings"] if f["kind"] == "view"} == {
        TABLE, f"{TABLE}_latest"}


def test_compact_then_retain(wh, capsys):
    code, out, _ = _db(capsys, "compact", "--data-dir", str(wh.data_dir))
    assert code == 0 and "compacted 1 of 1 partitions: 4 files -> 2, 3 runs and 4 rows merged" in out
    code, out, _ = _db(capsys, "retain", "--data-dir", str(wh.data_dir), "--keep-runs", "1", "--dry-run")
    assert code == 0 and "would remove 2 runs (2 rows)" in out and "r2" in out and "r3" in out
    assert wh.read(TABLE).height == 5
    code, out, _ = _db(capsys, "retain", "--data-dir", str(wh.data_dir), "--keep-runs", "1")
    assert code == 0 and "removed 2 runs (2 rows)" in out
    assert sorted(wh.read(TABLE)["run_id"].to_list()) == ["r1", "r1", "r4"]  # r1 keeps the only vit row
    assert _db(capsys, "check", "--data-dir", str(wh.data_dir))[0] == 0


def test_backup_and_restore_and_a_truncated_backup_is_refused(wh, tmp_path, capsys):
    archive = tmp_path / "wh.tar.gz"
    code, out, _ = _db(capsys, "backup", str(archive), "--data-dir", str(wh.data_dir))
    assert code == 0 and "backed up 4 files" in out
    before = wh.read(TABLE).sort("run_id", "family")
    (wh.parquet_dir / TABLE / "cpu-torch" / "r1.parquet").unlink()
    code, out, _ = _db(capsys, "restore", str(archive), "--data-dir", str(wh.data_dir))
    assert code == 0 and "restored 4 files" in out
    assert wh.read(TABLE).sort("run_id", "family").equals(before)
    archive.write_bytes(archive.read_bytes()[:200])
    code, _, err = _db(capsys, "restore", str(archive), "--data-dir", str(wh.data_dir))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "truncated or corrupt" in err
    assert wh.read(TABLE).sort("run_id", "family").equals(before)


@pytest.mark.parametrize("args, message", [
    (["retain"], "--older-than-days DAYS and/or --keep-runs N"),
    (["retain", "--keep-runs", "0"], "--keep-runs must be at least 1"),
    (["compact", "--table", "nope"], "unknown table nope"),
    (["backup", "{data}"], "already exists"),
    (["restore", "{tmp}/missing.tar.gz"], "does not exist"),
    (["import", "{tmp}/missing.json"], "no such file or directory"),
])
def test_bad_input_is_one_line_and_exit_2(wh, tmp_path, capsys, args, message):
    args = [a.format(data=wh.data_dir, tmp=tmp_path) for a in args]
    code, _, err = _db(capsys, *args, "--data-dir", str(wh.data_dir))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_commands_other_than_restore_and_import_need_an_existing_warehouse(tmp_path, capsys):
    code, _, err = _db(capsys, "check", "--data-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no warehouse in" in err


OPTIMUM_REPORT = Path(__file__).parent / "warehouse" / "fixtures" / "optimum_benchmark" / "tiny_bert_cpu_pytorch"


def _scaled_report(tmp_path, factor):
    """The fixture report with every latency scaled: another run of the same configuration."""
    doc = json.loads((OPTIMUM_REPORT / "benchmark.json").read_text())
    latency = doc["report"]["forward"]["latency"]
    latency["values"] = [v * factor for v in latency["values"]]
    for key in ("p50", "p90", "p95", "p99", "mean", "stdev", "total"):
        latency.pop(key, None)
    path = tmp_path / f"x{factor}" / "benchmark.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.slow  # three imports, each validated by Great Expectations
def test_import_then_compact_then_reimport_keeps_one_copy_of_each_run(tmp_path, capsys):
    data = str(tmp_path / "data")
    first = OPTIMUM_REPORT / "benchmark.json"
    code, out, err = _db(capsys, "import", str(first), "--data-dir", data)
    assert code == 0 and "imported 1 file as run import-" in out, err
    code, _, err = _db(capsys, "import", str(_scaled_report(tmp_path, 1.5)), str(_scaled_report(tmp_path, 2.0)),
                       "--data-dir", data)
    assert code == 0, err
    wh = Warehouse(data)
    counts = {t: wh.read(t).height for t in ("inference_results", "latency_samples", "runs")}
    code, out, _ = _db(capsys, "compact", "--data-dir", data)
    # inference_results, latency_samples, runs: in each, the two older runs merged and the newest left alone
    assert code == 0 and "compacted 3 of 3 partitions: 9 files -> 6, 6 runs" in out
    assert any(p.name.startswith("_compacted-") for p in wh.parquet_dir.rglob("*.parquet"))
    assert _db(capsys, "import", str(first), "--data-dir", data)[0] == 0  # its run now sits in compacted files
    assert {t: wh.read(t).height for t in counts} == counts
    assert _db(capsys, "check", "--data-dir", data)[0] == 0


def test_import_refuses_a_file_that_is_not_a_result_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = _db(capsys, "import", str(bad), "--data-dir", str(tmp_path / "data"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bad.json" in err
    assert not (tmp_path / "data" / "warehouse").exists()
