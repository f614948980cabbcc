"""hwbench's own JSON (what ``hwbench bench --json FILE`` writes) as warehouse rows: each element of the list is
checked against the Arrow type of its column in ``inference_results`` (``status`` ``ok``) or ``failures``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from hwbench_pipeline.bench.hardware import UnknownTargetError, parse_target
from hwbench_pipeline.warehouse.import_measurement import (
    Measurement,
    add_samples_and_runs,
    fill_statistics,
    import_run_id,
)
from hwbench_pipeline.warehouse.import_reader import (
    MAX_MEMORY_MIB,
    MAX_STRING,
    BadFile,
    finite,
    get_field,
    is_number,
    latencies,
    non_negative,
    positive_int,
    safe_name,
    show,
)
from hwbench_pipeline.warehouse.schema import FAILURES, INFERENCE_RESULTS, LEGACY_KEY_VALUES

SOURCE_HWBENCH = "hwbench-json"
_INT64 = (-(2**63), 2**63 - 1)
_MEMORY_COLUMNS = ("baseline_rss_mb", "peak_rss_mb", "device_peak_mb")
_LATENCY_COLUMNS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "median_ci_low_ms",
                    "median_ci_high_ms", "first_call_ms", "load_s")

#: list columns that hold latencies (positive milliseconds); other lists hold counts, fractions, pids
LATENCY_LISTS = frozenset({"samples_ms", "process_medians_ms"})


def _typed(column: str, dtype: pa.DataType, value: Any, where: str) -> Any:
    """A JSON value as the Python value of that Arrow column type, or BadFile."""
    if value is None:
        return None
    bad = BadFile(f"{where}: {column} must be {dtype}, got {type(value).__name__} {show(value)}")
    if pa.types.is_string(dtype):
        if not isinstance(value, str) or len(value) > MAX_STRING:
            raise bad
        return value
    if pa.types.is_integer(dtype):
        if not isinstance(value, int) or isinstance(value, bool) or not _INT64[0] <= value <= _INT64[1]:
            raise bad
        return value
    if pa.types.is_floating(dtype):
        if not is_number(value):
            raise bad
        return finite(value, f"{where}: {column}")
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
            raise BadFile(f"{where}: {column} must be an ISO time with a time zone, got {show(value)}")
        try:  # stored in UTC, where 0001-01-01 at +14:00 falls before year 1 and could not be read back
            return stamp.astimezone(UTC)
        except OverflowError:
            raise BadFile(f"{where}: {column} {show(value)} is out of range once in UTC") from None
    if pa.types.is_list(dtype):
        if column in LATENCY_LISTS:
            return latencies(value, f"{where}: {column}", 1.0)
        if not isinstance(value, list):
            raise bad
        return [_typed(f"{column}[{i}]", dtype.value_type, v, where) for i, v in enumerate(value)]
    raise bad


def _hwbench_row(raw: Any, index: int, run_id: str) -> tuple[str, dict]:
    """(table, row) for one element of an hwbench JSON list."""
    where = f"row {index}"
    if not isinstance(raw, dict):
        raise BadFile(f"{where} must be an object, got {type(raw).__name__}")
    status = get_field(raw, "status", str, where, required=True)
    table, schema = ("inference_results", INFERENCE_RESULTS) if status == "ok" else ("failures", FAILURES)
    unknown = sorted(set(raw) - set(schema.names))
    if unknown:
        raise BadFile(f"{where} (status {show(status)}) has fields {table} does not have: {', '.join(unknown)[:200]}")
    row = {name: _typed(name, schema.field(name).type, raw.get(name), where) for name in schema.names if name in raw}
    target = safe_name(get_field(raw, "target", str, where, required=True), f"{where}: target")
    try:
        parsed = parse_target(target)
    except UnknownTargetError as exc:
        raise BadFile(f"{where}: {exc}") from None
    for key in ("family", "preset", "precision"):
        if row.get(key) is None:
            raise BadFile(f"{where}: {key} is missing")
    for key in ("family", "preset", "precision", "precision_ran", "scenario", "failure_class"):
        if row.get(key) is not None:
            safe_name(row[key], f"{where}: {key}")
    for key in ("batch_size", "seq_len", "threads"):
        positive_int(row.get(key), f"{where}: {key}")
    for key, legacy in LEGACY_KEY_VALUES.items():  # a file written before these key columns: what they meant
        row[key] = safe_name(row[key], f"{where}: {key}") if row.get(key) is not None else legacy
    row["run_id"] = run_id
    if table == "failures":
        row.setdefault("scenario", "inference")
        return table, row
    for key in ("backend", "device_kind"):
        if row.get(key) is not None and row[key] != getattr(parsed, key):
            raise BadFile(f"{where}: {key} {show(row[key])} contradicts target {target}")
        row[key] = getattr(parsed, key)
    for key in _LATENCY_COLUMNS:
        non_negative(row.get(key), f"{where}: {key}")
    for key in _MEMORY_COLUMNS:
        if row.get(key) is not None and not 0 < row[key] <= MAX_MEMORY_MIB:
            raise BadFile(f"{where}: {key} is {row[key]!r}: a memory figure must be above 0 MiB and at most a PiB")
    samples = row.get("samples_ms") or []
    if samples and row.get("n_samples") is not None and row["n_samples"] != len(samples):
        raise BadFile(f"{where}: n_samples is {row['n_samples']} but samples_ms holds {len(samples)} latencies")
    if samples:
        fill_statistics(row, samples)
    row["source"] = SOURCE_HWBENCH
    return table, row


def from_hwbench(path: Path, doc: list, data: bytes) -> Measurement:
    if not doc:
        raise BadFile("the list of rows is empty")
    sha256 = hashlib.sha256(data).hexdigest()
    m = Measurement(path, import_run_id(sha256))
    for index, raw in enumerate(doc):
        table, row = _hwbench_row(raw, index, m.run_id)
        m.rows[table].append(row)
    add_samples_and_runs(m, SOURCE_HWBENCH, sha256)
    return m
