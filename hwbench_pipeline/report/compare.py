"""Compare each configuration's newest run with the run before it.

A change is reported when the medians differ by at least ``min_change`` (default 10 %) *and* a
Mann–Whitney U test on the two runs' raw samples gives p below ``alpha`` (default 0.01). Either alone is
not enough: a large change on a handful of noisy samples, or a tiny but "significant" shift, is noise for
the person reading the report. The 10 % default sits above the run-to-run spread measured on a 2-core host
(the same configurations, nothing changed, moved by 5–8 % between runs at 2 threads). A run flagged as
contaminated (the machine was busy with other work) is never the evidence for a change: such a comparison's
verdict is ``unreliable``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from hwbench_pipeline.warehouse.schema import CONFIG_KEY

DEFAULT_MIN_CHANGE = 0.10


@dataclass
class Comparison:
    key: dict
    current_run: str
    previous_run: str | None
    current_p50_ms: float
    previous_p50_ms: float | None
    change_pct: float | None
    p_value: float | None
    verdict: str  # new, slower, faster, unchanged, unreliable
    current_samples: int
    environment_change: str

    @property
    def label(self) -> str:
        k = self.key
        return f"{k['target']} {k['family']}/{k['preset']} bs={k['batch_size']} seq={k['seq_len']} {k['precision']}"


def _environment_change(current: dict, previous: dict) -> str:
    changes = []
    for column in ("git_revision", "package_versions", "host", "threads"):
        if current.get(column) != previous.get(column):
            changes.append(f"{column}: {previous.get(column)} → {current.get(column)}")
    return "; ".join(changes)


def compare_latest_runs(history: pl.DataFrame, *, min_change: float = DEFAULT_MIN_CHANGE,
                        alpha: float = 0.01) -> list[Comparison]:
    from scipy.stats import mannwhitneyu

    ok = history.filter(pl.col("status") == "ok").sort("_written_at", descending=True)
    comparisons = []
    for _, group in ok.group_by(CONFIG_KEY, maintain_order=True):
        current = group.row(0, named=True)
        previous = group.row(1, named=True) if group.height > 1 else None
        key = {k: current[k] for k in CONFIG_KEY}
        if previous is None:
            comparisons.append(Comparison(key, current["run_id"], None, current["p50_ms"], None, None, None, "new",
                                          current["n_samples"], ""))
            continue
        change = current["p50_ms"] / previous["p50_ms"] - 1.0
        p_value = float(mannwhitneyu(current["samples_ms"], previous["samples_ms"], alternative="two-sided").pvalue)
        verdict = "unchanged"
        if current.get("contaminated") or previous.get("contaminated"):
            verdict = "unreliable"
        elif abs(change) >= min_change and p_value < alpha:
            verdict = "slower" if change > 0 else "faster"
        comparisons.append(Comparison(key, current["run_id"], previous["run_id"], current["p50_ms"],
                                      previous["p50_ms"], change * 100.0, p_value, verdict, current["n_samples"],
                                      _environment_change(current, previous)))
    order = {"slower": 0, "faster": 1, "unreliable": 2, "new": 3, "unchanged": 4}
    return sorted(comparisons, key=lambda c: (order[c.verdict], c.label))
