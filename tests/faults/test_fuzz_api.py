"""Fuzzing the REST API: whatever a client sends to /compare, /history, /coverage or POST /sql, the answer is JSON
with a status of 200, 400, 401, 404, 413, 422 or 503, an error says what is wrong in one line, nothing answers
500 or shows a traceback, and no file outside the warehouse's Parquet folder (nor the server's environment)
shows up in any answer. Run with -s to see how many requests were sent.

The warehouse is small and real, written as tests/test_api.py writes its own. Beside it lie secrets the API must
never read: a file in another folder, a file in the data directory next to the Parquet folder, one in a sibling
folder whose name starts with the Parquet folder's, one whose name is never sent (a directory listing would show
it), and an environment variable of the server process (queries also point at /proc/self/environ).

Query parameters are drawn from valid values and from unicode, control characters, very long text, numbers out
of range, negative, fractional or written oddly, unknown names, and names repeated. SQL comes from a small
grammar: SELECT of literals of every DuckDB type, the views, functions that read files (read_csv, read_parquet,
read_text, glob, ...) pointed at the secrets by plain, relative and traversing paths, getenv and the settings,
statements that are refused (ATTACH, COPY, INSTALL, PRAGMA, SET, EXPORT, ...), several statements, comments,
very deep or very long text, and random text; with parameters as a list, an object or of the wrong type, and
now and then a body that is not the JSON the endpoint expects.
"""

import json
import os
import uuid
from collections import Counter
from urllib.parse import quote

import pytest
from api_rows import ENV, measured_row
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwbench_pipeline.api.app import create_app
from hwbench_pipeline.warehouse.store import Warehouse

EXAMPLES = int(os.environ.get("HWBENCH_FUZZ_EXAMPLES", "200"))
SETTINGS = dict(deadline=None, database=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
ANSWERED = {200, 400, 401, 404, 413, 422, 503}
TOKEN = "fuzz-token-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCAL = "http://127.0.0.1:8765"  # the API answers only requests whose Host names it
ENV_NAME = "HWBENCH_FUZZ_SECRET"


class Served:
    """A small warehouse, the secrets around it, and a client of the API over it."""

    def __init__(self, root, monkeypatch) -> None:
        wh = Warehouse(root / "data")
        wh.write("models", [{"run_id": "cat", "family": f, "preset": "tiny"} for f in ("bert", "vit")], run_id="cat")
        wh.write("hardware_targets", [{"run_id": "hw", "target": t} for t in ("cpu-torch", "cpu-onnxruntime")],
                 run_id="hw")
        wh.write("inference_results", [measured_row("r1", "cpu-torch", 10.0, 1)], run_id="r1", partition="cpu-torch")
        wh.write("inference_results", [measured_row("r2", "cpu-torch", 12.0, 2)], run_id="r2", partition="cpu-torch")
        wh.write("failures", [{"run_id": "r1", "scenario": "inference", "target": "cpu-onnxruntime",
                               "family": "bert", "preset": "tiny", "batch_size": 1, "seq_len": 16,
                               "precision": "fp32", "threads": 2, "status": "failed", "failure_class": "export_error",
                               "message": "export failed", **ENV}], run_id="r1", partition="cpu-onnxruntime")
        self.data_dir, self.parquet_dir = wh.data_dir, wh.parquet_dir
        self.secrets = {name: f"SECRET{uuid.uuid4().hex}" for name in (
            "outside", "beside", "sibling", "unlisted", "environment")}
        self.outside_dir = root / "private"
        self.outside_dir.mkdir()
        self.outside = self.outside_dir / "secret.csv"
        self.outside.write_text(f"key,value\nsecret,{self.secrets['outside']}\n")
        (self.outside_dir / f"{self.secrets['unlisted']}.csv").write_text("key\nunlisted\n")
        self.beside = self.data_dir / "notes.csv"
        self.beside.write_text(f"key\n{self.secrets['beside']}\n")
        self.sibling = self.data_dir / f"{self.parquet_dir.name}-sibling" / "s.csv"
        self.sibling.parent.mkdir()
        self.sibling.write_text(f"key\n{self.secrets['sibling']}\n")
        monkeypatch.setenv(ENV_NAME, self.secrets["environment"])
        self.written = root / "written"  # where COPY / EXPORT are told to write
        self.written.mkdir()
        self.client = TestClient(create_app(self.data_dir, TOKEN, max_seconds=5, memory_limit="256MB"),
                                 base_url=LOCAL, raise_server_exceptions=False)
        self.statuses: Counter[int] = Counter()

    def paths(self) -> list[str]:
        """Paths a query may point file functions at: the secrets, plainly and by way of the warehouse."""
        pq, data = str(self.parquet_dir), str(self.data_dir)
        return [
            str(self.outside), f"{self.outside_dir}/*", f"{self.outside_dir}/**", f"{pq}/../../private/secret.csv",
            f"{pq}/../../private/*", str(self.beside), f"{pq}/../notes.csv", f"{pq}/./../notes.csv",
            f"{data}/hwbench.duckdb", str(self.sibling), f"{pq}-sibling/s.csv", f"{pq}/../{self.sibling.parent.name}/*",
            f"{pq}/inference_results/../../notes.csv", f"{pq}//..//notes.csv", f"{pq}/%2e%2e/notes.csv",
            "/proc/self/environ", "/etc/passwd", "~/.bashrc", "notes.csv", "../notes.csv", "*", "**/*.csv",
            f"file://{self.outside}", f"file:{self.outside}", "http://127.0.0.1:1/x.csv", "s3://bucket/x.parquet",
            f"{pq}/**/*.parquet", f"{pq}/inference_results/*/*.parquet",
            f"{pq}/inference_results/cpu-torch/r1.parquet",
        ]

    def send(self, method: str, path: str, **kwargs):
        response = self.client.request(method, path, **kwargs)
        self.check(response)
        self.statuses[response.status_code] += 1
        return response

    def check(self, response) -> None:
        text = response.text
        assert response.status_code in ANSWERED, (response.status_code, text[:2000])
        assert "Traceback" not in text and 'File "' not in text, text[:2000]
        for name, secret in self.secrets.items():
            assert secret not in text, f"the {name} secret is in an answer: {text[:2000]}"
            assert not any(secret in value for value in response.headers.values()), name

        def refuse(constant):
            raise ValueError(f"{constant} is not JSON")

        body = json.loads(text, parse_constant=refuse)  # JSON as the standard has it: no NaN, no Infinity
        if response.status_code == 200:
            assert set(body) == {"columns", "records", "row_count", "truncated", "max_rows"}, body
            assert body["row_count"] == len(body["records"]) and isinstance(body["truncated"], bool), body
        else:  # every error, 422 included, is one line
            detail = body["detail"]
            assert isinstance(detail, str) and len(detail.splitlines()) == 1 and detail.strip(), body

    def report(self, what: str) -> None:
        statuses = ", ".join(f"{n} x {status}" for status, n in sorted(self.statuses.items(), key=str))
        print(f"\nfuzzed {sum(self.statuses.values())} {what}: {statuses}")
        assert list(self.written.iterdir()) == [], "a statement wrote a file"


@pytest.fixture
def served(tmp_path, monkeypatch) -> Served:
    return Served(tmp_path, monkeypatch)


# ---- query parameters ---------------------------------------------------------------------------------------
ODD_NUMBERS = ["0", "-1", "1", "2", "16", "1.5", "1e3", "-0", "+1", " 1", "1 ", "0x10", "1_000", "１", "²", "NaN",
               "inf", "-inf", "9" * 30, str(2**63), str(2**63 - 1), str(-(2**63) - 1), str(2**31), "true", ""]
VALID = ["bert", "vit", "tiny", "cpu-torch", "cpu-onnxruntime", "fp32", "int8", "1", "16", "2"]
CONTROL = ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff", "\ud7ff", "\U0010ffff"]
texts = st.one_of(
    st.sampled_from(VALID), st.sampled_from(ODD_NUMBERS), st.text(max_size=40),
    st.sampled_from(VALID).flatmap(lambda v: st.sampled_from(CONTROL).map(lambda c: v + c)),
    st.sampled_from(["x" * 10_000, "é" * 3000, "bert' OR '1'='1", "bert\"; DROP VIEW models; --", "%00", "%",
                     "../../etc/passwd", "$1", "?", "{}", "[]", "null"]),
)
RAW_VALUES = ["%FF%FE", "%00", "%", "%E2%80", "%2", "%0A", "bert%00", "%C0%AE%C0%AE", "%25", "+", "a+b", "bert",
              "1", "%31", "%ED%A0%80", "", "=", "%3D%26"]
PARAMETERS = {
    "/compare": ["model", "preset", "batch", "seq", "precision"],
    "/history": ["target", "model", "preset", "batch", "seq", "precision", "threads"],
    "/coverage": ["cells"],
}
VALID_QUERY = {
    "/compare": [("model", "bert")],
    "/history": [("target", "cpu-torch"), ("model", "bert"), ("preset", "tiny"), ("batch", "1"), ("seq", "16")],
    "/coverage": [("cells", "true")],
}


@st.composite
def query_strings(draw) -> tuple[str, list[tuple[str, str]], dict]:
    """(endpoint, query parameters in order with names repeated at times, headers)."""
    endpoint = draw(st.sampled_from(sorted(PARAMETERS)))
    params = list(VALID_QUERY[endpoint]) if draw(st.sampled_from([True, True, True, False])) else []
    names = st.sampled_from(PARAMETERS[endpoint]) | st.sampled_from(["model", "MODEL", "unknown", "", "batch[]"])
    for _ in range(draw(st.integers(0, 4))):
        name, value = draw(names), draw(texts)
        if params and draw(st.booleans()):  # change one already there
            params[draw(st.integers(0, len(params) - 1))] = (name, value)
        else:  # or add one (a second value for a name at times)
            params.append((name, value))
    headers = draw(st.sampled_from([AUTH] * 19 + [{}]))  # now and then without the token
    if draw(st.sampled_from([False] * 4 + [True])):  # written by hand: escapes no client would write
        raw = draw(st.lists(st.tuples(names, st.sampled_from(RAW_VALUES)), min_size=1, max_size=3))
        raw += [(quote(name), quote(value)) for name, value in params]
        return endpoint + "?" + "&".join(f"{name}={value}" for name, value in raw), [], headers
    return endpoint, params, headers


def test_any_query_of_compare_history_and_coverage_is_answered_as_json_in_one_line_without_a_secret(served):
    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(query_strings())
    def answered(request):
        endpoint, params, headers = request
        served.send("GET", endpoint, params=params, headers=headers)

    answered()
    served.report("queries of /compare, /history and /coverage")
    assert {200, 404, 422} <= set(served.statuses)


# ---- SQL ---------------------------------------------------------------------------------------------------
LITERALS = [
    "1", "-1::TINYINT", "255::UTINYINT", "-32768::SMALLINT", "65535::USMALLINT", "2147483647::INTEGER",
    "4294967295::UINTEGER", "9223372036854775807::BIGINT", "18446744073709551615::UBIGINT",
    "170141183460469231731687303715884105727::HUGEINT", "340282366920938463463374607431768211455::UHUGEINT",
    "12::BIGNUM", "1.5::FLOAT", "1e308::DOUBLE", "-0.0::DOUBLE", "5e-324::DOUBLE", "'nan'::DOUBLE", "'inf'::DOUBLE",
    "'-inf'::FLOAT", "1.50::DECIMAL(38, 2)", "-99999999999999999999999999999.999999999::DECIMAL(38, 9)",
    "0.001::DECIMAL(4, 3)", "TRUE", "NULL", "'text'", "''", "'it''s \"q\" é'", "chr(0)", "chr(10) || 'x'",
    "'\u2028'", "repeat('x', 100000)", "'\\xAA\\x00'::BLOB", "''::BLOB", "DATE '2026-03-01'", "'infinity'::DATE",
    "'-infinity'::TIMESTAMP", "TIME '23:59:59.999999'", "'12:00:00+02'::TIMETZ", "TIMESTAMP '2026-03-01 10:00:00'",
    "TIMESTAMPTZ '2026-03-01 10:00:00+02'", "'2026-03-01 10:00:00.123456789'::TIMESTAMP_NS",
    "'2026-03-01'::TIMESTAMP_S", "'2026-03-01'::TIMESTAMP_MS", "'294247-01-10 04:00:54'::TIMESTAMP",
    "INTERVAL 1 DAY", "INTERVAL '1 month 2 days 3 microseconds'", "-INTERVAL 100000 YEARS",
    "'550e8400-e29b-41d4-a716-446655440000'::UUID", "uuid()", "[1, 2, NULL]", "[[1], [], NULL]", "[]::INTEGER[]",
    "[1, 2]::INTEGER[2]", "{'a': 1, 'b': 'x'}", "{'': NULL}", "NULL::STRUCT(a INTEGER)", "MAP {'k': 1}",
    "MAP {1: 'x', 2: NULL}", "MAP {}", "union_value(num := 2)", "'101'::BIT", "'{\"a\": [1, NaN]}'::JSON",
    "'[1, 2'::JSON", "'a'::ENUM('a', 'b')", "1 / 0", "0.0 / 0.0", "(2::BIGINT) ^ 64", "9223372036854775807 + 1",
    "'x' || chr(55295)", "list_value(1, 'a')", "current_setting('threads')", "current_setting('memory_limit')",
    "current_setting('allowed_directories')", "current_setting('secret_directory')",
    "current_setting('home_directory')",
    f"getenv('{ENV_NAME}')", "getenv('HOME')", "version()", "current_database()", "current_schema()", "?", "$1",
    "$name", "?::VARCHAR", "hash(?)",
]
ALIASES = ["", " AS a", ' AS "a b"', ' AS "x\ny"', ' AS """"', " AS a", ' AS "é"', " AS select"]
TABLES = ["inference_results", "inference_results_latest", "failures", "models_latest", "runs", "_catalog_info",
          "information_schema.tables", "duckdb_settings()", "duckdb_extensions()", "duckdb_functions()",
          "duckdb_secrets()", "duckdb_databases()", "duckdb_temporary_files()", "pragma_database_list",
          "range(5) t(i)", "no_such_view", "memory.main.x", "system.main.duckdb_tables()"]
READERS = ["read_csv('{p}')", "read_csv_auto('{p}')", "read_csv('{p}', header = false, columns = {{'l': 'VARCHAR'}})",
           "read_parquet('{p}')", "read_json('{p}')", "read_json_auto('{p}')", "read_ndjson('{p}')",
           "read_text('{p}')", "read_blob('{p}')", "glob('{p}')", "parquet_metadata('{p}')", "parquet_schema('{p}')",
           "sniff_csv('{p}')", "'{p}'", "read_csv(['{p}', '{p}'])", "read_csv(?)", "read_text($1)", "glob($path)"]
REFUSED = ["ATTACH '{p}' AS x", "ATTACH '{p}' AS x (READ_ONLY)", "DETACH hwbench", "COPY (SELECT 1) TO '{w}/out.csv'",
           "COPY inference_results TO '{w}/out.parquet' (FORMAT parquet)", "COPY x FROM '{p}'",
           "EXPORT DATABASE '{w}/export'", "INSTALL httpfs", "LOAD httpfs", "FORCE INSTALL x FROM 'http://x'",
           "PRAGMA database_list", "PRAGMA enable_profiling", "SET enable_external_access = true",
           "SET allowed_directories = ['/']", "SET lock_configuration = false", "RESET memory_limit", "USE memory",
           "CALL pragma_version()", "CREATE TABLE t AS SELECT 1", "CREATE SECRET (TYPE s3)", "CHECKPOINT",
           "VACUUM", "EXPLAIN ANALYZE SELECT 1", "EXPLAIN SELECT 1", "UPDATE EXTENSIONS", "PIVOT models ON family",
           "INSERT INTO models (family) VALUES ('x')", "DROP VIEW models", "BEGIN", "ROLLBACK", "SUMMARIZE models",
           "DESCRIBE inference_results", "SHOW TABLES", "SHOW ALL TABLES", "VALUES (1), (2)",
           "FROM models SELECT family", "WITH t AS (SELECT 1 AS x) SELECT * FROM t",
           "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 100000) SELECT count(*) FROM t",
           "SELECT * FROM read_csv('{p}') UNION ALL SELECT 1", "SELECT (SELECT content FROM read_text('{p}'))"]
COMMENTS = ["", "-- c\n", "/* c */ ", "/* unterminated ", "-- {p}\n", "\n\n", "\ufeff", " \t"]


@st.composite
def sql_texts(draw, paths: list[str], written: str) -> str:
    kind = draw(st.sampled_from(["literals", "literals", "table", "reader", "reader", "refused", "several", "deep",
                                 "long", "random"]))
    path = draw(st.sampled_from(paths))
    if kind == "literals":
        items = draw(st.lists(st.tuples(st.sampled_from(LITERALS), st.sampled_from(ALIASES)), min_size=1, max_size=4))
        sql = "SELECT " + ", ".join(literal + alias for literal, alias in items)
    elif kind == "table":
        sql = draw(st.sampled_from(["SELECT * FROM {t}", "FROM {t}", "SELECT count(*) FROM {t}", "DESCRIBE {t}",
                                    "SELECT * FROM {t} LIMIT ?"])).format(t=draw(st.sampled_from(TABLES)))
    elif kind == "reader":
        sql = draw(st.sampled_from(["SELECT * FROM {r}", "FROM {r}", "SELECT count(*) FROM {r}", "DESCRIBE {r}",
                                    "SELECT * FROM models WHERE family IN (SELECT * FROM {r})"])).format(
            r=draw(st.sampled_from(READERS)).format(p=path))
    elif kind == "refused":
        sql = draw(st.sampled_from(REFUSED)).format(p=path, w=written)
    elif kind == "several":
        parts = draw(st.lists(st.sampled_from(["SELECT 1", "SELECT 2", REFUSED[0].format(p=path, w=written),
                                               REFUSED[3].format(p=path, w=written), "", " "]),
                              min_size=2, max_size=4))
        sql = ";".join(parts)
    elif kind == "deep":
        depth = draw(st.sampled_from([10, 500, 1100, 20_000]))
        sql = draw(st.sampled_from(["SELECT " + "(" * depth + "1" + ")" * depth, "SELECT " + "1+" * depth + "1",
                                    "SELECT " + "[" * depth + "]" * depth]))
    elif kind == "long":
        size = draw(st.sampled_from([99_990, 100_000, 100_001, 300_000, 1_100_000]))  # the last over the body cap
        sql = ("SELECT '" + "x" * size)[:size - 1] + "'"
    else:
        sql = draw(st.text(max_size=60))
    return draw(st.sampled_from(COMMENTS)).format(p=path) + sql + draw(st.sampled_from(["", ";", " ;;", " -- end"]))


PARAM_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([2**63, 2**64, 10**40, -(2**127)]),
                         st.floats(), st.text(max_size=20), st.sampled_from(["\x00", "x" * 5000]))


@st.composite
def sql_bodies(draw, paths: list[str], written: str) -> dict:
    """The keyword arguments of one POST /sql: a JSON body, or now and then raw bytes."""
    sql = draw(sql_texts(paths, written))
    params = draw(st.one_of(
        st.just(None), st.just(None), st.lists(PARAM_VALUES, max_size=3),
        st.lists(st.sampled_from([*paths, "1"]), min_size=1, max_size=2),
        st.dictionaries(st.sampled_from(["name", "path", "1", "", "a b"]), PARAM_VALUES | st.sampled_from(paths),
                        max_size=2),
        st.sampled_from(["a string", 5, [[1]], [{"a": 1}], {"a": [1]}, True])))
    body = {"sql": sql} if params is None and draw(st.booleans()) else {"sql": sql, "params": params}
    shape = draw(st.sampled_from(["json"] * 12 + ["sql_not_text", "no_sql", "extra", "list", "raw", "not_json"]))
    if shape == "sql_not_text":
        body["sql"] = draw(st.sampled_from([5, None, ["SELECT 1"], {"sql": "SELECT 1"}, True]))
    elif shape == "no_sql":
        body.pop("sql")
    elif shape == "extra":
        body["format"] = "csv"
    elif shape == "list":
        body = [body]
    elif shape in ("raw", "not_json"):
        raw = json.dumps(body).encode() if shape == "raw" else draw(st.sampled_from(
            [b'{"sql": "SELECT 1"', b"SELECT 1", b"", b'{"sql": "SELECT 1", "sql": "SELECT 2"}', b"\xff\xfe",
             b'{"sql": "SELECT 1", "params": [NaN, Infinity, -Infinity]}', b'{"sql": "SELECT \\u0000"}']))
        content_type = draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
        return {"content": raw, "headers": {**AUTH, "Content-Type": content_type}}
    # written here, not by the client: NaN and Infinity go out as the tokens a careless client writes
    return {"content": json.dumps(body).encode(), "headers": {**AUTH, "Content-Type": "application/json"}}


def _not_utf8(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


#: bugs the fuzzer found, all fixed: name -> (does the request reach it, the smallest request, what happened)
FOUND_BUGS = {
    "a body that is not UTF-8, sent as other than JSON": (
        lambda request: _not_utf8(request.get("content", b"")) and not request.get("headers", {}).get(
            "Content-Type", "").startswith("application/json"),
        {"content": b"\xff", "headers": AUTH},
        "500 internal error (UnicodeDecodeError): FastAPI's default 422 handler encodes the body it could not "
        "validate with bytes.decode(); the app installs no RequestValidationError handler of its own"),
}


def test_any_sql_request_is_answered_as_json_in_one_line_and_never_reads_outside_the_warehouse(served):
    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(sql_bodies(served.paths(), str(served.written)))
    def answered(request):
        served.send("POST", "/sql", **request)

    answered()
    served.report("POST /sql requests")
    assert {200, 400, 422} <= set(served.statuses)


def test_the_secrets_are_there_to_be_read_and_the_warehouse_is_readable(served):
    """The property above means something: the secrets exist where the queries point, and the same queries on
    the warehouse's own files are answered."""
    assert served.secrets["outside"] in served.outside.read_text()
    assert os.environ[ENV_NAME] == served.secrets["environment"]
    own = f"{served.parquet_dir}/inference_results/cpu-torch/r1.parquet"
    answer = served.send("POST", "/sql", json={"sql": f"SELECT run_id FROM read_parquet('{own}')"}, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["records"] == [{"run_id": "r1"}]
    refused = served.send("POST", "/sql", json={"sql": f"SELECT * FROM read_csv('{served.outside}')"}, headers=AUTH)
    assert refused.status_code == 400 and "access outside the warehouse is refused" in refused.json()["detail"]
    too_long = served.send("POST", "/sql", json={"sql": "SELECT '" + "x" * 1_100_000 + "'"}, headers=AUTH)
    assert too_long.status_code == 413  # the grammar draws such a body too, rarely


@pytest.mark.parametrize("bug", list(FOUND_BUGS))
def test_a_request_that_reached_a_bug_is_answered_as_json_in_one_line(served, bug):
    reaches, request, _ = FOUND_BUGS[bug]
    assert reaches(request)
    served.send("POST", "/sql", **request)
