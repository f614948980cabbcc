"""A round of planning over the warehouse: the candidate space of a profile's planner section, what is measured,
the plans per target, their rows for the ``benchmark_plans`` table, and the configurations that measure them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from hwbench_pipeline.bench.profiles import InferenceGrid, PlannerProfile, effective_seq_len
from hwbench_pipeline.predict.data import WarehouseData
from hwbench_pipeline.predict.features import query_frame, training_frame
from hwbench_pipeline.predict.planner import Budget, Plan, PlanError, parse_budget, plan_target
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.shapes import FlopCounter
from hwbench_pipeline.predict.space import unmeasured
from hwbench_pipeline.predict.wall_time import NoWallTimesError, WallTimeModel


def candidate_space(grid: InferenceGrid, targets: list[str], threads: int) -> pl.DataFrame:
    """Every model x preset x batch x sequence x precision of the grid on each target (inference)."""
    rows = [(family, preset, target, batch, seq, precision, threads, "inference")
            for target in targets for family in grid.families for preset in grid.presets
            for seq in sorted({effective_seq_len(family, preset, s) for s in grid.seq_lens})
            for precision in grid.precisions for batch in grid.batch_sizes]
    return pl.DataFrame(rows, orient="row", schema={
        "family": pl.String, "preset": pl.String, "target": pl.String, "batch_size": pl.Int64, "seq_len": pl.Int64,
        "precision": pl.String, "threads": pl.Int64, "mode": pl.String})


@dataclass
class Round:
    """One round of planning: a plan per target, and what it was planned from."""

    plans: list[Plan]
    strategy: str
    budget: Budget
    n_space: int
    n_measured: int
    n_known_to_fail: int
    wall_model: str | None
    skipped: dict[str, str]  # target -> why it has no plan


def plan_round(data: WarehouseData, section: PlannerProfile, targets: list[str], threads: int,
               predictor: Predictor | None, counter: FlopCounter, *, strategy: str | None = None,
               budget: str | None = None, seed: int = 0) -> Round:
    """Plan the next configurations to measure on each target of ``targets`` within the budget per target."""
    strategy = strategy or section.strategy
    chosen_budget = parse_budget(budget or section.budget)
    known = set(data.targets["target"].to_list()) if data.targets.height else set()
    missing = [t for t in targets if t not in known]
    if missing:
        raise PlanError(f"no measured peaks for {', '.join(missing)}: materialize hardware_targets on the host "
                        "that has them first")
    space = candidate_space(section.space, targets, threads)
    todo, n_measured, n_fail = unmeasured(space, data.results, data.failures)
    measured = training_frame(data.results, data.models, data.targets) if data.results.height else pl.DataFrame()
    wall: WallTimeModel | None = None
    try:
        wall = WallTimeModel.fit(measured) if measured.height else None
    except NoWallTimesError:
        wall = None
    if chosen_budget.machine_s is not None and wall is None:
        raise PlanError("a budget in machine time needs stored runs that record how long they took; give the "
                        "budget as a number of configurations (--budget 10) until some are measured")
    candidates = query_frame(todo, data.targets, counter, data.models) if todo.height else \
        todo.with_columns(architecture=pl.lit(None, pl.String))
    plans, skipped = [], {}
    for target in targets:
        try:
            plans.append(plan_target(target, measured, candidates, predictor, strategy, chosen_budget, wall,
                                     seed=seed))
        except PlanError as exc:
            skipped[target] = str(exc)
    return Round(plans=plans, strategy=strategy, budget=chosen_budget, n_space=space.height, n_measured=n_measured,
                 n_known_to_fail=n_fail, wall_model=wall.describe() if wall is not None else None, skipped=skipped)


def plan_rows(round_: Round, run_id: str, predictor: Predictor | None) -> list[dict]:
    """Rows of the ``benchmark_plans`` table: one per pick, with why it was picked."""
    planned_at = datetime.now(UTC)
    fingerprint = predictor.schema.get("training_fingerprint") if predictor is not None else None
    # the headline evaluation (leave-architecture-out) holds its MAPE at the top level
    held_out = (predictor.schema.get("evaluation") or {}).get("mape") if predictor is not None else None
    rows = []
    for plan in round_.plans:
        for pick in plan.picks.iter_rows(named=True):
            rows.append({
                "run_id": run_id, "planned_at": planned_at, "target": pick["target"], "rank": int(pick["rank"]),
                "family": pick["family"], "preset": pick["preset"], "batch_size": pick["batch_size"],
                "seq_len": pick["seq_len"], "precision": pick["precision"], "threads": pick["threads"],
                "mode": pick["mode"], "architecture": pick.get("architecture"), "strategy": plan.strategy,
                "budget": plan.budget.describe(), "score": float(pick["score"]),
                "expected_lesson": pick["expected_lesson"], "predicted_ms": pick.get("predicted_ms"),
                "predicted_low_ms": pick.get("predicted_low_ms"), "predicted_high_ms": pick.get("predicted_high_ms"),
                "prediction_source": pick.get("prediction_source"), "predicted_wall_s": pick.get("predicted_wall_s"),
                "candidates": plan.n_candidates, "wall_time_model": plan.wall_model,
                "predictor_fingerprint": fingerprint, "predictor_held_out_mape": held_out,
            })
    return rows


def planned_configs(picks: pl.DataFrame, stopping, run_id: str) -> tuple[dict[str, list], dict[str, list[dict]]]:
    """(per target, the inference configurations that measure the picks under ``stopping``; per target, a failure
    row for each pick whose precision the target cannot run)."""
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.precision import parse_spec
    from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario

    scenario = InferenceScenario()
    runnable: dict[str, list] = {}
    refused: dict[str, list[dict]] = {}
    for pick in picks.iter_rows(named=True):
        precision, quantization = parse_spec(pick["precision"])
        cfg = InferenceConfig(family=pick["family"], preset=pick["preset"], target=pick["target"],
                              batch_size=pick["batch_size"], seq_len=pick["seq_len"], precision=precision,
                              quantization=quantization, threads=pick["threads"], rule=stopping)
        target = parse_target(cfg.target)
        reason = load_backend(target.backend).unsupported_reason(cfg.spec, target.device_kind)
        if reason is None:
            runnable.setdefault(cfg.target, []).append(cfg)
        else:
            refused.setdefault(cfg.target, []).append(scenario.failure_row(
                cfg, run_id, "unsupported_configuration", f"precision {cfg.spec} is not supported on {cfg.target}: "
                                                           f"{reason}"))
    return runnable, refused


@dataclass
class MeasuredPicks:
    """What measuring a plan's picks stored, per target."""

    rows: list[dict]  # every row: measured, failed, refused
    stored: dict[str, object]  # target -> warehouse.storing.StoredRun
    expected: dict[str, bool]  # target -> whether any of its picks could be measured


def measure_picks(picks: pl.DataFrame, stopping, warehouse, run_id: str, *, profile_name: str, timeout_s: float,
                  dagster_run_id: str | None = None, memory_limit_mb: float | None = None,
                  ray_address: str | None = None, log=print, on_result=None) -> MeasuredPicks:
    """Measure a plan's picks like any inference configuration (fresh processes; the host-wide measurement lock
    unless a Ray cluster measures them) and store them in ``inference_results`` / ``failures``, one stored run per
    target partition."""
    from hwbench_pipeline.bench.dispatch import run_configurations
    from hwbench_pipeline.bench.scenarios.base import Plan as ScenarioPlan
    from hwbench_pipeline.bench.scenarios.inference import InferenceScenario
    from hwbench_pipeline.paths import host_lock_dir
    from hwbench_pipeline.warehouse.peaks import device_peaks
    from hwbench_pipeline.warehouse.storing import store_measurements
    from hwbench_pipeline.warehouse.validation import inference_suite

    scenario = InferenceScenario()
    runnable, refused = planned_configs(picks, stopping, run_id)
    configs = [c for mine in runnable.values() for c in mine]
    started = datetime.now(UTC)
    measured = run_configurations(scenario, configs, run_id, ray_address=ray_address,
                                  dispatch="ray" if ray_address else "process", timeout_s=timeout_s,
                                  lock_dir=host_lock_dir(), memory_limit_mb=memory_limit_mb, on_result=on_result,
                                  log=log) if configs else []
    out = MeasuredPicks(rows=[], stored={}, expected={})
    for target in sorted(set(runnable) | set(refused)):
        rows = scenario.finish([r for r in measured if r["target"] == target],
                               ScenarioPlan(runnable.get(target, []), refused.get(target, [])), run_id,
                               device_peaks(warehouse, target))
        out.expected[target] = bool(runnable.get(target))
        out.stored[target] = store_measurements(
            warehouse, rows, results_table="inference_results", suite=inference_suite(), scenario=scenario.name,
            run_id=run_id, partition=target, dagster_run_id=dagster_run_id or run_id, profile=profile_name,
            started=started, expected=out.expected[target], with_samples=True)
        out.rows += rows
    return out
