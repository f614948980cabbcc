"""Import results measured elsewhere into the warehouse: hwbench's own JSON and optimum-benchmark reports.

``hwbench db import PATH...`` calls :func:`import_paths`. The format is read from the content, not the name:

* **hwbench JSON** — what ``hwbench bench --json FILE`` writes: a list of result rows (``status`` ``ok``) and
  failure rows, with the columns of ``inference_results`` / ``failures``.
* **optimum-benchmark** — ``benchmark.json`` (``{"config": ..., "report": ...}``) or ``benchmark_report.json``
  (the report alone; its configuration is read from ``benchmark_config.json`` in the same folder). A folder
  given as PATH means its ``benchmark.json`` (else its ``benchmark_report.json``).

An import is all-or-nothing. Every file is parsed, mapped and validated in memory first (the Great
Expectations suites of ``inference_results``, ``failures`` and ``latency_samples``); only then is anything
written, in one warehouse transaction (``warehouse/transaction.py``): a write that fails, or a kill at any
point, leaves the warehouse as it was or, once past the commit, with the whole import. The run id is
``import-<12 hex>`` from the SHA-256 of the measurement (the file's bytes for hwbench JSON; the config and
report for optimum-benchmark, so ``benchmark.json`` and ``benchmark_report.json`` of one run are one run):
importing the same file again rewrites the same files, and row counts stay the same. ``source`` says where a
row came from (``hwbench-json``, ``optimum-benchmark``); ``runs`` also keeps the file's path and SHA-256.

Hostile input is refused with one line naming the file: files over :data:`MAX_FILE_BYTES`, empty files,
non-UTF-8 text, invalid JSON, NaN/Infinity, duplicate keys, nesting deeper than :data:`MAX_NESTING`, wrong
types, negative or non-finite latencies, numbers too large for a float or that overflow once converted to
hwbench's units, latencies over a day and memory peaks over a PiB, names that are not plain (``../``,
slashes, control characters), unknown formats.

How an optimum-benchmark report maps onto ``inference_results`` (read from optimum-benchmark 0.6.0's
``benchmark/report.py``, ``trackers/latency.py``, ``trackers/memory.py`` and its backend configs):

=======================  ==================================================================================
hwbench column           optimum-benchmark source
=======================  ==================================================================================
target                   ``backend.name`` + ``backend.device``: pytorch/cpu → ``cpu-torch``, onnxruntime/cpu →
                         ``cpu-onnxruntime``, openvino/cpu → ``cpu-openvino``, cuda with ``device_ids`` "N" →
                         ``cudaN-<backend>``, mps → ``mps-torch``. Several GPUs, Intel GPUs, TensorRT and
                         other backends are refused (no hwbench target). A ROCm GPU reports as cuda.
family                   ``backend.model_type`` (e.g. bert)
preset                   the model reference: a Hub id ``org/name`` → ``org--name``; a local path → its last
                         folder name. Not an hwbench preset size: ``source`` tells them apart.
batch_size, seq_len      ``scenario.input_shapes.batch_size`` / ``.sequence_length`` (required)
config_hash              ``"unrecorded"``: the report names a model, not the config hwbench would hash
attention                ``backend.attn_implementation``; ``"default"`` when unset (transformers' own choice)
quantization             ``"none"``; ``"unrecorded"`` for int8 (the report does not name the recipe)
cache_precision          ``"none"`` (only single forward passes are imported)
measurement_method       ``"optimum-benchmark"``: another tool's method, never one configuration with hwbench's
precision                pytorch: ``autocast_dtype`` when ``autocast_enabled`` (torch's default, bf16 on CPU and
                         fp16 on CUDA, when unset), else ``torch_dtype``; unset means fp32 with transformers < 5
                         and the checkpoint's dtype (unknown: refused) from 5 on. onnxruntime: ``torch_dtype``,
                         int8 when (auto_)quantization is on, else fp32. openvino: ``INFERENCE_PRECISION_HINT``
                         of ``ov_config``, else fp16 for ``half``, int8 for ``load_in_8bit``, else fp32.
precision_ran            pytorch/onnxruntime: as precision. openvino: the hint, else null (OpenVINO picks
                         bf16 on CPUs that have it, and the report does not say).
threads                  pytorch: ``backend.inter_op_num_threads`` (optimum-benchmark passes that field to
                         ``torch.set_num_threads``); onnxruntime: ``session_options.intra_op_num_threads``;
                         openvino: ``ov_config.INFERENCE_NUM_THREADS``. Unset: refused (torch and the
                         runtimes pick a host-dependent default the file does not record).
n_samples, samples_ms    ``report.forward.latency.count`` / ``.values`` (seconds → ms); also latency_samples
p50/p90/p99/mean_ms      the report's own ``p50``/``p90``/``p99``/``mean`` (s → ms); from ``values`` if absent
std_ms, cv, min/max_ms,  computed from ``values`` with hwbench's statistics (sample std, ddof 1; the report's
median CI                ``stdev`` is the population std); null without values
throughput_samples_s     batch_size / p50, hwbench's definition (the report's throughput is batch / mean)
throughput_tokens_s      batch_size × seq_len / p50 for text tasks, else null
warmup_calls             ``scenario.warmup_runs``
first_call_ms            ``report.first_forward.latency``
load_s                   ``report.load_model.latency`` (``report.load`` in older reports)
peak_rss_mb              the largest ``memory.max_ram`` of any report part, MB (10⁶ B) → MiB; required, so
                         reports run with ``scenario.memory: false`` are refused. optimum-benchmark samples
                         RSS every 10 ms, so a short spike can be missed.
device_peak_mb           ``memory.max_allocated`` (CUDA allocator peak), MB → MiB
cpu_model, cpu_cores,    ``environment.cpu``, ``.cpu_count`` (logical CPUs), ``.cpu_ram_mb`` (→ GiB),
memory_gb,               ``.python_version``; torch_version from ``backend.version`` when the backend is
python_version, …        pytorch; package_versions lists every ``*_version`` of the environment
host                     ``"unrecorded"``: optimum-benchmark does not record the host name
stop_reason, ci_target,  null: optimum-benchmark stops after ``iterations`` calls and ``duration`` seconds,
params, flops, load,     counts no FLOPs or parameters, watches no machine load and records no timestamps
started_at, git_revision
=======================  ==================================================================================

Only the inference scenario's ``forward`` part maps onto hwbench (one forward pass per call); generation
(prefill/decode/per_token), diffusion and training reports, torchrun launches and settings hwbench has no
column for (torch.compile, BetterTransformer, quantization schemes, PEFT, DeepSpeed, device maps) are refused
rather than stored under a key that would claim a plain eager run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from hwbench_pipeline.bench.hardware import UnknownTargetError, parse_target
from hwbench_pipeline.warehouse.schema import (
    CONFIG_KEY,
    ENVIRONMENT_COLUMNS,
    FAILURES,
    INFERENCE_RESULTS,
    LEGACY_KEY_VALUES,
    UNRECORDED,
)
from hwbench_pipeline.warehouse.store import SAFE_NAME, Warehouse, to_arrow

MAX_FILE_BYTES = 64 * 2**20  # a long hwbench sweep with raw samples is a few MB; anything bigger is not ours
MAX_NESTING = 32  # both formats nest 5 levels deep
MAX_STRING = 100_000  # failure messages are cut at 4000 characters by the engine
SOURCE_HWBENCH = "hwbench-json"
SOURCE_OPTIMUM = "optimum-benchmark"
UNRECORDED_HOST = "unrecorded"
#: the order tables are written in; runs last, so a reader that sees the run sees its rows
WRITE_ORDER = ("latency_samples", "failures", "inference_results", "runs")

_INT64 = (-(2**63), 2**63 - 1)
_MIB_PER_MB = 1e6 / 2**20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LATENCY_COLUMNS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "median_ci_low_ms",
                    "median_ci_high_ms", "first_call_ms", "load_s")
_REPORT_PARTS = {"memory", "latency", "throughput", "energy", "efficiency"}
_TEXT_TASKS = {"feature-extraction", "fill-mask", "text-classification", "token-classification",
               "question-answering", "sentence-similarity", "multiple-choice"}


class ImportRejected(ValueError):
    """A file cannot be imported: one line naming the file and what is wrong. Nothing was stored."""


class _Bad(ValueError):
    """What is wrong with the file being read; :func:`_prepare` prefixes the file's name."""


@dataclass
class ImportSummary:
    files: list[str]
    rows_by_table: dict[str, int]
    run_ids: list[str]

    def describe(self) -> str:
        rows = ", ".join(f"{table} {n}" for table, n in self.rows_by_table.items() if n) or "no rows"
        files = f"{len(self.files)} file{'s' if len(self.files) != 1 else ''}"
        return f"imported {files} as run{'s' if len(self.run_ids) != 1 else ''} {', '.join(self.run_ids)}: {rows}"


@dataclass
class _Measurement:
    """One file turned into warehouse rows, not yet written."""

    path: Path
    run_id: str
    rows: dict[str, list[dict]] = field(default_factory=lambda: {t: [] for t in WRITE_ORDER})


# ---- reading a file safely ---------------------------------------------------------------------------------
def _reject_constant(name: str) -> float:
    raise _Bad(f"{name} is not a number hwbench accepts (NaN and Infinity are refused)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Bad(f"number {text[:40]} overflows a float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Bad(f"key {_show(dup)} appears twice in one object")
    return obj


def _check_nesting(doc: Any) -> None:
    stack = [(doc, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _Bad(f"JSON nested deeper than {MAX_NESTING} levels")
        children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _read_json(path: Path) -> tuple[Any, bytes]:
    """The parsed document and the file's bytes, or _Bad."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise _Bad("not a regular file")
        if size > MAX_FILE_BYTES:
            raise _Bad(f"file is {size / 2**20:.1f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _Bad(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise _Bad(f"file is over the {MAX_FILE_BYTES // 2**20} MiB limit")
    if not data.strip():
        raise _Bad("file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 text (byte {exc.start})") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                         object_pairs_hook=_unique_keys)
    except RecursionError:
        raise _Bad(f"JSON nested deeper than {MAX_NESTING} levels") from None
    except _Bad:
        raise
    except ValueError as exc:  # JSONDecodeError, and int() refusing thousands of digits
        if "integer string conversion" in str(exc):
            raise _Bad(f"not valid JSON: an integer has more than {sys.get_int_max_str_digits()} digits") from None
        raise _Bad(f"not valid JSON: {_one_line(str(exc))}") from None
    _check_nesting(doc)
    return doc, data


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any) -> str:
    return _one_line(repr(value), 60)


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("benchmark.json", "benchmark_report.json"):
            if (path / name).is_file():
                return path / name
        raise ImportRejected(f"{path}: folder has no benchmark.json or benchmark_report.json")
    return path


# ---- typed access ------------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind_name(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _get(obj: dict, key: str, kind: type | tuple, where: str, *, required: bool = False) -> Any:
    """obj[key] checked against kind (bools are not numbers); None when absent or null unless required."""
    value = obj.get(key)
    if value is None:
        if required:
            raise _Bad(f"{where}.{key} is missing")
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and _is_number(value):
        ok = True
    if not ok:
        raise _Bad(f"{where}.{key} must be {_kind_name(kind)}, got {type(value).__name__} {_show(value)}")
    return value


def _safe_name(value: str, what: str) -> str:
    """A name that may become a partition, a file name or a key: plain letters, digits, '_', '.', '-'."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or ".." in value:
        raise _Bad(f"{what} {_show(value)} is not a plain name (letters, digits, '_', '.', '-'; no '..')")
    return value


def _positive_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 2**31:
        raise _Bad(f"{what} must be a positive integer, got {_show(value)}")
    return value


#: list columns that hold latencies (positive milliseconds); other lists hold counts, fractions, pids
LATENCY_LISTS = frozenset({"samples_ms", "process_medians_ms"})


#: one call taking longer than a day is not a measurement but a broken or hostile file
MAX_LATENCY_MS = 86_400_000.0
#: nor is a memory peak above a PiB
MAX_MEMORY_MIB = float(2**30)


def _finite(value: int | float, what: str, scale: float = 1.0) -> float:
    """``value * scale`` as a finite float; integers too large for a float and results that overflow are _Bad."""
    try:
        result = float(value) * scale
    except OverflowError:
        raise _Bad(f"{what} is {_show(value)}: too large for a number") from None
    if not math.isfinite(result):
        raise _Bad(f"{what} is {_show(value)}: not a finite number once converted")
    return result


def _latency_ms(value: Any, what: str, scale: float = 1.0) -> float:
    """A latency in ms from ``value`` (in ms x ``scale``): positive, finite and at most a day."""
    if not _is_number(value) or value <= 0:
        raise _Bad(f"{what} is {_show(value)}: a latency must be a positive number")
    ms = _finite(value, what, scale)
    if ms > MAX_LATENCY_MS:
        raise _Bad(f"{what} is {_show(value)}: {ms:.3g} ms, longer than a day, is not a latency hwbench accepts")
    return ms


def _latencies(values: Any, what: str, scale: float) -> list[float]:
    if not isinstance(values, list):
        raise _Bad(f"{what} must be a list of numbers, got {type(values).__name__}")
    return [_latency_ms(v, f"{what}[{i}]", scale) for i, v in enumerate(values)]


def _non_negative(value: Any, what: str) -> None:
    if value is not None and value < 0:
        raise _Bad(f"{what} is {value!r}: latencies and times cannot be negative")
    if value is not None and value > MAX_LATENCY_MS:
        raise _Bad(f"{what} is {value!r}: longer than a day, not a latency or time hwbench accepts")


# ---- hwbench JSON ------------------------------------------------------------------------------------------
def _typed(column: str, dtype: pa.DataType, value: Any, where: str) -> Any:
    """A JSON value as the Python value of that Arrow column type, or _Bad."""
    if value is None:
        return None
    bad = _Bad(f"{where}: {column} must be {dtype}, got {type(value).__name__} {_show(value)}")
    if pa.types.is_string(dtype):
        if not isinstance(value, str) or len(value) > MAX_STRING:
            raise bad
        return value
    if pa.types.is_integer(dtype):
        if not isinstance(value, int) or isinstance(value, bool) or not _INT64[0] <= value <= _INT64[1]:
            raise bad
        return value
    if pa.types.is_floating(dtype):
        if not _is_number(value):
            raise bad
        return _finite(value, f"{where}: {column}")
    if pa.types.is_boolean(dtype):
        if not isinstance(value, bool):
            raise bad
        return value
    if pa.types.is_timestamp(dtype):
        try:
            stamp = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 64 else None
        except ValueError:
            stamp = None
        if stamp is None or stamp.tzinfo is None:
            raise _Bad(f"{where}: {column} must be an ISO time with a time zone, got {_show(value)}")
        return stamp
    if pa.types.is_list(dtype):
        if column in LATENCY_LISTS:
            return _latencies(value, f"{where}: {column}", 1.0)
        if not isinstance(value, list):
            raise bad
        return [_typed(f"{column}[{i}]", dtype.value_type, v, where) for i, v in enumerate(value)]
    raise bad


def _hwbench_row(raw: Any, index: int, run_id: str) -> tuple[str, dict]:
    """(table, row) for one element of an hwbench JSON list."""
    where = f"row {index}"
    if not isinstance(raw, dict):
        raise _Bad(f"{where} must be an object, got {type(raw).__name__}")
    status = _get(raw, "status", str, where, required=True)
    table, schema = ("inference_results", INFERENCE_RESULTS) if status == "ok" else ("failures", FAILURES)
    unknown = sorted(set(raw) - set(schema.names))
    if unknown:
        raise _Bad(f"{where} (status {_show(status)}) has fields {table} does not have: {', '.join(unknown)[:200]}")
    row = {name: _typed(name, schema.field(name).type, raw.get(name), where) for name in schema.names if name in raw}
    target = _safe_name(_get(raw, "target", str, where, required=True), f"{where}: target")
    try:
        parsed = parse_target(target)
    except UnknownTargetError as exc:
        raise _Bad(f"{where}: {exc}") from None
    for key in ("family", "preset", "precision", "precision_ran", "scenario", "failure_class"):
        if row.get(key) is not None:
            _safe_name(row[key], f"{where}: {key}")
    for key in ("batch_size", "seq_len", "threads"):
        _positive_int(row.get(key), f"{where}: {key}")
    for key, legacy in LEGACY_KEY_VALUES.items():  # a file written before these key columns: what they meant
        row[key] = _safe_name(row[key], f"{where}: {key}") if row.get(key) is not None else legacy
    row["run_id"] = run_id
    if table == "failures":
        row.setdefault("scenario", "inference")
        return table, row
    for key in ("backend", "device_kind"):
        if row.get(key) is not None and row[key] != getattr(parsed, key):
            raise _Bad(f"{where}: {key} {_show(row[key])} contradicts target {target}")
        row[key] = getattr(parsed, key)
    for key in _LATENCY_COLUMNS:
        _non_negative(row.get(key), f"{where}: {key}")
    samples = row.get("samples_ms") or []
    if samples and row.get("n_samples") is not None and row["n_samples"] != len(samples):
        raise _Bad(f"{where}: n_samples is {row['n_samples']} but samples_ms holds {len(samples)} latencies")
    if samples:
        _fill_statistics(row, samples)
    row["source"] = SOURCE_HWBENCH
    return table, row


def _fill_statistics(row: dict, samples_ms: list[float]) -> None:
    """Statistics the row lacks, computed from its raw samples with the engine's own definitions."""
    from hwbench_pipeline.bench.trackers.stats import summarize

    for key, value in summarize(samples_ms).items():
        if row.get(key) is None:
            row[key] = value
    if row.get("n_samples") is None:
        row["n_samples"] = len(samples_ms)


def _from_hwbench(path: Path, doc: list, data: bytes) -> _Measurement:
    if not doc:
        raise _Bad("the list of rows is empty")
    sha256 = hashlib.sha256(data).hexdigest()
    m = _Measurement(path, _run_id(sha256))
    for index, raw in enumerate(doc):
        table, row = _hwbench_row(raw, index, m.run_id)
        m.rows[table].append(row)
    _add_samples_and_runs(m, SOURCE_HWBENCH, sha256)
    return m


# ---- optimum-benchmark -------------------------------------------------------------------------------------
def _looks_like_report(doc: dict) -> bool:
    return bool(doc) and all(isinstance(v, dict) and set(v) <= _REPORT_PARTS for v in doc.values())


def _optimum_target(backend: dict) -> tuple[str, str]:
    """(target key, hwbench backend) from optimum-benchmark's backend name, device and device ids."""
    name = _get(backend, "name", str, "config.backend", required=True)
    device = _get(backend, "device", str, "config.backend", required=True)
    runtime = {"pytorch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}.get(name)
    if runtime is None:
        raise _Bad(f"backend {_show(name)} has no hwbench target (pytorch, onnxruntime and openvino do)")
    if device == "cpu":
        place = "cpu"
    elif device == "mps" and runtime == "torch":
        place = "mps"
    elif device == "cuda":
        ids = backend.get("device_ids")
        ids = str(ids) if isinstance(ids, int) and not isinstance(ids, bool) else ids
        if not isinstance(ids, str) or not ids.strip().isdigit():
            raise _Bad(f"config.backend.device_ids {_show(ids)} is not one GPU index: hwbench targets one device")
        place = f"cuda{int(ids)}"
        provider = backend.get("provider")
        if runtime == "onnxruntime" and provider not in (None, "CUDAExecutionProvider"):
            raise _Bad(f"onnxruntime provider {_show(provider)} has no hwbench target")
    else:
        raise _Bad(f"{name} on device {_show(device)} has no hwbench target")
    try:
        return parse_target(f"{place}-{runtime}").key, runtime
    except UnknownTargetError as exc:
        raise _Bad(str(exc)) from None


_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_OV_HINTS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def _major(version: Any) -> int | None:
    match = re.match(r"(\d+)\.", version) if isinstance(version, str) else None
    return int(match[1]) if match else None


def _refuse_settings(backend: dict, settings: dict[str, Any]) -> None:
    for key, neutral in settings.items():
        value = backend.get(key)
        if value not in (None, neutral, {}, ""):
            raise _Bad(f"config.backend.{key} is {_show(value)}: hwbench has no column for that setting")


def _optimum_precision(backend: dict, runtime: str, environment: dict) -> tuple[str, str | None]:
    """(precision asked for, precision that ran when the file says)."""
    where = "config.backend"
    if runtime == "torch":
        _refuse_settings(backend, {"torch_compile": False, "to_bettertransformer": False, "quantization_scheme": None,
                                   "deepspeed_inference": False, "peft_type": None, "tp_plan": None,
                                   "device_map": None})
        if _get(backend, "autocast_enabled", bool, where):
            dtype = _get(backend, "autocast_dtype", str, where) or (
                "bfloat16" if backend.get("device") == "cpu" else "float16")
        else:
            dtype = _get(backend, "torch_dtype", str, where)
            if dtype is None:
                major = _major(environment.get("transformers_version"))
                if major is None or major >= 5:
                    raise _Bad("config.backend.torch_dtype is unset and transformers "
                               f"{_show(environment.get('transformers_version'))} loads the checkpoint's own dtype, "
                               "which the file does not record")
                dtype = "float32"
        if dtype not in _DTYPES:
            raise _Bad(f"torch dtype {_show(dtype)} does not map onto an hwbench precision (fp32, bf16, fp16)")
        return _DTYPES[dtype], _DTYPES[dtype]
    if runtime == "onnxruntime":
        if backend.get("quantization") or backend.get("auto_quantization"):
            return "int8", "int8"
        dtype = _get(backend, "torch_dtype", str, where) or "float32"
        if dtype not in _DTYPES:
            raise _Bad(f"torch dtype {_show(dtype)} does not map onto an hwbench precision (fp32, bf16, fp16)")
        return _DTYPES[dtype], _DTYPES[dtype]
    if backend.get("load_in_4bit"):
        raise _Bad("config.backend.load_in_4bit: hwbench has no 4-bit precision")
    ov_config = _get(backend, "ov_config", dict, where) or {}
    hint = _get(ov_config, "INFERENCE_PRECISION_HINT", str, f"{where}.ov_config")
    if hint is not None:
        if hint.lower() not in _OV_HINTS:
            raise _Bad(f"INFERENCE_PRECISION_HINT {_show(hint)} does not map onto an hwbench precision")
        return _OV_HINTS[hint.lower()], _OV_HINTS[hint.lower()]
    if backend.get("load_in_8bit"):
        return "int8", None
    return ("fp16" if backend.get("half") else "fp32"), None


def _optimum_threads(backend: dict, runtime: str) -> int:
    where = "config.backend"
    if runtime == "torch":
        threads, field_name = backend.get("inter_op_num_threads"), "inter_op_num_threads"
    elif runtime == "onnxruntime":
        options = _get(backend, "session_options", dict, where) or {}
        threads, field_name = options.get("intra_op_num_threads"), "session_options.intra_op_num_threads"
    else:
        options = _get(backend, "ov_config", dict, where) or {}
        threads, field_name = options.get("INFERENCE_NUM_THREADS"), "ov_config.INFERENCE_NUM_THREADS"
    if threads is None:
        raise _Bad(f"{where}.{field_name} is unset: the thread count was the runtime's default, which the file "
                   "does not record, and hwbench keys results by threads")
    return _positive_int(threads, f"{where}.{field_name}")


def _model_label(model: str) -> str:
    """A Hub id ``org/name`` → ``org--name``; a local path → its last folder name."""
    if _CONTROL.search(model):
        raise _Bad(f"config.backend.model {_show(model)} has control characters")
    parts = [p for p in model.replace("\\", "/").split("/") if p]
    is_hub_id = not model.startswith(("/", ".", "~")) and len(parts) == 2 and ":" not in model
    label = "--".join(parts) if is_hub_id else (parts[-1] if parts else "")
    return _safe_name(label, "model name")


def _latency_block(report: dict, part: str) -> dict | None:
    block = _get(report, part, dict, "report")
    if block is None:
        return None
    latency = _get(block, "latency", dict, f"report.{part}")
    if latency is not None:
        unit = _get(latency, "unit", str, f"report.{part}.latency", required=True)
        if unit != "s":
            raise _Bad(f"report.{part}.latency.unit is {_show(unit)}, expected 's'")
    return latency


def _seconds(latency: dict | None, key: str, where: str) -> float | None:
    if latency is None:
        return None
    value = _get(latency, key, float, where)
    if value is None:
        return None
    value = _finite(value, f"{where}.{key}")
    _non_negative(value * 1e3, f"{where}.{key} in ms")
    return value


def _optimum_environment(environment: dict, backend: dict, runtime: str) -> dict:
    where = "config.environment"
    versions = {k.removesuffix("_version"): v for k, v in environment.items()
                if k.endswith("_version") and k != "python_version" and isinstance(v, str)}
    versions[runtime] = _get(backend, "version", str, "config.backend") or versions.get(runtime)
    ram_mb = _get(environment, "cpu_ram_mb", float, where)
    cpu = _get(environment, "cpu", str, where)
    return {
        "host": UNRECORDED_HOST,
        "cpu_model": cpu.strip()[:200] if cpu else None,
        "cpu_cores": _get(environment, "cpu_count", int, where),
        "memory_gb": round(ram_mb * 1e6 / 2**30, 2) if ram_mb else None,
        "python_version": _get(environment, "python_version", str, where),
        "torch_version": versions.get("torch") if runtime == "torch" else None,
        "transformers_version": _get(environment, "transformers_version", str, where),
        "package_versions": ";".join(f"{k}={v}" for k, v in sorted(versions.items()) if v)[:MAX_STRING],
        "git_revision": None,
    }


def _optimum_identity(backend: dict, precision: str) -> dict[str, str]:
    """The key columns a report does not state as hwbench does: no config (a model id names it), the attention
    implementation asked for (``default``: the library's own choice), int8's quantization recipe unknown."""
    attention = backend.get("attn_implementation")
    return {"config_hash": UNRECORDED, "quantization": UNRECORDED if precision == "int8" else "none",
            "cache_precision": "none", "measurement_method": SOURCE_OPTIMUM,
            "attention": _safe_name(attention, "config.backend.attn_implementation") if attention else "default"}


def _optimum_row(config: dict, report: dict, run_id: str) -> dict:
    """The inference_results row of one optimum-benchmark run (the mapping table is in the module docstring)."""
    backend = _get(config, "backend", dict, "config", required=True)
    scenario = _get(config, "scenario", dict, "config", required=True)
    launcher = _get(config, "launcher", dict, "config") or {}
    environment = _get(config, "environment", dict, "config") or {}
    scenario_name = _get(scenario, "name", str, "config.scenario", required=True)
    if scenario_name != "inference":
        raise _Bad(f"scenario {_show(scenario_name)}: only inference reports map onto hwbench's tables")
    launcher_name = _get(launcher, "name", str, "config.launcher")
    if launcher_name not in (None, "inline", "process"):
        raise _Bad(f"launcher {_show(launcher_name)}: results pooled over several processes are not one target's")
    target, runtime = _optimum_target(backend)
    family = _safe_name(_get(backend, "model_type", str, "config.backend", required=True).lower(), "model_type")
    preset = _model_label(_get(backend, "model", str, "config.backend", required=True))
    shapes = _get(scenario, "input_shapes", dict, "config.scenario", required=True)
    batch = _positive_int(shapes.get("batch_size"), "config.scenario.input_shapes.batch_size")
    if shapes.get("sequence_length") is None:
        raise _Bad("config.scenario.input_shapes.sequence_length is unset: the sequence length is unknown")
    seq_len = _positive_int(shapes.get("sequence_length"), "config.scenario.input_shapes.sequence_length")
    precision, precision_ran = _optimum_precision(backend, runtime, environment)
    threads = _optimum_threads(backend, runtime)

    if "forward" not in report:
        parts = ", ".join(sorted(report))[:120]
        raise _Bad(f"report has no 'forward' part (it has {parts}): only single forward passes map onto hwbench")
    forward = _latency_block(report, "forward")
    if forward is None:
        raise _Bad("report.forward.latency is missing (scenario.latency was off)")
    values = forward.get("values")
    samples_ms = _latencies(values, "report.forward.latency.values", 1e3) if values is not None else []
    count = _get(forward, "count", int, "report.forward.latency")
    if count is not None and samples_ms and count != len(samples_ms):
        raise _Bad(f"report.forward.latency.count is {count} but values holds {len(samples_ms)} latencies")

    row: dict[str, Any] = {"run_id": run_id, "target": target, "family": family, "preset": preset,
                           "batch_size": batch, "seq_len": seq_len, "precision": precision,
                           **_optimum_identity(backend, precision),
                           "precision_ran": precision_ran, "threads": threads, "backend": runtime,
                           "device_kind": parse_target(target).device_kind, "status": "ok",
                           "n_samples": count if count is not None else len(samples_ms) or None,
                           "warmup_calls": _get(scenario, "warmup_runs", int, "config.scenario"),
                           "source": SOURCE_OPTIMUM}
    own = ("p50", "p90", "p99", "mean")
    for key in own:
        seconds = _seconds(forward, key, "report.forward.latency")
        row[f"{key}_ms"] = seconds * 1e3 if seconds is not None else None
    if samples_ms:
        row["samples_ms"] = samples_ms
        _fill_statistics(row, samples_ms)
    missing = [f"{k}" for k in own if row[f"{k}_ms"] is None]
    if missing:
        raise _Bad(f"report.forward.latency has no {', '.join(missing)} and no values to compute them from")
    row["throughput_samples_s"] = batch / (row["p50_ms"] / 1e3) if row["p50_ms"] > 0 else None
    task = backend.get("task")
    if task in _TEXT_TASKS and row["p50_ms"] > 0:
        row["throughput_tokens_s"] = batch * seq_len / (row["p50_ms"] / 1e3)

    first = _latency_block(report, "first_forward")
    first_values = first.get("values") if first else None
    if first_values:
        row["first_call_ms"] = _latencies(first_values, "report.first_forward.latency.values", 1e3)[0]
    load = _latency_block(report, "load_model") if "load_model" in report else _latency_block(report, "load")
    row["load_s"] = _seconds(load, "mean", "report.load_model.latency")

    peaks_ram, peaks_device = [], []
    for part in report:
        block = _get(report, part, dict, "report") or {}
        memory = _get(block, "memory", dict, f"report.{part}")
        if memory is None:
            continue
        unit = _get(memory, "unit", str, f"report.{part}.memory", required=True)
        if unit != "MB":
            raise _Bad(f"report.{part}.memory.unit is {_show(unit)}, expected 'MB'")
        for key, into in (("max_ram", peaks_ram), ("max_allocated", peaks_device)):
            value = _get(memory, key, float, f"report.{part}.memory")
            if value is not None:
                if value <= 0:
                    raise _Bad(f"report.{part}.memory.{key} is {value!r}: memory must be positive")
                mib = _finite(value, f"report.{part}.memory.{key}", _MIB_PER_MB)
                if mib > MAX_MEMORY_MIB:
                    raise _Bad(f"report.{part}.memory.{key} is {value!r} MB: more than a PiB is not a peak hwbench "
                               "accepts")
                into.append(mib)
    if not peaks_ram:
        raise _Bad("the report has no memory.max_ram (scenario.memory was off): hwbench requires peak memory")
    row["peak_rss_mb"] = max(peaks_ram)
    row["device_peak_mb"] = max(peaks_device) if peaks_device else None
    row.update(_optimum_environment(environment, backend, runtime))
    return row


def _sibling_config(path: Path) -> Any:
    sibling = path.with_name("benchmark_config.json")
    if not sibling.is_file():
        raise _Bad("a report alone does not say what ran (backend, device, model, shapes) and no "
                   "benchmark_config.json is beside it")
    try:
        config, _ = _read_json(sibling)
    except _Bad as exc:
        raise _Bad(f"its benchmark_config.json: {exc}") from None
    return config


def _from_optimum(path: Path, config: Any, report: Any, data: bytes) -> _Measurement:
    if not isinstance(config, dict):
        raise _Bad(f"config must be an object, got {type(config).__name__}")
    if not isinstance(report, dict) or not _looks_like_report(report):
        raise _Bad("report is not an optimum-benchmark report (parts with memory/latency/throughput)")
    # The measurement, not the file, names the run: benchmark.json and benchmark_report.json of one run agree.
    canonical = json.dumps({"config": config, "report": report}, sort_keys=True, separators=(",", ":"))
    m = _Measurement(path, _run_id(hashlib.sha256(canonical.encode()).hexdigest()))
    m.rows["inference_results"].append(_optimum_row(config, report, m.run_id))
    _add_samples_and_runs(m, SOURCE_OPTIMUM, hashlib.sha256(data).hexdigest())
    return m


# ---- shared ------------------------------------------------------------------------------------------------
def _run_id(sha256: str) -> str:
    return f"import-{sha256[:12]}"


def _add_samples_and_runs(m: _Measurement, source: str, sha256: str) -> None:
    """latency_samples rows from each result's raw samples, and one runs row per target."""
    for row in m.rows["inference_results"]:
        key = {k: row[k] for k in CONFIG_KEY}
        m.rows["latency_samples"].extend(
            {"run_id": m.run_id, "scenario": "inference", **key, "sample_index": i, "latency_ms": v}
            for i, v in enumerate(row.get("samples_ms") or []))
    targets = dict.fromkeys(r["target"] for r in m.rows["inference_results"] + m.rows["failures"])
    for target in targets:
        ok = [r for r in m.rows["inference_results"] if r["target"] == target]
        failed = [r for r in m.rows["failures"] if r["target"] == target]
        first = (ok + failed)[0]
        starts = [r["started_at"] for r in ok + failed if r.get("started_at")]
        ends = [r["finished_at"] for r in ok + failed if r.get("finished_at")]
        m.rows["runs"].append({
            "run_id": m.run_id, "target": target, "scenario": "inference", "n_configs": len(ok) + len(failed),
            "n_ok": len(ok), "n_failed": len(failed), "n_quarantined": 0,
            "started_at": min(starts) if starts else None, "finished_at": max(ends) if ends else None,
            "status": "ok" if ok else "failed", "source": source, "source_path": str(m.path.resolve()),
            "source_sha256": sha256, **{name: first.get(name) for name, _ in ENVIRONMENT_COLUMNS},
        })


def _prepare(path: Path) -> _Measurement:
    """One file as rows, checked for everything but the suites; ImportRejected naming the file otherwise."""
    path = _resolve(path)
    try:
        doc, data = _read_json(path)
        if isinstance(doc, list):
            return _from_hwbench(path, doc, data)
        if isinstance(doc, dict) and {"config", "report"} <= set(doc):
            return _from_optimum(path, doc["config"], doc["report"], data)
        if isinstance(doc, dict) and _looks_like_report(doc):
            return _from_optimum(path, _sibling_config(path), doc, data)
        if isinstance(doc, dict) and {"backend", "scenario", "launcher"} <= set(doc):
            raise _Bad("an optimum-benchmark config without its report: import benchmark.json or "
                       "benchmark_report.json instead")
        raise _Bad("unknown format: expected hwbench JSON (a list of rows) or an optimum-benchmark "
                   "benchmark.json / benchmark_report.json")
    except _Bad as exc:
        raise ImportRejected(f"{path}: {exc}") from None


def _validate(measurements: list[_Measurement]) -> None:
    """Every table's rows through its suite, all files at once; the first failing row names its file."""
    import pandas as pd

    from hwbench_pipeline.warehouse import validation

    suites = {"inference_results": validation.inference_suite, "failures": validation.failures_suite,
              "latency_samples": validation.latency_samples_suite}
    for table, suite in suites.items():
        rows, owners = [], []
        for m in measurements:
            rows += m.rows[table]
            owners += [m.path] * len(m.rows[table])
        if not rows:
            continue
        frame_rows = [{k: v for k, v in r.items() if k != "samples_ms"} for r in rows]
        valid, invalid, outcome = validation.split_valid_rows(frame_rows, suite())
        if invalid:
            bad_row, reasons = invalid[0]
            owner = owners[next(i for i, r in enumerate(frame_rows) if r is bad_row)]
            raise ImportRejected(f"{owner}: {len(invalid)} {table} row(s) fail validation, first "
                                 f"{_row_label(bad_row)}: {'; '.join(reasons)[:300]}")
        if not outcome.success:  # a table-level failure names no row: find the file that fails alone
            culprit = next((m for m in measurements if m.rows[table] and not validation.validate(
                pd.DataFrame([{k: v for k, v in r.items() if k != "samples_ms"} for r in m.rows[table]]),
                suite()).success), measurements[0])
            raise ImportRejected(f"{culprit.path}: {_one_line(outcome.summary(), 300)}")


def _row_label(row: dict) -> str:
    return (f"{row.get('target')} {row.get('family')}/{row.get('preset')} bs={row.get('batch_size')} "
            f"seq={row.get('seq_len')} {row.get('precision')} t={row.get('threads')}")


# ---- writing, all or nothing -------------------------------------------------------------------------------
def _write_all(wh: Warehouse, writes: list[tuple[str, str, str, pa.Table]]) -> None:
    """Every file in one warehouse transaction (warehouse/transaction.py): all of them land, or none."""
    try:
        with wh.transaction() as tx:
            for table, partition, run_id, data in writes:
                try:
                    tx.write(table, data, run_id=run_id, partition=partition)
                except Exception as exc:
                    raise ImportRejected(f"writing {table}/{partition} failed ({_one_line(str(exc))}); "
                                         "nothing of this import was kept") from exc
    except OSError as exc:
        raise ImportRejected(f"committing the import failed ({_one_line(str(exc))}); nothing of it is visible until "
                             "the warehouse is opened again, which completes it") from exc


def _arrow_writes(measurements: list[_Measurement]) -> list[tuple[str, str, str, pa.Table]]:
    """(table, partition, run id, Arrow table) for every file to write, built before anything is written."""
    writes = []
    for table in WRITE_ORDER:
        for m in measurements:
            by_target: dict[str, list[dict]] = {}
            for row in m.rows[table]:
                by_target.setdefault(row["target"], []).append(row)
            for target, rows in by_target.items():
                try:
                    writes.append((table, target, m.run_id, to_arrow(table, rows)))
                except (ValueError, TypeError, pa.ArrowException) as exc:
                    raise ImportRejected(f"{m.path}: rows do not fit {table}: {_one_line(str(exc))}") from None
    return writes


def import_paths(warehouse: Warehouse, paths: Sequence[str | Path]) -> ImportSummary:
    """Import hwbench JSON and optimum-benchmark reports; all of them or none (see the module docstring)."""
    if not paths:
        raise ImportRejected("no files to import")
    measurements: list[_Measurement] = []
    files: list[str] = []
    for path in paths:
        m = _prepare(Path(path))
        files.append(str(m.path))
        # One run given twice (a file twice, or benchmark.json beside its benchmark_report.json) lands once.
        if all(m.run_id != other.run_id for other in measurements):
            measurements.append(m)
    _validate(measurements)
    _write_all(warehouse, _arrow_writes(measurements))
    tables = ("inference_results", "failures", "latency_samples", "runs")
    rows_by_table = {t: sum(len(m.rows[t]) for m in measurements) for t in tables}
    return ImportSummary(files=files, rows_by_table=rows_by_table, run_ids=[m.run_id for m in measurements])
