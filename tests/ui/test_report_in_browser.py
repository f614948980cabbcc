"""The comparison report as a reader opens it: the HTML file from disk in headless Chromium with the network
off. Plotly is embedded, so every chart must be drawn (an SVG plot in each chart's div) and the page is saved
as a screenshot with the test output."""

from __future__ import annotations

import re
import subprocess

import pytest
from test_webserver_e2e import ARTIFACTS, chromium, chromium_command, png_size

from hwbench_pipeline.report.comparison import render_comparison_report
from hwbench_pipeline.warehouse.store import Warehouse

pytestmark = pytest.mark.slow


#: no fetch can succeed: a chart that needed the network would stay empty
OFFLINE = ("--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>")


def dump_dom(browser: str, url: str, profile_dir) -> str:
    """The DOM once the page's scripts have run (Plotly draws into it)."""
    done = subprocess.run(chromium_command(browser, profile_dir, *OFFLINE, "--dump-dom", url), capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_html_report_draws_every_chart_offline(measured_warehouse, tmp_path):
    browser = chromium()
    report = render_comparison_report(Warehouse(measured_warehouse), tmp_path / "report")
    assert report.n_charts > 0
    url = report.html.as_uri()
    dom = dump_dom(browser, url, tmp_path / "chromium-dom")
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div class="chart[^"]*" id="chart-([a-z0-9-]+)"', dom)]
    assert len(starts) == report.n_charts, [key for _, key in starts]
    # each chart's div, up to the next one, holds the SVG Plotly drew
    ends = [start for start, _ in starts[1:]] + [len(dom)]
    undrawn = [key for (start, key), end in zip(starts, ends, strict=True) if 'class="main-svg"' not in dom[start:end]]
    assert not undrawn, f"charts not drawn: {undrawn}"

    path = ARTIFACTS / "comparison_report.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    subprocess.run(chromium_command(browser, tmp_path / "chromium-shot", *OFFLINE, f"--screenshot={path}", url),
                   capture_output=True, text=True, timeout=180)
    print(f"\nscreenshot of {url}: {path}")
    assert png_size(path) == (1600, 1000) and path.stat().st_size > 20_000
