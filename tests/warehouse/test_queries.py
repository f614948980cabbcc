"""The named queries over a small real warehouse written through Warehouse.write.

The rows are fixtures of the query layer, shaped like the engine's rows (statistics computed from their
samples by the engine's own summarize); they claim nothing about any hardware.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest

from hwbench_pipeline.bench.trackers.stats import summarize
from hwbench_pipeline.cli import main
from hwbench_pipeline.warehouse.queries import (
    NoWarehouseError,
    QueryError,
    UnknownValueError,
    WarehouseQueries,
    to_records,
)
from hwbench_pipeline.warehouse.store import Warehouse

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
PEAK_GFLOPS = 1000.0


def _environment(git_revision: str, torch_version: str = "2.13.0") -> dict:
    return {"host": "bench-host-1", "cpu_model": "Test CPU", "cpu_cores": 2, "memory_gb": 8.0,
            "python_version": "3.11.7", "torch_version": torch_version, "transformers_version": "5.24.0",
            "package_versions": f"torch={torch_version};transformers=5.24.0", "git_revision": git_revision}


def _key(target, family, batch=1, seq=16, precision="fp32", preset="tiny", threads=2) -> dict:
    return {"target": target, "family": family, "preset": preset, "batch_size": batch, "seq_len": seq,
            "precision": precision, "threads": threads}


def measured(run_id, hour, target, family, p50, *, git="aaa", **key) -> dict:
    samples = [p50 * f for f in (0.97, 0.99, 1.0, 1.0, 1.01, 1.03, 1.05)]
    stats = summarize(samples)
    cfg = _key(target, family, **key)
    flops = 2.0e9 * cfg["batch_size"]
    achieved = flops / (stats["p50_ms"] / 1e3) / 1e9
    return {"run_id": run_id, **cfg, "precision_ran": cfg["precision"], "backend": target.split("-")[1],
            "device_kind": "cpu", "status": "ok", "params": 4_400_000, "n_samples": len(samples), "warmup_calls": 3,
            "stop_reason": "ci_reached", "ci_target": 0.01, **stats,
            "throughput_samples_s": cfg["batch_size"] / (stats["p50_ms"] / 1e3), "first_call_ms": p50 * 3,
            "load_s": 0.2, "baseline_rss_mb": 300.0, "peak_rss_mb": 350.0, "flops_per_call": flops,
            "achieved_gflops": achieved, "pct_of_peak": 100 * achieved / PEAK_GFLOPS, "above_peak": False,
            "contaminated": False, "attempts": 1, "samples_ms": samples, "worker_pid": 4242,
            "started_at": T0 + timedelta(hours=hour), "finished_at": T0 + timedelta(hours=hour, minutes=1),
            **_environment(git)}


def failed(run_id, hour, target, family, failure_class, *, git="aaa", torch_version="2.13.0", **key) -> dict:
    return {"run_id": run_id, "scenario": "inference", **_key(target, family, **key), "status": "failed",
            "failure_class": failure_class, "message": f"{failure_class} while measuring\ntraceback line",
            "attempts": 1, "started_at": T0 + timedelta(hours=hour),
            "finished_at": T0 + timedelta(hours=hour, minutes=1), **_environment(git, torch_version)}


def build_sample_warehouse(data_dir) -> Warehouse:
    """Three runs over two targets; a third target detected but never run; a family in the catalog never run."""
    wh = Warehouse(data_dir)
    wh.write("models", [{"run_id": "cat", "family": f, "preset": "tiny", "params": 4_400_000}
                        for f in ("bert", "t5", "vit")], run_id="cat")
    wh.write("hardware_targets", [{"run_id": "hw", "target": t, "device_kind": "cpu", "backend": t.split("-")[1],
                                   "peak_gflops_fp32": PEAK_GFLOPS, **_environment("aaa")}
                                  for t in ("cpu-torch", "cpu-onnxruntime", "cpu-openvino")], run_id="hw")
    # r1: both targets measure bert; vit is measured on torch and fails to export on onnxruntime.
    wh.write("inference_results", [measured("r1", 0, "cpu-torch", "bert", 10.0),
                                   measured("r1", 0, "cpu-torch", "vit", 20.0)], run_id="r1", partition="cpu-torch")
    wh.write("inference_results", [measured("r1", 0, "cpu-onnxruntime", "bert", 6.0)], run_id="r1",
             partition="cpu-onnxruntime")
    wh.write("failures", [failed("r1", 0, "cpu-onnxruntime", "vit", "export_error")], run_id="r1",
             partition="cpu-onnxruntime")
    # r2, a newer revision: torch bert again (faster), a bf16 variant, batch 8 runs out of memory on torch.
    wh.write("inference_results", [measured("r2", 24, "cpu-torch", "bert", 9.0, git="bbb"),
                                   measured("r2", 24, "cpu-torch", "bert", 4.0, git="bbb", precision="bf16")],
             run_id="r2", partition="cpu-torch")
    wh.write("failures", [failed("r2", 24, "cpu-torch", "bert", "out_of_memory", git="bbb", batch=8)], run_id="r2",
             partition="cpu-torch")
    wh.write("inference_results", [measured("r2", 24, "cpu-onnxruntime", "bert", 30.0, git="bbb", batch=8)],
             run_id="r2", partition="cpu-onnxruntime")
    # r3: vit, measured on torch in r1, now times out there.
    wh.write("failures", [failed("r3", 48, "cpu-torch", "vit", "timeout", git="ccc", torch_version="2.14.0")],
             run_id="r3", partition="cpu-torch")
    return wh


@pytest.fixture(scope="module")
def queries(tmp_path_factory):
    return WarehouseQueries(build_sample_warehouse(tmp_path_factory.mktemp("wh")).data_dir)


def test_compare_ranks_targets_per_configuration_and_shows_failures(queries):
    df = queries.compare_targets("bert", precision="fp32")
    rows = [(r["batch_size"], r["target"], r["status"], r["run_id"]) for r in df.iter_rows(named=True)]
    assert rows == [(1, "cpu-onnxruntime", "ok", "r1"), (1, "cpu-torch", "ok", "r2"),
                    (8, "cpu-onnxruntime", "ok", "r2"), (8, "cpu-torch", "failed", "r2")]
    batch1 = df.filter(batch_size=1)
    assert batch1["p50_ms"].to_list() == pytest.approx([6.0, 9.0])  # newest torch run (r2), not r1's 10 ms
    assert batch1["p50_vs_best"].to_list() == pytest.approx([1.0, 1.5])
    # 2 GFLOP per call: 2000 / p50_ms GFLOP/s, as a share of the target's 1000 GFLOP/s peak.
    assert batch1["pct_of_peak"].to_list() == pytest.approx([100 * 2000 / p50 / PEAK_GFLOPS for p50 in (6.0, 9.0)])
    assert batch1["throughput_samples_s"].to_list() == pytest.approx([1000 / 6.0, 1000 / 9.0])
    oom = df.filter(batch_size=8, target="cpu-torch").row(0, named=True)
    assert oom["failure_class"] == "out_of_memory" and oom["p50_ms"] is None
    assert oom["message"] == "out_of_memory while measuring"  # first line only


def test_compare_filters_and_newest_outcome_wins(queries):
    assert queries.compare_targets("bert", batch_size=1, precision="bf16")["p50_ms"].to_list() == pytest.approx([4.0])
    assert queries.compare_targets("bert", batch_size=1, seq_len=16).height == 3  # fp32 on both, bf16 on torch
    vit = {r["target"]: r for r in queries.compare_targets("vit").iter_rows(named=True)}
    # vit on torch was measured in r1 and timed out in r3: the newer outcome is the current one.
    assert (vit["cpu-torch"]["status"], vit["cpu-torch"]["failure_class"], vit["cpu-torch"]["run_id"]) == \
        ("failed", "timeout", "r3")
    assert vit["cpu-onnxruntime"]["failure_class"] == "export_error"


@pytest.mark.parametrize("kwargs, message", [
    ({"family": "gpt5"}, "no results for model family 'gpt5'; families with results: bert, vit"),
    ({"family": "bert", "preset": "huge"},
     "no results for preset 'huge' with model family 'bert'; presets with results there: tiny"),
    ({"family": "bert", "batch_size": 4}, "batch sizes with results there: 1, 8"),
    ({"family": "vit", "precision": "bf16"}, "precisions with results there: fp32"),
])
def test_compare_unknown_values_list_what_exists(queries, kwargs, message):
    family = kwargs.pop("family")
    with pytest.raises(UnknownValueError, match=message.replace("(", r"\(")):
        queries.compare_targets(family, **kwargs)


def test_history_is_every_run_in_time_order_with_its_environment(queries):
    df = queries.history(target="cpu-torch", family="bert", preset="tiny", batch_size=1, seq_len=16,
                         precision="fp32")
    assert df["run_id"].to_list() == ["r1", "r2"]
    assert df["p50_ms"].to_list() == pytest.approx([10.0, 9.0])
    assert df["git_revision"].to_list() == ["aaa", "bbb"]
    assert {"torch_version", "host", "cpu_model", "python_version", "measured_at"} <= set(df.columns)
    assert df["measured_at"].is_sorted()
    vit = queries.history(target="cpu-torch", family="vit", preset="tiny", batch_size=1, seq_len=16)
    assert [(r["run_id"], r["status"], r["failure_class"], r["torch_version"]) for r in vit.iter_rows(named=True)] == \
        [("r1", "ok", None, "2.13.0"), ("r3", "failed", "timeout", "2.14.0")]


def test_history_needs_one_configuration(queries):
    with pytest.raises(QueryError, match=r"several precisions \(bf16, fp32\): choose one with the precision option"):
        queries.history(target="cpu-torch", family="bert", preset="tiny", batch_size=1, seq_len=16)
    with pytest.raises(UnknownValueError, match="no results for target 'cpu-openvino'; targets with results: "
                                                "cpu-onnxruntime, cpu-torch"):
        queries.history(target="cpu-openvino", family="bert", preset="tiny", batch_size=1, seq_len=16)
    with pytest.raises(UnknownValueError, match="sequence lengths with results there: 16"):
        queries.history(target="cpu-torch", family="bert", preset="tiny", batch_size=1, seq_len=128)


def test_coverage_matrix_from_latest_results_and_failures(queries):
    matrix = queries.coverage()
    assert matrix.columns == ["family", "cpu-onnxruntime", "cpu-openvino", "cpu-torch"]
    assert matrix.rows() == [
        ("bert", "measured", "untested", "measured"),
        ("t5", "untested", "untested", "untested"),  # in the catalog, never run
        ("vit", "failed:export_error", "untested", "failed:timeout"),
    ]
    cells = {(r["family"], r["target"]): r for r in queries.coverage_cells().iter_rows(named=True)}
    bert_torch = cells[("bert", "cpu-torch")]
    assert (bert_torch["measured_configs"], bert_torch["failed_configs"], bert_torch["failure_classes"]) == \
        (2, 1, "out_of_memory")


def test_tables_lists_history_and_latest_views(queries):
    tables = {r["name"]: r for r in queries.tables().iter_rows(named=True)}
    assert tables["inference_results"]["kind"] == "history"
    assert tables["inference_results_latest"]["kind"] == "latest"
    assert tables["failures_latest"]["key"].startswith("scenario, target, family, preset")
    assert "_catalog_info" not in tables


def test_sql_binds_parameters_and_caps_rows(queries):
    df = queries.sql("SELECT run_id, p50_ms FROM inference_results WHERE family = ? AND target = $2 ORDER BY run_id",
                     ["bert", "cpu-onnxruntime"])
    assert df.rows() == [("r1", pytest.approx(6.0)), ("r2", pytest.approx(30.0))]
    assert queries.sql("SELECT count(*) AS n FROM failures WHERE family = $family", {"family": "vit"})["n"][0] == 2
    # A value that looks like SQL stays a value.
    assert queries.sql("SELECT count(*) AS n FROM models WHERE family = ?", ["bert' OR '1'='1"])["n"][0] == 0
    capped, truncated = queries.sql_capped("SELECT * FROM range(25000) t(i)", max_rows=100)
    assert capped.height == 100 and truncated
    exact, truncated = queries.sql_capped("SELECT * FROM range(100) t(i)", max_rows=100)
    assert exact.height == 100 and not truncated
    assert queries.sql("DESCRIBE inference_results_latest").height > 40


def test_sql_errors_are_one_line_query_errors(queries):
    with pytest.raises(QueryError, match="does not exist"):
        queries.sql("SELECT * FROM no_such_table")
    with pytest.raises(QueryError, match="parameters must be a list"):
        queries.sql("SELECT ?", "x")


def test_a_runaway_query_is_stopped_at_the_time_limit(queries):
    slow = WarehouseQueries(queries.warehouse.data_dir, max_seconds=0.3)
    with pytest.raises(QueryError, match=r"stopped after 0.3 s"):
        slow.sql("SELECT count(*) FROM range(1000000000000) t(i) WHERE i % 7 = 3")


def test_records_are_plain_json(queries):
    df = queries.sql("SELECT finished_at, samples_ms, 'nan'::DOUBLE AS x, 1.5::DECIMAL(4,2) AS d "
                     "FROM inference_results LIMIT 1")
    record = to_records(df)[0]
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert record["x"] is None and record["d"] == 1.5 and isinstance(record["samples_ms"], list)
    assert datetime.fromisoformat(record["finished_at"]).tzinfo is not None


def test_missing_warehouse_is_a_clear_error(tmp_path):
    with pytest.raises(NoWarehouseError, match="no warehouse in .*hwbench.duckdb does not exist"):
        WarehouseQueries(tmp_path).coverage()
    assert not (tmp_path / "hwbench.duckdb").exists()  # a reader never creates the catalog


# ---- hwbench query ----------------------------------------------------------------------------------------
def _hwbench(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_compare_as_json_table_and_csv(queries, capsys):
    data_dir = str(queries.warehouse.data_dir)
    code, out, _ = _hwbench(capsys, "query", "compare", "--model", "bert", "--batch", "8", "--data-dir", data_dir,
                            "--format", "json")
    assert code == 0
    assert [(r["target"], r["status"], r["failure_class"]) for r in json.loads(out)] == \
        [("cpu-onnxruntime", "ok", None), ("cpu-torch", "failed", "out_of_memory")]
    code, out, _ = _hwbench(capsys, "query", "compare", "--model", "bert", "--batch", "8", "--data-dir", data_dir)
    assert code == 0 and "cpu-torch" in out and "failed" in out and "p50_ms" in out  # narrow cells are cut
    code, out, _ = _hwbench(capsys, "query", "coverage", "--data-dir", data_dir, "--format", "csv")
    assert code == 0 and out.splitlines() == ["family,cpu-onnxruntime,cpu-openvino,cpu-torch",
                                              "bert,measured,untested,measured", "t5,untested,untested,untested",
                                              "vit,failed:export_error,untested,failed:timeout"]


def test_cli_history_and_sql(queries, capsys):
    data_dir = str(queries.warehouse.data_dir)
    code, out, _ = _hwbench(capsys, "query", "history", "--target", "cpu-torch", "--model", "bert", "--preset", "tiny",
                            "--batch", "1", "--seq", "16", "--precision", "fp32", "--data-dir", data_dir,
                            "--format", "csv")
    header, *rows = out.splitlines()
    assert code == 0 and header.startswith("measured_at,run_id,status") and [r.split(",")[1] for r in rows] == \
        ["r1", "r2"]
    code, out, _ = _hwbench(capsys, "query", "sql", "SELECT DISTINCT run_id FROM failures WHERE batch_size = ?",
                            "--param", "8", "--data-dir", data_dir, "--format", "json")
    assert code == 0 and json.loads(out) == [{"run_id": "r2"}]
    code, out, err = _hwbench(capsys, "query", "sql", "SELECT * FROM range(10)", "--max-rows", "3",
                              "--data-dir", data_dir, "--format", "csv")
    assert code == 0 and out.splitlines() == ["range", "0", "1", "2"] and "showing the first 3 rows" in err


@pytest.mark.parametrize("args, message", [
    (["compare", "--model", "gpt5"], "no results for model family 'gpt5'; families with results: bert, vit"),
    (["history", "--target", "cpu-torch", "--model", "bert", "--preset", "tiny", "--batch", "1", "--seq", "16"],
     "several precisions (bf16, fp32)"),
    (["sql", "DROP VIEW models"], "DROP statements are refused"),
    (["sql", "SELECT 1; DROP VIEW models"], "2 statements given"),
    (["sql", "SELECT * FROM read_csv('/etc/passwd')"], "access outside the warehouse is refused"),
])
def test_cli_bad_input_is_one_line_and_exit_2(queries, capsys, args, message):
    code, out, err = _hwbench(capsys, "query", *args, "--data-dir", str(queries.warehouse.data_dir))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_cli_without_a_warehouse(tmp_path, capsys):
    code, _, err = _hwbench(capsys, "query", "coverage", "--data-dir", str(tmp_path))
    assert code == 2 and "no warehouse in" in err


def test_hwbench_query_sql_prints_every_duckdb_type_in_each_format(tmp_path, capsys):
    Warehouse(tmp_path).write("models", [{"run_id": "m", "family": "bert", "preset": "tiny"}], run_id="m")
    statement = ("SELECT 'infinity'::DATE AS d, INTERVAL 1 DAY AS i, 12345678901234567890123::HUGEINT AS h, "
                 "[1, 2] AS l")
    for fmt in ("table", "json", "csv"):
        assert main(["query", "sql", statement, "--format", fmt, "--data-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "infinity" in out and "1 day" in out and "12345678901234567890123" in out, (fmt, out)
