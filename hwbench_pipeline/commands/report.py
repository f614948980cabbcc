"""``hwbench report``: render the regression and comparison reports from the warehouse, outside Dagster.

    hwbench report                                  # both reports into data/reports/
    hwbench report --kind comparison --out /tmp/r   # HTML, Markdown (PNG charts) and PDF
    hwbench report --templates my_templates/        # a folder whose templates override the built-in ones

Reads the warehouse and writes report files only (the ``regression_report`` asset also stores its findings
in the regressions table; this command does not).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwbench_pipeline.cli import UsageError
from hwbench_pipeline.commands.argtypes import open_fraction
from hwbench_pipeline.paths import default_data_dir
from hwbench_pipeline.report.compare import DEFAULT_MIN_CHANGE

KINDS = ("regression", "comparison")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render the regression and comparison reports from the warehouse")
    p.add_argument("--kind", choices=[*KINDS, "all"], default="all")
    p.add_argument("--data-dir", default=None, help="data directory (default: $HWBENCH_DATA_DIR or data/)")
    p.add_argument("--out", default=None, help="output folder (default: DATA_DIR/reports)")
    p.add_argument("--templates", default=None,
                   help="folder of templates that override the built-in ones (same file names)")
    p.add_argument("--min-change", type=open_fraction, default=DEFAULT_MIN_CHANGE,
                   help=f"smallest relative change the regression report flags (default {DEFAULT_MIN_CHANGE})")
    p.add_argument("--alpha", type=open_fraction, default=0.01, help="significance level of Mann–Whitney U")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from hwbench_pipeline.warehouse.store import Warehouse

    data_dir = Path(args.data_dir or default_data_dir())
    warehouse = Warehouse(data_dir)
    if not warehouse.files("inference_results"):
        raise UsageError(f"no inference results in {data_dir}: run 'hwbench run' (or 'make run') first, or pass "
                         "--data-dir")
    templates = Path(args.templates) if args.templates else None
    if templates is not None and not templates.is_dir():
        raise UsageError(f"--templates {templates} is not a folder")
    out = Path(args.out) if args.out else data_dir / "reports"
    kinds = KINDS if args.kind == "all" else (args.kind,)
    if "regression" in kinds:
        from hwbench_pipeline.report.render import render_regression_report

        schema = data_dir / "predictor" / "latency_model.schema.json"
        rendered = render_regression_report(
            warehouse.read("inference_results"), warehouse.read("failures", latest=True),
            warehouse.read_newest_run("recommendations"),
            json.loads(schema.read_text()) if schema.exists() else None,
            out, template_dir=templates, min_change=args.min_change, alpha=args.alpha,
            comparisons=warehouse.read("comparisons"))
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(rendered.verdicts.items()))
        print(f"regression report: {rendered.n_configs} configurations ({verdicts}), {rendered.n_failures} failures")
        print(f"  {rendered.html}\n  {rendered.markdown}")
    if "comparison" in kinds:
        from hwbench_pipeline.report.comparison import render_comparison_report, report_predictions

        report = render_comparison_report(warehouse, out, template_dir=templates,
                                          predictions=report_predictions(warehouse, data_dir / "predictor"))
        print(f"comparison report: {report.n_configs} configurations, {report.n_runs} runs, {report.n_charts} charts"
              + (f" (empty sections: {', '.join(report.empty_sections)})" if report.empty_sections else ""))
        print(f"  {report.html}\n  {report.markdown}\n  {report.pdf}")
    return 0
