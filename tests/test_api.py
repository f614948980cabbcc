"""The read-only REST API and ``hwbench serve``: auth, refusals, every endpoint, and one real server process.

The warehouse rows are fixtures of the query layer (written through Warehouse.write); they claim nothing about
any hardware.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient

from hwbench_pipeline.api.app import create_app
from hwbench_pipeline.cli import main
from hwbench_pipeline.commands.serve import is_loopback
from hwbench_pipeline.warehouse.store import Warehouse

TOKEN = "correct-horse-battery-staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"host": "bench-host-1", "cpu_model": "Test CPU", "cpu_cores": 2, "python_version": "3.11.7",
       "torch_version": "2.13.0", "transformers_version": "5.24.0", "git_revision": "abc123"}


def _measured(run_id, target, p50, hour):
    samples = [p50 * 0.98, p50, p50, p50 * 1.03]
    return {"run_id": run_id, "target": target, "family": "bert", "preset": "tiny", "batch_size": 1, "seq_len": 16,
            "precision": "fp32", "threads": 2, "precision_ran": "fp32", "status": "ok", "n_samples": len(samples),
            "p50_ms": p50, "p90_ms": max(samples), "p99_ms": max(samples), "throughput_samples_s": 1000 / p50,
            "samples_ms": samples, "started_at": datetime(2026, 3, 1, hour, tzinfo=UTC),
            "finished_at": datetime(2026, 3, 1, hour, 1, tzinfo=UTC), **ENV}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    wh = Warehouse(tmp_path_factory.mktemp("api") / "data")
    wh.write("models", [{"run_id": "cat", "family": f, "preset": "tiny"} for f in ("bert", "vit")], run_id="cat")
    wh.write("hardware_targets", [{"run_id": "hw", "target": t} for t in ("cpu-torch", "cpu-onnxruntime")],
             run_id="hw")
    wh.write("inference_results", [_measured("r1", "cpu-torch", 10.0, 1)], run_id="r1", partition="cpu-torch")
    wh.write("inference_results", [_measured("r2", "cpu-torch", 12.0, 2)], run_id="r2", partition="cpu-torch")
    wh.write("failures", [{"run_id": "r1", "scenario": "inference", "target": "cpu-onnxruntime", "family": "bert",
                           "preset": "tiny", "batch_size": 1, "seq_len": 16, "precision": "fp32", "threads": 2,
                           "status": "failed", "failure_class": "export_error", "message": "export failed", **ENV}],
             run_id="r1", partition="cpu-onnxruntime")
    return wh.data_dir


@pytest.fixture(scope="module")
def client(data_dir):
    return TestClient(create_app(data_dir, TOKEN, max_rows=5))


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
])
@pytest.mark.parametrize("method, path", [("get", "/tables"), ("get", "/coverage"), ("post", "/sql")])
def test_missing_or_wrong_token_is_401(client, headers, method, path):
    response = client.request(method, path, headers=headers, json={"sql": "SELECT 1"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "missing or wrong bearer token"}


def test_without_a_token_configured_no_header_is_needed(data_dir):
    assert TestClient(create_app(data_dir)).get("/tables").status_code == 200
    with pytest.raises(ValueError, match="must not be empty"):
        create_app(data_dir, "  ")


def test_tables(client):
    body = client.get("/tables", headers=AUTH).json()
    assert body["columns"] == ["name", "kind", "key", "columns"]
    names = {r["name"]: r["kind"] for r in body["records"]}
    # max_rows=5 cuts the list of ~20 views, and the answer says so.
    assert body["truncated"] and body["row_count"] == 5 and body["max_rows"] == 5
    assert set(names.values()) <= {"history", "latest"}


def test_compare(client):
    body = client.get("/compare", params={"model": "bert", "batch": 1}, headers=AUTH).json()
    rows = [(r["target"], r["status"], r["p50_ms"], r["failure_class"], r["run_id"]) for r in body["records"]]
    assert rows == [("cpu-torch", "ok", 12.0, None, "r2"), ("cpu-onnxruntime", "failed", None, "export_error", "r1")]
    assert not body["truncated"] and body["row_count"] == 2


@pytest.mark.parametrize("params, status, detail", [
    ({"model": "gpt5"}, 404, "no results for model family 'gpt5'; families with results: bert"),
    ({"model": "bert' OR '1'='1"}, 404, "no results for model family \"bert' OR '1'='1\""),  # a value, not SQL
    ({"model": "bert", "preset": "huge"}, 404, "presets with results there: tiny"),
])
def test_compare_unknown_values(client, params, status, detail):
    response = client.get("/compare", params=params, headers=AUTH)
    assert response.status_code == status and detail in response.json()["detail"]


def test_bad_query_parameters_are_422(client):
    assert client.get("/compare", params={"model": "bert", "batch": 0}, headers=AUTH).status_code == 422
    assert client.get("/history", params={"target": "cpu-torch", "model": "bert"}, headers=AUTH).status_code == 422


def test_history(client):
    params = {"target": "cpu-torch", "model": "bert", "preset": "tiny", "batch": 1, "seq": 16}
    body = client.get("/history", params=params, headers=AUTH).json()
    assert [(r["run_id"], r["p50_ms"], r["git_revision"]) for r in body["records"]] == \
        [("r1", 10.0, "abc123"), ("r2", 12.0, "abc123")]
    assert body["records"][0]["measured_at"].startswith("2026-03-01T01:01:00")


def test_coverage(client):
    body = client.get("/coverage", headers=AUTH).json()
    assert body["records"] == [
        {"family": "bert", "cpu-onnxruntime": "failed:export_error", "cpu-torch": "measured"},
        {"family": "vit", "cpu-onnxruntime": "untested", "cpu-torch": "untested"},
    ]
    cells = client.get("/coverage", params={"cells": True}, headers=AUTH).json()
    assert {(r["family"], r["target"]): r["measured_configs"] for r in cells["records"]}[("bert", "cpu-torch")] == 1


def test_sql_with_bound_parameters(client):
    body = client.post("/sql", headers=AUTH, json={
        "sql": "SELECT run_id, p50_ms FROM inference_results WHERE family = ? AND p50_ms > ? ORDER BY run_id",
        "params": ["bert", 11]}).json()
    assert body == {"columns": ["run_id", "p50_ms"], "records": [{"run_id": "r2", "p50_ms": 12.0}],
                    "row_count": 1, "truncated": False, "max_rows": 5}
    named = client.post("/sql", headers=AUTH, json={"sql": "SELECT count(*) AS n FROM failures WHERE target = $t",
                                                    "params": {"t": "cpu-onnxruntime"}}).json()
    assert named["records"] == [{"n": 1}]


def test_sql_result_is_capped(client):
    body = client.post("/sql", headers=AUTH, json={"sql": "SELECT i FROM range(1000) t(i)"}).json()
    assert body["row_count"] == 5 and body["truncated"] and [r["i"] for r in body["records"]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("sql, reason", [
    ("DROP VIEW inference_results", "DROP statements are refused"),
    ("INSERT INTO models (family) VALUES ('x')", "INSERT statements are refused"),
    ("COPY (SELECT 1) TO '/tmp/hwbench-api-test.csv'", "COPY is refused"),
    ("ATTACH '/tmp/hwbench-api-test.db' AS x", "ATTACH is refused"),
    ("SELECT 1; DROP VIEW models", "2 statements given"),
    ("SET enable_external_access = true", "SET/RESET/USE statements are refused"),
    ("INSTALL httpfs", "INSTALL/LOAD statements are refused"),
    ("SELECT * FROM read_csv('/etc/passwd')", "access outside the warehouse is refused"),
    ("SELECT * FROM no_such_view", "does not exist"),
])
def test_refused_or_failing_sql_is_400_with_the_reason(client, sql, reason):
    response = client.post("/sql", headers=AUTH, json={"sql": sql})
    assert response.status_code == 400 and reason in response.json()["detail"]
    assert not os.path.exists("/tmp/hwbench-api-test.csv") and not os.path.exists("/tmp/hwbench-api-test.db")


def test_no_warehouse_is_503(tmp_path):
    response = TestClient(create_app(tmp_path)).get("/coverage")
    assert response.status_code == 503 and "no warehouse" in response.json()["detail"]


# ---- hwbench serve ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("[::1]", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("::", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_refuses_a_public_bind_without_a_token(data_dir, capsys, monkeypatch):
    monkeypatch.delenv("HWBENCH_API_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to serve on 0.0.0.0 without a token" in err[0]


def test_serve_refuses_a_missing_warehouse_and_a_bad_port(tmp_path, capsys):
    assert main(["serve", "--data-dir", str(tmp_path)]) == 2
    assert "no warehouse in" in capsys.readouterr().err
    assert main(["serve", "--port", "70000", "--data-dir", str(tmp_path)]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_runs_a_real_server_on_loopback(data_dir):
    port = _free_port()
    env = {**os.environ, "HWBENCH_API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hwbench_pipeline.cli import main; sys.exit(main(sys.argv[1:]))",
         "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{base}/tables", headers=AUTH, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not answer within 60 s"
            time.sleep(0.2)
        assert httpx.get(f"{base}/tables", timeout=5).status_code == 401
        compare = httpx.get(f"{base}/compare", params={"model": "bert"}, headers=AUTH, timeout=10).json()
        assert {r["target"] for r in compare["records"]} == {"cpu-torch", "cpu-onnxruntime"}
        refused = httpx.post(f"{base}/sql", json={"sql": "DROP VIEW models"}, headers=AUTH, timeout=10)
        assert refused.status_code == 400 and "DROP statements are refused" in refused.json()["detail"]
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on Ctrl-C
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    assert proc.returncode == 0, output
    assert f"read-only on http://127.0.0.1:{port} (bearer token required)" in output
