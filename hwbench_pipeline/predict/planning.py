"""A round of planning over the warehouse: the candidate space of a profile's planner section, what is measured,
the plans per target, their rows for the ``benchmark_plans`` table, and the configurations that measure them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from hwbench_pipeline.bench.checkpoint import JOURNALS_DIR, Checkpoint
from hwbench_pipeline.bench.profiles import InferenceGrid, PlannerProfile, effective_seq_len
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.predict.data import WarehouseData
from hwbench_pipeline.predict.features import query_frame, training_frame
from hwbench_pipeline.predict.planner import Budget, Plan, PlanError, parse_budget, plan_target, score
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.recommender import target_precisions
from hwbench_pipeline.predict.shapes import FlopCounter
from hwbench_pipeline.predict.space import unmeasured
from hwbench_pipeline.predict.wall_time import NoWallTimesError, WallTimeModel
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.storing import StoredRun, store_measurements

#: what makes a measured row the measurement of a pick (its precision as a spec: ``int8-static``)
PICK_KEY = ["target", "family", "preset", "batch_size", "seq_len", "precision", "threads"]


def pick_key(row: dict) -> tuple:
    """A plan row's or a measured row's configuration (a measured row's precision and recipe made a spec)."""
    from hwbench_pipeline.bench.precision import spec_name

    precision = row["precision"]
    # a row read back from its table keeps the recipe apart (int8 + static); predict.data's rows carry the spec
    spec = spec_name(precision, row["quantization"]) if row.get("quantization") and "-" not in precision \
        else precision
    return (row["target"], row["family"], row["preset"], row["batch_size"], row["seq_len"], spec, row["threads"])


def measured_since(plan: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The plan's picks with ``measured_p50_ms`` and ``measured_status``: the newest row of the same configuration
    among ``rows`` (results or failures, their precision as a spec or with its ``quantization``) that finished
    after the plan was made; null where none did."""
    found: dict[tuple, dict] = {}
    if rows.height and "finished_at" in rows.columns:
        for row in rows.sort("finished_at").iter_rows(named=True):
            found.setdefault(pick_key(row), []).append(row)
    p50, status = [], []
    for pick in plan.iter_rows(named=True):
        after = [r for r in found.get(pick_key(pick), [])
                 if r["finished_at"] is not None and _utc(r["finished_at"]) > _utc(pick["planned_at"])]
        newest = after[-1] if after else None
        p50.append(newest.get("p50_ms") if newest and newest.get("status", "ok") == "ok" else None)
        status.append(None if newest is None else newest.get("status", "ok"))
    return plan.with_columns(measured_p50_ms=pl.Series(p50, dtype=pl.Float64),
                             measured_status=pl.Series(status, dtype=pl.String))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def targets_here(known: list[str]) -> list[str]:
    """The targets of ``known`` (those with measured peaks) that this host can measure."""
    from hwbench_pipeline.bench.hardware import detect_targets

    here = {t.key for t in detect_targets()}
    return [t for t in known if t in here]


def held_out_mape(schema: dict | None) -> float | None:
    """A saved predictor's leave-architecture-out MAPE (its headline), None before an evaluation."""
    return (schema.get("evaluation") or {}).get("mape") if schema is not None else None


def saved_predictor(predictor_dir: Path) -> tuple[Predictor | None, str]:
    """The saved predictor (None when there is none), and a line saying what answers: its boosters, or, trained on
    too few rows, the roofline fallback (whose intervals are one width per backend)."""
    try:
        predictor = Predictor.load(predictor_dir)
    except (OSError, ValueError, KeyError) as exc:  # none saved, or unreadable
        return None, f"none ({type(exc).__name__}: {exc}); the uncertainty strategy cannot plan"
    mape = held_out_mape(predictor.schema)
    error = f"leave-architecture-out MAPE {mape:.1%}" if mape is not None else "not evaluated"
    if not predictor.usable:
        return predictor, (f"trained on {predictor.schema.get('n_rows')} rows, too few for its boosters: the "
                           f"roofline fallback answers ({error})")
    return predictor, f"{predictor.schema.get('training_fingerprint')}: {error}"


def candidate_space(grid: InferenceGrid, targets: list[str], threads: int,
                    runs: dict[str, list[str]] | None = None) -> pl.DataFrame:
    """Every model x preset x batch x sequence x precision of the grid on each target (inference); with ``runs``
    (target -> the precisions it runs, recommender.target_precisions), only those precisions."""
    rows = [(family, preset, target, batch, seq, precision, threads, "inference")
            for target in targets for family in grid.families for preset in grid.presets
            for seq in sorted({effective_seq_len(family, preset, s) for s in grid.seq_lens})
            for precision in grid.precisions if runs is None or precision in runs.get(target, ())
            for batch in grid.batch_sizes]
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
    space = candidate_space(section.space, targets, threads, target_precisions(data.targets))
    todo, n_measured, n_fail = unmeasured(space, data.results, data.failures)
    measured = training_frame(data.results, data.models, data.targets) if data.results.height else pl.DataFrame()
    wall: WallTimeModel | None = None
    try:  # inference configurations only: a training step or a generated sequence takes other times
        inference = measured.filter(pl.col("mode") == "inference") if measured.height else measured
        wall = WallTimeModel.fit(inference) if inference.height else None
    except NoWallTimesError:
        wall = None
    if chosen_budget.machine_s is not None and wall is None:
        raise PlanError("a budget in machine time needs stored runs that record how long they took; give the "
                        "budget as a number of configurations (--budget 10) until some are measured")
    candidates = query_frame(todo, data.targets, counter, data.models) if todo.height else \
        todo.with_columns(architecture=pl.lit(None, pl.String))
    plans, skipped = [], {}
    scored_all, refused = None, None
    if candidates.height:
        try:  # once for every target: a decision's options on all of them compete, and the committee trains once
            scored_all = score(strategy, measured, candidates, predictor, seed=seed)
        except PlanError as exc:
            refused = str(exc)
    for target in targets:
        if refused is not None and (candidates["target"] == target).any():
            skipped[target] = refused
            continue
        try:
            plans.append(plan_target(target, measured, candidates, predictor, strategy, chosen_budget, wall,
                                     seed=seed, scored_all=scored_all))
        except PlanError as exc:
            skipped[target] = str(exc)
    return Round(plans=plans, strategy=strategy, budget=chosen_budget, n_space=space.height, n_measured=n_measured,
                 n_known_to_fail=n_fail, wall_model=wall.describe() if wall is not None else None, skipped=skipped)


def plan_rows(round_: Round, run_id: str, predictor: Predictor | None) -> list[dict]:
    """Rows of the ``benchmark_plans`` table: one per pick, with why it was picked."""
    planned_at = datetime.now(UTC)
    fingerprint = predictor.schema.get("training_fingerprint") if predictor is not None else None
    held_out = held_out_mape(predictor.schema if predictor is not None else None)
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


def planned_configs(picks: pl.DataFrame, stopping: StoppingRule, run_id: str,
                    ) -> tuple[dict[str, list], dict[str, list[dict]]]:
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
    stored: dict[str, StoredRun]  # per target
    expected: dict[str, bool]  # target -> whether any of its picks could be measured


def measure_picks(picks: pl.DataFrame, stopping: StoppingRule, warehouse: Warehouse, run_id: str, *,
                  profile_name: str, timeout_s: float, dagster_run_id: str | None = None,
                  memory_limit_mb: float | None = None, ray_address: str | None = None,
                  log: Callable[[str], None] = print, on_result: Callable | None = None) -> MeasuredPicks:
    """Measure a plan's picks like any inference configuration (fresh processes; the host-wide measurement lock
    unless a Ray cluster measures them) and store them in ``inference_results`` / ``failures``, one stored run per
    target partition. Every measurement is journaled as it lands (under the data dir, per plan): a round that is
    killed or fails keeps what it measured, and the next attempt at the same plan goes on from there."""
    from hwbench_pipeline.bench.dispatch import run_configurations
    from hwbench_pipeline.bench.scenarios.base import Plan as ScenarioPlan
    from hwbench_pipeline.bench.scenarios.inference import InferenceScenario
    from hwbench_pipeline.paths import host_lock_dir
    from hwbench_pipeline.warehouse.peaks import device_peaks
    from hwbench_pipeline.warehouse.validation import inference_suite

    scenario = InferenceScenario()
    runnable, refused = planned_configs(picks, stopping, run_id)
    configs = [c for mine in runnable.values() for c in mine]
    started = datetime.now(UTC)
    plan_run = picks["run_id"][0] if "run_id" in picks.columns and picks.height else run_id
    checkpoint = Checkpoint(Path(warehouse.data_dir) / JOURNALS_DIR / "planned" / f"{plan_run}.jsonl", configs)
    measured = run_configurations(scenario, configs, run_id, ray_address=ray_address,
                                  dispatch="ray" if ray_address else "process", timeout_s=timeout_s,
                                  lock_dir=host_lock_dir(), memory_limit_mb=memory_limit_mb, checkpoint=checkpoint,
                                  on_result=on_result, log=log) if configs else []
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
    checkpoint.remove()  # stored: a later attempt at this plan measures afresh what is still missing
    return out
