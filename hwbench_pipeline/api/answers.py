"""The API's answer, ``{"columns", "records", "row_count", "truncated", "max_rows"}``, as JSON bytes within a
byte cap: records are left out from the end until the answer fits, and ``truncated`` says so. An answer that
cannot hold even one record is refused (400) rather than sent empty."""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl

from hwbench_pipeline.warehouse.queries import QueryError, to_records


def frame_records(frame: pl.DataFrame) -> list[str]:
    """Each row of ``frame`` as a compact JSON object (NaN as null, times ISO 8601: see queries.json_value)."""
    # default=str: a value of a type json cannot write becomes its text, never a server error
    return [json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
            for record in to_records(frame)]


def answer_body(columns: Sequence[str], records: list[str], truncated: bool, *, max_rows: int,
                max_bytes: int) -> bytes:
    """The answer holding ``records`` (JSON object texts), as UTF-8 JSON of at most ``max_bytes`` bytes."""
    head = '{"columns":' + json.dumps(list(columns), separators=(",", ":")) + ',"records":['

    def tail(count: int, cut: bool) -> str:
        return f'],"row_count":{count},"truncated":{"true" if cut else "false"},"max_rows":{max_rows}}}'

    sizes = [len(record.encode()) for record in records]
    # records plus the commas between them
    size = len(head) + sum(sizes) + max(len(records) - 1, 0)
    kept = len(records)
    while kept and size + len(tail(kept, truncated)) > max_bytes:
        kept -= 1
        size -= sizes[kept] + (1 if kept else 0)
        truncated = True
    # truncated with no record kept: the result had rows, and not one fits
    if size + len(tail(kept, truncated)) > max_bytes or (kept == 0 and truncated):
        raise QueryError(f"not even one row of the result fits in the {max_bytes}-byte limit on an answer; "
                         f"select fewer or narrower columns")
    return (head + ",".join(records[:kept]) + tail(kept, truncated)).encode()
