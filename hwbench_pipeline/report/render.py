"""Render the regression report (Markdown and HTML) from the warehouse's tables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import polars as pl

from hwbench_pipeline.report.compare import (
    DEFAULT_MIN_CHANGE,
    Comparison,
    compare_latest_runs,
    comparisons_from_findings,
)
from hwbench_pipeline.report.comparison import md_cell
from hwbench_pipeline.report.regression_checks_view import FROM_HISTORY, HOW_TO_CHECK, checked_changes, run_times
from hwbench_pipeline.report.regressions import Finding
from hwbench_pipeline.warehouse.schema import CONFIG_KEY

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


@dataclass
class RenderedReport:
    markdown: Path
    html: Path
    n_configs: int
    n_failures: int
    verdicts: dict[str, int]


def _environment(template_dir: Path | None) -> jinja2.Environment:
    # A user's template folder, when given, takes precedence over the built-in templates.
    paths = [str(template_dir)] if template_dir else []
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(paths + [str(TEMPLATE_DIR)]),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]), keep_trailing_newline=True)
    env.filters["md_cell"] = md_cell  # free text (a message, a build's path) inside a Markdown table cell
    return env


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def render_regression_report(
    history: pl.DataFrame,
    failures_latest: pl.DataFrame,
    recommendations: pl.DataFrame,
    predictor_schema: dict | None,
    out_dir: Path,
    *,
    template_dir: Path | None = None,
    min_change: float = DEFAULT_MIN_CHANGE,
    alpha: float = 0.01,
    findings: list[Finding] | None = None,
    comparisons: pl.DataFrame | None = None,
) -> RenderedReport:
    """``findings``, when given, are the inference findings already detected over ``history`` (with the same
    ``min_change`` and ``alpha``); otherwise they are detected here. ``comparisons`` (rows of the ``comparisons``
    table), when given, put each slower or faster change beside the newest interleaved regression check of its
    configuration against a baseline build; a change without one says its verdict comes from history alone."""
    judged: list[Comparison] = (comparisons_from_findings(findings) if findings is not None
                                else compare_latest_runs(history, min_change=min_change, alpha=alpha))
    by_key = {tuple(c.key[k] for k in CONFIG_KEY): c for c in judged}
    latest = history.filter(pl.col("status") == "ok").sort("_written_at", descending=True).unique(
        subset=CONFIG_KEY, keep="first").sort(["target", "family", "preset", "batch_size", "seq_len", "precision"])
    rows = []
    for row in latest.iter_rows(named=True):
        comparison = by_key[tuple(row[k] for k in CONFIG_KEY)]
        rows.append({**row, "verdict": comparison.verdict, "change_pct": comparison.change_pct})
    # Inference failures of a configuration that has since been measured successfully are history, not news.
    measured = set(by_key)
    failures = [
        {**f, "message_line": (f["message"] or "").splitlines()[0][:200]}
        for f in failures_latest.sort(["scenario", "target", "family", "preset"]).iter_rows(named=True)
        if f["scenario"] != "inference" or tuple(f[k] for k in CONFIG_KEY) not in measured
    ]
    verdicts: dict[str, int] = {}
    for c in judged:
        verdicts[c.verdict] = verdicts.get(c.verdict, 0) + 1
    checked = checked_changes(judged, comparisons, run_times(history))
    context = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "n_configs": len(rows),
        "targets": sorted(latest["target"].unique().to_list()) or ["(none)"],
        "min_change_pct": round(min_change * 100, 1),
        "alpha": alpha,
        "verdict_counts": sorted(verdicts.items()),
        "changes": [c.change for c in checked],
        # the same changes, each with its interleaved check or None (regression_checks_view.CheckedChange)
        "checked_changes": checked,
        "any_unchecked": any(c.check is None for c in checked),
        "from_history": FROM_HISTORY,
        "how_to_check": HOW_TO_CHECK,
        "any_previous": any(c.previous_run for c in judged),
        "rows": rows,
        "failures": failures,
        "recommendations": list(recommendations.sort(["family", "preset", "objective"]).iter_rows(named=True)),
        "predictor": predictor_schema,
    }
    env = _environment(template_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "regression_report.md"
    html = out_dir / "regression_report.html"
    _atomic_write(md, env.get_template("regression_report.md.j2").render(**context))
    _atomic_write(html, env.get_template("regression_report.html.j2").render(**context))
    return RenderedReport(md, html, len(rows), len(failures), verdicts)
