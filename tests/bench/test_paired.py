"""Interleaved comparisons: the paired ratio, its interval and test, the verdict, and two configurations measured
A B A B by fresh processes."""

import json
import statistics
import subprocess
import sys

import numpy as np
import pytest

from hwbench_pipeline.bench.compare import Side, measure_interleaved
from hwbench_pipeline.bench.launchers.process import ProcessLauncher
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario
from hwbench_pipeline.bench.trackers.paired import compare_pairs
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.warehouse.store import Warehouse


def test_a_shared_slow_stretch_cancels_in_the_pairs():
    # synthetic medians: B is 10 % slower than A, and the host drifts by ±30 % from pair to pair
    rng = np.random.default_rng(3)
    drift = rng.uniform(0.7, 1.3, size=8)
    a = list(10.0 * drift * rng.normal(1, 0.005, size=8))
    b = list(11.0 * drift * rng.normal(1, 0.005, size=8))
    result = compare_pairs(a, b)
    assert result.verdict == "slower" and result.ratio == pytest.approx(1.10, rel=0.02)
    assert result.low > 1.0 and result.p_value < 0.01 and result.pairs == 8
    assert "slower" in result.sentence("A", "B") and "8 interleaved pairs" in result.sentence("A", "B")
    assert compare_pairs(b, a).verdict == "faster"


def test_equal_sides_are_the_same_and_few_noisy_pairs_are_inconclusive():
    rng = np.random.default_rng(4)
    a = list(rng.normal(10, 0.05, size=8))
    b = list(np.asarray(a) * rng.normal(1.0, 0.005, size=8))
    assert compare_pairs(a, b).verdict == "same"
    assert compare_pairs([10.0, 10.0, 10.0], [10.0, 12.0, 9.0]).verdict == "inconclusive"
    # five pairs, all 20 % slower: the interval's coverage (94 %) is too low for a verdict
    assert compare_pairs([10.0] * 5, [12.0] * 5).verdict == "inconclusive"
    assert compare_pairs([10.0] * 6, [12.0] * 6).verdict == "slower"


def test_pairs_must_match_and_a_threshold_be_positive():
    with pytest.raises(ValueError):
        compare_pairs([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        compare_pairs([], [])
    with pytest.raises(ValueError):
        compare_pairs([1.0], [1.0], threshold=0)


def test_two_batch_sizes_measured_interleaved_are_told_apart(tmp_path):
    rule = StoppingRule(min_samples=5, max_seconds=0.3, warmup_max_seconds=0.2, processes=1, max_processes=1)
    scenario = InferenceScenario()
    launcher = ProcessLauncher(scenario.measure, str(tmp_path))
    small, large = (InferenceConfig("bert", "tiny", "cpu-torch", b, 16, threads=1, rule=rule) for b in (1, 32))
    a, b = Side("batch 1", small, launcher), Side("batch 32", large, launcher)
    order = []
    result = measure_interleaved(a, b, scenario, 6, "paired", on_pair=lambda i, ra, rb: order.append(
        (ra["started_at"], rb["started_at"])))
    assert result.failure is None
    assert len(a.rows) == len(b.rows) == 6 and len(order) == 6
    # each a fresh process run in turn, A B, then B A, … (by start time: pids wrap)
    assert [a_start < b_start for a_start, b_start in order] == [True, False] * 3
    # 32 sequences take longer than one, disturbed host or not
    assert statistics.median(r["p50_ms"] for r in b.rows) > 1.5 * statistics.median(r["p50_ms"] for r in a.rows)
    # the comparison keeps the undisturbed pairs; a verdict needs six of them
    kept = 6 - result.dropped_pairs
    assert (result.comparison.pairs if result.comparison else 0) == kept
    if kept == 6:
        assert result.comparison.verdict == "slower" and result.comparison.p_value < 0.05
    elif kept:
        assert result.comparison.verdict == "inconclusive" and result.comparison.ratio > 1.5


@pytest.mark.slow
def test_compare_against_a_baseline_build_runs_that_builds_bench_interleaved(tmp_path):
    out = tmp_path / "compare.json"
    done = subprocess.run([sys.executable, "-m", "hwbench_pipeline.cli", "compare", "--model", "bert", "--preset",
                           "tiny", "--seq", "16", "--threads", "1", "--pairs", "2", "--seconds-per-process", "0.3",
                           "--baseline-python", sys.executable, "--json", str(out), "--store", "--data-dir",
                           str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())  # written whatever came of it
    assert report["a"]["label"] == "baseline" and report["b"]["label"] == "current"
    assert len(report["a"]["rows"]) == len(report["b"]["rows"]) == 2
    assert all(r["build_python"] == sys.executable for r in report["a"]["rows"])
    assert all("build_python" not in r for r in report["b"]["rows"])
    if report["dropped_pairs"] == 2:  # a busy host disturbed both pairs: the command says so and fails
        assert done.returncode == 1 and "disturbed" in done.stdout
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert report["comparison"]["pairs"] + report["dropped_pairs"] == 2
        assert "interleaved pairs" in done.stdout and report["comparison"]["verdict"] == "inconclusive"
    # --store keeps the comparison, whatever came of it, in the warehouse's comparisons table
    (stored,) = Warehouse(tmp_path / "data").read("comparisons").iter_rows(named=True)
    assert (stored["kind"], stored["purpose"], stored["build_a"]) == ("builds", "comparison", sys.executable)
    assert stored["pairs"] + stored["dropped_pairs"] == 2 and stored["pairs_asked"] == 2


@pytest.mark.parametrize("args, message", [
    (["--target", "cpu-torch"], "exactly two sides"),
    (["--precision", "fp32,bf16", "--batch", "1,2"], "one batch size"),
    (["--precision", "fp32,bf16", "--threads", "0"], "--threads must be between 1"),
    (["--precision", "fp32,bf16", "--seq", "0"], "positive"),
    (["--precision", "fp32,int3"], "unknown precision"),
    (["--precision", "fp32,bf16", "--json", "/nonexistent-dir/out.json"], "--json"),
])
def test_compare_refuses_bad_input_in_one_line_before_measuring(args, message):
    done = subprocess.run([sys.executable, "-m", "hwbench_pipeline.cli", "compare", "--model", "bert", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def _process_row(p50: float, contaminated: bool = False) -> dict:
    return {"status": "ok", "p50_ms": p50, "contaminated": contaminated}


def test_a_comparison_row_keeps_each_sides_recipe_and_only_the_compared_pairs_medians():
    from datetime import UTC, datetime

    from hwbench_pipeline.bench.compare import InterleavedResult, comparison_row

    rule = StoppingRule(max_seconds=0.5, processes=1, max_processes=1)
    dynamic, static = (InferenceConfig("bert", "tiny", "cpu-torch", 1, 16, precision="int8", quantization=q,
                                       threads=1, rule=rule) for q in ("dynamic", "static"))
    a = Side("int8-dynamic", dynamic, launcher=None, rows=[_process_row(10.0), _process_row(10.2, True)])
    b = Side("int8-static", static, launcher=None, rows=[_process_row(8.0), _process_row(8.1)])
    compared = compare_pairs([10.0], [8.0])
    row = comparison_row(InterleavedResult(a, b, compared, 1, a_medians=[10.0], b_medians=[8.0]), run_id="r",
                         started_at=datetime.now(UTC), purpose="comparison", pairs_asked=2)
    assert (row["kind"], row["precision_a"], row["precision_b"]) == ("precisions", "int8-dynamic", "int8-static")
    assert row["medians_a_ms"] == [10.0] and row["pairs"] == 1 and row["dropped_pairs"] == 1
    assert row["host"] and row["finished_at"] >= row["started_at"]
    # a failed process: nothing was compared, and the row says so without medians
    failure = {"status": "failed", "target": "cpu-torch", "precision": "int8", "failure_class": "runtime_error",
               "message": "boom\nmore"}
    failed = comparison_row(InterleavedResult(a, b, None, 0, failure=failure), run_id="r",
                            started_at=datetime.now(UTC), purpose="comparison", pairs_asked=2)
    assert failed["verdict"] == "failed" and failed["medians_a_ms"] == [] and failed["median_a_ms"] is None
    assert failed["sentence"] == "failed: cpu-torch int8: runtime_error: boom"
