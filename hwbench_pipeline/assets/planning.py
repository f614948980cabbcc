"""benchmark_plan and planned_runs: choose the configurations that should teach the predictor most, then measure
them (docs/planner.md)."""


import dagster as dg
import polars as pl
from pydantic import Field

from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.predictor import performance_predictor
from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.bench.hardware import detect_targets
from hwbench_pipeline.bench.profiles import PlannerProfile
from hwbench_pipeline.predict import data
from hwbench_pipeline.predict.data import concat_rows
from hwbench_pipeline.predict.planner import STRATEGIES, PlanError
from hwbench_pipeline.predict.planning import (
    Round,
    measure_picks,
    measured_since,
    pick_key,
    plan_round,
    plan_rows,
    saved_predictor,
)
from hwbench_pipeline.predict.shapes import FlopCounter
from hwbench_pipeline.report.text import number
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.validation import failures_suite, inference_suite, latency_samples_suite

PLANS_TABLE = "benchmark_plans"


class BenchmarkPlanConfig(dg.Config):
    """Overrides of the profile's ``planner:`` section for one run."""

    strategy: str | None = Field(default=None, description=f"one of {', '.join(STRATEGIES)}; empty: the profile's")
    budget: str | None = Field(default=None, description="per target: configurations (10) or machine time (90s, "
                                                         "30m, 2h); empty: the profile's")
    seed: int = Field(default=0, ge=0, description="the committee's bootstrap samples and the random baseline's order")
    targets: list[str] = Field(default_factory=list, description="plan only these targets (empty: every target "
                                                                 "with measured peaks that is on this host)")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _interval(row: dict) -> str:
    if row.get("predicted_ms") is None:
        return "n/a"
    low, high = number(row.get("predicted_low_ms"), ".4g"), number(row.get("predicted_high_ms"), ".4g")
    return f"{number(row['predicted_ms'], '.4g')} [{low}, {high}]"


def picks_markdown(rows: list[dict]) -> str:
    """The picks as a table, best first per target."""
    lines = ["| target | rank | model | batch | seq | precision | predicted ms [90 % interval] | predicted wall s | "
             "expected lesson |", "|---|---:|---|---:|---:|---|---:|---:|---|"]
    lines += [f"| {r['target']} | {r['rank']} | {r['family']}/{r['preset']} | {r['batch_size']} | {r['seq_len']} | "
              f"{r['precision']} | {_interval(r)} | {number(r.get('predicted_wall_s'), '.4g')} | "
              f"{_cell(r['expected_lesson'])} |" for r in rows]
    return "\n".join(lines)


def _plan_metadata(round_: Round, rows: list[dict], predictor_line: str, held_out: float | None,
                   path: object) -> dict:
    return {
        "strategy": round_.strategy,
        "budget_per_target": round_.budget.describe(),
        "targets": ", ".join(p.target for p in round_.plans),
        "picks": len(rows),
        "candidate_space": round_.n_space,
        "measured": round_.n_measured,
        "known_to_fail": round_.n_known_to_fail,
        "wall_time_model": round_.wall_model or "none: no stored run records its wall time",
        "predictor": predictor_line,
        "predictor_held_out_mape": dg.MetadataValue.float(round(held_out, 4)) if held_out is not None else "n/a",
        "skipped": dg.MetadataValue.md("\n".join(f"- `{t}`: {_cell(why)}" for t, why in round_.skipped.items())
                                       or "none"),
        "plan": dg.MetadataValue.md(picks_markdown(rows)),
        "path": dg.MetadataValue.path(str(path)),
    }


@dg.asset(deps=[inference_results, performance_predictor], group_name="predict", pool="hwbench_warehouse")
def benchmark_plan(context: dg.AssetExecutionContext, config: BenchmarkPlanConfig, settings: HwbenchSettings,
                   warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The configurations of the profile's planner space to measure next on each target of this host that has
    measured peaks: those that should teach the predictor most for their cost (docs/planner.md), each with what
    it is expected to teach. Stored in the benchmark_plans table; planned_runs measures them."""
    store = warehouse.warehouse()
    inputs = data.load(store)
    if not inputs.results.height:
        raise dg.Failure("no measured results to plan from; materialize inference_runs first")
    profile = settings.load_profile()
    section: PlannerProfile = profile.planner_section()
    strategy = config.strategy or section.strategy
    if strategy not in STRATEGIES:
        raise dg.Failure(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    with_peaks = set(inputs.targets["target"].to_list()) if inputs.targets.height else set()
    here = [t.key for t in detect_targets()]
    targets = [t for t in here if t in with_peaks and (not config.targets or t in config.targets)]
    if not targets:
        raise dg.Failure(f"no target to plan: on this host {', '.join(here) or 'none'}; with measured peaks "
                         f"{', '.join(sorted(with_peaks)) or 'none'}"
                         + (f"; asked for {', '.join(config.targets)}" if config.targets else ""))
    predictor, predictor_line = saved_predictor(warehouse.predictor_dir)
    counter = FlopCounter.from_results(inputs.results, warehouse.predictor_dir / "flops_cache.json")
    try:
        round_ = plan_round(inputs, section, targets, profile.threads, predictor, counter, strategy=strategy,
                            budget=config.budget, seed=config.seed)
    except PlanError as exc:
        raise dg.Failure(str(exc)) from exc
    if not round_.plans:
        raise dg.Failure("every target was skipped: " + "; ".join(f"{t}: {why}" for t, why in round_.skipped.items()))
    run_id = context.run.run_id
    rows = plan_rows(round_, run_id, predictor)
    if not rows:
        raise dg.Failure("the plan has no pick: " + "; ".join(f"{p.target}: {p.n_candidates} candidates"
                                                              for p in round_.plans))
    path = store.write(PLANS_TABLE, rows, run_id=run_id)
    for target, why in round_.skipped.items():
        context.log.warning(f"{target}: no plan ({why})")
    context.log.info(f"plan {run_id}: {len(rows)} picks by {round_.strategy} on {', '.join(targets)}")
    held_out = rows[0]["predictor_held_out_mape"] if rows else None
    return dg.MaterializeResult(metadata=_plan_metadata(round_, rows, predictor_line, held_out, path))


# ---- measuring the newest plan ---------------------------------------------------------------------------------
def lessons_markdown(plan: pl.DataFrame, by_key: dict[tuple, dict]) -> tuple[str, list[float], int]:
    """Each pick's prediction against its measurement: (table, absolute errors, picks inside their interval)."""
    lines = ["| target | rank | model | batch | seq | precision | predicted ms [90 % interval] | measured p50 ms | "
             "error | inside interval | expected lesson |", "|---|---:|---|---:|---:|---|---:|---:|---:|---|---|"]
    errors, inside = [], 0
    for pick in plan.iter_rows(named=True):
        row = by_key.get(pick_key(pick))
        measured, error, within = "not measured", "n/a", "n/a"
        if row is not None and row["status"] != "ok":
            measured = f"failed: {row.get('failure_class')}"
        elif row is not None:
            p50 = row["p50_ms"]
            measured = number(p50, ".4g")
            if pick.get("predicted_ms") is not None and p50 > 0:
                errors.append(abs(pick["predicted_ms"] / p50 - 1))
                error = f"{pick['predicted_ms'] / p50 - 1:+.0%}"
                low, high = pick.get("predicted_low_ms"), pick.get("predicted_high_ms")
                if low is not None and high is not None:
                    hit = low <= p50 <= high
                    inside += hit
                    within = "yes" if hit else "no"
        lines.append(f"| {pick['target']} | {pick['rank']} | {pick['family']}/{pick['preset']} | {pick['batch_size']} "
                     f"| {pick['seq_len']} | {pick['precision']} | {_interval(pick)} | {measured} | {error} | "
                     f"{within} | {_cell(pick['expected_lesson'])} |")
    return "\n".join(lines), errors, inside


def _combined_check(table: str, results: dict[str, dg.AssetCheckResult]) -> dg.AssetCheckResult:
    """One check result over the stored rows of every target (each partition checked by stored_table_check)."""
    return dg.AssetCheckResult(
        check_name=f"{table}_suite", passed=all(r.passed for r in results.values()),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={target: dg.MetadataValue.text(str(r.metadata["summary"].value)) for target, r in results.items()})


@dg.asset(deps=[benchmark_plan], group_name="predict", pool="hwbench_warehouse",
          check_specs=[check_spec("inference_results", "planned_runs",
                                  "Great Expectations suite on the rows this run stored, on every target it "
                                  "measured: at least one pick measured on each."),
                       check_spec("failures", "planned_runs", "Every failure row of the planned picks is "
                                                              "classified, has a message and a unique key."),
                       check_spec("latency_samples", "planned_runs", "One positive raw latency per configuration "
                                                                     "and sample index.")])
def planned_runs(context: dg.AssetExecutionContext, settings: HwbenchSettings, warehouse: WarehouseResource,
                 ray: RayResource) -> dg.MaterializeResult:
    """Measure the newest benchmark plan's picks like any inference configuration (fresh processes, the host-wide
    measurement lock) and store them in inference_results, one partition per target; the metadata shows each
    pick's predicted latency beside its measurement: what the pick taught the predictor."""
    from hwbench_pipeline.bench.scenarios.inference import InferenceScenario

    store = warehouse.warehouse()
    # the plan this run made (planned_round_job), else the newest one stored
    plans = store.read(PLANS_TABLE)
    mine = plans.filter(pl.col("run_id") == context.run.run_id) if plans.height else plans
    plan = (mine if mine.height else store.read_newest_run(PLANS_TABLE)).sort("target", "rank")
    if not plan.height:
        raise dg.Failure("no benchmark plan stored; materialize benchmark_plan first")
    plan_run = plan["run_id"][0]
    # a pick measured since the plan was made (this asset run before, or any other run) is not measured again
    done = measured_since(plan, concat_rows(store.read("inference_results"), store.read("failures")))
    already = done.filter(pl.col("measured_status").is_not_null())
    if already.height:
        context.log.info(f"{already.height} picks of the plan were measured since it was made; not again")
    plan = done.filter(pl.col("measured_status").is_null()).drop("measured_p50_ms", "measured_status")
    if not plan.height:
        raise dg.Failure(f"every pick of plan {plan_run} was measured since it was made; materialize "
                         "benchmark_plan for the next round")
    profile = settings.load_profile()
    section = profile.planner_section()
    scenario = InferenceScenario()
    run_id = context.run.run_id

    here = {t.key for t in detect_targets()}
    absent = sorted(set(plan["target"]) - here) if not ray.cluster_address else []
    for target in absent:
        context.log.warning(f"{target}: not available on this host and RAY_ADDRESS is unset; its picks wait")
    picks = plan.filter(~pl.col("target").is_in(absent))
    context.log.info(f"plan {plan_run}: measuring {picks.height} picks on {', '.join(sorted(set(picks['target'])))}"
                     if picks.height else f"plan {plan_run}: nothing to measure on this host")

    def on_result(i: int, n: int, cfg: object, row: dict) -> None:
        log = context.log.warning if scenario.is_warning(row) else context.log.info
        log(f"[{i}/{n}] {scenario.describe(cfg, row)}")

    measured = measure_picks(picks, section.space.stopping, store, run_id, profile_name=profile.name,
                             timeout_s=ray.timeout_s or profile.timeout_s, dagster_run_id=context.run.run_id,
                             memory_limit_mb=profile.memory_limit_mb, ray_address=ray.cluster_address,
                             log=context.log.info, on_result=on_result) if picks.height else None
    checks: dict[str, dict[str, dg.AssetCheckResult]] = {"inference_results": {}, "failures": {},
                                                         "latency_samples": {}}
    stored_rows, n_valid, n_failed, n_quarantined = [], 0, 0, 0
    for target, stored in (measured.stored.items() if measured else []):
        expected = measured.expected[target]
        stored_rows += stored.valid + stored.failed
        n_valid, n_failed, n_quarantined = (n_valid + len(stored.valid), n_failed + len(stored.failed),
                                            n_quarantined + len(stored.invalid))
        checks["inference_results"][target] = stored_table_check(store, "inference_results", inference_suite(),
                                                                 run_id, target, required=expected)
        checks["failures"][target] = stored_table_check(store, "failures", failures_suite(), run_id, target,
                                                        required=False)
        checks["latency_samples"][target] = stored_table_check(store, "latency_samples", latency_samples_suite(),
                                                               run_id, target, required=bool(stored.valid))
    if not checks["inference_results"]:
        raise dg.Failure(f"no pick of plan {plan_run} can be measured here: its targets "
                         f"{', '.join(absent)} are not on this host and RAY_ADDRESS is unset")

    table, errors, inside = lessons_markdown(plan, {pick_key(r): r for r in stored_rows})
    metadata = {
        "plan_run_id": plan_run,
        "strategy": ", ".join(sorted(set(plan["strategy"]))),
        "run_id": run_id,
        "planned": plan.height,
        "measured": n_valid,
        "failed": n_failed,
        "quarantined": n_quarantined,
        "not_on_this_host": ", ".join(absent) or "none",
        "picks_mape": dg.MetadataValue.float(round(sum(errors) / len(errors), 4)) if errors else "n/a",
        "picks_inside_interval": f"{inside} of {len(errors)}",
        "predictor_held_out_mape_when_planned": dg.MetadataValue.float(round(plan["predictor_held_out_mape"][0], 4))
        if plan["predictor_held_out_mape"][0] is not None else "n/a",
        "what_the_picks_taught": dg.MetadataValue.md(table),
    }
    return dg.MaterializeResult(metadata=metadata,
                                check_results=[_combined_check(t, r) for t, r in checks.items()])
