"""The read-only REST API and ``hwbench serve``: auth, refusals, every endpoint, the limits that keep one client
from taking the host (memory, threads, queries at once, answer and body sizes), the Host check, and one real
server process.

The warehouse rows are fixtures of the query layer (written through Warehouse.write); they claim nothing about
any hardware.
"""

import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from api_rows import ENV, measured_row
from fastapi.testclient import TestClient

from hwbench_pipeline.api.app import create_app
from hwbench_pipeline.cli import main
from hwbench_pipeline.commands import serve
from hwbench_pipeline.commands.serve import is_loopback, served_host_names
from hwbench_pipeline.warehouse.store import Warehouse

TOKEN = "correct-horse-battery-staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The Host the test clients send: the API answers only requests that name it (see bench/serving/admission.py).
LOCAL = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    wh = Warehouse(tmp_path_factory.mktemp("api") / "data")
    wh.write("models", [{"run_id": "cat", "family": f, "preset": "tiny"} for f in ("bert", "vit")], run_id="cat")
    wh.write("hardware_targets", [{"run_id": "hw", "target": t} for t in ("cpu-torch", "cpu-onnxruntime")],
             run_id="hw")
    wh.write("inference_results", [measured_row("r1", "cpu-torch", 10.0, 1)], run_id="r1", partition="cpu-torch")
    wh.write("inference_results", [measured_row("r2", "cpu-torch", 12.0, 2)], run_id="r2", partition="cpu-torch")
    wh.write("failures", [{"run_id": "r1", "scenario": "inference", "target": "cpu-onnxruntime", "family": "bert",
                           "preset": "tiny", "batch_size": 1, "seq_len": 16, "precision": "fp32", "threads": 2,
                           "status": "failed", "failure_class": "export_error", "message": "export failed", **ENV}],
             run_id="r1", partition="cpu-onnxruntime")
    return wh.data_dir


def local(app) -> TestClient:
    return TestClient(app, base_url=LOCAL)


@pytest.fixture(scope="module")
def client(data_dir):
    return local(create_app(data_dir, TOKEN, max_rows=5))


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
    assert local(create_app(data_dir)).get("/tables").status_code == 200
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


def _strict_json(text: str):
    """JSON as the standard has it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("sql, record", [
    ("SELECT to_json({'a': 1, 'b': [1, 2]}) AS j", {"j": {"a": 1, "b": [1, 2]}}),
    ("SELECT '\\xAA\\xBB'::BLOB AS b", {"b": "\\xAA\\xBB"}),
    ("SELECT INTERVAL 1 DAY + INTERVAL 2 HOUR AS i", {"i": "1 day 02:00:00"}),
    ("SELECT {'x': INTERVAL 1 MONTH, 'y': [1.5, 'nan'::DOUBLE]} AS s", {"s": {"x": "1 month", "y": [1.5, None]}}),
    ("SELECT MAP {'k': 1} AS m, MAP {1: 'x'} AS n", {"m": {"k": 1}, "n": {"1": "x"}}),
    ("SELECT 170141183460469231731687303715884105727::HUGEINT AS h, "
     "340282366920938463463374607431768211455::UHUGEINT AS u",
     {"h": 170141183460469231731687303715884105727, "u": 340282366920938463463374607431768211455}),
    ("SELECT 'nan'::DOUBLE AS n, 'inf'::DOUBLE AS i, '-inf'::FLOAT AS f", {"n": None, "i": None, "f": None}),
    ("SELECT 'infinity'::DATE AS d, '-infinity'::TIMESTAMPTZ AS t, 'infinity'::TIMESTAMP AS u",
     {"d": "infinity", "t": "-infinity", "u": "infinity"}),
    ("SELECT '2026-03-01 10:00:00+02'::TIMESTAMPTZ AS t, '2026-03-01 10:00:00.5'::TIMESTAMP AS u",
     {"t": "2026-03-01T08:00:00.000000+00:00", "u": "2026-03-01T10:00:00.500000"}),
    ("SELECT union_value(num := 2) AS u, '101'::BIT AS b, 12::BIGNUM AS v, 1.50::DECIMAL(38, 2) AS d",
     {"u": {"num": 2}, "b": "101", "v": 12, "d": 1.5}),
    ("SELECT 1 AS a, 2 AS a", {"a": 1, "a_1": 2}),
    ("SELECT 'it''s \"q\" é' AS \"it's\"", {"it's": 'it\'s "q" é'}),
])
def test_every_result_type_is_answered_as_plain_json(client, sql, record):
    response = client.post("/sql", headers=AUTH, json={"sql": sql})
    assert response.status_code == 200, response.text
    body = _strict_json(response.text)
    assert body["records"] == [record] and body["columns"] == list(record)


def test_sql_timestamps_read_like_the_named_endpoints(client):
    measured = client.post("/sql", headers=AUTH, json={
        "sql": "SELECT finished_at FROM inference_results WHERE run_id = 'r1'"}).json()["records"]
    assert measured == [{"finished_at": "2026-03-01T01:01:00.000000+00:00"}]


# ---- limits: memory and threads per query, queries at once, answer and body sizes --------------------------
SETTINGS = "SELECT current_setting('memory_limit') AS memory, current_setting('threads') AS threads"


def test_each_query_runs_with_the_configured_memory_limit_and_thread_count(data_dir):
    default = local(create_app(data_dir)).post("/sql", json={"sql": SETTINGS}).json()["records"]
    assert default == [{"memory": "488.2 MiB", "threads": 1}]  # 512MB, as DuckDB shows it
    small = local(create_app(data_dir, memory_limit="64MB", threads=2)).post("/sql", json={"sql": SETTINGS})
    assert small.json()["records"] == [{"memory": "61.0 MiB", "threads": 2}]


def test_a_query_over_the_memory_limit_is_400_in_one_line_and_the_server_stays_up(data_dir):
    client = local(create_app(data_dir, memory_limit="64MB"))
    response = client.post("/sql", json={"sql": "SELECT list(i) FROM range(30000000) t(i)"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("query needs more memory than the 64MB limit per query: Out of Memory Error")
    assert "\n" not in detail
    assert client.post("/sql", json={"sql": "SELECT 1 AS one"}).json()["records"] == [{"one": 1}]


def test_the_named_queries_run_under_the_same_memory_limit(data_dir):
    response = local(create_app(data_dir, memory_limit="1MB")).get("/coverage")
    assert response.status_code == 400 and "more memory than the 1MB limit per query" in response.json()["detail"]


@pytest.mark.parametrize("setting, message", [
    ({"memory_limit": "-1MB"}, "a memory limit is a positive number and a unit"),
    ({"memory_limit": "lots"}, "a memory limit is a positive number and a unit"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"max_concurrent_queries": 0}, "queries at once must be a positive integer"),
    ({"queue_seconds": -1}, "wait for a query slot must be >= 0"),
    ({"max_response_bytes": 100}, "at least 1024 bytes"),
    ({"max_body_bytes": -1}, "request body limit must be >= 0"),
    ({"allowed_hosts": ["not a host"]}, "not a host name or address: 'not a host'"),
])
def test_a_bad_limit_is_refused_when_the_app_is_made(data_dir, setting, message):
    with pytest.raises(ValueError, match=message):
        create_app(data_dir, **setting)


def test_a_query_beyond_the_concurrency_limit_waits_then_gets_503_with_retry_after(data_dir):
    app = create_app(data_dir, max_concurrent_queries=1, queue_seconds=0.2, max_seconds=2)
    slow = {}

    def hold_the_only_slot():  # runs until the 2 s time limit stops it
        slow["response"] = local(app).post("/sql", json={"sql": "SELECT sum(hash(i)) FROM range(100000000000) t(i)"})

    holder = threading.Thread(target=hold_the_only_slot)
    holder.start()
    client, turned_away = local(app), None
    while holder.is_alive() and turned_away is None:
        response = client.get("/tables")
        if response.status_code == 503:
            turned_away = response
    holder.join()
    assert turned_away is not None, "no request was turned away while the slow query held the only slot"
    assert turned_away.headers["retry-after"] == "1"
    assert turned_away.json() == {"detail": "busy: all 1 query slots stayed taken for 0.2 s; retry later"}
    assert slow["response"].status_code == 400 and "stopped after 2 s" in slow["response"].json()["detail"]
    assert client.get("/tables").status_code == 200  # the slot was given back


def test_an_answer_over_the_byte_limit_is_cut_by_rows_and_says_truncated(data_dir):
    client = local(create_app(data_dir, max_response_bytes=4096))
    response = client.post("/sql", json={"sql": "SELECT i, repeat('x', 100) AS pad FROM range(1000) t(i)"})
    body = response.json()
    assert response.status_code == 200 and len(response.content) <= 4096
    assert body["truncated"] and 0 < body["row_count"] == len(body["records"]) < 1000
    assert [r["i"] for r in body["records"]] == list(range(body["row_count"]))
    assert len(response.content) + len(json.dumps(body["records"][-1])) > 4096  # one more row would not fit
    tables = local(create_app(data_dir, max_response_bytes=1024)).get("/tables")
    assert len(tables.content) <= 1024 and tables.json()["truncated"]  # the named answers are capped alike


def test_a_row_larger_than_the_byte_limit_is_400(data_dir):
    response = local(create_app(data_dir, max_response_bytes=4096)).post(
        "/sql", json={"sql": "SELECT repeat('x', 5000) AS s"})
    assert response.status_code == 400
    assert response.json() == {"detail": "not even one row of the result fits in the 4096-byte limit on an answer; "
                                         "select fewer or narrower columns"}


def test_a_request_body_over_the_limit_is_413_before_it_is_parsed(data_dir):
    client = local(create_app(data_dir, TOKEN, max_body_bytes=2048))
    too_large = {"detail": "request body over the 2048-byte limit"}
    big = json.dumps({"sql": "SELECT '" + "x" * 3000 + "' AS s"})
    response = client.post("/sql", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json() == too_large
    # not JSON at all, and no token: refused for its size before anything reads it
    assert client.post("/sql", content=b"{" * 3000).status_code == 413

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 500

    streamed = client.post("/sql", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.json() == too_large
    assert client.post("/sql", headers=AUTH, json={"sql": "SELECT 1 AS one"}).status_code == 200


# ---- Host header and docs --------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8765", "localhost", "LOCALHOST:1", "[::1]:8765",
                                  "[0:0:0:0:0:0:0:1]"])
def test_loopback_host_headers_with_any_port_are_served(client, host):
    assert client.get("/tables", headers={**AUTH, "Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example",
                                  "localhost.evil.example:80", "127.0.0.2", "[::2]:8765", "", "127.0.0.1:x"])
def test_a_host_header_naming_another_server_is_400(client, host):
    response = client.get("/tables", headers={**AUTH, "Host": host})
    assert response.status_code == 400
    assert "is not served here (a guard against DNS rebinding); accepted: 127.0.0.1, localhost, [::1]" in \
        response.json()["detail"]


def test_allowed_hosts_extend_the_accepted_names(data_dir):
    client = local(create_app(data_dir, allowed_hosts=["bench.example", "10.0.0.5", "fd00::5"]))
    for host in ("bench.example", "BENCH.example:8765", "10.0.0.5:80", "[fd00::5]:8765", "localhost"):
        assert client.get("/tables", headers={"Host": host}).status_code == 200, host
    assert client.get("/tables", headers={"Host": "other.example"}).status_code == 400


@pytest.mark.parametrize("bind, allowed, names", [
    ("127.0.0.1", None, ["127.0.0.1"]),
    ("192.168.1.5", ["bench.example", "b"], ["192.168.1.5", "bench.example", "b"]),
    ("0.0.0.0", ["bench.example"], ["bench.example"]),  # every address: no one name to accept
    ("::", None, []),
])
def test_serve_accepts_the_bound_address_and_each_allowed_host(bind, allowed, names):
    assert served_host_names(bind, allowed) == names


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_the_docs_need_the_token_when_one_is_set(client, data_dir, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers=AUTH).status_code == 200
    assert local(create_app(data_dir)).get(path).status_code == 200


def test_the_openapi_description_lists_the_endpoints_and_the_bearer_scheme(client):
    schema = client.get("/openapi.json", headers=AUTH).json()
    assert set(schema["paths"]) == {"/tables", "/compare", "/history", "/coverage", "/sql"}
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_no_warehouse_is_503(tmp_path):
    response = local(create_app(tmp_path)).get("/coverage")
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


def test_serve_defaults_are_the_apps_defaults():
    defaults = {name: p.default for name, p in inspect.signature(create_app).parameters.items()}
    assert (defaults["max_rows"], defaults["max_seconds"]) == (serve.MAX_ROWS, serve.MAX_SECONDS)
    assert (defaults["memory_limit"], defaults["threads"]) == (serve.QUERY_MEMORY_LIMIT, serve.QUERY_THREADS)
    assert (defaults["max_concurrent_queries"], defaults["queue_seconds"]) == (serve.MAX_CONCURRENT_QUERIES,
                                                                               serve.QUEUE_SECONDS)
    assert (defaults["max_response_bytes"], defaults["max_body_bytes"]) == (serve.MAX_RESPONSE_BYTES,
                                                                           serve.MAX_BODY_BYTES)


@pytest.mark.parametrize("option, message", [
    (["--query-memory-limit", "lots"], "a memory limit is a positive number and a unit"),
    (["--allowed-host", "not a host"], "not a host name or address: 'not a host'"),
])
def test_serve_refuses_a_bad_memory_limit_or_allowed_host_in_one_line(data_dir, capsys, option, message):
    assert main(["serve", "--data-dir", str(data_dir), *option]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


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
         "serve", "--port", str(port), "--data-dir", str(data_dir), "--allowed-host", "bench.example",
         "--max-body-bytes", "4096", "--query-memory-limit", "64MB"],
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
        # the Host header: the loopback names, and --allowed-host
        assert httpx.get(f"{base}/tables", headers={**AUTH, "Host": "evil.example"}, timeout=10).status_code == 400
        named = httpx.get(f"{base}/tables", headers={**AUTH, "Host": f"bench.example:{port}"}, timeout=10)
        assert named.status_code == 200
        assert httpx.get(f"{base}/docs", timeout=10).status_code == 401
        # a chunked body (no Content-Length) is counted as it arrives
        chunks = (b" " * 1000 for _ in range(10))
        streamed = httpx.post(f"{base}/sql", content=chunks, headers={**AUTH, "Content-Type": "application/json"},
                              timeout=10)
        assert streamed.status_code == 413 and streamed.json() == {"detail": "request body over the 4096-byte limit"}
        # a query past the memory limit fails alone; the server answers the next one
        heavy = httpx.post(f"{base}/sql", json={"sql": "SELECT list(i) FROM range(30000000) t(i)"}, headers=AUTH,
                           timeout=30)
        assert heavy.status_code == 400 and "more memory than the 64MB limit" in heavy.json()["detail"]
        assert httpx.get(f"{base}/tables", headers=AUTH, timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on Ctrl-C
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    assert proc.returncode == 0, output
    assert f"read-only on http://127.0.0.1:{port} (bearer token required); each query: 64MB, 1 thread(s), 4 at " \
           "once" in output
