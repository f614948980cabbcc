"""Regression detection: each configuration's newest run against its history.

A configuration is a scenario plus the warehouse's ``CONFIG_KEY``; its history is the time series of its runs,
ordered by when they were measured. The rules, in one place:

* **Contaminated runs are never evidence.** A run measured while other work took the machine
  (``contaminated``) is left out of every series, baseline and test. When the newest run is one, the
  verdict is ``unreliable``; so it is when every earlier run is.
* **Where a change falls.** E-divisive means (:mod:`hwbench_pipeline.report.changepoints`) runs over the
  clean runs' medians. A change point its permutation test accepts is *confirmed*; the newest run is then
  judged against the segment before the last confirmed change point, and that change point's run is the
  first suspicious run. A change point followed by more than ``settle_after_runs`` runs is settled history:
  the new level has become the baseline. A permutation test cannot confirm a change that only one or two
  runs show (a short tail has too few arrangements to be rare), so without a recent confirmed change
  point the location is E-divisive's own unconfirmed estimate in the newest segment when every run from it
  to the newest moved past the threshold the same way, else the newest run alone. Either way the first
  suspicious run is then the earliest from which every run up to the newest moved past the threshold the
  newest's way: a segment must hold ``min_segment_runs`` runs, so right after a change the segment found
  can start one unmoved run early, and that run belongs to the baseline.
* **Whether it changed.** Two conditions, both required: the newest run's median differs from the
  baseline level (the median of the baseline runs' medians) by at least the minimum magnitude, and a
  Mann–Whitney U test on the raw samples of the newest run and the baseline run (the last clean run before
  the first suspicious one) gives p < ``alpha``. With hundreds of samples a 2 % shift is "significant", and
  on a shared host that is noise; a large move on a handful of samples is not proof either. A run without
  raw samples falls back on the change point's permutation test as its evidence.
* **Minimum magnitude.** Unless fixed by the caller, it is three robust standard deviations of the
  baseline's run-to-run spread (1.4826 × the median absolute deviation of the log run medians, so a
  fraction of the level), expressed as a relative change, and never below ``min_change_floor`` (10 %).
  It applies to the ratio of the medians either way: 10 % slower is x1.10, 10 % faster is x1/1.10.
  Three deviations keep a run that merely lands at the edge of the usual spread quiet; the floor keeps a
  configuration whose few runs happened to agree closely from being flagged for a move nobody would act on.
  Nor is it ever below the largest distance of a baseline run from the level: a run that lands no further
  out than one of the baseline runs already did is inside the history's own spread. The robust deviation
  alone ignores such a run, and at 2 threads on a shared 2-core host the run medians are bimodal (one clean
  CI run here measured 49.8, 43.6, 43.2, 43.8, 46.6 and then 48.8 ms for one configuration).
  Fewer than three baseline runs say nothing about the spread: the floor alone applies.

The metric is the run median latency (``p50_ms``); ``change`` is relative (+0.25 = 25 % slower).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from hwbench_pipeline.report.changepoints import DEFAULT_PERMUTATIONS, DEFAULT_SIGNIFICANCE, best_split, e_divisive
from hwbench_pipeline.warehouse.schema import CONFIG_KEY, REGRESSIONS

METRIC = "p50_ms"
DEFAULT_MIN_CHANGE_FLOOR = 0.10
ROBUST_SD_PER_MAD = 1.4826  # the MAD of normal data times this is its standard deviation
VERDICT_ORDER = {"slower": 0, "faster": 1, "unreliable": 2, "new": 3, "unchanged": 4}
ENVIRONMENT_FIELDS = ("host", "cpu_model", "cpu_cores", "python_version", "git_revision")
VERSION_FIELDS = {"torch_version": "torch", "transformers_version": "transformers"}


@dataclass(frozen=True)
class DetectionSettings:
    alpha: float = 0.01  # Mann–Whitney U, newest run against the baseline run
    min_change: float | None = None  # fixed minimum magnitude; None derives it from the history's spread
    min_change_floor: float = DEFAULT_MIN_CHANGE_FLOOR
    spread_multiplier: float = 3.0
    changepoint_significance: float = DEFAULT_SIGNIFICANCE
    permutations: int = DEFAULT_PERMUTATIONS
    min_segment_runs: int = 2
    settle_after_runs: int = 10
    max_history_runs: int = 100  # the newest clean runs searched for change points (bounds the cost)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1 or not 0 < self.changepoint_significance < 1:
            raise ValueError("alpha and changepoint_significance must be between 0 and 1")
        if self.min_change is not None and self.min_change <= 0:
            raise ValueError(f"min_change must be positive, got {self.min_change}")
        if self.min_change_floor < 0 or self.spread_multiplier < 0:
            raise ValueError("min_change_floor and spread_multiplier must not be negative")
        if self.min_segment_runs < 2 or self.settle_after_runs < 1 or self.max_history_runs < 4:
            raise ValueError("min_segment_runs >= 2, settle_after_runs >= 1 and max_history_runs >= 4 are needed")


@dataclass(frozen=True)
class Finding:
    """One configuration's newest run judged against its history."""

    scenario: str
    key: dict
    metric: str
    verdict: str  # slower, faster, unchanged, new, unreliable
    current_run_id: str
    current_value: float
    current_samples: int
    baseline_run_id: str | None = None
    baseline_value: float | None = None  # the baseline level: median of the baseline runs' medians
    change: float | None = None  # current / baseline - 1
    p_value: float | None = None  # Mann–Whitney U on the raw samples
    first_suspicious_run_id: str | None = None
    changepoint_p_value: float | None = None
    changepoint_confirmed: bool = False
    min_change: float | None = None  # the threshold that was applied
    environment_changes: str = ""
    reliable: bool = True
    method: str = ""

    @property
    def label(self) -> str:
        k = self.key
        return (f"{k['target']} {k['family']}/{k['preset']} bs={k['batch_size']} seq={k['seq_len']} "
                f"{k['precision']} t={k['threads']} attn={k.get('attention')}")

    def table_row(self) -> dict:
        """The finding as a row of the ``regressions`` table."""
        row = {
            "run_id": self.current_run_id,
            "scenario": self.scenario,
            **self.key,
            "metric": self.metric,
            "verdict": self.verdict,
            "change": self.change,
            "p_value": self.p_value,
            "baseline_run_id": self.baseline_run_id,
            "first_suspicious_run_id": self.first_suspicious_run_id,
            "baseline_value": self.baseline_value,
            "current_value": self.current_value,
            "environment_changes": self.environment_changes,
            "reliable": self.reliable,
            "method": self.method,
        }
        return {name: row.get(name) for name in REGRESSIONS.names}


def _package_map(text: str | None) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in (text or "").split(";") if "=" in item)
    return {name.strip(): version.strip() for name, version in pairs}


def environment_changes(before: dict, after: dict) -> str:
    """What differs in the recorded environment of two runs, as ``field: old → new`` items."""
    changes = [f"{field}: {before.get(field)} → {after.get(field)}" for field in ENVIRONMENT_FIELDS
               if before.get(field) != after.get(field)]
    old, new = _package_map(before.get("package_versions")), _package_map(after.get("package_versions"))
    changed_packages = set()
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) != new.get(name):
            changed_packages.add(name)
            changes.append(f"{name}: {old.get(name, 'absent')} → {new.get(name, 'absent')}")
    for field, package in VERSION_FIELDS.items():
        if package not in changed_packages and before.get(field) != after.get(field):
            changes.append(f"{field}: {before.get(field)} → {after.get(field)}")
    return "; ".join(changes)


def minimum_magnitude(baseline_values: list[float], settings: DetectionSettings) -> float:
    """The smallest relative change worth flagging (see the module docstring for the rule)."""
    if settings.min_change is not None:
        return settings.min_change
    logs = np.log([v for v in baseline_values if v > 0])
    if logs.size < 3:
        return settings.min_change_floor
    deviations = np.abs(logs - np.median(logs))
    spread = ROBUST_SD_PER_MAD * float(np.median(deviations))
    # a run no further from the level than some baseline run already was is within the history's own spread
    return max(settings.min_change_floor, math.expm1(settings.spread_multiplier * spread),
               math.expm1(float(deviations.max())))


def _beyond(ratio: float, threshold: float) -> bool:
    """Whether a ratio of medians moved by the threshold either way: x1.10 up, or down to 1/1.10 (-9.1 %)."""
    return ratio > 0 and abs(math.log(ratio)) >= math.log1p(threshold)


def _mann_whitney(current: dict, baseline: dict) -> float | None:
    from scipy.stats import mannwhitneyu

    a, b = current.get("samples_ms"), baseline.get("samples_ms")
    if a is None or b is None or len(a) == 0 or len(b) == 0:
        return None
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class _Location:
    first: int  # index into the clean runs of the first suspicious run
    baseline_start: int  # the baseline segment is clean[baseline_start:first]
    changepoint_p_value: float | None
    confirmed: bool


def _locate(medians: list[float], settings: DetectionSettings) -> _Location:
    """Where the newest run's level began, and the baseline segment before it (see the module docstring)."""
    newest = len(medians) - 1
    result = e_divisive(medians, min_size=settings.min_segment_runs, permutations=settings.permutations,
                        significance=settings.changepoint_significance, seed=settings.seed)
    starts = [0] + [c.index for c in result.change_points]
    last = result.change_points[-1] if result.change_points else None
    if last is not None and newest - last.index + 1 <= settings.settle_after_runs:
        return _Location(last.index, starts[-2], last.p_value, True)
    segment_start = starts[-1]
    segment = medians[segment_start:]
    split = best_split(segment, min_size=settings.min_segment_runs)
    if split is not None:
        first = segment_start + split[0]
        base = medians[segment_start:first]
        level = float(np.median(base))
        threshold = minimum_magnitude(base, settings)
        moves = [v / level for v in medians[first:]]
        if all(_beyond(m, threshold) for m in moves) and len({m > 1.0 for m in moves}) == 1:
            rejected = result.rejected
            p = rejected.p_value if rejected is not None and rejected.index == first else None
            return _Location(first, segment_start, p, False)
    return _Location(newest, segment_start, None, False)


def _first_moved(medians: list[float], start: int, level: float, threshold: float) -> int:
    """The earliest run, from ``start`` on, after which every run up to the newest moved past the threshold the
    way the newest did (the newest itself when it did not move). A segment can only end ``min_segment_runs``
    before the newest, so a change point found right after a change may still hold an unmoved run."""
    up = medians[-1] > level
    first = len(medians) - 1
    for i in range(len(medians) - 1, start - 1, -1):
        ratio = medians[i] / level
        if not (_beyond(ratio, threshold) and (ratio > 1.0) == up):
            break
        first = i
    return first


def _judge(scenario: str, runs: list[dict], settings: DetectionSettings) -> Finding:
    newest = runs[-1]
    key = {k: newest[k] for k in CONFIG_KEY}
    base = dict(scenario=scenario, key=key, metric=METRIC, current_run_id=newest["run_id"],
                current_value=float(newest[METRIC]), current_samples=int(newest.get("n_samples") or 0))
    if len(runs) == 1:
        return Finding(**base, verdict="new", method="first run of this configuration")
    clean_history = [r for r in runs[:-1] if not r.get("contaminated")][-(settings.max_history_runs - 1):]
    if not clean_history:
        return Finding(**base, verdict="unreliable", reliable=False,
                       method="every earlier run was measured on a busy machine")
    if newest.get("contaminated"):
        previous = clean_history[-1]
        return Finding(**base, verdict="unreliable", reliable=False, baseline_run_id=previous["run_id"],
                       baseline_value=float(previous[METRIC]), p_value=_mann_whitney(newest, previous),
                       change=float(newest[METRIC]) / float(previous[METRIC]) - 1.0,
                       environment_changes=environment_changes(previous, newest),
                       method="the newest run was measured on a busy machine")
    clean = [*clean_history, newest]
    medians = [float(r[METRIC]) for r in clean]
    where = _locate(medians, settings)
    level = float(np.median(medians[where.baseline_start:where.first]))
    first = _first_moved(medians, where.first, level, minimum_magnitude(
        medians[where.baseline_start:where.first], settings))
    if first != where.first:
        where = dataclasses.replace(where, first=first)
    baseline_values = medians[where.baseline_start:where.first]
    baseline_run = clean[where.first - 1]
    level = float(np.median(baseline_values))
    threshold = minimum_magnitude(baseline_values, settings)
    change = medians[-1] / level - 1.0
    p_value = _mann_whitney(newest, baseline_run)
    if p_value is not None:
        significant, evidence = p_value < settings.alpha, "mann-whitney-u"
    else:
        significant, evidence = where.confirmed, "e-divisive permutation test (no raw samples)"
    changed = significant and _beyond(medians[-1] / level, threshold)
    if where.confirmed:
        located = f"e-divisive change point (p={where.changepoint_p_value:.3g})"
    elif where.first < len(clean) - 1:
        p_text = f"p={where.changepoint_p_value:.3g}, " if where.changepoint_p_value is not None else ""
        located = f"e-divisive estimate ({p_text}unconfirmed)"
    else:
        located = "newest run"
    first_run = clean[where.first]
    return Finding(
        **base,
        verdict=("slower" if change > 0 else "faster") if changed else "unchanged",
        baseline_run_id=baseline_run["run_id"],
        baseline_value=level,
        change=change,
        p_value=p_value,
        first_suspicious_run_id=first_run["run_id"] if changed else None,
        changepoint_p_value=where.changepoint_p_value,
        changepoint_confirmed=where.confirmed,
        min_change=threshold,
        environment_changes=environment_changes(baseline_run, first_run) if changed else "",
        method=(f"{evidence}; " + (f"located by {located}; " if changed else "")
                + f"minimum magnitude {threshold:.1%} from {len(baseline_values)} baseline runs"),
    )


def detect_regressions(history: pl.DataFrame, *, settings: DetectionSettings | None = None,
                       scenario: str = "inference") -> list[Finding]:
    """One finding per configuration in ``history`` (rows of a results table, every run), most urgent first.

    ``scenario`` names the rows' scenario when the table has no ``scenario`` column.
    """
    settings = settings or DetectionSettings()
    missing = sorted({*CONFIG_KEY, "run_id", METRIC} - set(history.columns))
    if missing:
        raise ValueError(f"history lacks the columns regression detection needs: {', '.join(missing)}")
    rows = history
    if "status" in rows.columns:
        rows = rows.filter(pl.col("status") == "ok")
    if "scenario" not in rows.columns:
        rows = rows.with_columns(pl.lit(scenario).alias("scenario"))
    time_columns = [c for c in ("started_at", "_written_at") if c in rows.columns]
    order = pl.coalesce(time_columns) if time_columns else pl.int_range(pl.len())
    rows = rows.with_columns(order.alias("_order")).sort("_order")
    if "_written_at" in rows.columns:
        # A run written twice (a re-materialized partition keeps the same run id) counts once, the newest copy.
        rows = rows.unique(subset=["scenario", *CONFIG_KEY, "run_id"], keep="last", maintain_order=True)
    findings = [
        _judge(group["scenario"][0], list(group.iter_rows(named=True)), settings)
        for _, group in rows.group_by(["scenario", *CONFIG_KEY], maintain_order=True)
    ]
    return sorted(findings, key=lambda f: (VERDICT_ORDER[f.verdict], f.scenario, f.label))


def finding_rows(findings: list[Finding]) -> list[dict]:
    """Rows for the warehouse's ``regressions`` table."""
    return [f.table_row() for f in findings]
