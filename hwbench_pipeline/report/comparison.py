"""The comparison report: every target side by side, as an HTML page, a Markdown file and a PDF.

The sections (:mod:`hwbench_pipeline.report.comparison_sections` for inference,
:mod:`hwbench_pipeline.report.precision_section` for precision against quality,
:mod:`hwbench_pipeline.report.training_sections` for training and distributed training,
:mod:`hwbench_pipeline.report.generation_section` for generation, :mod:`hwbench_pipeline.report.interleaved_section`
for the interleaved comparisons of the ``comparisons`` table, :mod:`hwbench_pipeline.report.planner_section` for
the benchmark planner's learning curves and newest plan) are drawn as PNG
files for the Markdown and the PDF, and as interactive Plotly charts in the HTML page, which embeds plotly.js
so it works offline. The HTML and Markdown come from Jinja templates (a user's template folder is searched
first); the PDF is drawn from the same sections (:mod:`hwbench_pipeline.report.pdf`). Every file is written
under a temporary name and renamed into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import polars as pl

from hwbench_pipeline.report import charts
from hwbench_pipeline.report.comparison_sections import (
    ReportData,
    Section,
    batch_section,
    change_points_from_regressions,
    compatibility_section,
    distribution_section,
    history_section,
    load_report_data,
    normalize_change_points,
    overview_table,
    prediction_section,
    roofline_section,
)
from hwbench_pipeline.report.generation_section import generation_section
from hwbench_pipeline.report.interleaved_section import MEASURED_APART, interleaved_section
from hwbench_pipeline.report.planner_section import planner_section, read_curves
from hwbench_pipeline.report.precision_section import precision_section
from hwbench_pipeline.report.training_sections import distributed_section, training_section
from hwbench_pipeline.warehouse.store import Warehouse

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
NAME = "comparison_report"
IMAGE_DIR = f"{NAME}_files"


@dataclass
class ComparisonReport:
    html: Path
    markdown: Path
    pdf: Path
    images: list[Path]
    n_configs: int  # configurations with a successful measurement
    n_failures: int  # configurations whose newest attempt failed
    n_runs: int
    n_charts: int
    empty_sections: list[str]


def _environment(template_dir: Path | None) -> jinja2.Environment:
    # A user's template folder, when given, takes precedence over the built-in templates.
    paths = [str(template_dir)] if template_dir else []
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([*paths, str(TEMPLATE_DIR)]),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]), keep_trailing_newline=True)
    env.filters["md_cell"] = md_cell
    return env


def md_cell(value: object) -> str:
    """A value as the text of one Markdown table cell: a '|' or a line break would end the cell or the row, and
    a '<' could open an HTML tag that hides the rest."""
    return " ".join(str(value).split()).replace("|", "\\|").replace("<", "&lt;")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _draw_images(sections: list[Section], image_dir: Path) -> dict[str, Path]:
    image_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path] = {}
    for section in sections:
        for chart in section.charts:
            if chart.key in images:
                raise ValueError(f"two charts share the key {chart.key!r}")
            images[chart.key] = charts.draw_png(chart, image_dir / f"{chart.key}.png")
    # Charts of an earlier render that this one no longer has would be stale: remove them.
    for old in image_dir.glob("*.png"):
        if old not in images.values():
            old.unlink(missing_ok=True)
    return images


def _context(data: ReportData, sections: list[Section], images: dict[str, Path]) -> dict:
    views = [{**section.__dict__,
              "charts": [{"key": c.key, "title": c.title, "image": f"{IMAGE_DIR}/{images[c.key].name}"}
                         for c in section.charts]} for section in sections]
    return {
        "title": "hwbench comparison report",
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "n_configs": data.measured.height,
        "n_failures": data.failures.height,
        "n_runs": data.history["run_id"].n_unique(),
        "hosts": sorted(set(data.measured["host"].drop_nulls())),
        "git_revisions": sorted(set(data.measured["git_revision"].drop_nulls())),
        "overview": overview_table(data),
        "measured_apart": MEASURED_APART,
        "sections": views,
    }


def report_predictions(warehouse: Warehouse, predictor_dir: Path) -> pl.DataFrame:
    """Inference predictions for the report: the ``predictions`` table (configurations nobody measured) and
    the saved predictor's leave-architecture-out predictions of measured ones (what predicted-against-measured
    plots). Either may be missing."""
    from hwbench_pipeline.predict.predictor import held_out_predictions

    frames = [warehouse.read("predictions", latest=True).drop("_partition", "_written_at")]
    held_out = held_out_predictions(predictor_dir)
    if held_out is not None:
        frames.append(held_out.drop("measured_p50_ms"))
    return pl.concat(frames, how="diagonal_relaxed").filter(pl.col("mode") == "inference")


def render_comparison_report(warehouse: Warehouse, out_dir: Path, *, template_dir: Path | None = None,
                             change_points: dict | None = None,
                             predictions: pl.DataFrame | list[dict] | None = None) -> ComparisonReport:
    """Write ``comparison_report.html``, ``.md`` (charts as PNG files in ``comparison_report_files/``) and
    ``.pdf`` into ``out_dir``.

    ``change_points`` maps a configuration (a tuple of ``CONFIG_KEY`` values, in that order) to the run ids
    where a new level begins; by default they come from the ``regressions`` table. ``predictions`` (rows with
    ``CONFIG_KEY`` and ``value``, optionally ``metric``, ``interval_low``, ``interval_high``, ``source``), such
    as a predictor's held-out evaluation, default to the ``predictions`` table.
    """
    from hwbench_pipeline.report.pdf import write_pdf

    data = load_report_data(warehouse, predictions)
    points = normalize_change_points(change_points if change_points is not None
                                      else change_points_from_regressions(warehouse))
    sections = [batch_section(data), distribution_section(data), compatibility_section(data),
                precision_section(data), interleaved_section(data.comparisons), history_section(data, points),
                roofline_section(data), prediction_section(data),
                training_section(data.training), distributed_section(data.distributed),
                generation_section(data.generation, data.generation_failures),
                planner_section(read_curves(warehouse.data_dir), data.plans, data.history)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = _draw_images(sections, out_dir / IMAGE_DIR)
    context = _context(data, sections, images)
    env = _environment(template_dir)
    md, html, pdf = (out_dir / f"{NAME}.{ext}" for ext in ("md", "html", "pdf"))
    _atomic_write(md, env.get_template(f"{NAME}.md.j2").render(**context))
    figures = {c.key: charts.figure_json(c) for s in sections for c in s.charts}
    _atomic_write(html, env.get_template(f"{NAME}.html.j2").render(
        **context, figures=figures, plotly_js=charts.plotly_bundle() if figures else ""))
    write_pdf(pdf, context, sections, images)
    return ComparisonReport(html=html, markdown=md, pdf=pdf, images=list(images.values()),
                            n_configs=context["n_configs"], n_failures=context["n_failures"], n_runs=context["n_runs"],
                            n_charts=len(images), empty_sections=[s.key for s in sections if s.empty])
