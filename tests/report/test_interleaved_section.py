"""Interleaved comparisons in both reports: the comparison report's section (newest comparison per key, regression
checks left to the other report, an empty table reported as an empty section) and the regression report's
interleaved checks beside the changes the history flags.

The rows are written by hand in the comparisons table's shape, their figures from the real pair statistics
(``compare_pairs``) of made-up process medians: what is under test is how the reports show them."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import report_pages
from key_columns import IDENTITY

from hwbench_pipeline.bench.trackers.paired import compare_pairs
from hwbench_pipeline.report.comparison import render_comparison_report
from hwbench_pipeline.report.interleaved_section import NO_COMPARISONS
from hwbench_pipeline.report.regression_checks_view import FROM_HISTORY, regression_check, run_times
from hwbench_pipeline.report.render import render_regression_report
from hwbench_pipeline.warehouse.store import Warehouse

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
A_MEDIANS = [10.0, 10.4, 9.8, 10.1, 10.3, 9.9, 10.2, 10.0]
BASELINE = "/checkouts/main/.venv/bin/python"


def _row(label_a: str, label_b: str, factor: float, *, purpose: str = "comparison", kind: str = "targets",
         minutes: int = 0, **fields) -> dict:
    """A comparisons row of B = A × ``factor`` (with a little noise per pair), started ``minutes`` after T0."""
    rng = np.random.default_rng(minutes)
    b_medians = [a * factor * (1 + rng.normal(0, 0.003)) for a in A_MEDIANS]
    c = compare_pairs(A_MEDIANS, b_medians)
    row = {"run_id": f"cmp-{minutes}", "started_at": T0 + timedelta(minutes=minutes), "purpose": purpose,
           "kind": kind, "label_a": label_a, "label_b": label_b, "family": "bert", "preset": "tiny",
           "config_hash": IDENTITY["config_hash"], "batch_size": 1, "seq_len": 16, "threads": 1,
           "target_a": "cpu-torch", "target_b": "cpu-onnxruntime", "precision_a": "fp32", "precision_b": "fp32",
           "build_a": "this build", "build_b": "this build", "seconds_per_process": 0.5, "pairs_asked": 8,
           "pairs": c.pairs, "dropped_pairs": 0, "verdict": c.verdict, "ratio": c.ratio, "low": c.low,
           "high": c.high, "coverage": c.coverage, "p_value": c.p_value, "threshold": c.threshold,
           "median_a_ms": float(np.median(A_MEDIANS)), "median_b_ms": float(np.median(b_medians)),
           "medians_a_ms": A_MEDIANS, "medians_b_ms": b_medians, "sentence": c.sentence(label_a, label_b),
           "git_revision": "abc123", "host": "h"}
    return {**row, **fields}


def _check(factor: float, *, minutes: int = 0, **fields) -> dict:
    """A regression check: bert/tiny on cpu-torch fp32, the baseline build (A) against this build (B)."""
    return _row("baseline", "current", factor, purpose="regression check", kind="builds", minutes=minutes,
                **{"target_b": "cpu-torch", "build_a": BASELINE, **fields})


def _write(warehouse: Warehouse, rows: list[dict]) -> None:
    for row in rows:  # a run apiece, as profiles and regression reports store them
        warehouse.write("comparisons", [row], run_id=row["run_id"], partition="all")


def test_a_comparison_shows_its_verdict_figures_and_sentence_in_every_format(tmp_path):
    warehouse = Warehouse(tmp_path / "data")
    onnx = _row("cpu-torch", "cpu-onnxruntime", 0.8)  # B is 20 % faster
    bf16 = _row("fp32", "bf16", 1.0, kind="precisions", minutes=1, target_b="cpu-torch", precision_b="bf16",
                dropped_pairs=1, pairs_asked=9)
    _write(warehouse, [onnx, bf16])
    assert (onnx["verdict"], bf16["verdict"]) == ("faster", "same")
    report = render_comparison_report(warehouse, tmp_path / "out")
    assert "interleaved" not in report.empty_sections
    md, html = report.markdown.read_text(), report.html.read_text()
    assert '<section id="interleaved">' in html and "## Interleaved comparisons" in md
    for text in (md, html):
        assert "interleaved pairs of fresh processes" in text and "measured apart" in text
        assert "cpu-onnxruntime is faster than cpu-torch" in text and "interleaved pairs)" in text
        assert "no difference beyond ±5 %" in text
    change = f"{100 * (onnx['ratio'] - 1):+.1f}"
    interval = f"{100 * (onnx['low'] - 1):+.1f} … {100 * (onnx['high'] - 1):+.1f} ({100 * onnx['coverage']:.1f} %)"
    line = next(line for line in md.splitlines() if line.startswith("| cpu-torch | cpu-onnxruntime |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:11] == ["cpu-torch", "cpu-onnxruntime", "targets, fp32", "bert/tiny", "1", "16", "1", "faster",
                          change, interval, f"{onnx['p_value']:.2g}"]
    assert cells[11:14] == ["8 of 8", "0.5", "2026-03-02 09:00 UTC"]
    assert "| fp32 | bf16 | precisions, on cpu-torch |" in md and "| 8 of 9 (1 dropped) |" in md
    assert "2 comparisons: 1 faster, 1 same." in md
    # the target-by-target figures say how they were measured
    assert "Each target's figures come from its own partition, measured apart" in md

    text = report_pages.pdf_text(report.pdf, first_page=0)
    assert "Interleaved comparisons" in text and "cpu-onnxruntime" in text and "faster" in text


def test_the_newest_comparison_of_a_key_wins_and_regression_checks_stay_out(tmp_path):
    warehouse = Warehouse(tmp_path / "data")
    newer = _row("cpu-torch", "cpu-onnxruntime", 1.3, minutes=60)
    older = _row("cpu-torch", "cpu-onnxruntime", 0.8, minutes=0)
    # the older measurement is written last (an import, say): when it was measured decides, not when written
    _write(warehouse, [newer, older, _check(1.25, minutes=30)])
    report = render_comparison_report(warehouse, tmp_path / "out")
    md = report.markdown.read_text()
    assert "cpu-onnxruntime is slower than cpu-torch" in md and "is faster than" not in md
    assert md.count("| cpu-torch | cpu-onnxruntime |") == 1 and "1 comparison: 1 slower." in md
    assert "current is slower than baseline" not in md and BASELINE not in md


def test_no_comparisons_table_gives_an_empty_section_saying_why(tmp_path):
    warehouse = Warehouse(tmp_path / "data")
    report = render_comparison_report(warehouse, tmp_path / "out")
    assert "interleaved" in report.empty_sections
    for text in (report.markdown.read_text(), report.html.read_text()):
        assert NO_COMPARISONS in text

    # regression checks alone are the other report's: this section stays empty and says where they are
    _write(warehouse, [_check(1.2)])
    report = render_comparison_report(warehouse, tmp_path / "out")
    assert "interleaved" in report.empty_sections
    assert "The regression report shows 1 regression check against a baseline build." in \
        report.markdown.read_text()


def _history_row(run_id: str, minutes: int, samples: np.ndarray, family: str) -> dict:
    # sample lists stand in for two runs' raw latencies, as in test_compare.py
    p50 = float(np.median(samples))
    return {"run_id": run_id, "target": "cpu-torch", "family": family, "preset": "tiny", "batch_size": 1,
            "seq_len": 16, "precision": "fp32", "precision_ran": "fp32", "threads": 1, **IDENTITY, "status": "ok",
            "p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2, "throughput_samples_s": 1e3 / p50,
            "achieved_gflops": None, "pct_of_peak": None, "above_peak": False, "peak_rss_mb": 300.0,
            "n_samples": len(samples), "samples_ms": [float(s) for s in samples], "contaminated": False,
            "stop_reason": "ci", "git_revision": run_id, "package_versions": "torch=2.13.0", "host": "h",
            "_written_at": datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=minutes)}


def _regression_report(tmp_path, comparisons: pl.DataFrame | None) -> str:
    """The regression report (Markdown) of bert and vit, both 20 % slower in the newest run than the one before."""
    rng = np.random.default_rng(0)
    base = 10 + rng.normal(0, 0.1, 50)
    history = pl.DataFrame([_history_row("r1", 0, base, "bert"), _history_row("r2", 1, base * 1.2, "bert"),
                            _history_row("r1", 0, base, "vit"), _history_row("r2", 1, base * 1.2, "vit")])
    empty = Warehouse(tmp_path / "empty")
    rendered = render_regression_report(history, empty.read("failures", latest=True), empty.read("recommendations"),
                                        None, tmp_path / "out", comparisons=comparisons)
    assert rendered.verdicts == {"slower": 2}
    # each unchecked change's cell, and the note under the table once
    assert rendered.html.read_text().count(FROM_HISTORY) == (3 if comparisons is None else 2)
    return rendered.markdown.read_text()


def test_a_flagged_change_shows_the_interleaved_check_of_its_configuration_beside_the_history(tmp_path):
    warehouse = Warehouse(tmp_path / "data")
    check = _check(1.19, minutes=10)
    # neither another thread count, nor another target's check, nor a profile's comparison is bert's check
    _write(warehouse, [check, _check(0.7, minutes=20, threads=2), _check(0.7, minutes=21, target_a="cpu-openvino"),
                       _row("cpu-torch", "cpu-onnxruntime", 0.7, minutes=22)])
    md = _regression_report(tmp_path, warehouse.read("comparisons"))
    assert check["verdict"] == "slower"
    bert = next(line for line in md.splitlines() if line.startswith("| cpu-torch bert/tiny"))
    assert f"| slower {100 * (check['ratio'] - 1):+.1f} % [" in bert and f"8 of 8 pairs, baseline {BASELINE}" in bert
    assert f"(2026-03-02 09:10 UTC): {check['sentence']}" in md and "interleaved pairs" in check["sentence"]
    # vit was never checked: its verdict comes from runs measured apart, and the report says how to check it
    vit = next(line for line in md.splitlines() if line.startswith("| cpu-torch vit/tiny"))
    assert vit.endswith(f"| none: the verdict is {FROM_HISTORY} |")
    assert "An interleaved check needs a baseline build" in md and "baseline_python" in md
    assert "--baseline-python" in md


def test_without_comparisons_every_change_says_its_verdict_comes_from_history(tmp_path):
    md = _regression_report(tmp_path, None)
    assert md.count(f"none: the verdict is {FROM_HISTORY}") == 2
    assert "Interleaved checks:" not in md and "baseline_python" in md


def test_the_newest_matching_check_is_picked_and_a_partial_key_matches_nothing():
    key = {"family": "bert", "preset": "tiny", "config_hash": IDENTITY["config_hash"], "batch_size": 1, "seq_len": 16,
           "threads": 1, "target": "cpu-torch", "precision": "fp32"}
    frame = pl.DataFrame([_check(1.2, minutes=5), _check(1.0, minutes=50, build_a="/other/python"),
                          _check(0.8, minutes=90, precision_a="bf16")])
    assert regression_check(key, frame, T0)["build_a"] == "/other/python"  # newest of the two fp32 checks
    assert regression_check({**key, "config_hash": "another-model"}, frame, T0) is None
    assert regression_check({**key, "threads": None}, frame, T0) is None
    assert regression_check(key, pl.DataFrame(), T0) is None
    # a check made before the judged run was measured judged an older run: it is not this change's check
    assert regression_check(key, frame, T0 + timedelta(minutes=30))["build_a"] == "/other/python"
    assert regression_check(key, frame, T0 + timedelta(minutes=60)) is None
    assert regression_check(key, frame, None) is None
    # an int8 recipe is told apart by its spec: a dynamic-int8 check is not a static-int8 finding's
    int8 = pl.DataFrame([_check(1.2, minutes=5, precision_a="int8-dynamic", precision_b="int8-dynamic")])
    assert regression_check({**key, "precision": "int8", "quantization": "dynamic"}, int8, T0) is not None
    assert regression_check({**key, "precision": "int8", "quantization": "static"}, int8, T0) is None


def test_a_run_is_measured_when_its_last_configuration_started():
    history = pl.DataFrame({"run_id": ["r1", "r1", "r2"], "started_at": [T0, T0 + timedelta(minutes=3), None],
                            "_written_at": [T0 + timedelta(minutes=9)] * 3})
    assert run_times(history) == {"r1": T0 + timedelta(minutes=3), "r2": T0 + timedelta(minutes=9)}


def test_a_failed_check_shows_its_verdict_and_pairs_without_made_up_figures(tmp_path):
    warehouse = Warehouse(tmp_path / "data")
    failed = _check(1.0, minutes=10, verdict="failed", pairs=0, ratio=None, low=None, high=None, coverage=None,
                    p_value=None, sentence="failed: cpu-torch fp32: runtime_error: the baseline build crashed")
    _write(warehouse, [failed])
    md = _regression_report(tmp_path, warehouse.read("comparisons"))
    bert = next(line for line in md.splitlines() if line.startswith("| cpu-torch bert/tiny"))
    assert bert.endswith(f"| failed, 0 of 8 pairs, baseline {BASELINE} |") and "n/a" not in bert
    assert "(2026-03-02 09:10 UTC): failed: cpu-torch fp32: runtime_error: the baseline build crashed" in md
