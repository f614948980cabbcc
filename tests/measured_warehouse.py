"""A warehouse built from real tiny measurements on this host (two runs, so there is history), with the
predictor trained on them and the regression findings stored: the fixture behind the notebook and report
tests. Nothing in it is made up; it takes about a minute to measure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hwbench_pipeline.assets.hardware import peak_columns
from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.environment import environment_fields
from hwbench_pipeline.bench.host_lock import host_measurement_lock
from hwbench_pipeline.bench.peaks import compare_with_peak, measure_peaks
from hwbench_pipeline.bench.precision import PRECISIONS
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, run_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.predict import data
from hwbench_pipeline.predict.predictor import train
from hwbench_pipeline.report.regressions import detect_regressions, finding_rows
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.storing import latency_sample_rows

TARGET = "cpu-torch"
FAMILIES = ("bert", "llama", "vit")
QUICK = StoppingRule(ci_target=0.05, min_samples=5, max_seconds=0.3, warmup_max_seconds=0.2,
                    processes=1, max_processes=1)


def measure_run(warehouse: Warehouse, run_id: str, batches: tuple[int, ...], peaks: dict) -> list[dict]:
    """One run of the tiny presets on this host, stored as the inference_runs asset stores it."""
    configs = [InferenceConfig(family=f, preset="tiny", target=TARGET, batch_size=b, seq_len=16, threads=1,
                               rule=QUICK) for f in FAMILIES for b in batches]
    started = datetime.now(UTC)
    rows = [run_configuration(cfg, run_id) for cfg in configs]
    measured = [r for r in rows if r["status"] == "ok"]
    assert len(measured) == len(rows), [r.get("message", "")[:200] for r in rows if r["status"] != "ok"]
    compare_with_peak(measured, {p: peaks.get(f"peak_gflops_{p}") for p in PRECISIONS})
    warehouse.write("inference_results", measured, run_id=run_id, partition=TARGET)
    warehouse.write("latency_samples", latency_sample_rows(measured), run_id=run_id, partition=TARGET)
    warehouse.write("runs", [{"run_id": run_id, "dagster_run_id": run_id, "profile": "notebook-test",
                              "target": TARGET, "scenario": "inference", "n_configs": len(rows),
                              "n_ok": len(measured), "n_failed": 0, "n_quarantined": 0, "started_at": started,
                              "finished_at": datetime.now(UTC), "status": "ok", **environment_fields()}],
                    run_id=run_id, partition=TARGET)
    return measured


def write_catalog(warehouse: Warehouse) -> None:
    warehouse.write("models", [{"run_id": "catalog", **models.describe(f, "tiny"), "in_profile": True}
                               for f in FAMILIES], run_id="catalog")


def build_measured_warehouse(data_dir: Path) -> Path:
    """Catalog, target peaks, two real runs, the predictor trained on them and the regression findings."""
    warehouse = Warehouse(data_dir)
    write_catalog(warehouse)
    # One hold of the host-wide lock for every measurement: no other hwbench process measures meanwhile.
    with host_measurement_lock(host_lock_dir(), log=lambda _: None):
        peaks = peak_columns(measure_peaks("cpu", ("fp32",), 1, gemm_n=256, copy_mib=16))
        first = measure_run(warehouse, "run-1", (1, 2), peaks)
        second = measure_run(warehouse, "run-2", (1,), peaks)
    assert len(first) + len(second) == 3 * len(FAMILIES)
    warehouse.write("hardware_targets", [{
        "run_id": "targets", "target": TARGET, "device_kind": "cpu", "backend": "torch",
        "device_name": environment_fields()["cpu_model"], "precisions": ",".join(load_backend("torch").precisions(
            "cpu")), "detected_at": datetime.now(UTC), **peaks, **environment_fields()}], run_id="targets")
    inputs = data.load(warehouse)
    train(inputs.results, inputs.models, inputs.targets, data_dir / "predictor")
    findings = detect_regressions(warehouse.read("inference_results"))
    warehouse.write("regressions", finding_rows(findings), run_id="run-2")
    warehouse.refresh_catalog()
    return data_dir
