"""Importing hwbench JSON and optimum-benchmark reports: provenance, idempotence, all-or-nothing, hostile files."""

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hwbench_pipeline.warehouse import import_optimum, import_reader
from hwbench_pipeline.warehouse.importer import ImportRejected, import_paths
from hwbench_pipeline.warehouse.schema import CONFIG_KEY, LEGACY_KEY_VALUES
from hwbench_pipeline.warehouse.store import Warehouse

OPTIMUM = Path(__file__).parent / "fixtures" / "optimum_benchmark" / "tiny_bert_cpu_pytorch"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(wh: Warehouse, *, skip_locks: bool = False) -> dict[str, str]:
    """Every file under the data directory with its SHA-256."""
    if not wh.data_dir.exists():
        return {}
    return {str(p.relative_to(wh.data_dir)): _sha256(p) for p in sorted(wh.data_dir.rglob("*"))
            if p.is_file() and not (skip_locks and p.parent == wh.lock_dir)}


def _write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc, indent=2, default=str))  # as `hwbench bench --json` writes it
    return path


@pytest.fixture(scope="module")
def engine_rows(tmp_path_factory) -> list[dict]:
    """One measured row (two measuring processes, as ``hwbench bench`` measures) and one failure row from
    hwbench's engine (bert/tiny on cpu-torch, a short rule)."""
    import torch

    from hwbench_pipeline.bench.dispatch import run_configurations
    from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario, run_configuration
    from hwbench_pipeline.bench.trackers.stats import StoppingRule

    rule = StoppingRule(ci_target=0.2, min_samples=5, max_seconds=0.5, warmup_min_calls=1, warmup_window=1,
                        warmup_max_seconds=0.2, processes=2, max_processes=2)
    threads = torch.get_num_threads()
    try:
        [ok] = run_configurations(InferenceScenario(), [InferenceConfig("bert", "tiny", "cpu-torch", batch_size=1,
                                                                        seq_len=8, threads=1, rule=rule)],
                                  "cli-test", dispatch="process", lock_dir=tmp_path_factory.mktemp("locks"))
        failed = run_configuration(InferenceConfig("bert", "no-such-preset", "cpu-torch", batch_size=1, seq_len=8,
                                                   threads=1, rule=rule), "cli-test")
    finally:
        torch.set_num_threads(threads)
    assert ok["status"] == "ok", ok.get("message")
    assert failed["status"] == "failed"
    return [ok, failed]


@pytest.fixture
def hwbench_json(engine_rows, tmp_path) -> Path:
    return _write_json(tmp_path / "bench.json", engine_rows)


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Warehouse:
    """A warehouse holding the optimum-benchmark fixture, for hostile files to bounce off."""
    wh = Warehouse(tmp_path_factory.mktemp("populated"))
    import_paths(wh, [OPTIMUM / "benchmark.json"])
    return wh


# ---- what lands ------------------------------------------------------------------------------------------
def test_hwbench_json_lands_with_provenance_and_reimport_is_idempotent(tmp_path, engine_rows, hwbench_json):
    wh = Warehouse(tmp_path / "data")
    summary = import_paths(wh, [hwbench_json])
    run_id = f"import-{_sha256(hwbench_json)[:12]}"
    ok, failed = engine_rows
    assert summary.run_ids == [run_id]
    assert summary.files == [str(hwbench_json)]
    assert summary.rows_by_table == {"latency_samples": len(ok["samples_ms"]), "failures": 1,
                                     "inference_results": 1, "runs": 1}
    assert run_id in summary.describe() and "inference_results 1" in summary.describe()

    result = wh.read("inference_results").row(0, named=True)
    assert (result["run_id"], result["source"], result["target"]) == (run_id, "hwbench-json", "cpu-torch")
    assert (result["family"], result["preset"], result["batch_size"], result["seq_len"]) == ("bert", "tiny", 1, 8)
    assert {k: result[k] for k in CONFIG_KEY} == {k: ok[k] for k in CONFIG_KEY}  # the whole key, as measured
    assert result["p50_ms"] == ok["p50_ms"] and result["peak_rss_mb"] == ok["peak_rss_mb"]
    assert result["samples_ms"] == ok["samples_ms"] and result["started_at"] == ok["started_at"]
    samples = wh.read("latency_samples").sort("sample_index")
    assert samples["latency_ms"].to_list() == ok["samples_ms"]
    assert samples["sample_index"].to_list() == list(range(len(ok["samples_ms"])))
    assert set(samples["run_id"]) == {run_id}
    failure = wh.read("failures").row(0, named=True)
    assert (failure["failure_class"], failure["preset"]) == (failed["failure_class"], "no-such-preset")
    run = wh.read("runs").row(0, named=True)
    assert run["source_sha256"] == _sha256(hwbench_json) and run["source_path"] == str(hwbench_json.resolve())
    assert (run["source"], run["n_ok"], run["n_failed"], run["host"]) == ("hwbench-json", 1, 1, ok["host"])
    with wh.connect() as con:  # the DuckDB catalog sees it too
        assert con.execute("SELECT count(*) FROM latency_samples").fetchone()[0] == len(ok["samples_ms"])

    files_before = sorted(_snapshot(wh, skip_locks=True))
    counts = {t: wh.read(t).height for t in summary.rows_by_table}
    again = import_paths(wh, [hwbench_json])
    assert again.run_ids == [run_id]
    assert {t: wh.read(t).height for t in counts} == counts
    assert sorted(_snapshot(wh, skip_locks=True)) == files_before


def test_a_file_written_before_the_key_columns_imports_with_what_they_meant(tmp_path, engine_rows):
    old = [{k: v for k, v in row.items() if k not in LEGACY_KEY_VALUES} for row in engine_rows]
    wh = Warehouse(tmp_path / "data")
    import_paths(wh, [_write_json(tmp_path / "old.json", old)])
    for table in ("inference_results", "failures", "latency_samples"):
        row = wh.read(table).row(0, named=True)
        assert {k: row[k] for k in LEGACY_KEY_VALUES} == LEGACY_KEY_VALUES, table


def test_optimum_benchmark_report_lands_with_its_own_values(tmp_path):
    wh = Warehouse(tmp_path)
    summary = import_paths(wh, [OPTIMUM / "benchmark.json"])
    doc = json.loads((OPTIMUM / "benchmark.json").read_text())
    forward = doc["report"]["forward"]
    row = wh.read("inference_results").row(0, named=True)
    key = (row["target"], row["family"], row["preset"], row["batch_size"], row["seq_len"], row["precision"],
           row["threads"])
    assert key == ("cpu-torch", "bert", "tiny-bert", 2, 16, "fp32", 1)
    # What hwbench keys on and the report does not state as hwbench does: no config (a model id names it), the
    # attention transformers chose by default, another tool's method.
    assert (row["config_hash"], row["attention"], row["measurement_method"], row["quantization"]) == (
        "unrecorded", "default", "optimum-benchmark", "none")
    for stat in ("p50", "p90", "p99", "mean"):
        assert row[f"{stat}_ms"] == pytest.approx(forward["latency"][stat] * 1e3, rel=1e-12)
    assert row["n_samples"] == forward["latency"]["count"] == 30
    assert row["samples_ms"] == pytest.approx([v * 1e3 for v in forward["latency"]["values"]], rel=1e-12)
    assert row["throughput_samples_s"] == pytest.approx(2 / (forward["latency"]["p50"]))
    assert row["first_call_ms"] == pytest.approx(doc["report"]["first_forward"]["latency"]["values"][0] * 1e3)
    assert row["load_s"] == doc["report"]["load_model"]["latency"]["mean"]
    max_ram = max(part["memory"]["max_ram"] for part in doc["report"].values())
    assert row["peak_rss_mb"] == pytest.approx(max_ram * 1e6 / 2**20)
    assert (row["source"], row["host"], row["cpu_cores"]) == ("optimum-benchmark", "unrecorded", 2)
    assert row["flops_per_call"] is None and row["params"] is None and row["started_at"] is None  # not recorded
    assert "optimum_benchmark=0.6.0" in row["package_versions"]
    samples = wh.read("latency_samples").sort("sample_index")["latency_ms"].to_list()
    assert samples == pytest.approx([v * 1e3 for v in forward["latency"]["values"]], rel=1e-12)
    run = wh.read("runs").row(0, named=True)
    assert run["source_sha256"] == _sha256(OPTIMUM / "benchmark.json") and run["source"] == "optimum-benchmark"

    # The same run as benchmark_report.json + its sibling config, and the folder itself: one run, no new rows.
    both = import_paths(wh, [OPTIMUM / "benchmark_report.json", OPTIMUM])
    assert both.run_ids == summary.run_ids
    assert both.files == [str(OPTIMUM / "benchmark_report.json"), str(OPTIMUM / "benchmark.json")]
    assert wh.read("inference_results").height == 1 and wh.read("latency_samples").height == 30


def _config_variant(**backend) -> tuple[dict, dict]:
    doc = json.loads((OPTIMUM / "benchmark.json").read_text())
    doc["config"]["backend"].update(backend)
    return doc["config"], doc["report"]


@pytest.mark.parametrize(("backend", "expected"), [
    ({"device": "cuda", "device_ids": "1", "autocast_enabled": True, "autocast_dtype": "bfloat16",
      "model": "google-bert/bert-base-uncased"},
     {"target": "cuda1-torch", "precision": "bf16", "device_kind": "cuda", "preset": "google-bert--bert-base-uncased"}),
    ({"name": "onnxruntime", "version": "1.32.0", "session_options": {"intra_op_num_threads": 2},
      "inter_op_num_threads": None},
     {"target": "cpu-onnxruntime", "threads": 2, "precision": "fp32", "backend": "onnxruntime"}),
    ({"name": "openvino", "ov_config": {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 2},
      "inter_op_num_threads": None},
     {"target": "cpu-openvino", "threads": 2, "precision": "bf16", "precision_ran": "bf16"}),
    ({"name": "openvino", "ov_config": {"INFERENCE_NUM_THREADS": 1}, "inter_op_num_threads": None},
     {"target": "cpu-openvino", "precision": "fp32", "precision_ran": None}),  # OpenVINO may have run bf16
    ({"torch_dtype": "float16"}, {"precision": "fp16", "target": "cpu-torch"}),
])
def test_optimum_backend_and_device_map_onto_targets(backend, expected):
    row = import_optimum.optimum_row(*_config_variant(**backend), run_id="import-000000000000")
    assert {k: row[k] for k in expected} == expected


@pytest.mark.parametrize(("backend", "message"), [
    ({"inter_op_num_threads": None}, "inter_op_num_threads is unset"),
    ({"device": "cuda", "device_ids": "0,1"}, "not one GPU index"),
    ({"device": "cuda", "device_ids": "0/../1"}, "not one GPU index"),
    ({"name": "vllm"}, "has no hwbench target"),
    ({"torch_compile": True}, "torch_compile"),
    ({"torch_dtype": "auto"}, "does not map onto an hwbench precision"),
    ({"model_type": "../evil"}, "not a plain name"),
    ({"model": ".."}, "not a plain name"),
])
def test_optimum_configs_hwbench_cannot_represent_are_refused(backend, message):
    with pytest.raises(import_reader.BadFile, match=message):
        import_optimum.optimum_row(*_config_variant(**backend), run_id="import-000000000000")


# ---- hostile and malformed files ---------------------------------------------------------------------------
def _optimum(mutate) -> dict:
    doc = json.loads((OPTIMUM / "benchmark.json").read_text())
    mutate(doc)
    return doc


def _rows(engine_rows, mutate) -> list[dict]:
    rows = json.loads(json.dumps(engine_rows, default=str))
    mutate(rows)
    return rows


def _set(path: list, value):
    def mutate(doc):
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value
    return mutate


HOSTILE = {
    # name: (file content: bytes, or a function of the engine's rows giving a JSON document; expected message)
    "empty": (b"", "file is empty"),
    "blank": (b"  \n\t ", "file is empty"),
    "not_json": (b"timestamp,p50\n1,2\n", "not valid JSON"),
    "truncated": (b'[{"status": "ok", "p50_ms": 1.', "not valid JSON"),
    "not_utf8": (b'["\xff\xfe"]', "not UTF-8"),
    "deep_recursion": (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    "deep": (b"[" * 40 + b"]" * 40, "nested deeper than 32"),
    "huge_integer": (b"[" + b"9" * 5000 + b"]", "not valid JSON: an integer has more than"),
    "integer_latency_too_large_for_a_float": (
        lambda r: _rows(r, _set([0, "p50_ms"], 10**400)), "p50_ms is 1000.*too large for a number"),
    "integer_sample_too_large_for_a_float": (
        lambda r: _rows(r, _set([0, "samples_ms", 0], 10**400)), "too large for a number"),
    "sample_longer_than_a_day": (lambda r: _rows(r, _set([0, "samples_ms", 0], 1e306)), "longer than a day"),
    "p99_longer_than_a_day": (lambda r: _rows(r, _set([0, "p99_ms"], 1e12)), "longer than a day"),
    "scalar": (b"42", "unknown format"),
    "unknown_object": (b'{"hello": "world"}', "unknown format"),
    "empty_list": (b"[]", "list of rows is empty"),
    "duplicate_key": (b'[{"status": "ok", "status": "failed"}]', "appears twice"),
    "nan": (lambda r: _rows(r, _set([0, "p50_ms"], float("nan"))), "NaN"),
    "infinity": (lambda r: _rows(r, _set([0, "p99_ms"], float("inf"))), "Infinity"),
    "overflow": (b'[{"status": "ok", "p50_ms": 1e999}]', "overflows"),
    "negative_p50": (lambda r: _rows(r, _set([0, "p50_ms"], -1.0)), "cannot be negative"),
    "negative_sample": (lambda r: _rows(r, _set([0, "samples_ms", 0], -0.5)), "must be a positive number"),
    "wrong_type": (lambda r: _rows(r, _set([0, "batch_size"], "1")), "batch_size must be int64"),
    "bool_as_int": (lambda r: _rows(r, _set([0, "threads"], True)), "threads must be int64"),
    "naive_time": (lambda r: _rows(r, _set([0, "started_at"], "2026-01-01 10:00:00")), "time zone"),
    "time_before_year_one_in_utc": (lambda r: _rows(r, _set([0, "started_at"], "0001-01-01T00:00:00+14:00")),
                                    "out of range once in UTC"),
    "time_after_year_9999_in_utc": (lambda r: _rows(r, _set([0, "finished_at"], "9999-12-31T23:00:00-05:00")),
                                    "out of range once in UTC"),
    "row_not_object": (lambda r: [r[0], "oops"], "row 1 must be an object"),
    "unknown_column": (lambda r: _rows(r, _set([0, "gpu_temperature"], 80)), "does not have: gpu_temperature"),
    "target_traversal": (lambda r: _rows(r, _set([0, "target"], "../../etc")), "not a plain name"),
    "target_unknown": (lambda r: _rows(r, _set([0, "target"], "tpu0-jax")), "unknown hardware target"),
    "family_traversal": (lambda r: _rows(r, _set([1, "family"], "bert/../../x")), "not a plain name"),
    "backend_contradicts_target": (lambda r: _rows(r, _set([0, "backend"], "openvino")), "contradicts target"),
    "sample_count_mismatch": (lambda r: _rows(r, _set([0, "n_samples"], 999)), "samples_ms holds"),
    "optimum_negative_value": (lambda r: _optimum(_set(["report", "forward", "latency", "values", 3], -0.01)),
                               "must be a positive number"),
    "optimum_count_mismatch": (lambda r: _optimum(_set(["report", "forward", "latency", "count"], 31)),
                               "values holds 30"),
    "optimum_string_latency": (lambda r: _optimum(_set(["report", "forward", "latency", "p50"], "fast")),
                               "must be a number"),
    "optimum_values_overflow_in_ms": (
        lambda r: _optimum(_set(["report", "forward", "latency", "values", 0], 1e306)), "not a finite number"),
    "optimum_p50_overflows_in_ms": (lambda r: _optimum(_set(["report", "forward", "latency", "p50"], 1e306)),
                                    "longer than a day"),
    "optimum_integer_p50_too_large": (
        lambda r: _optimum(_set(["report", "forward", "latency", "p50"], 10**400)), "too large for a number"),
    "optimum_memory_overflows": (lambda r: _optimum(_set(["report", "forward", "memory", "max_ram"], 1.7e308)),
                                 "more than a PiB"),
    "optimum_unit": (lambda r: _optimum(_set(["report", "forward", "latency", "unit"], "ms")), "expected 's'"),
    "optimum_no_memory": (lambda r: _optimum(lambda d: [p.update(memory=None) for p in d["report"].values()]),
                          "no memory.max_ram"),
    "optimum_generation": (lambda r: _optimum(lambda d: d["report"].update(
        prefill=d["report"].pop("forward"))), "no 'forward' part"),
    "optimum_training": (lambda r: _optimum(_set(["config", "scenario", "name"], "training")),
                         "only inference reports"),
    "optimum_torchrun": (lambda r: _optimum(_set(["config", "launcher", "name"], "torchrun")), "launcher"),
    "optimum_config_alone": (lambda r: _optimum(lambda d: None)["config"], "config without its report"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_is_rejected_and_warehouse_untouched(case, populated, engine_rows, tmp_path):
    content, message = HOSTILE[case]
    path = tmp_path / f"{case}.json"
    if callable(content):
        _write_json(path, content(engine_rows))
    else:
        path.write_bytes(content)
    before = _snapshot(populated)
    with pytest.raises(ImportRejected, match=message) as caught:
        import_paths(populated, [path])
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert _snapshot(populated) == before


def test_oversized_report_alone_and_missing_files_are_rejected(populated, tmp_path):
    before = _snapshot(populated)
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # sparse: refused by its size before a byte is read
        fh.truncate(import_reader.MAX_FILE_BYTES + 1)
    report_alone = tmp_path / "run" / "benchmark_report.json"
    report_alone.parent.mkdir()
    report_alone.write_bytes((OPTIMUM / "benchmark_report.json").read_bytes())
    cases = [(big, "over the 64 MiB limit"), (report_alone, "no benchmark_config.json is beside it"),
             (tmp_path / "missing.json", "cannot read"), (tmp_path, "folder has no benchmark.json")]
    for path, message in cases:
        with pytest.raises(ImportRejected, match=message):
            import_paths(populated, [path])
    with pytest.raises(ImportRejected, match="no files"):
        import_paths(populated, [])
    assert _snapshot(populated) == before


def test_rows_failing_the_suites_reject_the_whole_import(populated, engine_rows, tmp_path):
    before = _snapshot(populated)
    unordered = _write_json(tmp_path / "unordered.json", _rows(engine_rows, _set([0, "p90_ms"], 1e-6)))
    twice = _write_json(tmp_path / "twice.json", [engine_rows[0], engine_rows[0]])
    for path, message in [(unordered, "expect_column_pair_values_a_to_be_greater_than_b"),
                          (twice, "expect_compound_columns_to_be_unique")]:
        with pytest.raises(ImportRejected, match=message) as caught:
            import_paths(populated, [OPTIMUM / "benchmark.json", path])
        assert str(path) in str(caught.value)
    assert _snapshot(populated) == before


def test_a_bad_second_file_leaves_nothing(tmp_path, hwbench_json):
    wh = Warehouse(tmp_path / "data")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"status": "ok", "target": "../x"}]')
    with pytest.raises(ImportRejected, match="bad.json"):
        import_paths(wh, [hwbench_json, bad])
    assert _snapshot(wh) == {}
    assert wh.read("inference_results").height == 0


def test_a_write_failing_midway_restores_the_warehouse(tmp_path, hwbench_json, monkeypatch):
    wh = Warehouse(tmp_path / "data")
    import_paths(wh, [OPTIMUM / "benchmark.json"])
    before = _snapshot(wh, skip_locks=True)  # lock files are coordination, not data: they may stay
    rows_before = wh.read("inference_results").drop("_written_at").to_dicts()

    real_write = pq.write_table
    calls = []

    def disk_full_on_fifth(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", disk_full_on_fifth)
    # Re-importing the optimum run replaces its files; the hwbench file adds new ones and the failures table.
    with pytest.raises(ImportRejected, match="No space left on device.*nothing of this import was kept"):
        import_paths(wh, [OPTIMUM / "benchmark.json", hwbench_json])
    assert len(calls) == 5
    assert _snapshot(wh, skip_locks=True) == before
    assert wh.read("inference_results").drop("_written_at").to_dicts() == rows_before
    assert wh.read("failures").height == 0
    with wh.connect() as con:
        assert con.execute("SELECT count(*) FROM failures").fetchone()[0] == 0

    monkeypatch.setattr(pq, "write_table", real_write)
    summary = import_paths(wh, [OPTIMUM / "benchmark.json", hwbench_json])  # and it goes through afterwards
    assert wh.read("inference_results").height == 2 and summary.rows_by_table["failures"] == 1


def test_optimum_fixture_is_as_produced():
    """The fixture's README records these hashes: a changed file is no longer the measured one."""
    expected = {
        "benchmark.json": "5a5cffca24ffb30fa2cf6fe0c5ba392901c160a1dadca08a32a168783d27774f",
        "benchmark_config.json": "bbf946a8b5313e5389f9608f47a10ed74fb02ce12645d84d21220567237372b7",
        "benchmark_report.json": "6a295368ed009664142b52502da3514038a5f720a927c0d89b4f48c2152d8ddd",
    }
    assert {name: _sha256(OPTIMUM / name) for name in expected} == expected
    doc = json.loads((OPTIMUM / "benchmark.json").read_text())
    assert doc["report"] == json.loads((OPTIMUM / "benchmark_report.json").read_text())
    assert doc["config"] == json.loads((OPTIMUM / "benchmark_config.json").read_text())
    assert doc["config"]["environment"]["optimum_benchmark_version"] == "0.6.0"
