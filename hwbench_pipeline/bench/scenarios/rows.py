"""Fields every scenario's rows share: the failure row, the machine-load fields, and the rule that a failing
configuration becomes a classified row instead of an exception."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hwbench_pipeline.bench.failures import classify

#: a failure's message is cut to this many characters (tracebacks of deep stacks run long)
MAX_MESSAGE_CHARS = 4000


def now() -> datetime:
    return datetime.now(UTC)


def failure_fields(scenario: str, key_fields: dict, run_id: str, failure_class: str, message: str,
                   started: datetime | None = None, **extra: Any) -> dict:
    """A row of the failures table for one configuration; ``extra`` goes in as given."""
    from hwbench_pipeline.bench.environment import environment_fields

    return {
        "run_id": run_id,
        "scenario": scenario,
        **key_fields,
        "status": "failed",
        "failure_class": failure_class,
        "message": message[:MAX_MESSAGE_CHARS],
        "started_at": started or now(),
        "finished_at": now(),
        **extra,
        **environment_fields(),
    }


def load_fields(load, contaminated: bool) -> dict:
    """The machine's load over a measurement (a ``LoadWindow``-like object) as row fields."""
    return {
        "machine_busy_fraction": load.busy_fraction,
        "foreign_busy_fraction": load.foreign_fraction,
        "steal_fraction": load.steal_fraction,
        "loadavg_1m": load.loadavg_1m,
        "contaminated": contaminated,
    }


def series_fields(samples_ms: list[float], started: datetime) -> dict:
    """The tail every measured row shares: its raw samples, the measuring process, when, and on what."""
    import os

    from hwbench_pipeline.bench.environment import environment_fields

    return {
        "samples_ms": [float(s) for s in samples_ms],
        "worker_pid": os.getpid(),
        "started_at": started,
        "finished_at": now(),
        **environment_fields(),
    }


def measured_or_failure(measure: Callable[[Any, str], dict], failure: Callable[..., dict], cfg: Any,
                        run_id: str) -> dict:
    """``measure(cfg, run_id)``, or the classified failure row of whatever it raised: no failure aborts the
    rest of a partition."""
    started = now()
    try:
        return measure(cfg, run_id)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, none aborts the partition
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        return failure(cfg, run_id, classify(exc), message, started)
