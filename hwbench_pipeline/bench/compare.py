"""Two configurations, or one configuration under two builds, measured interleaved (A B A B …) and compared
pair by pair (the statistics: trackers/paired.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hwbench_pipeline.bench.launchers.base import Launcher
from hwbench_pipeline.bench.scenarios.base import Scenario
from hwbench_pipeline.bench.scenarios.processes import disturbed
from hwbench_pipeline.bench.trackers.paired import DEFAULT_THRESHOLD, PairedComparison, compare_pairs


@dataclass
class Side:
    """One side of a comparison: a label, the configuration, and the launcher that measures its processes."""

    label: str
    cfg: object
    launcher: Launcher
    rows: list[dict] = field(default_factory=list)


@dataclass
class InterleavedResult:
    a: Side
    b: Side
    comparison: PairedComparison | None
    dropped_pairs: int
    failure: dict | None = None  # the first failed process's row, when a side could not be measured
    #: the process medians of the pairs compared (none when a process failed: nothing was compared)
    a_medians: list[float] = field(default_factory=list)
    b_medians: list[float] = field(default_factory=list)


def measure_interleaved(a: Side, b: Side, scenario: Scenario, pairs: int, run_id: str, *, timeout_s: float = 600.0,
                        threshold: float = DEFAULT_THRESHOLD,
                        on_pair: Callable[[int, dict, dict], None] | None = None) -> InterleavedResult:
    """``pairs`` rounds of one fresh process of each side (A B, B A, A B, …); the pairs the host disturbed on
    either side are dropped, the others compared. A failed process ends the comparison with its row."""
    for i in range(pairs):
        for side in ((a, b) if i % 2 == 0 else (b, a)):  # alternating, so a drift favours neither side
            cfg = scenario.process_config(side.cfg, first=not side.rows)
            row = side.launcher.measure(cfg, run_id, timeout_s, scenario.failure_row, workspace=side.label)
            if row["status"] != "ok":
                return InterleavedResult(a, b, None, 0, failure=row)
            side.rows.append(row)
        if on_pair:
            on_pair(i + 1, a.rows[-1], b.rows[-1])
    keep = [not (x or y) for x, y in zip(disturbed(a.rows), disturbed(b.rows), strict=True)]
    a_medians = [r["p50_ms"] for r, ok in zip(a.rows, keep, strict=True) if ok]
    b_medians = [r["p50_ms"] for r, ok in zip(b.rows, keep, strict=True) if ok]
    comparison = compare_pairs(a_medians, b_medians, threshold) if a_medians else None
    return InterleavedResult(a, b, comparison, keep.count(False), a_medians=a_medians, b_medians=b_medians)


def side_build(side: Side) -> str:
    """Which build measured a side: another build's interpreter, or this build."""
    return getattr(side.launcher, "python", None) or "this build"


def comparison_kind(a: Side, b: Side) -> str:
    """targets, precisions or builds: what differs between the two sides."""
    if side_build(a) != side_build(b):
        return "builds"
    return "targets" if a.cfg.target != b.cfg.target else "precisions"


def comparison_row(result: InterleavedResult, *, run_id: str, started_at: datetime, purpose: str,
                   pairs_asked: int) -> dict:
    """The comparison as a row of the warehouse's ``comparisons`` table (B against A), failed or not. Precisions
    are specs (``int8-static``): two int8 recipes are two sides."""
    import statistics

    from hwbench_pipeline.bench.config_key import model_config_hash
    from hwbench_pipeline.bench.environment import environment_fields

    a, b, c = result.a, result.b, result.comparison
    if result.failure is not None:
        failed = result.failure
        first_line = (str(failed.get("message") or "").splitlines() or [""])[0][:300]
        sentence = f"failed: {failed['target']} {failed['precision']}: {failed['failure_class']}: {first_line}"
    elif c is None:
        sentence = (f"no undisturbed pair among {result.dropped_pairs}: the host was busy throughout; nothing "
                    "compared")
    else:
        sentence = c.sentence(a.label, b.label)
    medians_a, medians_b = result.a_medians, result.b_medians
    return {
        "run_id": run_id, "started_at": started_at, "finished_at": datetime.now(UTC), "purpose": purpose,
        "kind": comparison_kind(a, b), "label_a": a.label, "label_b": b.label, "family": a.cfg.family,
        "preset": a.cfg.preset, "config_hash": model_config_hash(a.cfg.family, a.cfg.preset),
        "batch_size": a.cfg.batch_size, "seq_len": a.cfg.seq_len, "threads": a.cfg.threads,
        "target_a": a.cfg.target, "target_b": b.cfg.target, "precision_a": a.cfg.spec, "precision_b": b.cfg.spec,
        "build_a": side_build(a), "build_b": side_build(b), "seconds_per_process": a.cfg.rule.max_seconds,
        "pairs_asked": pairs_asked, "pairs": c.pairs if c else 0, "dropped_pairs": result.dropped_pairs,
        "verdict": "failed" if result.failure is not None else (c.verdict if c else "inconclusive"),
        "ratio": c.ratio if c else None, "low": c.low if c else None, "high": c.high if c else None,
        "coverage": c.coverage if c else None, "p_value": c.p_value if c else None,
        "threshold": c.threshold if c else None,
        "median_a_ms": statistics.median(medians_a) if medians_a else None,
        "median_b_ms": statistics.median(medians_b) if medians_b else None,
        "medians_a_ms": medians_a, "medians_b_ms": medians_b, "sentence": sentence, **environment_fields(),
    }


def run_interleaved(configs: tuple, labels: tuple[str, str], pairs: int, run_id: str, *, lock_dir: Path,
                    baseline_python: str | None = None, threshold: float = DEFAULT_THRESHOLD,
                    timeout_s: float = 600.0, on_pair: Callable[[int, dict, dict], None] | None = None,
                    log: Callable[[str], None] = print, memory_limit_mb: float | None = None) -> InterleavedResult:
    """Measure two inference configurations (A, B) interleaved on this host, holding its measurement lock;
    with ``baseline_python`` side A is measured by that build (launchers/build.py). BuildUnusableError when that
    interpreter cannot run its ``hwbench bench``."""
    from hwbench_pipeline.bench.host_lock import host_measurement_lock
    from hwbench_pipeline.bench.launchers.build import BuildLauncher
    from hwbench_pipeline.bench.launchers.process import ProcessLauncher
    from hwbench_pipeline.bench.scenarios.inference import InferenceScenario

    scenario = InferenceScenario()
    with tempfile.TemporaryDirectory(prefix="hwbench-exports-") as cache:
        current = ProcessLauncher(scenario.measure, cache, memory_limit_mb)
        baseline = BuildLauncher(baseline_python) if baseline_python else current
        a, b = Side(labels[0], configs[0], baseline), Side(labels[1], configs[1], current)
        with host_measurement_lock(lock_dir, log):
            return measure_interleaved(a, b, scenario, pairs, run_id, timeout_s=timeout_s, threshold=threshold,
                                       on_pair=on_pair)
