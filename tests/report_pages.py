"""Reading a rendered comparison report back in tests: its Plotly figures, sections, tables and PDF text."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path


def figures(page: str) -> dict[str, dict]:
    """Each embedded figure's JSON by its key (``figure-<key>`` in the page)."""
    found = re.findall(r'<script type="application/json" id="figure-([a-z0-9-]+)">(.*?)</script>', page, flags=re.S)
    return {key: json.loads(text) for key, text in found}


def traces(figure: dict) -> dict[str, dict]:
    return {t["name"]: t for t in figure["data"]}


def section_html(page: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, flags=re.S)
    assert match, f"no section {key}"
    return match.group(1)


def tables(section: str) -> list[list[dict[str, str]]]:
    """Each table of a section as rows of heading -> cell text."""
    found = []
    for table in re.findall(r"<table[^>]*>(.*?)</table>", section, flags=re.S):
        headings = [html.unescape(h) for h in re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table, flags=re.S)]
        rows = [re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
                for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], flags=re.S)]
        found.append([{h: html.unescape(cell) for h, cell in zip(headings, row, strict=True)} for row in rows])
    return found


def pdf_text(path: Path, first_page: int = 1) -> str:
    """The text of the PDF's pages from ``first_page`` (0 is the title page, whose contents name every section)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    try:
        return "\n".join(document[i].get_textpage().get_text_range() for i in range(first_page, len(document)))
    finally:
        document.close()
