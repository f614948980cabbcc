"""The coverage sweep: every architecture of the registry probed on each target, each probe in a fresh process.

Rows are appended to a JSON-lines journal as they come, so a killed sweep resumes where it stopped: a probe is
skipped when the journal already holds its row for the same transformers version and probe method.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from hwbench_pipeline.bench.catalog.probe import (
    PROBE_METHOD_VERSION,
    ProbeConfig,
    expected_config_hash,
    probe_architecture,
    probe_row,
    runtime_version,
)

DEFAULT_TIMEOUT_S = 300.0
MEMORY_LIMIT_FRACTION = 0.5


def done_key(row: dict) -> tuple:
    """What makes a probe's row still valid: the same architecture, preset, target and shape, transformers and
    runtime versions, probe method and config (a journal older than shapes holds the probe's default shape)."""
    return (row["model_type"], row["preset"], row["target"], row.get("batch_size", 1), row.get("seq_len", 16),
            row.get("threads", 1), row["transformers_version"], row.get("runtime_version"), row["method_version"],
            row.get("config_hash"))


def read_journal(path: Path) -> list[dict]:
    """Rows of a journal; a line cut short by a kill is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_line(path: Path, line: str) -> None:
    """Append one line, flushed to disk; a line a kill cut short before it is closed first, so it costs only
    itself."""
    with path.open("a+b") as out:
        out.seek(0, 2)
        if out.tell():
            out.seek(-1, 2)
            if out.read(1) != b"\n":
                out.write(b"\n")
        out.write(line.encode() + b"\n")
        out.flush()
        os.fsync(out.fileno())


def run_sweep(configs: Iterable[ProbeConfig], journal: Path, run_id: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
              log: Callable[[str], None] = print) -> list[dict]:
    """Probe each configuration not already in ``journal`` in a fresh process; returns this call's rows."""
    import transformers

    from hwbench_pipeline.bench.launchers.process import (
        WorkerCrashed,
        WorkerOutOfMemory,
        WorkerTimeout,
        measure_in_fresh_process,
    )
    from hwbench_pipeline.bench.trackers.memory import available_memory_mb

    configs = list(configs)
    done = {done_key(r) for r in read_journal(journal)}
    version = transformers.__version__
    hashes = {c: expected_config_hash(c) for c in configs}  # building a config is not free: once per probe
    runtimes = {t: runtime_version(t) for t in {c.target for c in configs}}
    todo = [c for c in configs if (c.model_type, c.preset, c.target, c.batch_size, c.seq_len, c.threads, version,
                                   runtimes[c.target], PROBE_METHOD_VERSION, hashes[c]) not in done]
    log(f"{len(configs)} probes, {len(configs) - len(todo)} already in {journal} for this transformers, runtime "
        f"and config, {len(todo)} to run")
    journal.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, cfg in enumerate(todo, 1):
        t0 = time.monotonic()
        # a probe may take half of what is free now: the host, and the sweep, outlive any one architecture
        limit_mb = MEMORY_LIMIT_FRACTION * available_memory_mb()
        try:
            row = measure_in_fresh_process(probe_architecture, cfg, run_id, timeout_s, memory_limit_mb=limit_mb)
        except WorkerOutOfMemory as exc:
            row = probe_row(cfg, run_id, status="failed", failure_class="out_of_memory", stage=None,
                            message=str(exc), config_hash=hashes[cfg])
        except WorkerTimeout as exc:
            row = probe_row(cfg, run_id, status="failed", failure_class="timeout", stage=None, message=str(exc),
                            config_hash=hashes[cfg])
        except WorkerCrashed as exc:
            row = probe_row(cfg, run_id, status="failed", failure_class="worker_crashed", stage=None,
                            message=str(exc), config_hash=hashes[cfg])
        row["wall_s"] = time.monotonic() - t0
        append_line(journal, json.dumps(row, default=str))
        rows.append(row)
        outcome = "ok" if row["status"] == "ok" else f"{row['failure_class']}: {str(row['message'])[:100]}"
        log(f"[{i}/{len(todo)}] {cfg.label} {row['wall_s']:.1f} s {outcome}")
    return rows


def outcome_of(row: dict) -> str:
    """``ok``, ``ok (text tower only)`` for an image-and-text model fed text alone, or the failure class."""
    if row["status"] != "ok":
        return row["failure_class"]
    return "ok" if row.get("complete", True) else "ok (text tower only)"


def coverage_table(rows: list[dict]) -> dict[tuple[str, str], Counter]:
    """(category, target) -> Counter of outcomes (:func:`outcome_of`), the newest row per probe."""
    latest: dict[tuple, dict] = {}
    for row in rows:
        latest[(row["model_type"], row["preset"], row["target"])] = row
    table: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for row in latest.values():
        table[(row["category"], row["target"])][outcome_of(row)] += 1
    return dict(table)
