"""Fuzzing ``hwbench db import``: any hwbench JSON file or optimum-benchmark report either lands as rows that hold
the warehouse's invariants (plain names, positive integer shapes, finite positive latencies under a day, memory
peaks under a PiB, ...) or is refused with one ImportRejected line naming the file, the warehouse left exactly as
it was; never another exception. Run with -s to see how many files were tried.

hwbench files are lists of rows made from a valid measured row and a valid failure row (the real columns of
``inference_results`` and ``failures``) with up to three changes: a column set to a near miss of its valid value
(a control character or ``/..`` added to a name, 0, -1, 2**31, 2**63, 10**400, 1e308, -0.0, the smallest float,
NaN and Infinity written as JSON tokens, a number as text, a boolean, the value in a list) or to anything JSON
can hold, a column removed, an unknown column, a key written twice in the raw text, one raw sample changed, a row
replaced; and now and then the bytes damaged (cut short, Latin-1, a BOM, nested too deep). optimum-benchmark
reports start from the real fixture (and from valid variants of it on CUDA, onnxruntime, OpenVINO and with
autocast) with the same kinds of change at random places, mostly the fields the importer reads, and are written
as benchmark.json, as a folder, or as benchmark_report.json beside its benchmark_config.json.

Every bug the fuzzer found keeps a test of its own below (FOUND_BUGS), with the smallest input that showed it.
"""

import contextlib
import copy
import hashlib
import io
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwbench_pipeline.bench.failures import FAILURE_CLASSES
from hwbench_pipeline.cli import main
from hwbench_pipeline.warehouse.importer import ImportRejected, import_paths
from hwbench_pipeline.warehouse.schema import CONFIG_KEY, FAILURES, INFERENCE_RESULTS
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.validation import PRECISIONS, SCENARIOS

EXAMPLES = int(os.environ.get("HWBENCH_FUZZ_EXAMPLES", "150"))
CLI_EXAMPLES = 12
SETTINGS = dict(deadline=None, database=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
#: what the importer documents it refuses: a latency over a day, a memory peak over a PiB
MAX_LATENCY_MS = 86_400_000.0
MAX_MEMORY_MIB = float(2**30)
_MEMORY = ("peak_rss_mb", "device_peak_mb", "baseline_rss_mb")

# ---- valid files to start from --------------------------------------------------------------------------------
OPTIMUM = Path(__file__).parents[1] / "warehouse" / "fixtures" / "optimum_benchmark" / "tiny_bert_cpu_pytorch"
FIXTURE = json.loads((OPTIMUM / "benchmark.json").read_text())

SAMPLES = [10.0, 10.4, 10.5, 10.9, 11.0]
MEASURED = {  # a measured row as `hwbench bench --json` writes it (the columns that matter to the import)
    "status": "ok", "target": "cpu-torch", "family": "bert", "preset": "tiny", "batch_size": 1, "seq_len": 16,
    "precision": "fp32", "threads": 2, "precision_ran": "fp32", "backend": "torch", "device_kind": "cpu",
    "config_hash": "0123abcd", "quantization": "none", "cache_precision": "none", "attention": "eager",
    "measurement_method": "hwbench-2", "n_samples": len(SAMPLES), "warmup_calls": 3, "p50_ms": 10.5,
    "p90_ms": 11.0, "p99_ms": 11.0, "mean_ms": 10.56, "throughput_samples_s": 1000 / 10.5, "first_call_ms": 40.0,
    "load_s": 0.5, "peak_rss_mb": 512.0, "samples_ms": SAMPLES, "process_medians_ms": [10.5],
    "process_sample_counts": [5], "noisy": False, "started_at": "2026-03-01T10:00:00+00:00",
    "finished_at": "2026-03-01T10:01:00.250000+00:00", "host": "bench-host-1", "cpu_model": "Test CPU",
    "cpu_cores": 2, "memory_gb": 15.5, "python_version": "3.11.7", "torch_version": "2.13.0",
    "transformers_version": "5.24.0", "git_revision": "abc123",
}
FAILED = {
    "status": "failed", "scenario": "inference", "target": "cpu-onnxruntime", "family": "bert", "preset": "tiny",
    "batch_size": 1, "seq_len": 16, "precision": "fp32", "threads": 2, "failure_class": "export_error",
    "message": "export failed\nTraceback (most recent call last): ...", "attempts": 1,
    "started_at": "2026-03-01T10:02:00+00:00", "finished_at": "2026-03-01T10:02:05+00:00", "host": "bench-host-1",
}


def _variant(**backend) -> dict:
    doc = copy.deepcopy(FIXTURE)
    doc["config"]["backend"].update(backend)
    return doc


def _on_cuda() -> dict:
    doc = _variant(device="cuda", device_ids="0")
    doc["report"]["forward"]["memory"]["max_allocated"] = 300.5
    return doc


#: valid optimum-benchmark reports: the real one, and the same run as other backends would report it
OPTIMUM_BASES = {
    "pytorch-cpu": FIXTURE,
    "pytorch-cuda": _on_cuda(),
    "pytorch-autocast": _variant(autocast_enabled=True, autocast_dtype="bfloat16"),
    "onnxruntime-cpu": _variant(name="onnxruntime", session_options={"intra_op_num_threads": 2}),
    "openvino-cpu": _variant(name="openvino", ov_config={"INFERENCE_NUM_THREADS": 2,
                                                         "INFERENCE_PRECISION_HINT": "f32"}),
}
#: the fields the importer reads, changed more often than the others
OPTIMUM_FOCUS = [
    *(("config", "backend", k) for k in (
        "name", "device", "device_ids", "model", "model_type", "task", "torch_dtype", "autocast_enabled",
        "autocast_dtype", "inter_op_num_threads", "attn_implementation", "version", "provider", "session_options",
        "ov_config", "quantization", "torch_compile", "half", "load_in_8bit")),
    ("config", "backend", "session_options", "intra_op_num_threads"),
    ("config", "backend", "ov_config", "INFERENCE_NUM_THREADS"),
    ("config", "backend", "ov_config", "INFERENCE_PRECISION_HINT"),
    ("config", "scenario", "name"), ("config", "scenario", "warmup_runs"), ("config", "scenario", "input_shapes"),
    ("config", "scenario", "input_shapes", "batch_size"), ("config", "scenario", "input_shapes", "sequence_length"),
    ("config", "launcher", "name"),
    *(("config", "environment", k) for k in (
        "cpu", "cpu_count", "cpu_ram_mb", "python_version", "transformers_version", "optimum_benchmark_version")),
    ("config", "environment"), ("config", "backend"), ("config", "scenario"), ("report", "forward"),
    *(("report", "forward", "latency", k) for k in ("unit", "values", "count", "mean", "p50", "p90", "p99")),
    ("report", "forward", "latency", "values", 0), ("report", "forward", "latency", "values", -1),
    *(("report", "forward", "memory", k) for k in ("unit", "max_ram", "max_allocated")),
    ("report", "first_forward", "latency", "values", 0), ("report", "load_model", "latency", "mean"),
    ("report", "load_model", "memory", "max_ram"),
]
#: the columns the importer checks or derives something from, changed more often than the others
HWBENCH_FOCUS = [*CONFIG_KEY, "status", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "samples_ms", "n_samples",
                 "throughput_samples_s", "peak_rss_mb", "device_peak_mb", "started_at", "finished_at", "backend",
                 "device_kind", "precision_ran", "scenario", "failure_class", "message", "host", "load_s",
                 "process_medians_ms", "cpu_cores", "memory_gb"]

# ---- values -------------------------------------------------------------------------------------------------
CONTROL = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u202e"]
HOSTILE_STRINGS = [
    "", " ", ".", "..", "../../etc/passwd", "..\\..\\windows", "/etc/passwd", "a/b", "cpu-torch/../x", "~root",
    "bért", "x" * 129, "x" * 5000, "ok", "failed", "fp32", "int8", "cpu-torch", "cuda0-torch", "mps-torch",
    "NaN", "Infinity", "1e999", "-1", "2", "true", "null", "2026-03-01T10:00:00", "2026-03-01T10:00:00+00:00",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-23:59", "¹²", "١٢", "9" * 5000, "float32", "s",
    "MB", "cuda", "pytorch", "inference", "export_error",
]
HOSTILE_NUMBERS = [
    0, -1, 1, 2, 3, 2**31, 2**31 + 1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**20, 10**400, -(10**400),
    1e308, -1e308, 1.7976931348623157e308, -0.0, 0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 1e-12,
    0.5, 86_400_000.0, 86_400_000.000001, 86_400.0, 1.0e15, 2.0**30, math.nan, math.inf, -math.inf,
]
scalars = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS), st.sampled_from(HOSTILE_STRINGS), st.booleans(), st.none(),
    st.integers(), st.floats(), st.text(max_size=30),
)
#: anything JSON can hold (with NaN and Infinity, which the standard does not allow)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8) | st.sampled_from(sorted(INFERENCE_RESULTS.names)), inner, max_size=3), max_leaves=10)
hostile = st.one_of(scalars, scalars, scalars, anything, st.builds(list), st.builds(dict))


def near_misses(valid) -> st.SearchStrategy:
    """Values close to ``valid`` that a careless check lets through."""
    if valid is None:
        return hostile
    if isinstance(valid, bool):
        return st.sampled_from([not valid, 0, 1, "true", "false", [valid], None])
    if isinstance(valid, int):
        return st.sampled_from([0, -1, -valid, valid + 1, 2**31, 2**31 + 1, 2**63 - 1, 2**63, -(2**63) - 1,
                                10**400, valid + 0.5 if abs(valid) < 2**53 else 0.5, True, str(valid)[:100],
                                [valid], None])
    if isinstance(valid, float):
        return st.sampled_from([0.0, -0.0, -valid, 5e-324, 1e-300, valid * 1e6, valid * 1e12, 1e308, -1e308,
                                10**400, int(valid) if math.isfinite(valid) else 1, math.nan, math.inf, -math.inf,
                                True, str(valid), [valid], None])
    if isinstance(valid, str):
        return st.one_of(
            st.sampled_from(CONTROL).map(lambda c: valid + c), st.sampled_from(CONTROL).map(lambda c: c + valid),
            st.sampled_from([valid + "/..", "../" + valid, valid + "/x", valid.upper(), " " + valid, valid + " ",
                             valid * 60, valid[:-1], valid + "é", [valid], 1, None]),
            st.sampled_from(HOSTILE_STRINGS))
    if isinstance(valid, list):
        return st.sampled_from([[], [None], valid * 3 or [1], valid[:1], [*valid[::-1], math.nan], "x", {}, None])
    return st.sampled_from([{}, [], "x", 0, [valid], None])


def changed(valid) -> st.SearchStrategy:
    # a copy: a drawn list or object may be changed further, and strategies must not change between draws
    return st.one_of(near_misses(valid), near_misses(valid), near_misses(valid), hostile).map(copy.deepcopy)


def _valid_value(dtype: pa.DataType) -> st.SearchStrategy:
    """A value a column of this type could validly hold."""
    if pa.types.is_string(dtype):
        return st.sampled_from(["bert", "vit", "tiny", "small", "cpu-torch", "fp32", "bf16", "eager", "none", "x"])
    if pa.types.is_integer(dtype):
        return st.integers(1, 64)
    if pa.types.is_floating(dtype):
        return st.floats(0.001, 1e4)
    if pa.types.is_boolean(dtype):
        return st.booleans()
    if pa.types.is_timestamp(dtype):
        return st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
    return st.lists(_valid_value(dtype.value_type), max_size=6)


# ---- writing JSON with NaN/Infinity tokens and repeated keys ------------------------------------------------
class Pairs(list):
    """A JSON object written as these (key, value) pairs, in order: a key may appear twice."""


def _dump(value) -> str:
    if isinstance(value, dict):
        value = Pairs(value.items())
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_dump(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    return json.dumps(value)  # NaN / Infinity / -Infinity as those tokens, integers of any size


def _set_pair(pairs: Pairs, key, value) -> None:
    for i, (k, _) in enumerate(pairs):
        if k == key:
            pairs[i] = (k, value)
            return
    pairs.append((key, value))


# ---- hwbench JSON files ---------------------------------------------------------------------------------------
@st.composite
def hwbench_files(draw) -> tuple[list, bytes]:
    """(the rows, the file's bytes)."""
    kinds = draw(st.lists(st.sampled_from(["ok", "failed"]), min_size=1, max_size=3))
    rows: list = [Pairs((MEASURED if kind == "ok" else FAILED).items()) for kind in kinds]
    for i, row in enumerate(rows):  # distinct configurations, so that a valid file stays valid
        _set_pair(row, "seq_len", 16 * (i + 1))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2, 3]))):
        index = draw(st.integers(0, len(rows) - 1))
        row = rows[index]
        if not isinstance(row, Pairs):
            continue
        schema = INFERENCE_RESULTS if dict(row).get("status") == "ok" else FAILURES
        op = draw(st.sampled_from(["set"] * 8 + ["delete", "unknown", "repeat", "sample", "row"]))
        column = draw(st.sampled_from(HWBENCH_FOCUS) | st.sampled_from(sorted(set(schema.names) | set(dict(row)))))
        current = dict(row).get(column)
        if current is None and column in schema.names:
            current = draw(_valid_value(schema.field(column).type))
        if op == "set":
            _set_pair(row, column, draw(changed(current) | st.just(current)))
        elif op == "delete":
            row[:] = [(k, v) for k, v in row if k != column]
        elif op == "unknown":
            row.append((draw(st.sampled_from(["gpu_temperature", "", "__proto__", "status ", "Status"])),
                        draw(hostile)))
        elif op == "repeat":  # the same key twice in the raw text
            row.append((column, draw(changed(current) | st.just(current))))
        elif op == "sample":
            samples = list(dict(row).get("samples_ms") or SAMPLES)
            at = draw(st.integers(0, len(samples) - 1))
            samples[at] = draw(changed(samples[at]))
            _set_pair(row, "samples_ms", samples)
        else:
            rows[index] = draw(hostile)
    text = _dump(rows).encode()
    damage = draw(st.sampled_from([None] * 16 + ["truncate", "latin1", "bom", "deep", "whole"]))
    if damage == "truncate":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif damage == "latin1":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + b"\xe9\xff" + text[at:]
    elif damage == "bom":
        text = "\ufeff".encode() + text
    elif damage == "deep":
        depth = draw(st.sampled_from([31, 33, 1000]))
        text = b"[" * depth + text + b"]" * depth
    elif damage == "whole":
        rows = draw(anything)
        text = _dump(rows).encode()
    return (rows if damage in (None, "whole") else None), text


# ---- optimum-benchmark reports --------------------------------------------------------------------------------
def _children(node) -> list:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list) and not isinstance(node, Pairs):  # an object with a repeated key stays as it is
        return list(range(len(node)))
    return []


def _place(doc, path: tuple) -> tuple | None:
    """(parent, key) of ``path`` in ``doc`` when its parent exists, else None."""
    parent = doc
    for depth, key in enumerate(path):
        if isinstance(key, int) and isinstance(parent, list) and _children(parent):
            key = key % len(parent)
        elif not isinstance(parent, dict) or (key not in parent and depth < len(path) - 1):
            return None
        if depth == len(path) - 1:
            return parent, key
        parent = parent[key]
    return None


@st.composite
def _random_place(draw, doc) -> tuple | None:
    """(parent, key) anywhere in the document: each level stops a quarter of the time, deeper otherwise."""
    parent, key, node = None, None, doc
    while _children(node) and (parent is None or draw(st.integers(0, 3))):
        parent, key = node, draw(st.sampled_from(_children(node)))
        node = node[key]
    return None if parent is None else (parent, key)


@st.composite
def optimum_files(draw) -> tuple[str, object]:
    """(layout, document): a valid report with up to three changes."""
    doc = copy.deepcopy(OPTIMUM_BASES[draw(st.sampled_from(sorted(OPTIMUM_BASES)))])
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2, 3]))):
        place = _place(doc, draw(st.sampled_from(OPTIMUM_FOCUS))) if draw(st.booleans()) else None
        place = place or draw(_random_place(doc))
        if place is None:
            continue
        parent, key = place
        node = parent[key] if isinstance(parent, list) or key in parent else None
        op = draw(st.sampled_from(["set"] * 8 + ["delete", "retype", "add", "repeat"]))
        if op == "set":
            parent[key] = draw(changed(node))
        elif op == "delete":
            if isinstance(parent, dict):
                parent.pop(key, None)
            else:
                parent.pop(key)
        elif op == "retype":
            parent[key] = draw(st.sampled_from([[node], {"value": node}, str(node), None, json.dumps(node)]))
        elif op == "add" and isinstance(node, dict):
            node[draw(st.sampled_from(["torch_compile", "quantization", "prefill", "extra", ""]))] = draw(
                hostile.map(copy.deepcopy))
        elif op == "repeat" and isinstance(node, dict) and node:  # a key written a second time, by _dump
            repeated = draw(st.sampled_from(list(node)))
            parent[key] = Pairs([*node.items(), (repeated, draw(changed(node[repeated])))])
    layout = draw(st.sampled_from(["benchmark.json", "benchmark.json", "folder", "report_and_config"]))
    return layout, doc


def _write_optimum(folder: Path, layout: str, doc) -> Path:
    folder.mkdir(parents=True)
    if layout == "report_and_config" and isinstance(doc, dict) and {"config", "report"} <= set(doc):
        (folder / "benchmark_config.json").write_text(_dump(doc["config"]))
        (folder / "benchmark_report.json").write_text(_dump(doc["report"]))
        return folder / "benchmark_report.json"
    (folder / "benchmark.json").write_text(_dump(doc))
    return folder if layout == "folder" else folder / "benchmark.json"


# ---- bugs found, each with its smallest input ---------------------------------------------------------------
_PLAIN_THEN_NEWLINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\n")


def _values(node):
    """Every scalar in a document, Pairs included."""
    if isinstance(node, dict):
        node = list(node.values())
    elif isinstance(node, Pairs):
        node = [v for _, v in node]
    if isinstance(node, list):
        for child in node:
            yield from _values(child)
    else:
        yield node


def _get(doc, *path):
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _int_beyond_int64(value) -> bool:
    return type(value) is int and not -(2**63) <= value < 2**63


def _digits_int_refuses(value) -> bool:
    if not isinstance(value, str) or not value.strip().isdigit():
        return False
    try:
        int(value)
    except ValueError:
        return True
    return False


def _rows(doc) -> list[dict]:
    """The rows of an hwbench document as the importer reads them (the last of a repeated key wins)."""
    return [dict(row) for row in doc if isinstance(row, dict | Pairs)] if isinstance(doc, list) else []


#: bugs the fuzzer found, all fixed: name -> (does the input reach it, the smallest input, what happened)
FOUND_BUGS: dict[str, tuple[Callable[[object], bool], object, str]] = {
    "a measured row without family, preset or precision": (
        lambda doc: any(row.get("status") == "ok" and not {"family", "preset", "precision"} <= set(row)
                        for row in _rows(doc)),
        [{"status": "ok", "target": "cpu-torch", "batch_size": 1, "seq_len": 1, "threads": 1}],
        "KeyError: 'family' (import_measurement.py, add_samples_and_runs: row[k] for k in CONFIG_KEY); a "
        "failure row without them is refused as it should be"),
    "a name ending in a newline passes as plain": (
        lambda doc: any(isinstance(v, str) and _PLAIN_THEN_NEWLINE.fullmatch(v) for v in _values(doc)),
        [{**MEASURED, "target": "cpu-torch\n"}],
        "SAFE_NAME (store.py) ends in $, which matches before a final newline: the row lands in a partition "
        "folder named 'cpu-torch\\n' (a key column ending in a newline the same way; in a row that fails its "
        "suite, the refusal spans two lines)"),
    "a list or object as backend.task": (
        lambda doc: isinstance(_get(doc, "config", "backend", "task"), list | dict),
        _variant(task=[]),
        "TypeError: unhashable type: 'list' (import_optimum.py: task in _TEXT_TASKS)"),
    "cpu_ram_mb too large for a float": (
        lambda doc: isinstance(ram := _get(doc, "config", "environment", "cpu_ram_mb"), int | float)
        and not isinstance(ram, bool) and abs(ram) > 1e300,
        {**FIXTURE, "config": {**FIXTURE["config"], "environment": {**FIXTURE["config"]["environment"],
                                                                    "cpu_ram_mb": 10**309}}},
        "OverflowError: int too large to convert to float (import_optimum_config.py, memory_gb); a float such "
        "as 1e303 is stored as memory_gb = inf"),
    "an integer beyond int64 in scenario.warmup_runs, environment.cpu_count or latency.count": (
        lambda doc: any(_int_beyond_int64(v) for v in (
            _get(doc, "config", "scenario", "warmup_runs"), _get(doc, "config", "environment", "cpu_count"),
            _get(doc, "report", "forward", "latency", "count"))),
        {**FIXTURE, "config": {**FIXTURE["config"], "scenario": {**FIXTURE["config"]["scenario"],
                                                                 "warmup_runs": 2**63}}},
        "OverflowError: Python int too large to convert to C long (writing the Arrow table; _arrow_writes "
        "catches ValueError, TypeError and ArrowException only)"),
    "device_ids of digits int() refuses": (
        lambda doc: _digits_int_refuses(_get(doc, "config", "backend", "device_ids")),
        _variant(device="cuda", device_ids="²"),
        "ValueError: invalid literal for int() with base 10: '²' (import_optimum_config.py: str.isdigit() is "
        "true for superscripts, and for more digits than int() converts)"),
    "a memory figure of hwbench JSON over a PiB, or not positive": (
        lambda doc: any(isinstance(v, int | float) and not isinstance(v, bool) and not 0 < v <= MAX_MEMORY_MIB
                        for row in _rows(doc) for k, v in row.items() if k in _MEMORY),
        [{**MEASURED, "peak_rss_mb": 1e300}],
        "stored: import_reader.py says memory peaks over a PiB are refused, and optimum-benchmark reports refuse "
        "them and figures <= 0, but import_hwbench.py only checks that peak_rss_mb, device_peak_mb and "
        "baseline_rss_mb are finite (baseline_rss_mb = -1 lands too)"),
}


def found_bug(doc) -> str | None:
    return next((name for name, (reaches, _, _) in FOUND_BUGS.items() if reaches(doc)), None)


# ---- the property ---------------------------------------------------------------------------------------------
def _snapshot(wh: Warehouse) -> dict[str, str]:
    """Every file under the data directory but the lock files, with its SHA-256."""
    return {str(p.relative_to(wh.data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(wh.data_dir.rglob("*")) if p.is_file() and wh.lock_dir not in p.parents}


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _plain(value) -> bool:
    return isinstance(value, str) and _PLAIN.fullmatch(value) is not None and ".." not in value


def _finite_positive(value, high: float = math.inf) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 < value <= high


_LATENCIES = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "median_ci_low_ms",
              "median_ci_high_ms", "first_call_ms", "load_s")


def _key_violations(row: dict) -> list[str]:
    problems = [f"{c}={row.get(c)!r} is not a plain name" for c in CONFIG_KEY
                if c not in ("batch_size", "seq_len", "threads") and not _plain(row.get(c))]
    problems += [f"{c}={row.get(c)!r} is not a positive integer" for c in ("batch_size", "seq_len", "threads")
                 if not (type(row.get(c)) is int and 1 <= row[c] <= 2**31)]
    return problems


def _finite_floats(row: dict, schema: pa.Schema) -> list[str]:
    problems = []
    for field in schema:
        value = row.get(field.name)
        values = value if isinstance(value, list) else [value]
        if (pa.types.is_floating(field.type) or pa.types.is_list(field.type) and pa.types.is_floating(
                field.type.value_type)) and any(v is not None and not math.isfinite(v) for v in values):
            problems.append(f"{field.name}={value!r} is not finite")
    return problems


def row_violations(table: str, row: dict) -> list[str]:
    """What a stored row breaks of the warehouse's invariants (empty when it holds them all)."""
    if table == "inference_results":
        problems = _key_violations(row) + _finite_floats(row, INFERENCE_RESULTS)
        if row["status"] != "ok" or row["precision"] not in PRECISIONS:
            problems.append(f"status {row['status']!r}, precision {row['precision']!r}")
        for column in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_samples_s", "peak_rss_mb"):
            if not _finite_positive(row.get(column)):
                problems.append(f"{column}={row.get(column)!r} is not a finite positive number")
        for column in _LATENCIES:
            if row.get(column) is not None and not (0 <= row[column] <= MAX_LATENCY_MS):
                problems.append(f"{column}={row[column]!r} is not a latency (0 to a day)")
        for column in _MEMORY:
            if row.get(column) is not None and not _finite_positive(row[column], MAX_MEMORY_MIB):
                problems.append(f"{column}={row[column]!r} MiB is not a memory peak (0 to a PiB)")
        if None not in (row["p50_ms"], row["p90_ms"], row["p99_ms"]) and not (
                row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]):
            problems.append(f"percentiles out of order: {row['p50_ms']}, {row['p90_ms']}, {row['p99_ms']}")
        samples = row.get("samples_ms") or []
        if not all(_finite_positive(v, MAX_LATENCY_MS) for v in samples):
            problems.append(f"samples_ms={samples!r} holds a value that is not a latency")
        if not (type(row.get("n_samples")) is int and row["n_samples"] >= 3) or (
                samples and row["n_samples"] != len(samples)):
            problems.append(f"n_samples={row.get('n_samples')!r} for {len(samples)} samples")
        return problems
    if table == "failures":
        problems = _key_violations(row) + _finite_floats(row, FAILURES)
        if row["status"] != "failed" or row["scenario"] not in SCENARIOS or (
                row["failure_class"] not in FAILURE_CLASSES) or row["message"] is None:
            problems.append(f"status {row['status']!r}, scenario {row['scenario']!r}, failure_class "
                            f"{row['failure_class']!r}, message {row['message']!r}")
        return problems
    if table == "latency_samples":
        problems = _key_violations(row)
        if not _finite_positive(row["latency_ms"], MAX_LATENCY_MS) or not row["sample_index"] >= 0:
            problems.append(f"sample {row['sample_index']!r}: {row['latency_ms']!r} ms")
        return problems
    return [] if _plain(row["target"]) else [f"runs: target {row['target']!r} is not a plain name"]


def stored_violations(wh: Warehouse, run_ids: list[str]) -> list[str]:
    """The invariants broken by what the runs stored (its rows, the names of the folders they are in)."""
    problems = []
    for run_id in run_ids:
        files = sorted(wh.parquet_dir.glob(f"*/*/{run_id}.parquet"))
        if not files:
            problems.append(f"run {run_id} stored no file")
        for path in files:
            table = path.parent.parent.name
            if not _plain(path.parent.name):
                problems.append(f"folder {str(path.parent.relative_to(wh.parquet_dir))!r}")
            for row in pq.read_table(path).to_pylist():
                problems += [f"{table} {row['_partition']!r}: {p}" for p in row_violations(table, row)]
                if row["_partition"] != row["target"] or row["run_id"] != run_id:
                    problems.append(f"{table}: row of {row['run_id']!r}/{row['target']!r} stored in "
                                    f"{row['_partition']!r}/{run_id}")
    return problems


def check_import(wh: Warehouse, path: Path) -> str:
    """Import one file; 'imported' or 'refused' when the outcome holds the property, AssertionError otherwise."""
    before = _snapshot(wh)
    try:
        summary = import_paths(wh, [path])
    except ImportRejected as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1, f"a refusal of more than one line: {message!r}"
        assert str(path) in message, f"the refusal does not name {path}: {message!r}"
        assert _snapshot(wh) == before, "a refused import changed the warehouse"
        return "refused"
    problems = stored_violations(wh, summary.run_ids)
    assert problems == [], problems
    return "imported"


class Fuzzed:
    """One warehouse that every fuzzed file is imported into, and what became of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.wh = Warehouse(root / "data")
        import_paths(self.wh, [OPTIMUM / "benchmark.json"])  # something for a refused import to leave alone
        self.outcomes: Counter[str] = Counter()
        self.files = itertools.count()

    def folder(self) -> Path:
        return self.root / "files" / str(next(self.files))

    def check(self, doc, path: Path) -> None:
        self.outcomes[check_import(self.wh, path)] += 1

    def report(self, what: str) -> None:
        details = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.outcomes.items()))
        print(f"\nfuzzed {sum(self.outcomes.values())} {what}: {details}")
        # both outcomes were reached: the fuzzer is neither too tame nor only ever refused
        assert self.outcomes["imported"] and self.outcomes["refused"]


def test_the_files_the_fuzzer_starts_from_import(tmp_path):
    wh = Warehouse(tmp_path / "data")
    files = [tmp_path / "bench.json"]
    files[0].write_text(json.dumps([MEASURED, FAILED]))
    for name, doc in OPTIMUM_BASES.items():
        files.append(_write_optimum(tmp_path / name, "benchmark.json", doc))
    summary = import_paths(wh, files)
    assert len(summary.run_ids) == 1 + len(OPTIMUM_BASES)
    assert stored_violations(wh, summary.run_ids) == []
    assert found_bug([MEASURED, FAILED]) is None and not any(map(found_bug, OPTIMUM_BASES.values()))


def test_any_hwbench_json_file_is_imported_valid_or_refused_in_one_line_leaving_the_warehouse_as_it_was(tmp_path):
    fuzzed = Fuzzed(tmp_path)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(hwbench_files())
    def imports_valid_or_refuses(rows_and_bytes):
        rows, content = rows_and_bytes
        folder = fuzzed.folder()
        folder.mkdir(parents=True)
        (folder / "bench.json").write_bytes(content)
        fuzzed.check(rows, folder / "bench.json")

    imports_valid_or_refuses()
    fuzzed.report("hwbench JSON files")


def test_any_optimum_benchmark_report_is_imported_valid_or_refused_in_one_line_leaving_the_warehouse_as_it_was(
        tmp_path):
    fuzzed = Fuzzed(tmp_path)

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(optimum_files())
    def imports_valid_or_refuses(layout_and_doc):
        layout, doc = layout_and_doc
        fuzzed.check(doc, _write_optimum(fuzzed.folder(), layout, doc))

    imports_valid_or_refuses()
    fuzzed.report("optimum-benchmark reports")


@pytest.mark.parametrize("bug", list(FOUND_BUGS))
def test_a_file_that_reached_a_bug_is_imported_valid_or_refused_in_one_line(tmp_path, bug):
    reaches, doc, _ = FOUND_BUGS[bug]
    assert reaches(doc)
    wh = Warehouse(tmp_path / "data")
    import_paths(wh, [OPTIMUM / "benchmark.json"])
    path = tmp_path / "file.json"
    path.write_text(_dump(doc))
    assert check_import(wh, path) in ("imported", "refused")


# ---- the command line -----------------------------------------------------------------------------------------
def _cli_import(data_dir: Path, path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["db", "import", "--data-dir", str(data_dir), str(path)])
    return code, err.getvalue()


@pytest.mark.parametrize("strategy", ["hwbench", "optimum"])
def test_hwbench_db_import_exits_0_or_2_with_one_error_line(tmp_path, strategy):
    outcomes: Counter[str] = Counter()
    data_dir, files = tmp_path / "data", itertools.count()

    @settings(max_examples=CLI_EXAMPLES, **SETTINGS)
    @given(hwbench_files() if strategy == "hwbench" else optimum_files())
    def exits_0_or_2(drawn):
        folder = tmp_path / "files" / str(next(files))
        if strategy == "hwbench":
            _, content = drawn
            folder.mkdir(parents=True)
            path = folder / "bench.json"
            path.write_bytes(content)
        else:
            path = _write_optimum(folder, *drawn)
        code, err = _cli_import(data_dir, path)
        assert code in (0, 2), (code, err)
        if code == 2:
            assert len(err.splitlines()) == 1 and err.startswith("hwbench: error: ") and str(path) in err, err
        else:
            assert err == "", err
        outcomes[f"exit {code}"] += 1

    exits_0_or_2()
    print(f"\nhwbench db import of {sum(outcomes.values())} fuzzed {strategy} files: "
          f"{', '.join(f'{n} {what}' for what, n in sorted(outcomes.items()))}")
