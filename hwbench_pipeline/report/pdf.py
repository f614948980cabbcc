"""The comparison report as a PDF, drawn with fpdf2 from the same sections as the HTML and Markdown.

Landscape A4, one section per page (long tables and several charts flow onto more), a bookmark per section;
charts two to a row where they fit half the page.
Text is set in DejaVu Sans, the TrueType font matplotlib ships, so "×", "±" and "…" print without a system
font.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwbench_pipeline.report.comparison_sections import Section, Table

FONT = "DejaVu"
IMAGE_DPI = 130  # the resolution charts.draw_png writes; it sets a chart's printed size


GAP = 6.0  # mm between two charts side by side
EMPTY_COLOR = (138, 90, 0)


def _font_files() -> dict[str, Path]:
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return {"": ttf / "DejaVuSans.ttf", "B": ttf / "DejaVuSans-Bold.ttf"}


def _new_document(title: str):
    from fpdf import FPDF

    pdf = FPDF(orientation="landscape", unit="mm", format="A4")
    pdf.set_margins(12, 12, 12)
    pdf.set_auto_page_break(True, margin=12)
    for style, path in _font_files().items():
        pdf.add_font(FONT, style, str(path))
    pdf.set_title(title)
    pdf.set_creator("hwbench")
    return pdf


def _paragraph(pdf, text: str, *, size: float = 9, color: tuple[int, int, int] = (0, 0, 0)) -> None:
    pdf.set_font(FONT, "", size)
    pdf.set_text_color(*color)
    pdf.multi_cell(0, size * 0.5, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


def _column_widths(pdf, table: Table, padding: float) -> list[float]:
    """Each column as wide as its widest cell, or its heading on two lines (headings wrap), at most 70 mm; where
    that is wider than the page, narrower (see ``_fit``)."""
    widths, words = [], []
    extra = 2 * padding + 1.0
    for i, heading in enumerate(table.columns):
        pdf.set_font(FONT, "B", 7)
        word = max(pdf.get_string_width(w) for w in heading.split())
        width = max(word, pdf.get_string_width(heading) / 2)
        pdf.set_font(FONT, "", 7)
        width = max([width, *(pdf.get_string_width(row[i]) for row in table.rows)])
        word = max([word, *(pdf.get_string_width(w) for row in table.rows for w in row[i].split())])
        widths.append(min(width + extra, 70.0))
        words.append(min(word + extra, widths[-1]))
    return _fit(widths, words, pdf.epw)


def _fit(widths: list[float], words: list[float], total: float) -> list[float]:
    """Widths that fill at most ``total``: each column keeps its longest word whole (``words``), and what the page
    has beyond those goes to each column in proportion to the text it would wrap, so long text wraps first."""
    if sum(widths) <= total:
        return widths
    spare, wanted = max(total - sum(words), 0.0), sum(widths) - sum(words)
    if wanted <= 0:  # every column is as wide as its longest word already: the table scales them all alike
        return widths
    return [word + (width - word) * spare / wanted for width, word in zip(widths, words, strict=True)]


def _table(pdf, table: Table) -> None:
    from fpdf.fonts import FontFace

    padding = 0.8
    widths = _column_widths(pdf, table, padding)
    pdf.set_font(FONT, "", 7)
    with pdf.table(col_widths=widths, width=min(pdf.epw, sum(widths)), align="LEFT",
                   text_align=tuple("RIGHT" if n else "LEFT" for n in table.numeric), line_height=3.6,
                   headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)), repeat_headings=1,
                   padding=padding) as grid:
        grid.row(table.columns)
        for row in table.rows:
            grid.row(row)
    pdf.ln(3)


def _natural_size(path: Path) -> tuple[float, float]:
    from PIL import Image

    with Image.open(path) as img:
        width_px, height_px = img.size
    return width_px / IMAGE_DPI * 25.4, height_px / IMAGE_DPI * 25.4


def _place_row(pdf, row: list[tuple[Path, float, float]], cell_width: float) -> None:
    """Charts side by side, each scaled to fit its cell and the page height; a new page when they do not fit."""
    fitted = []
    for path, width, height in row:
        scale = min(1.0, cell_width / width, (pdf.eph - 20) / height)
        fitted.append((path, width * scale, height * scale))
    tallest = max(h for _, _, h in fitted)
    if pdf.get_y() + tallest > pdf.h - pdf.b_margin:
        pdf.add_page()
    y = pdf.get_y()
    for i, (path, width, height) in enumerate(fitted):
        x = pdf.l_margin + i * (cell_width + GAP) + (cell_width - width) / 2
        pdf.image(str(path), x=x, y=y, w=width, h=height)
    pdf.set_y(y + tallest + 3)


def _charts(pdf, paths: list[Path]) -> None:
    """Two charts a row where each fits half the page at a readable scale, else one a row."""
    half = (pdf.epw - GAP) / 2
    pending: list[tuple[Path, float, float]] = []
    for path in paths:
        width, height = _natural_size(path)
        if width <= half * 1.3:
            pending.append((path, width, height))
            if len(pending) == 2:
                _place_row(pdf, pending, half)
                pending = []
            continue
        if pending:
            _place_row(pdf, pending, half)
            pending = []
        _place_row(pdf, [(path, width, height)], pdf.epw)
    if pending:
        _place_row(pdf, pending, half)


def _contents(pdf, sections: list[Section]) -> list[int]:
    """A line per section, linked to its page (set when the section starts), saying what it holds or why not."""
    pdf.set_font(FONT, "B", 12)
    pdf.cell(0, 8, "Contents", new_x="LMARGIN", new_y="NEXT")
    links = []
    for section in sections:
        links.append(pdf.add_link())
        pdf.set_font(FONT, "", 10)
        pdf.set_text_color(31, 95, 168)
        pdf.cell(pdf.get_string_width(section.title) + 1, 6, section.title, link=links[-1])
        charts, tables = len(section.charts), len(section.tables)
        status = (f"no data: {section.empty}" if section.empty
                  else f"{charts} chart{'s' * (charts != 1)}, {tables} table{'s' * (tables != 1)}")
        pdf.set_font(FONT, "", 8)
        pdf.set_text_color(*(EMPTY_COLOR if section.empty else (90, 90, 90)))
        pdf.cell(0, 6, f"  {status}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    return links


def write_pdf(path: Path, context: dict, sections: list[Section], images: dict[str, Path]) -> Path:
    """Write the report to ``path`` (under a temporary name, then renamed into place)."""
    pdf = _new_document(context["title"])
    pdf.add_page()
    pdf.set_font(FONT, "B", 18)
    pdf.cell(0, 10, context["title"], new_x="LMARGIN", new_y="NEXT")
    summary = (f"Generated {context['generated_at']}: {context['n_configs']} configurations measured in "
               f"{context['n_runs']} runs, {context['n_failures']} failing. Every figure was measured, except those "
               f"labelled predicted. {context['measured_apart']}")
    if context["hosts"]:
        summary += f" Hosts: {', '.join(context['hosts'])}."
    if context["git_revisions"]:
        summary += f" Git revisions: {', '.join(context['git_revisions'])}."
    _paragraph(pdf, summary)
    _table(pdf, context["overview"])
    links = _contents(pdf, sections)
    for section, link in zip(sections, links, strict=True):
        pdf.add_page()
        pdf.set_link(link, page=pdf.page)
        pdf.start_section(section.title)
        pdf.set_font(FONT, "B", 14)
        pdf.cell(0, 8, section.title, new_x="LMARGIN", new_y="NEXT")
        _paragraph(pdf, section.intro)
        if section.empty:
            _paragraph(pdf, section.empty, size=10, color=EMPTY_COLOR)
            continue
        _charts(pdf, [images[chart.key] for chart in section.charts])
        for table in section.tables:
            _table(pdf, table)
        for note in section.notes:
            _paragraph(pdf, note)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pdf.output(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
