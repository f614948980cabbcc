"""Regression checks against a baseline build: each flagged configuration that can be measured here is measured
again interleaved with the baseline build's processes; what cannot be is named with the reason."""

import sys

import polars as pl
import pytest

from hwbench_pipeline.bench.config_key import model_config_hash
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.report.regression_checks import CheckSettings, check_findings, checkable
from hwbench_pipeline.report.regressions import Finding
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.validation import comparisons_suite, validate


def _finding(verdict: str = "slower", change: float = 0.25, **key) -> Finding:
    base = {"target": "cpu-torch", "family": "bert", "preset": "tiny", "config_hash": model_config_hash("bert", "tiny"),
            "batch_size": 1, "seq_len": 16, "precision": "fp32", "quantization": "none", "cache_precision": "none",
            "attention": "default", "threads": 1, "measurement_method": "hwbench-2"}
    return Finding(scenario="inference", key={**base, **key}, metric="p50_ms", verdict=verdict,
                   current_run_id="r2", current_value=2.0, current_samples=50, baseline_value=1.6, change=change)


def test_only_flagged_inference_findings_measurable_here_are_checked():
    findings = [_finding(), _finding("unchanged", seq_len=32), _finding(target="cuda0-torch"),
                _finding(config_hash="0123456789abcdef"),
                Finding(**{**_finding().__dict__, "scenario": "training"})]
    chosen, skipped = checkable(findings, {"cpu-torch", "cpu-onnxruntime"})
    assert chosen == [findings[0]]
    # the largest change first, either way: -50 % (x0.5) before +25 %
    larger = _finding("faster", change=-0.5, seq_len=64)
    assert checkable([findings[0], larger], {"cpu-torch"})[0] == [larger, findings[0]]
    assert len(skipped) == 2 and "cuda0-torch is not on this host" in skipped[0]
    assert "config changed" in skipped[1]


@pytest.mark.slow
def test_a_flagged_configuration_is_measured_interleaved_against_the_baseline_build(tmp_path):
    said: list[str] = []
    rows = check_findings([_finding(), _finding("faster", seq_len=32, change=-0.5), _finding(target="cuda0-torch")],
                          sys.executable, run_id="check", lock_dir=host_lock_dir(), log=said.append,
                          settings=CheckSettings(pairs=1, seconds_per_process=0.2, max_checks=1))
    assert any("cuda0-torch is not on this host" in line for line in said)
    assert any("the 1 largest of 2 flagged changes" in line for line in said)
    (row,) = rows  # the largest change only: seq 32's
    assert (row["purpose"], row["kind"], row["label_a"], row["label_b"]) == (
        "regression check", "builds", "baseline", "current")
    assert row["build_a"] == sys.executable and row["build_b"] == "this build"
    assert (row["family"], row["seq_len"], row["target_a"], row["target_b"]) == ("bert", 32, "cpu-torch", "cpu-torch")
    assert row["verdict"] != "failed", row["sentence"]
    assert row["pairs"] + row["dropped_pairs"] == 1
    # one pair can never give a verdict: its interval covers too little
    assert row["verdict"] == "inconclusive"
    if row["pairs"]:
        assert "interleaved pairs" in row["sentence"] and row["median_a_ms"] > 0 and row["median_b_ms"] > 0
    path = Warehouse(tmp_path).write("comparisons", rows, run_id="check")
    stored = pl.read_parquet(path)
    assert validate(stored.drop("medians_a_ms", "medians_b_ms").to_pandas(), comparisons_suite()).success


@pytest.mark.slow
def test_a_baseline_build_that_cannot_run_fails_the_check_and_the_report_is_still_written(measured_warehouse,
                                                                                         tmp_path):
    import shutil

    import dagster as dg

    from hwbench_pipeline.assets.reports import regression_report
    from hwbench_pipeline.resources.warehouse import WarehouseResource

    data = tmp_path / "data"
    shutil.copytree(measured_warehouse, data)
    result = dg.materialize([regression_report], resources={"warehouse": WarehouseResource(data_dir=str(data))},
                            run_config={"ops": {"regression_report": {"config": {
                                "baseline_python": str(tmp_path / "no-such-python")}}}})
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["regressions_suite"].passed and not checks["comparisons_suite"].passed
    assert "is not an executable file" in checks["comparisons_suite"].metadata["summary"].value
    assert (data / "reports" / "regression_report.html").is_file()
    assert not Warehouse(data).files("comparisons")
