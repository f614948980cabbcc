"""Reading a file to import safely, and typed access to what it holds: every problem is a one-line BadFile.

Hostile input is refused with one line naming the file: files over :data:`MAX_FILE_BYTES`, empty files,
non-UTF-8 text, invalid JSON, NaN/Infinity, duplicate keys, nesting deeper than :data:`MAX_NESTING`, wrong
types, negative or non-finite latencies, numbers too large for a float or that overflow once converted to
hwbench's units, latencies over a day and memory peaks over a PiB, names that are not plain (``../``,
slashes, control characters), unknown formats.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from hwbench_pipeline.warehouse.format import SAFE_NAME

MAX_FILE_BYTES = 64 * 2**20  # a long hwbench sweep with raw samples is a few MB; anything bigger is not ours
MAX_NESTING = 32  # both formats nest 5 levels deep
MAX_STRING = 100_000  # failure messages are cut at 4000 characters by the engine

#: one call taking longer than a day is not a measurement but a broken or hostile file
MAX_LATENCY_MS = 86_400_000.0
#: nor is a memory figure above a PiB
MAX_MEMORY_MIB = float(2**30)


class BadFile(ValueError):
    """What is wrong with the file being read; the importer (``warehouse/importer.py``) prefixes the file's name."""


def _reject_constant(name: str) -> float:
    raise BadFile(f"{name} is not a number hwbench accepts (NaN and Infinity are refused)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadFile(f"number {text[:40]} overflows a float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise BadFile(f"key {show(dup)} appears twice in one object")
    return obj


def _check_nesting(doc: Any) -> None:
    stack = [(doc, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > MAX_NESTING:
            raise BadFile(f"JSON nested deeper than {MAX_NESTING} levels")
        children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def read_json(path: Path) -> tuple[Any, bytes]:
    """The parsed document and the file's bytes, or BadFile."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise BadFile("not a regular file")
        if size > MAX_FILE_BYTES:
            raise BadFile(f"file is {size / 2**20:.1f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise BadFile(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise BadFile(f"file is over the {MAX_FILE_BYTES // 2**20} MiB limit")
    if not data.strip():
        raise BadFile("file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadFile(f"not UTF-8 text (byte {exc.start})") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                         object_pairs_hook=_unique_keys)
    except RecursionError:
        raise BadFile(f"JSON nested deeper than {MAX_NESTING} levels") from None
    except BadFile:
        raise
    except ValueError as exc:  # JSONDecodeError, and int() refusing thousands of digits
        if "integer string conversion" in str(exc):
            raise BadFile(f"not valid JSON: an integer has more than {sys.get_int_max_str_digits()} digits") from None
        raise BadFile(f"not valid JSON: {one_line(str(exc))}") from None
    _check_nesting(doc)
    return doc, data


def one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show(value: Any) -> str:
    return one_line(repr(value), 60)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind_name(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def get_field(obj: dict, key: str, kind: type | tuple, where: str, *, required: bool = False) -> Any:
    """obj[key] checked against kind (bools are not numbers); None when absent or null unless required."""
    value = obj.get(key)
    if value is None:
        if required:
            raise BadFile(f"{where}.{key} is missing")
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and is_number(value):
        ok = True
    if not ok:
        raise BadFile(f"{where}.{key} must be {_kind_name(kind)}, got {type(value).__name__} {show(value)}")
    return value


def safe_name(value: str, what: str) -> str:
    """A name that may become a partition, a file name or a key: plain letters, digits, '_', '.', '-'."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or ".." in value:
        raise BadFile(f"{what} {show(value)} is not a plain name (letters, digits, '_', '.', '-'; no '..')")
    return value


def positive_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 2**31:
        raise BadFile(f"{what} must be a positive integer, got {show(value)}")
    return value


def finite(value: int | float, what: str, scale: float = 1.0) -> float:
    """``value * scale`` as a finite float; integers too large for a float and results that overflow are BadFile."""
    try:
        result = float(value) * scale
    except OverflowError:
        raise BadFile(f"{what} is {show(value)}: too large for a number") from None
    if not math.isfinite(result):
        raise BadFile(f"{what} is {show(value)}: not a finite number once converted")
    return result


def latency_ms(value: Any, what: str, scale: float = 1.0) -> float:
    """A latency in ms from ``value`` (in ms x ``scale``): positive, finite and at most a day."""
    if not is_number(value) or value <= 0:
        raise BadFile(f"{what} is {show(value)}: a latency must be a positive number")
    ms = finite(value, what, scale)
    if ms > MAX_LATENCY_MS:
        raise BadFile(f"{what} is {show(value)}: {ms:.3g} ms, longer than a day, is not a latency hwbench accepts")
    return ms


def latencies(values: Any, what: str, scale: float) -> list[float]:
    if not isinstance(values, list):
        raise BadFile(f"{what} must be a list of numbers, got {type(values).__name__}")
    return [latency_ms(v, f"{what}[{i}]", scale) for i, v in enumerate(values)]


def non_negative(value: Any, what: str) -> None:
    if value is not None and value < 0:
        raise BadFile(f"{what} is {value!r}: latencies and times cannot be negative")
    if value is not None and value > MAX_LATENCY_MS:
        raise BadFile(f"{what} is {value!r}: longer than a day, not a latency or time hwbench accepts")
