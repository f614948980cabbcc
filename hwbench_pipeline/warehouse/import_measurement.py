"""What the format mappers (``import_hwbench.py``, ``import_optimum.py``) make of one file: warehouse rows by
table, not yet written, under the run id the measurement's SHA-256 names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hwbench_pipeline.warehouse.schema import CONFIG_KEY, ENVIRONMENT_COLUMNS

#: the order tables are written in; runs last, so a reader that sees the run sees its rows
WRITE_ORDER = ("latency_samples", "failures", "inference_results", "runs")


@dataclass
class Measurement:
    """One file turned into warehouse rows, not yet written."""

    path: Path
    run_id: str
    rows: dict[str, list[dict]] = field(default_factory=lambda: {t: [] for t in WRITE_ORDER})


def import_run_id(sha256: str) -> str:
    return f"import-{sha256[:12]}"


def fill_statistics(row: dict, samples_ms: list[float]) -> None:
    """Statistics the row lacks, computed from its raw samples with the engine's own definitions."""
    from hwbench_pipeline.bench.trackers.stats import summarize

    for key, value in summarize(samples_ms).items():
        if row.get(key) is None:
            row[key] = value
    if row.get("n_samples") is None:
        row["n_samples"] = len(samples_ms)


def add_samples_and_runs(m: Measurement, source: str, sha256: str) -> None:
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
