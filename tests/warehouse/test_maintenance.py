"""Maintenance on small real warehouses: compaction, retention, backup/restore and the check."""

import errno
import hashlib
import shutil
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow.parquet as pq
import pytest

from hwbench_pipeline.warehouse import maintenance, swap
from hwbench_pipeline.warehouse.maintenance import BackupRejected, MaintenanceError
from hwbench_pipeline.warehouse.store import Warehouse

TABLE = "inference_results"


def _row(run_id, family="bert", p50=1.0, batch=1, target="cpu-torch"):
    return {"run_id": run_id, "target": target, "family": family, "preset": "tiny", "batch_size": batch,
            "seq_len": 16, "precision": "fp32", "threads": 2, "status": "ok", "p50_ms": p50, "p90_ms": p50 * 1.1,
            "p99_ms": p50 * 1.2, "samples_ms": [p50, p50 * 1.01]}


def _snapshot(wh):
    """Every row of the history and _latest views, through the catalog as a notebook reads them."""
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        out = {}
        for view in (TABLE, f"{TABLE}_latest", "models", "models_latest"):
            cur = con.execute(f"SELECT * FROM {view}")
            columns = [d[0] for d in cur.description]
            out[view] = (columns, sorted(cur.fetchall(), key=repr))
        return out


def _five_runs(wh):
    """r1..r5 in cpu-torch (vit only in r1, so the latest view keeps one old row), two runs elsewhere."""
    wh.write(TABLE, [_row("r1", p50=1.0), _row("r1", family="vit", p50=7.0)], run_id="r1", partition="cpu-torch")
    for i in range(2, 6):
        wh.write(TABLE, [_row(f"r{i}", p50=float(i)), _row(f"r{i}", p50=float(i), batch=8)], run_id=f"r{i}",
                 partition="cpu-torch")
    for i in (1, 2):
        wh.write(TABLE, [_row(f"o{i}", p50=10.0 + i, target="cpu-onnxruntime")], run_id=f"o{i}",
                 partition="cpu-onnxruntime")
    wh.write("models", [{"run_id": "m1", "family": "bert", "preset": "tiny", "params": 10}], run_id="m1")


def _partition(wh, partition="cpu-torch"):
    return wh.parquet_dir / TABLE / partition


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_compaction_merges_old_runs_and_changes_no_query_result(tmp_path):
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    before = _snapshot(wh)
    report = maintenance.compact(wh)
    names = _names(_partition(wh))
    # r1..r4 merged into one file; the newest run keeps its own file for a retried step to replace.
    assert len(names) == 2 and "r5.parquet" in names and names[0].startswith("_compacted-")
    assert [s["run_id"] for s in maintenance.read_segments(_partition(wh) / names[0])] == ["r1", "r2", "r3", "r4"]
    assert _names(_partition(wh, "cpu-onnxruntime")) == ["o1.parquet", "o2.parquet"]  # two files, one newest
    assert report.describe() == "compacted 1 of 3 partitions: 5 files -> 2, 4 runs and 8 rows merged"
    assert _snapshot(wh) == before
    assert maintenance.check(wh).ok
    again = maintenance.compact(wh)  # nothing left to merge: the same files stay
    assert not again.changed and _names(_partition(wh)) == names
    assert _snapshot(wh) == before


def test_rewriting_a_compacted_run_replaces_its_rows_instead_of_duplicating_them(tmp_path):
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    maintenance.compact(wh)
    count = wh.read(TABLE).height
    wh.write(TABLE, [_row("r2", p50=99.0), _row("r2", p50=99.0, batch=8)], run_id="r2", partition="cpu-torch")
    history = wh.read(TABLE)
    assert history.height == count
    assert sorted(history.filter(history["run_id"] == "r2")["p50_ms"].to_list()) == [99.0, 99.0]
    compacted = next(_partition(wh).glob("_compacted-*"))
    assert [s["run_id"] for s in maintenance.read_segments(compacted)] == ["r1", "r3", "r4"]
    latest = wh.read(TABLE, latest=True).filter(target="cpu-torch", family="bert")
    assert latest["run_id"].to_list() == ["r2", "r2"]  # written last, so the newest for its keys
    # The newest run is a plain file: writing it again replaces it like before compaction.
    wh.write(TABLE, [_row("r5", p50=5.5)], run_id="r5", partition="cpu-torch")
    assert wh.read(TABLE, where="run_id = 'r5'")["p50_ms"].to_list() == [5.5]
    assert wh.read(TABLE).height == count - 1
    assert maintenance.check(wh).ok


def test_recompaction_folds_new_runs_into_the_compacted_file(tmp_path):
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    maintenance.compact(wh)
    wh.write(TABLE, [_row("r6", p50=6.0)], run_id="r6", partition="cpu-torch")
    before = _snapshot(wh)
    maintenance.compact(wh)
    names = _names(_partition(wh))
    assert len(names) == 2 and "r6.parquet" in names
    compacted = _partition(wh) / names[0]
    assert [s["run_id"] for s in maintenance.read_segments(compacted)] == ["r1", "r2", "r3", "r4", "r5"]
    assert _snapshot(wh) == before


def test_a_run_left_in_two_places_by_a_crash_is_reported_and_repaired(tmp_path):
    """A writer killed between renaming its new run file and dropping the run from the compacted file."""
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    saved = tmp_path / "r3.saved"
    shutil.copy(_partition(wh) / "r3.parquet", saved)
    maintenance.compact(wh)
    count = wh.read(TABLE).height
    shutil.copy(saved, _partition(wh) / "r3.parquet")
    assert wh.read(TABLE).height == count + 2
    report = maintenance.check(wh)
    assert [f.kind for f in report.errors] == ["duplicate_run"]
    assert "run r3 is stored 2 times" in report.errors[0].message
    maintenance.compact(wh)
    assert wh.read(TABLE).height == count and maintenance.check(wh).ok


def test_compaction_without_an_atomic_exchange_falls_back_to_two_renames(tmp_path, monkeypatch):
    def unsupported(a, b):
        raise OSError(errno.EINVAL, "exchange not supported")

    monkeypatch.setattr(swap, "rename_exchange", unsupported)
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    before = _snapshot(wh)
    maintenance.compact(wh)
    assert len(_names(_partition(wh))) == 2 and _snapshot(wh) == before
    assert not any((tmp_path / maintenance.STAGING_DIR).iterdir())


def test_retention_keeps_the_newest_row_of_every_key(tmp_path):
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    latest_before = _snapshot(wh)[f"{TABLE}_latest"]
    plan = maintenance.retain(wh, keep_runs=1, dry_run=True)
    assert sorted(u.run_id for u in plan.removed) == ["o1", "r2", "r3", "r4"]
    assert plan.protected == 1  # r1 holds the only vit row
    assert wh.read(TABLE).height == 12  # a dry run removes nothing
    report = maintenance.retain(wh, keep_runs=1)
    assert sorted(wh.read(TABLE)["run_id"].unique().to_list()) == ["o2", "r1", "r5"]
    assert _snapshot(wh)[f"{TABLE}_latest"] == latest_before
    assert "removed 4 runs (7 rows)" in report.describe()
    assert maintenance.check(wh).ok


def test_retention_by_age_removes_segments_of_compacted_files(tmp_path):
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    maintenance.compact(wh)
    latest_before = _snapshot(wh)[f"{TABLE}_latest"]
    assert not maintenance.retain(wh, older_than_days=1).removed  # everything is younger than a day
    report = maintenance.retain(wh, older_than_days=1, now=datetime.now(UTC) + timedelta(days=2))
    # Every run is old now, but the newest row of each key stays: r1 (vit), r5 (bert batch 1 and 8), o2.
    assert sorted(u.run_id for u in report.removed) == ["o1", "r2", "r3", "r4"]
    assert sorted(wh.read(TABLE)["run_id"].unique().to_list()) == ["o2", "r1", "r5"]
    compacted = next(_partition(wh).glob("_compacted-*"))
    assert [s["run_id"] for s in maintenance.read_segments(compacted)] == ["r1"]
    assert _snapshot(wh)[f"{TABLE}_latest"] == latest_before
    assert maintenance.check(wh).ok


def test_retention_needs_a_rule_and_sane_values(tmp_path):
    wh = Warehouse(tmp_path)
    with pytest.raises(MaintenanceError, match="--older-than-days DAYS and/or --keep-runs N"):
        maintenance.retain(wh)
    with pytest.raises(MaintenanceError, match="--keep-runs must be at least 1"):
        maintenance.retain(wh, keep_runs=0)
    with pytest.raises(MaintenanceError, match="unknown table nope"):
        maintenance.retain(wh, keep_runs=1, tables=["nope"])


def _file_hashes(wh):
    return {p.relative_to(wh.data_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(wh.parquet_dir.rglob("*")) if p.is_file()}


def _damage(wh):
    (_partition(wh) / "r2.parquet").unlink()
    with open(_partition(wh) / "r3.parquet", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00" * 64)
    wh.write(TABLE, [_row("late", p50=42.0)], run_id="late", partition="cpu-torch")


@pytest.mark.parametrize("name", ["backup.tar.gz", "backup-dir"])
def test_backup_then_damage_then_restore_gives_back_identical_data(tmp_path, name):
    wh = Warehouse(tmp_path / "data")
    _five_runs(wh)
    before, hashes = _snapshot(wh), _file_hashes(wh)
    report = maintenance.backup(wh, tmp_path / name)
    assert report.files == 8 and (tmp_path / name).exists()
    _damage(wh)
    assert not maintenance.check(wh).ok
    restored = maintenance.restore(wh, tmp_path / name)
    assert restored.files == 8
    assert _file_hashes(wh) == hashes and _snapshot(wh) == before
    assert maintenance.check(wh).ok
    # A backup restores into another data directory too: the catalog is rebuilt for its new place.
    elsewhere = Warehouse(tmp_path / "elsewhere")
    maintenance.restore(elsewhere, tmp_path / name)
    assert _snapshot(elsewhere) == before and maintenance.check(elsewhere).ok


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (_truncate, "not a readable backup archive"),
    (_flip_bytes, "not a readable backup archive"),
])
def test_a_damaged_archive_is_refused_and_changes_nothing(tmp_path, damage, message):
    wh = Warehouse(tmp_path / "data")
    _five_runs(wh)
    archive = tmp_path / "backup.tar.gz"
    maintenance.backup(wh, archive)
    wh.write(TABLE, [_row("after", p50=3.0)], run_id="after", partition="cpu-torch")
    before, hashes = _snapshot(wh), _file_hashes(wh)
    damage(archive)
    with pytest.raises(BackupRejected, match=message):
        maintenance.restore(wh, archive)
    assert _file_hashes(wh) == hashes and _snapshot(wh) == before
    assert not any((wh.data_dir / maintenance.STAGING_DIR).iterdir())


def _drop_one_file(backup_dir):
    next(backup_dir.rglob("r2.parquet")).unlink()


def _alter_one_file(backup_dir):
    path = next(backup_dir.rglob("r2.parquet"))
    data = bytearray(path.read_bytes())
    data[50] ^= 0xFF
    path.write_bytes(bytes(data))


def _drop_manifest(backup_dir):
    (backup_dir / "manifest.json").unlink()


@pytest.mark.parametrize("damage, message", [
    (_drop_one_file, "is incomplete: 1 files in the manifest are missing"),
    (_alter_one_file, "is corrupt: 1 files do not match their sha256"),
    (_drop_manifest, "has no manifest.json"),
])
def test_a_partial_or_altered_backup_directory_is_refused(tmp_path, damage, message):
    wh = Warehouse(tmp_path / "data")
    _five_runs(wh)
    maintenance.backup(wh, tmp_path / "b")
    _damage(wh)
    hashes = _file_hashes(wh)
    damage(tmp_path / "b")
    with pytest.raises(BackupRejected, match=message):
        maintenance.restore(wh, tmp_path / "b")
    assert _file_hashes(wh) == hashes


def test_backup_refuses_to_overwrite(tmp_path):
    wh = Warehouse(tmp_path / "data")
    _five_runs(wh)
    (tmp_path / "b").mkdir()
    with pytest.raises(MaintenanceError, match="already exists"):
        maintenance.backup(wh, tmp_path / "b")


def test_check_finds_a_corrupted_file_and_orphans(tmp_path):
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    assert maintenance.check(wh).ok
    victim = _partition(wh) / "r3.parquet"
    size = victim.stat().st_size
    with open(victim, "r+b") as fh:  # damage the data pages, leave the footer alone
        fh.seek(size // 3)
        damaged = bytes(b ^ 0x5A for b in fh.read(32))
        fh.seek(size // 3)
        fh.write(damaged)
    orphan = _partition(wh) / ".r9.parquet.4242.tmp"
    orphan.write_bytes(b"PAR1 half a file")
    (wh.parquet_dir / "bogus_table" / "p").mkdir(parents=True)
    (wh.parquet_dir / "bogus_table" / "p" / "x.parquet").write_bytes(b"x")
    (_partition(wh) / "notes.txt").write_text("hello")
    dead = tmp_path / ".transactions" / "999999999-0123abcd"  # what a writer killed before its commit leaves
    dead.mkdir(parents=True)
    (dead / "owner.lock").touch()
    (dead / "0000.parquet").write_bytes(b"PAR1 staged")
    report = maintenance.check(wh)
    assert not report.ok
    found = {(f.kind, f.path.rsplit("/", 2)[-1]) for f in report.errors}
    assert ("corrupt", "r3.parquet") in found
    assert ("orphan_temp", ".r9.parquet.4242.tmp") in found
    assert ("unknown_table", "bogus_table") in found
    assert ("outside_layout", "notes.txt") in found
    assert ("staging", "999999999-0123abcd") in found
    assert report.files == 7  # the corrupted file is not counted as read
    assert report.to_dict()["ok"] is False


def test_check_leaves_the_temp_file_of_a_running_write_alone(tmp_path):
    wh = Warehouse(tmp_path)
    _five_runs(wh)
    (_partition(wh) / ".r9.parquet.4242.tmp").write_bytes(b"PAR1")
    with wh.partition_lock(TABLE, "cpu-torch"):  # as a writer holds it between its temp file and the rename
        report = maintenance.check(wh)
    assert report.ok and [f.severity for f in report.findings if f.kind == "orphan_temp"] == ["note"]
    maintenance.compact(wh)  # compaction holds the lock itself, so the temp file is an orphan: removed
    assert not list(_partition(wh).glob("*.tmp")) and maintenance.check(wh).ok


def test_check_reports_a_catalog_built_for_another_place(tmp_path):
    wh = Warehouse(tmp_path / "a")
    _five_runs(wh)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    report = maintenance.check(Warehouse(tmp_path / "b"))
    assert [f.kind for f in report.errors] == ["catalog"] and "views read" in report.errors[0].message
    assert pq.read_table(tmp_path / "b" / "warehouse" / TABLE / "cpu-torch" / "r1.parquet").num_rows == 2


def test_repair_sets_a_truncated_file_and_one_of_a_conflicting_schema_aside_and_the_rest_reads_again(tmp_path):
    import pyarrow as pa

    from hwbench_pipeline.warehouse.queries import QueryError, WarehouseQueries

    wh = Warehouse(tmp_path)
    _five_runs(wh)
    truncated = _partition(wh) / "r2.parquet"
    truncated.write_bytes(truncated.read_bytes()[:100])
    conflicting = _partition(wh, "cpu-onnxruntime") / "odd.parquet"
    pq.write_table(pa.table({"run_id": ["odd"], "p50_ms": ["fast"]}), conflicting)
    with pytest.raises(QueryError, match=r"r2\.parquet.*hwbench db check --repair"):
        WarehouseQueries(tmp_path).sql_capped(f"SELECT count(*) FROM {TABLE}", None, max_rows=10)
    report = maintenance.check(wh)
    assert {(f.kind, f.path.rsplit("/", 1)[-1]) for f in report.errors} >= {("corrupt", "r2.parquet"),
                                                                            ("schema", "odd.parquet")}
    moved = maintenance.repair(wh, report)
    assert sorted(p.name for p, _, _ in moved) == ["odd.parquet", "r2.parquet"]
    kept = tmp_path / ".damaged" / TABLE / "cpu-torch" / "r2.parquet"
    assert kept.exists() and "unreadable" in kept.with_name("r2.parquet.why.txt").read_text()
    assert maintenance.check(wh).ok
    runs = set(wh.read(TABLE)["run_id"].to_list())
    assert runs == {"r1", "r3", "r4", "r5", "o1", "o2"}  # everything else of the table, and nothing odd
