"""One configuration's row from the rows of its measuring processes (the rules: trackers/stats.py, "Processes").

The figure is the median of the process medians, with the interval between processes; the other percentiles
are the medians of the processes' own; mean, spread and extremes describe the pooled samples. Processes the
host disturbed (other work, steal) are left out when enough undisturbed ones remain; otherwise
all are used and the row is marked contaminated. What only the first process measured cold (load time, first
call, FLOPs) is the first process's.
"""

from __future__ import annotations

import statistics

from hwbench_pipeline.bench.trackers.stats import NOISY_HALFWIDTH, StoppingRule, between_process_interval, summarize

#: load figures averaged over the processes used
LOAD_FIELDS = ("machine_busy_fraction", "foreign_busy_fraction", "steal_fraction", "loadavg_1m")
#: figures taken as their largest over the processes (memory is the first process's: it built, exported and
#: ran the model as a user's process does; the later ones read the export from the cache)
LARGEST_FIELDS = ("max_abs_diff", "max_rel_diff", "mean_rel_diff", "slowest_core_ms")


def core_slowdowns(rows: list[dict]) -> list[float | None]:
    """Each process's slowest-core probe against the fastest among the configuration's processes."""
    probes = [r.get("slowest_core_ms") for r in rows]
    fastest = min((p for p in probes if p), default=None)
    return [p / fastest if p and fastest else None for p in probes]


def disturbed(rows: list[dict]) -> list[bool]:
    """Which processes the host disturbed: others' work or steal took CPU while they sampled (contaminated).
    Core slowdowns are recorded, not used here: on the development host they did not tell slow processes from
    fast ones (docs/measurement.md, "Noise")."""
    return [bool(r.get("contaminated")) for r in rows]


def undisturbed(rows: list[dict]) -> list[dict]:
    return [r for r, bad in zip(rows, disturbed(rows), strict=True) if not bad]


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _largest(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def combine_process_rows(rows: list[dict], rule: StoppingRule, stop_reason: str) -> dict:
    """The configuration's row from its processes' measured rows (in the order they ran)."""
    if not rows:
        raise ValueError("combine_process_rows needs at least one process row")
    quiet = [not bad for bad in disturbed(rows)]
    enough = sum(quiet) >= rule.processes
    used_at = [i for i, ok in enumerate(quiet) if ok or not enough]
    used = [rows[i] for i in used_at]
    slowdowns = core_slowdowns(rows)
    medians = [r["p50_ms"] for r in used]
    samples = [s for r in used for s in r["samples_ms"]]
    first = rows[0]
    row = dict(first)
    row.update(summarize(samples))
    center = statistics.median(medians)
    if len(used) > 1:
        low, high, coverage = between_process_interval(medians)
    else:  # one process: its own interval over its samples
        low, high, coverage = used[0]["median_ci_low_ms"], used[0]["median_ci_high_ms"], None
    halfwidth = (high - low) / 2.0 / center if center > 0 else float("inf")
    row.update({
        "p50_ms": center,
        # each process's p90 is at least its median, so the median of the p90s is at least the median of the medians
        "p90_ms": statistics.median(r["p90_ms"] for r in used),
        "p99_ms": statistics.median(r["p99_ms"] for r in used),
        "median_ci_low_ms": low,
        "median_ci_high_ms": high,
        "ci_rel_halfwidth": halfwidth,
        "ci_coverage": coverage,
        "noisy": halfwidth > NOISY_HALFWIDTH,
        "n_samples": len(samples),
        "samples_ms": samples,
        "warmup_calls": sum(r["warmup_calls"] for r in used),
        "stop_reason": stop_reason,
        "processes": len(used),
        "processes_disturbed": quiet.count(False),
        "process_medians_ms": medians,
        "process_sample_counts": [len(r["samples_ms"]) for r in used],
        "process_foreign_fractions": [r.get("foreign_busy_fraction") for r in used],
        "process_steal_fractions": [r.get("steal_fraction") for r in used],
        "process_core_slowdowns": [slowdowns[i] for i in used_at],
        "process_pids": [r.get("worker_pid") for r in used],
        "process_load_s": [r.get("load_s") for r in used],  # the later ones load the export from the cache
        # every process occupied the machine, the disturbed ones that do not count too (dispatch.py times them)
        "machine_s": sum(r["machine_s"] for r in rows) if all(r.get("machine_s") is not None for r in rows)
        else None,
        "contaminated": not enough,
        "attempts": sum(r.get("attempts") or 1 for r in rows),  # a single window may have been measured again
        "finished_at": rows[-1]["finished_at"],
    })
    for name in LOAD_FIELDS:
        row[name] = _mean([r.get(name) for r in used])
    for name in LARGEST_FIELDS:
        row[name] = _largest([r.get(name) for r in rows])
    for name in ("throughput_samples_s", "throughput_tokens_s", "achieved_gflops"):
        if first.get(name) is not None and first["p50_ms"] > 0:
            row[name] = first[name] * first["p50_ms"] / center  # rates scale with the figure they divide by
    return row
