"""Regression checks against a baseline build: a configuration that its history flags as slower or faster is
measured again, interleaved with the baseline build's processes (A = baseline, B = this build), so that the
verdict no longer rests on runs measured hours apart (docs/measurement.md, "Interleaved comparisons")."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hwbench_pipeline.report.regressions import Finding

#: the environment variable a schedule or a shell sets to check flagged configurations against a baseline build
BASELINE_PYTHON_ENV = "HWBENCH_BASELINE_PYTHON"


@dataclass(frozen=True)
class CheckSettings:
    pairs: int = 8
    seconds_per_process: float = 1.0
    max_checks: int = 3  # the largest flagged changes only: each check takes 2 x pairs processes
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.pairs < 1 or self.max_checks < 0 or self.seconds_per_process <= 0 or self.timeout_s <= 0:
            raise ValueError("pairs >= 1, max_checks >= 0 and positive seconds_per_process and timeout_s are needed")


def checkable(findings: list[Finding], available_targets: set[str]) -> tuple[list[Finding], list[str]]:
    """The flagged inference findings a check can measure here, the largest change first, and why each other
    flagged one cannot be."""
    from hwbench_pipeline.bench.config_key import model_config_hash

    chosen, skipped = [], []
    for f in findings:
        if f.scenario != "inference" or f.verdict not in ("slower", "faster"):
            continue
        if f.key["target"] not in available_targets:
            skipped.append(f"{f.label}: {f.key['target']} is not on this host")
        elif model_config_hash(f.key["family"], f.key["preset"]) != f.key["config_hash"]:
            skipped.append(f"{f.label}: the model's config changed since it was measured (another config_hash)")
        else:
            chosen.append(f)
    chosen.sort(key=lambda f: -abs(math.log1p(f.change)) if f.change is not None and f.change > -1 else 0.0)
    return chosen, skipped


def check_findings(findings: list[Finding], baseline_python: str, *, run_id: str, lock_dir: Path,
                   settings: CheckSettings | None = None,
                   log: Callable[[str], None] = print) -> list[dict]:
    """Each checkable flagged finding, the largest change first and at most ``settings.max_checks``, measured
    interleaved against ``baseline_python``'s build: rows of the comparisons table, purpose "regression check".
    BuildUnusableError when that interpreter cannot run its ``hwbench bench``."""
    from hwbench_pipeline.bench.compare import comparison_row, run_interleaved
    from hwbench_pipeline.bench.hardware import detect_targets
    from hwbench_pipeline.bench.launchers.build import BuildUnusableError
    from hwbench_pipeline.bench.scenarios.inference import InferenceConfig
    from hwbench_pipeline.bench.trackers.stats import StoppingRule

    settings = settings or CheckSettings()
    if shutil.which(baseline_python) is None:  # said even when nothing is flagged
        raise BuildUnusableError(f"{baseline_python} is not an executable file")
    chosen, skipped = checkable(findings, {t.key for t in detect_targets()})
    for reason in skipped:
        log(f"not checked against the baseline build: {reason}")
    if len(chosen) > settings.max_checks:
        log(f"checking the {settings.max_checks} largest of {len(chosen)} flagged changes")
    rule = StoppingRule(max_seconds=settings.seconds_per_process, processes=1, max_processes=1)
    rows = []
    for f in chosen[:settings.max_checks]:
        k = f.key
        cfg = InferenceConfig(family=k["family"], preset=k["preset"], target=k["target"], batch_size=k["batch_size"],
                              seq_len=k["seq_len"], precision=k["precision"], quantization=k["quantization"],
                              threads=k["threads"], rule=rule)
        log(f"checking {f.label} ({f.verdict} {f.change:+.1%} from history) against the baseline build "
            f"{baseline_python}: {settings.pairs} interleaved pairs")
        started = datetime.now(UTC)
        result = run_interleaved((cfg, cfg), ("baseline", "current"), settings.pairs, run_id, lock_dir=lock_dir,
                                 baseline_python=baseline_python, timeout_s=settings.timeout_s, log=log)
        row = comparison_row(result, run_id=run_id, started_at=started, purpose="regression check",
                             pairs_asked=settings.pairs)
        log(f"{f.label}: {row['sentence']}")
        rows.append(row)
    return rows
