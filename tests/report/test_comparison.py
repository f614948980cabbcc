"""The comparison report, rendered from a warehouse of real measurements: tiny bert and llama at two batch sizes,
two runs each, measured in-process with a short stopping rule, and bert at int8 in the second run; real failures
(wav2vec2 with fewer audio samples than its receptive field, on any CPU); a measured GEMM and copy peak;
naive predictions made from the measurements themselves (the report's job is to compare predictions with
measurements, whichever predictor made them)."""

import json
import re
import struct
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import report_pages

from hwbench_pipeline.bench.environment import environment_fields
from hwbench_pipeline.bench.peaks import measure_peaks
from hwbench_pipeline.bench.precision import parse_spec
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, measure_inference, run_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.report.charts import plotly_bundle
from hwbench_pipeline.report.comparison import render_comparison_report
from hwbench_pipeline.warehouse.schema import CONFIG_KEY
from hwbench_pipeline.warehouse.store import Warehouse

RULE = StoppingRule(ci_target=0.05, min_samples=10, max_seconds=0.2, warmup_min_calls=2, warmup_window=2,
                    warmup_max_seconds=0.1, processes=1, max_processes=1)
TARGET = "cpu-torch"
MEASURED = ("bert", "llama")
BATCHES = (1, 4)
RUNS = ("run-a", "run-b")
CATALOG = (*MEASURED, "wav2vec2", "t5", "qwen2")  # wav2vec2: fails only; t5: predicted only; qwen2: untested
SECTIONS = ("batch", "distributions", "compatibility", "precision", "interleaved", "history", "roofline", "predictions",
            "training", "distributed", "generation", "planner")
SECTION_TITLES = ("Latency and throughput against batch size", "Latency distributions", "Compatibility", "Precision",
                  "History and change points", "Roofline", "Predicted against measured")


def _config(family: str, batch: int, spec: str = "fp32") -> InferenceConfig:
    precision, quantization = parse_spec(spec)
    return InferenceConfig(family, "tiny", TARGET, batch, 16, precision=precision, quantization=quantization,
                           rule=RULE)


def _failures() -> list[dict]:
    """Real failures on any CPU: wav2vec2's 16 audio samples are shorter than its convolutions' receptive field,
    in fp32 and in int8 alike (a format the CPU refuses would depend on the CPU)."""
    return [run_configuration(_config("wav2vec2", 1, spec), "run-b") for spec in ("fp32", "int8-dynamic")]


def _key(cfg: InferenceConfig) -> tuple:
    return tuple(cfg.key_fields()[k] for k in CONFIG_KEY)


def _predictions(warehouse: Warehouse) -> list[dict]:
    """Two naive forecasts, both from measurements: run-b's configurations from run-a's medians (interval: run-a's
    95 % interval of the median), and t5, never measured, from the measured model nearest in parameter count."""
    results, catalog = warehouse.read("inference_results"), warehouse.read("models")
    run_a = results.filter(pl.col("run_id") == "run-a")
    rows = [{**{k: r[k] for k in CONFIG_KEY}, "value": r["p50_ms"], "interval_low": r["median_ci_low_ms"],
             "interval_high": r["median_ci_high_ms"], "source": "run-a's median"} for r in run_a.iter_rows(named=True)]
    t5_params = catalog.filter(pl.col("family") == "t5")["params"][0]
    nearest = run_a.filter(pl.col("batch_size") == 1).sort((pl.col("params") - t5_params).abs()).row(0, named=True)
    rows.append({**_config("t5", 1).key_fields(), "value": nearest["p50_ms"],
                 "source": f"nearest measured model by parameters ({nearest['family']})"})
    return [{"run_id": "predict-1", "mode": "naive", "metric": "p50_ms", "confidence": "low", **row} for row in rows]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from hwbench_pipeline.bench import models  # torch and transformers: only the tests that measure pay for them

    tmp = tmp_path_factory.mktemp("comparison")
    warehouse = Warehouse(tmp / "data")
    env = environment_fields()
    warehouse.write("models", [{"run_id": "catalog", **models.describe(f, "tiny"), "in_profile": True}
                               for f in CATALOG], run_id="catalog")
    peaks = measure_peaks("cpu", ("fp32",), 1, gemm_n=256, copy_mib=16)
    warehouse.write("hardware_targets", [{
        "run_id": "hw", "target": TARGET, "device_kind": "cpu", "backend": "torch", "device_name": env["cpu_model"],
        "precisions": "fp32", "peak_threads": 1, "peak_gflops_fp32": peaks["compute_gflops"]["fp32"]["value"],
        "peak_gbps": peaks["copy_gbps"]["value"], "peak_details": json.dumps(peaks), **env}], run_id="hw")
    for run in RUNS:
        rows = [measure_inference(_config(f, b), run) for f in MEASURED for b in BATCHES]
        if run == "run-b":
            rows.append(measure_inference(_config("bert", 1, "int8-dynamic"), run))
        warehouse.write("inference_results", rows, run_id=run, partition=TARGET)
    failures = _failures()
    assert {f["failure_class"] for f in failures} == {"runtime_error"}
    warehouse.write("failures", failures, run_id="run-b", partition=TARGET)
    warehouse.write("predictions", _predictions(warehouse), run_id="predict-1")
    change_points = {_key(_config("bert", 4)): ["run-b"], _key(_config("llama", 1)): ["no-such-run"]}
    out = tmp / "report"
    report = render_comparison_report(warehouse, out, change_points=change_points)
    return warehouse, report, peaks


@pytest.mark.slow
def test_html_is_self_contained_and_has_every_section(measured):
    warehouse, report, peaks = measured
    html = report.html.read_text()
    assert report.n_configs == 5 and report.n_failures == 2 and report.n_runs == 2
    # inference only: see test_training_sections.py and test_generation_section.py
    assert report.empty_sections == ["interleaved", "training", "distributed", "generation", "planner"]
    # Nothing is fetched: plotly.js is inline (its own text mentions map-tile URLs that only map traces use), and
    # the rest of the page has no external script, stylesheet, image, link or URL at all.
    bundle = plotly_bundle()
    assert html.count(bundle) == 1 and f"<script>{bundle}</script>" in html
    page = html.replace(bundle, "")
    assert not re.search(r"<script[^>]+src|<link|@import|url\(", page, flags=re.I)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", page, flags=re.I)
    assert "http" not in page.lower() and "//cdn" not in page.lower()
    for key in SECTIONS:
        assert f'<section id="{key}">' in html
    figures = report_pages.figures(html)
    assert len(figures) == report.n_charts == len(report.images)
    import plotly.graph_objects as go

    for figure in figures.values():
        go.Figure(figure)  # raises on any property plotly.js would not understand

    heatmap = figures["compatibility"]["data"][0]
    cells = {family: dict(zip(heatmap["x"], row, strict=True)) for family, row in zip(heatmap["y"], heatmap["text"],
                                                                                        strict=True)}
    # precision is a dimension of the grid: a row per family and precision
    failed = "failed:runtime_error"
    assert {row: cells[row][TARGET] for row in cells} == {
        **{f"{f} {spec}": "untested" for f in CATALOG for spec in ("fp32", "int8-dynamic")},
        "bert fp32": "measured", "bert int8-dynamic": "measured", "llama fp32": "measured",
        "wav2vec2 fp32": failed, "wav2vec2 int8-dynamic": failed, "t5 fp32": "predicted"}

    precision = figures["precision"]
    assert [t["name"] for t in precision["data"]] == ["int8-dynamic"]
    newest = warehouse.read("inference_results", latest=True).filter(
        (pl.col("family") == "bert") & (pl.col("batch_size") == 1))
    p50 = dict(zip(newest["quantization"], newest["p50_ms"], strict=True))
    # the speed-up over bert's fp32 row of the same configuration, against the int8 row's mean output error
    assert precision["data"][0]["y"] == [pytest.approx(p50["none"] / p50["dynamic"])]
    int8 = newest.filter(pl.col("quantization") == "dynamic")
    assert precision["data"][0]["x"] == [pytest.approx(int8["mean_rel_diff"][0])]

    history = figures["history-bert-tiny"]
    assert [s["x0"] for s in history["layout"]["shapes"]] == [1]  # run-b is the second run
    crosses = [t for t in history["data"] if t["name"] == "change point"]
    assert len(crosses) == 1 and crosses[0]["x"] == [1]
    assert "1 change points name a configuration or run that is not in the history" in html

    roof = [t for t in figures["roofline-cpu-torch"]["data"] if t["name"].startswith("roof fp32")]
    assert max(roof[0]["y"]) == pytest.approx(peaks["compute_gflops"]["fp32"]["value"])

    predicted = [t for t in figures["predicted-vs-measured"]["data"] if t["name"] == TARGET]
    assert len(predicted[0]["x"]) == len(MEASURED) * len(BATCHES)  # run-b's configurations; t5 was never measured
    assert "run-a&#39;s median" in html  # the predictions' source, in the table


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_markdown_links_valid_images_beside_it(measured):
    _, report, _ = measured
    md = report.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == report.n_charts >= 8
    from PIL import Image

    for link in links:
        path = report.markdown.parent / link
        width, height = _png_size(path)
        assert width > 300 and height > 150
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("L"))
        assert pixels.std() > 10  # something was drawn
    for title in SECTION_TITLES:
        assert f"## {title}" in md
    assert "| bert/tiny | cpu-torch | 4 |" in md
    assert not list(report.html.parent.rglob("*.tmp"))


@pytest.mark.slow
def test_pdf_has_every_section_and_renders_to_a_drawn_page(measured):
    _, report, _ = measured
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(report.pdf))
    try:
        assert len(document) >= 1 + len(SECTIONS)
        # Past the title page (whose contents list names every section too), each section has its own page.
        text = "\n".join(document[i].get_textpage().get_text_range() for i in range(1, len(document)))
        for title in SECTION_TITLES:
            assert title in text
        assert "runtime_error" in text
        for index in (0, 1):  # the title page, and the first chart page
            pixels = np.asarray(document[index].render(scale=1).to_pil().convert("L"))
            assert (pixels < 200).mean() > 0.01, f"page {index + 1} is blank"
    finally:
        document.close()


def test_empty_warehouse_says_so_in_every_format(tmp_path):
    warehouse, out = Warehouse(tmp_path / "data"), tmp_path / "out"
    # A prediction alone: its cell is 'predicted', and there is nothing measured to compare it with.
    prediction = {**_config("bert", 1).key_fields(), "metric": "p50_ms", "value": 1.0}
    report = render_comparison_report(warehouse, out, predictions=[prediction])
    assert report.n_charts == 1 and "compatibility" not in report.empty_sections
    html = report.html.read_text()
    assert report_pages.figures(html)["compatibility"]["data"][0]["text"] == [["predicted"]]
    assert "1 predictions, none of them for a configuration that has been measured" in html

    # Nothing at all, rendered into the same folder: every section says why it is empty, and the chart of the
    # render before is gone rather than left stale beside the new report.
    report = render_comparison_report(warehouse, out)
    assert report.n_charts == 0 and report.empty_sections == list(SECTIONS)
    assert not list((out / "comparison_report_files").glob("*.png"))
    html, md = report.html.read_text(), report.markdown.read_text()
    assert "Plotly" not in html and len(html) < 100_000 and "![" not in md  # no charts, so no plotly.js either
    for text in (html, md):
        assert "No configuration has been measured yet" in text
        assert "No predictions: the predictions table is empty" in text
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(report.pdf))
    assert len(document) == 1 + len(SECTIONS)
    document.close()


def test_user_templates_come_first(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "comparison_report.md.j2").write_text("custom md: {{ n_configs }} configs, "
                                                       "{{ sections | map(attribute='key') | join(',') }}\n")
    (templates / "comparison_report.html.j2").write_text("<p>custom html {{ title }}</p>\n")
    report = render_comparison_report(Warehouse(tmp_path / "data"), tmp_path / "out", template_dir=templates)
    assert report.markdown.read_text() == f"custom md: 0 configs, {','.join(SECTIONS)}\n"
    assert report.html.read_text() == "<p>custom html hwbench comparison report</p>\n"


def test_bad_inputs_get_one_line_errors(tmp_path):
    warehouse = Warehouse(tmp_path / "data")
    with pytest.raises(ValueError, match="change-point key must be a tuple"):
        render_comparison_report(warehouse, tmp_path / "out", change_points={"bert": ["r1"]})
    with pytest.raises(ValueError, match="predictions lack the columns value"):
        render_comparison_report(warehouse, tmp_path / "out", predictions=[_config("bert", 1).key_fields()])


def test_markdown_cells_cannot_break_the_table():
    from hwbench_pipeline.report.comparison import md_cell

    assert md_cell("RuntimeError: a|b\n  <class 'x'>") == "RuntimeError: a\\|b &lt;class 'x'>"
