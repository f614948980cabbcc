"""Materialize the whole graph through Dagster from a script or the CLI, stage by stage.

Runs are recorded in the Dagster instance (DAGSTER_HOME), so they show in the UI like runs launched there.
The partitioned stage runs once per target; the unpartitioned stages around it run once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl

from hwbench_pipeline.assets import (
    ALL_ASSETS,
    COMPARISONS,
    COVERAGE,
    DOWNSTREAM,
    MEASUREMENTS,
    UNPARTITIONED_UPSTREAM,
)
from hwbench_pipeline.dead_runs import process_tags, release_dead_runs
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.paths import default_data_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource


@dataclass
class PipelineSummary:
    success: bool
    stages: list[tuple[str, bool, float, str]] = field(default_factory=list)  # name, ok, seconds, run id
    report_html: Path | None = None
    report_markdown: Path | None = None
    comparison_html: Path | None = None
    comparison_pdf: Path | None = None


def _run_config(log_level: str) -> dict:
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def run_pipeline(
    profile: str,
    targets: list[str],
    *,
    data_dir: str | None = None,
    instance: dg.DagsterInstance | None = None,
    console=None,
    log_level: str = "INFO",
) -> PipelineSummary:
    """Catalog and targets, then each target's measurements, then tables, predictor, recommendations, report.

    Stops at the first failing stage (a failed blocking check counts) and says which one.
    """
    say = console.print if console else print
    instance = instance or dg.DagsterInstance.get()
    settings = HwbenchSettings(profile=profile)
    # HWBENCH_DATA_DIR read now, not when this module was imported
    warehouse = WarehouseResource(data_dir=data_dir or default_data_dir())
    resources = {"settings": settings, "warehouse": warehouse, "ray": RayResource()}
    summary = PipelineSummary(success=True)

    release_dead_runs(instance, say)  # a killed earlier hwbench run would hold the warehouse pool for ever
    existing = set(instance.get_dynamic_partitions(hardware_target_partitions.name))
    missing = [t for t in targets if t not in existing]
    if missing:
        instance.add_dynamic_partitions(hardware_target_partitions.name, missing)

    stages: list[tuple[str, list, str | None]] = [("catalog and hardware targets", UNPARTITIONED_UPSTREAM, None)]
    stages += [(f"measurements on {t}", MEASUREMENTS, t) for t in targets]
    loaded = settings.load_profile()
    if loaded.architectures is not None:
        stages += [(f"architecture coverage on {t}", COVERAGE, t) for t in targets]
    if loaded.comparisons:
        stages += [("interleaved comparisons", COMPARISONS, None)]
    stages += [("tables, predictor, predictions, recommendations, reports", DOWNSTREAM, None)]
    for i, (name, selection, partition) in enumerate(stages, start=1):
        say(f"[{i}/{len(stages)}] {name} …")
        started = time.monotonic()
        result = dg.materialize(
            ALL_ASSETS, selection=selection, instance=instance, resources=resources,
            partition_key=partition, run_config=_run_config(log_level), raise_on_error=False,
            tags={"hwbench/profile": profile, **process_tags()},
        )
        elapsed = time.monotonic() - started
        ok = result.success and all(
            e.passed for e in result.get_asset_check_evaluations())
        summary.stages.append((name, ok, elapsed, result.run_id))
        say(f"[{i}/{len(stages)}] {name}: {'done' if ok else 'FAILED'} in {elapsed:.1f} s (run {result.run_id})")
        if not ok:
            summary.success = False
            failed_steps = [e.step_key for e in result.get_step_failure_events()]
            failed_checks = [e.check_name for e in result.get_asset_check_evaluations()
                             if not e.passed]
            say(f"stage failed: steps {failed_steps or 'none'}, checks {failed_checks or 'none'}; "
                f"details in the Dagster UI under run {result.run_id}")
            return summary

    measured_runs = {run_id for name, _, _, run_id in summary.stages if name.startswith("measurements on ")}
    compared_runs = {run_id for name, _, _, run_id in summary.stages if name == "interleaved comparisons"}
    report_dir = warehouse.reports_dir
    summary.report_html = report_dir / "regression_report.html"
    summary.report_markdown = report_dir / "regression_report.md"
    summary.comparison_html = report_dir / "comparison_report.html"
    summary.comparison_pdf = report_dir / "comparison_report.pdf"
    _print_summary(warehouse, summary, measured_runs, say)
    _print_comparisons(warehouse, compared_runs, say)
    return summary


def _print_summary(warehouse: WarehouseResource, summary: PipelineSummary, run_ids: set[str], say) -> None:
    # every scenario's measurement run of a stage carries the stage's Dagster run id
    store = warehouse.warehouse()
    runs = (store.read("runs").filter(pl.col("dagster_run_id").is_in(sorted(run_ids)))
            .sort("target", "scenario"))
    failures = store.read("failures").filter(pl.col("run_id").is_in(runs["run_id"].to_list()))
    say("")
    say("summary of this run:")
    for row in runs.iter_rows(named=True):
        classes = failures.filter(pl.col("run_id") == row["run_id"])["failure_class"].value_counts(sort=True)
        why = ", ".join(f"{c} {n}" for c, n in classes.iter_rows())
        say(f"  {row['target']} {row['scenario']}: {row['n_ok']} configurations measured, {row['n_failed']} failed"
            + (f" ({why})" if why else "") + f", {row['n_quarantined']} quarantined (profile {row['profile']})")
    schema_path = warehouse.predictor_dir / "latency_model.schema.json"
    if schema_path.exists():
        evaluation = json.loads(schema_path.read_text())["evaluation"]
        if evaluation["mape"] is not None:
            say(f"  predictor: held-out MAPE {evaluation['mape'] * 100:.1f} % leaving out one of "
                f"{evaluation['n_groups']} families at a time")
    total = sum(s[2] for s in summary.stages)
    for name, _, seconds, _ in summary.stages:
        say(f"  {name}: {seconds:.0f} s")
    say(f"  wall time {total:.0f} s")
    say(f"report: {summary.report_html}")
    say(f"        {summary.report_markdown}")
    say(f"comparison report: {summary.comparison_html}")
    say(f"                   {summary.comparison_pdf}")


def _print_comparisons(warehouse: WarehouseResource, run_ids: set[str], say) -> None:
    store = warehouse.warehouse()
    if not run_ids or not store.files("comparisons"):
        return
    rows = store.read("comparisons").filter(pl.col("run_id").is_in(sorted(run_ids)))
    for row in rows.iter_rows(named=True):
        say(f"interleaved: {row['family']}/{row['preset']} bs={row['batch_size']} seq={row['seq_len']}: "
            f"{row['sentence']}")
