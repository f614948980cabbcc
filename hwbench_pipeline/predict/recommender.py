"""Hardware recommendation: rank target x batch x precision for one model by an objective under constraints.

Every candidate's figures are measured where a measurement of exactly that configuration exists and predicted
otherwise (the predictor's figure, or its roofline fallback), and each says which. A configuration known to
fail is not a candidate, whatever a prediction would say: one measured to fail, any shape of a model whose
export or operators failed on that target, any larger batch or sequence than one that ran out of memory or
time.

Objectives: ``latency`` (lowest median), ``throughput`` (most samples/s), ``cost`` (least money per million
samples, from the price file). Constraints: ``max_latency_ms``, ``min_throughput``, ``memory_gb`` (defaults
to the target host's memory), ``budget_per_hour``. When nothing meets them the answer says so and names the
nearest miss: the candidate whose worst constraint is violated by the smallest factor.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from hwbench_pipeline.bench.precision import SPECS, format_expr, parse_spec
from hwbench_pipeline.bench.trackers.stats import NOISY_HALFWIDTH
from hwbench_pipeline.predict.features import query_frame
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.prices import Prices
from hwbench_pipeline.predict.shapes import FlopCounter, ModelSpec

OBJECTIVES = {
    # objective: (column, best is max?, unit)
    "latency": ("latency_ms", False, "ms"),
    "throughput": ("throughput_samples_s", True, "samples/s"),
    "cost": ("cost_per_million", False, "per 1M samples"),
}
BATCH_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class NoCandidatesError(ValueError):
    """Nothing to rank: no target, or every configuration was measured to fail."""


@dataclass(frozen=True)
class Constraints:
    max_latency_ms: float | None = None
    min_throughput: float | None = None
    memory_gb: float | None = None
    budget_per_hour: float | None = None
    #: the most task accuracy (a fraction: 0.01 is one point) a precision may lose against fp32
    max_accuracy_drop: float | None = None

    def describe(self) -> str:
        parts = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(parts, sort_keys=True) if parts else "none"


@dataclass
class Ranking:
    objective: str
    feasible: pl.DataFrame  # best first
    nearest_miss: dict | None  # when nothing is feasible: the closest candidate and what it violates
    excluded: list[str] = field(default_factory=list)  # configurations measured to fail, and why

    @property
    def pick(self) -> dict | None:
        return self.feasible.row(0, named=True) if self.feasible.height else None


# ---- candidates --------------------------------------------------------------------------------------------


def measured_confidence(rows: pl.DataFrame) -> pl.Expr:
    """How far a measured figure can be trusted (docs/predictor.md, "Confidence"): ``low`` when other work ran
    beside it (contaminated), ``medium`` when its median's interval is wider than ±NOISY_HALFWIDTH or unknown,
    or when it is a coverage probe's short series, else ``high``."""
    columns = set(rows.columns)
    contaminated = pl.col("contaminated").fill_null(False) if "contaminated" in columns else pl.lit(False)
    probe = (pl.col("measurement") == "probe").fill_null(False) if "measurement" in columns else pl.lit(False)
    if {"median_ci_low_ms", "median_ci_high_ms"} <= columns:
        noisy = ((pl.col("median_ci_high_ms") - pl.col("median_ci_low_ms")) / 2 / pl.col("p50_ms")
                 > NOISY_HALFWIDTH).fill_null(True)
    else:
        noisy = pl.lit(True)
    return (pl.when(contaminated).then(pl.lit("low"))
            .when(probe | noisy).then(pl.lit("medium"))
            .otherwise(pl.lit("high")))


def measured_figures(results: pl.DataFrame, spec: ModelSpec, mode: str) -> pl.DataFrame:
    """The model's measured configurations with the recommender's column names."""
    if not results.height:
        return pl.DataFrame()
    rows = results.filter((pl.col("family") == spec.family) & (pl.col("preset") == spec.preset)
                          & (pl.col("mode") == mode))
    if not rows.height:
        return pl.DataFrame()
    # One candidate per target and shape: the newest measurement, whatever its method or attention (a row of
    # an older method stays in the warehouse as a configuration of its own)
    newest = [c for c in ("_written_at", "finished_at", "started_at") if c in rows.columns]
    if newest:
        rows = rows.sort(pl.coalesce(newest), nulls_last=False).unique(
            subset=["target", "batch_size", "seq_len", "precision", "threads"], keep="last", maintain_order=True)
    low = pl.col("median_ci_low_ms") if "median_ci_low_ms" in rows.columns else pl.col("p50_ms")
    high = pl.col("median_ci_high_ms") if "median_ci_high_ms" in rows.columns else pl.col("p50_ms")
    return rows.select(
        "target", "batch_size", "seq_len", "precision", "threads",
        latency_ms=pl.col("p50_ms"), latency_low_ms=pl.min_horizontal(low, "p50_ms"),
        latency_high_ms=pl.max_horizontal(high, "p50_ms"),
        throughput_samples_s=pl.col("throughput_samples_s"),
        memory_mb=pl.col("peak_rss_mb"), source=pl.lit("measured"), confidence=measured_confidence(rows),
        source_run_id=pl.col("run_id"),
    )


def measured_quality(results: pl.DataFrame, spec: ModelSpec, mode: str) -> pl.DataFrame:
    """Per target and precision of this model: the newest measured output error and task accuracy drop."""
    columns = {"accuracy_drop": pl.Float64, "mean_rel_diff": pl.Float64}
    if not results.height or "precision" not in results.columns:
        return pl.DataFrame(schema={"target": pl.String, "precision": pl.String, **columns})
    rows = results.filter((pl.col("family") == spec.family) & (pl.col("preset") == spec.preset)
                          & (pl.col("mode") == mode))
    rows = rows.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in columns.items() if c not in rows.columns])
    newest = [c for c in ("_written_at", "finished_at", "started_at") if c in rows.columns]
    if newest:
        rows = rows.sort(pl.coalesce(newest), nulls_last=False)
    return rows.group_by("target", "precision").agg(
        pl.col("accuracy_drop").drop_nulls().last(), pl.col("mean_rel_diff").drop_nulls().last())


#: failures that do not depend on the shape: the model cannot run on that target and precision at all
MODEL_LEVEL_FAILURES = frozenset({"unsupported_operator", "export_error", "model_build_error", "numerical_mismatch"})
#: failures that grow with the work: a bigger batch or a longer sequence fails too
SIZE_LEVEL_FAILURES = frozenset({"out_of_memory", "timeout"})


def measured_failures(failures: pl.DataFrame, spec: ModelSpec, mode: str) -> list[dict]:
    """The model's recorded failures for this mode (scenario)."""
    if not failures.height:
        return []
    scenario = "training" if mode == "training" else "inference"
    rows = failures.filter((pl.col("family") == spec.family) & (pl.col("preset") == spec.preset))
    if "scenario" in rows.columns:
        rows = rows.filter(pl.col("scenario") == scenario)
    return rows.to_dicts()


def failure_for(failed: list[dict], target: str, batch: int, seq: int, precision: str, threads: int) -> str | None:
    """Why a candidate is known to fail, from the failures measured: the same configuration; any shape when
    the failure is the model's (export, operator …); any larger batch or sequence when it ran out of memory
    or time."""
    for f in failed:
        if f["target"] != target or f["precision"] != precision:
            continue
        same = (f["batch_size"], f["seq_len"], f["threads"]) == (batch, seq, threads)
        larger = batch >= f["batch_size"] and seq >= f["seq_len"] and f["failure_class"] in SIZE_LEVEL_FAILURES
        if same or larger or f["failure_class"] in MODEL_LEVEL_FAILURES:
            return f"{f['failure_class']} (measured at batch {f['batch_size']}, sequence {f['seq_len']})"
    return None


def ran_another_format(results: pl.DataFrame, spec: ModelSpec, mode: str) -> dict[tuple[str, str], str]:
    """(target, precision) of this model whose measured rows ran another number format than asked (an int8 request
    a runtime left in fp32): such a candidate would be ranked under a name it did not run."""
    if not results.height or "precision_ran" not in results.columns:
        return {}
    rows = results.filter((pl.col("family") == spec.family) & (pl.col("preset") == spec.preset)
                          & (pl.col("mode") == mode) & pl.col("precision_ran").is_not_null()
                          & (pl.col("precision_ran") != format_expr()))
    return {(r["target"], r["precision"]): r["precision_ran"] for r in rows.iter_rows(named=True)}


def target_precisions(targets: pl.DataFrame) -> dict[str, list[str]]:
    """Precisions each target runs (from hardware_targets), fp32 when the table does not say."""
    out = {}
    for row in targets.iter_rows(named=True):
        listed = [p for p in str(row.get("precisions") or "fp32").split(",") if p]
        out[row["target"]] = listed or ["fp32"]
    return out


def candidate_figures(spec: ModelSpec, seq_len: int, mode: str, targets: pl.DataFrame, *, results: pl.DataFrame,
                      failures: pl.DataFrame, predictor: Predictor | None, counter: FlopCounter,
                      batches: tuple[int, ...], precisions: tuple[str, ...] | None = None,
                      threads: dict[str, int] | None = None, models: pl.DataFrame | None = None,
                      ) -> tuple[pl.DataFrame, list[str]]:
    """Every candidate's figures (measured, else predicted) and the configurations excluded as failed."""
    measured = measured_figures(results, spec, mode)
    failed = measured_failures(failures, spec, mode)
    other_format = ran_another_format(results, spec, mode)
    available = target_precisions(targets)
    queries, excluded = [], []
    for target, runs in sorted(available.items()):
        n_threads = (threads or {}).get(target) or _default_threads(targets, results, target)
        for precision in runs:
            if precisions and precision not in precisions:
                continue
            if (target, precision) in other_format:
                excluded.append(f"{target} {precision}: measured, but it ran {other_format[target, precision]}")
                continue
            for batch in batches:
                key = (target, batch, seq_len, precision, n_threads)
                why = failure_for(failed, *key)
                if why:
                    excluded.append(f"{target} batch {batch} {precision}: known to fail, {why}")
                    continue
                queries.append(dict(zip(("target", "batch_size", "seq_len", "precision", "threads"), key,
                                        strict=True)))
    if not queries:
        return pl.DataFrame(), excluded
    frame = pl.DataFrame(queries, schema={"target": pl.String, "batch_size": pl.Int64, "seq_len": pl.Int64,
                                          "precision": pl.String, "threads": pl.Int64})
    keys = ["target", "batch_size", "seq_len", "precision", "threads"]
    if measured.height:
        done = frame.join(measured, on=keys, how="inner")
        todo = frame.join(measured, on=keys, how="anti")
    else:
        done, todo = pl.DataFrame(), frame
    parts = [done] if done.height else []
    if todo.height:
        parts.append(predict_figures(spec, mode, todo, targets, predictor, counter, models))
    figures = pl.concat(parts, how="diagonal_relaxed").drop("accuracy_drop", "mean_rel_diff", strict=False)
    figures = figures.join(measured_quality(results, spec, mode), on=["target", "precision"], how="left")
    # fp32 is the reference: its drop is 0 where nobody measured it (its outputs agree with torch fp32 within the
    # backend's fp32 tolerance, checked on every row)
    if "fp32" in figures["precision"]:
        figures = figures.with_columns(accuracy_drop=pl.when(pl.col("precision") == "fp32")
                                       .then(pl.col("accuracy_drop").fill_null(0.0)).otherwise(pl.col("accuracy_drop")))
    return figures, excluded


def predict_figures(spec: ModelSpec, mode: str, configs: pl.DataFrame, targets: pl.DataFrame,
                    predictor: Predictor | None, counter: FlopCounter, models: pl.DataFrame | None = None,
                    ) -> pl.DataFrame:
    """Predicted figures for configurations of one model (the roofline when there is no predictor)."""
    queries = configs.with_columns(family=pl.lit(spec.family), preset=pl.lit(spec.preset), mode=pl.lit(mode))
    frame = query_frame(queries.select("family", "preset", "target", "batch_size", "seq_len", "precision",
                                       "threads", "mode"), targets, counter, models)
    answer = (predictor or Predictor(schema={})).predict(frame)
    return pl.concat([frame.select("target", "batch_size", "seq_len", "precision", "threads"),
                      answer.select("latency_ms", "latency_low_ms", "latency_high_ms", "throughput_samples_s",
                                    "memory_mb", "memory_low_mb", "memory_high_mb", "source", "confidence",
                                    "held_out_mape")],
                     how="horizontal").with_columns(source_run_id=pl.lit(None, pl.String))


def _default_threads(targets: pl.DataFrame, results: pl.DataFrame, target: str) -> int:
    """Threads of this target's most recent measurements; else all of its cores (1 for accelerators)."""
    if results.height:
        rows = results.filter(pl.col("target") == target)
        if rows.height:
            sort = "started_at" if "started_at" in rows.columns else "threads"
            return int(rows.sort(sort)["threads"][-1])
    row = targets.filter(pl.col("target") == target)
    if row.height and row["device_kind"][0] == "cpu" and "cpu_cores" in row.columns and row["cpu_cores"][0]:
        return int(row["cpu_cores"][0])
    return 1


# ---- ranking -----------------------------------------------------------------------------------------------
def with_costs_and_limits(figures: pl.DataFrame, targets: pl.DataFrame, prices: Prices | None,
                          constraints: Constraints) -> pl.DataFrame:
    """Price per hour, cost per million samples and the memory limit each candidate is held to."""
    price = {t: (prices.per_hour(t) if prices else None) for t in figures["target"].unique().to_list()}
    host_gb = {r["target"]: r.get("memory_gb") for r in targets.iter_rows(named=True)}
    limit_gb = [constraints.memory_gb if constraints.memory_gb is not None else host_gb.get(t)
                for t in figures["target"].to_list()]
    return figures.with_columns(
        price_per_hour=pl.col("target").replace_strict(price, default=None, return_dtype=pl.Float64),
        memory_limit_mb=pl.Series(limit_gb, dtype=pl.Float64) * 1024.0,
    ).with_columns(
        cost_per_million=pl.col("price_per_hour") / (pl.col("throughput_samples_s") * 3600.0) * 1e6,
    )


def _violations(row: dict, constraints: Constraints) -> dict[str, float]:
    """Constraint name -> factor by which it is missed (0 when met); an unknown price misses a budget."""
    out = {}
    if constraints.max_latency_ms is not None:
        out["max_latency_ms"] = max(row["latency_ms"] / constraints.max_latency_ms - 1, 0.0)
    if constraints.min_throughput is not None:
        out["min_throughput"] = max(constraints.min_throughput / row["throughput_samples_s"] - 1, 0.0)
    if row.get("memory_limit_mb") and row.get("memory_mb") is not None:
        out["memory"] = max(row["memory_mb"] / row["memory_limit_mb"] - 1, 0.0)
    if constraints.max_accuracy_drop is not None:
        # unknown (no trained weights measured at this precision) cannot be shown to meet the bound
        drop, bound = row.get("accuracy_drop"), constraints.max_accuracy_drop
        if drop is None or (drop > bound and bound == 0):
            out["max_accuracy_drop"] = np.inf
        else:
            out["max_accuracy_drop"] = max(drop - bound, 0.0) / bound if bound > 0 else 0.0
    if constraints.budget_per_hour is not None:
        price = row.get("price_per_hour")
        out["budget_per_hour"] = np.inf if price is None else max(price / constraints.budget_per_hour - 1, 0.0) \
            if constraints.budget_per_hour > 0 else (0.0 if price == 0 else np.inf)
    return out


def rank(figures: pl.DataFrame, objective: str, constraints: Constraints) -> Ranking:
    """Feasible candidates best first (ties: smaller batch, then target name), or the nearest miss."""
    column, maximize, _ = OBJECTIVES[objective]
    rows = figures.to_dicts()
    feasible, misses = [], []
    for row in rows:
        if objective == "cost" and row.get("cost_per_million") is None:
            continue
        violated = {k: v for k, v in _violations(row, constraints).items() if v > 0}
        (misses if violated else feasible).append({**row, "violations": violated})
    ordered = sorted(feasible, key=lambda r: (-r[column] if maximize else r[column], r["batch_size"], r["target"],
                                              r["precision"]))
    nearest = None
    if not ordered and misses:
        nearest = min(misses, key=lambda r: (max(r["violations"].values()), r["batch_size"], r["target"]))
    frame = pl.DataFrame(ordered, infer_schema_length=None) if ordered else figures.clear()
    return Ranking(objective=objective, feasible=frame.drop("violations", strict=False), nearest_miss=nearest)


def describe_miss(miss: dict, constraints: Constraints) -> str:
    """One line: what the nearest miss would need."""
    parts = []
    for name, factor in sorted(miss["violations"].items()):
        if name == "max_latency_ms":
            parts.append(f"latency {miss['latency_ms']:.3g} ms > {constraints.max_latency_ms:g} ms")
        elif name == "min_throughput":
            parts.append(f"throughput {miss['throughput_samples_s']:.3g} < {constraints.min_throughput:g} "
                         "samples/s")
        elif name == "memory":
            parts.append(f"memory {miss['memory_mb']:.0f} MiB > {miss['memory_limit_mb']:.0f} MiB")
        elif name == "max_accuracy_drop":
            drop = miss.get("accuracy_drop")
            parts.append(f"accuracy drop at {miss['precision']} unknown (no trained weights measured there)"
                         if drop is None else f"accuracy drop {100 * drop:.2g} points > "
                                              f"{100 * constraints.max_accuracy_drop:g}")
        elif name == "budget_per_hour":
            price = miss.get("price_per_hour")
            parts.append("no price set" if price is None
                         else f"price {price:g}/h > budget {constraints.budget_per_hour:g}/h")
        if np.isfinite(factor) and name not in ("budget_per_hour", "max_accuracy_drop"):
            parts[-1] += f" ({factor * 100:.0f} % off)" if factor < 1 else f" ({factor + 1:.3g}x off)"
    return (f"{miss['target']} batch {miss['batch_size']} {miss['precision']} ({miss['source']}): "
            + "; ".join(parts))


# ---- memory analysis ---------------------------------------------------------------------------------------
def memory_fit(spec: ModelSpec, seq_len: int, mode: str, targets: pl.DataFrame, *, results: pl.DataFrame,
               failures: pl.DataFrame, predictor: Predictor | None, counter: FlopCounter,
               constraints: Constraints, threads: dict[str, int] | None = None,
               models: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per target and precision: the largest batch of the ladder whose (measured or predicted) peak memory fits
    the limit, and the memory at batch 1."""
    figures, _ = candidate_figures(spec, seq_len, mode, targets, results=results, failures=failures,
                                   predictor=predictor, counter=counter, batches=BATCH_LADDER, threads=threads,
                                   models=models)
    if not figures.height:
        return pl.DataFrame()
    figures = with_costs_and_limits(figures, targets, None, constraints)
    fits = figures.filter(pl.col("memory_mb") <= pl.col("memory_limit_mb"))
    summary = figures.group_by("target", "precision").agg(
        memory_limit_mb=pl.col("memory_limit_mb").first(),
        memory_at_batch_1_mb=pl.col("memory_mb").filter(pl.col("batch_size") == 1).first(),
    )
    largest = fits.group_by("target", "precision").agg(max_batch_that_fits=pl.col("batch_size").max())
    return summary.join(largest, on=["target", "precision"], how="left").with_columns(
        fits_at_batch_1=pl.col("memory_at_batch_1_mb") <= pl.col("memory_limit_mb")).sort("target", "precision")


# ---- distributed advice ------------------------------------------------------------------------------------
def distributed_advice(distributed: pl.DataFrame | None, family: str, preset: str) -> str | None:
    """The best measured multi-worker configuration of this model, when distributed results exist."""
    if distributed is None or not distributed.height or "family" not in distributed.columns:
        return None
    rows = distributed.filter(pl.col("family") == family)
    if "preset" in rows.columns:
        rows = rows.filter(pl.col("preset") == preset)
    if "status" in rows.columns:
        rows = rows.filter(pl.col("status") == "ok")
    metric = next((c for c in ("throughput_samples_s", "total_throughput_samples_s") if c in rows.columns), None)
    if not rows.height or metric is None:
        return None
    best = rows.sort(metric, descending=True, nulls_last=True).row(0, named=True)
    workers = next((best[c] for c in ("num_workers", "workers", "world_size") if best.get(c) is not None), None)
    strategy = next((best[c] for c in ("strategy", "parallelism") if best.get(c)), None)
    parts = [f"distributed training, best measured run: {best[metric]:.3g} samples/s"]
    if workers is not None:
        parts.append(f"{workers} workers")
    if strategy:
        parts.append(f"strategy {strategy}")
    efficiency = next((best[c] for c in ("scaling_efficiency", "efficiency") if best.get(c) is not None), None)
    if efficiency is not None:
        parts.append(f"scaling efficiency {efficiency:.0%}")
    return ", ".join(parts)


# ---- one model, end to end ---------------------------------------------------------------------------------
@dataclass
class Advice:
    spec: ModelSpec
    seq_len: int
    mode: str
    constraints: Constraints
    rankings: dict[str, Ranking]
    memory: pl.DataFrame
    distributed: str | None
    excluded: list[str]
    candidates: int


def advise(spec: ModelSpec, *, seq_len: int, mode: str, objectives: tuple[str, ...], constraints: Constraints,
           targets: pl.DataFrame, results: pl.DataFrame, failures: pl.DataFrame, predictor: Predictor | None,
           counter: FlopCounter, prices: Prices | None, batches: tuple[int, ...],
           precisions: tuple[str, ...] | None = None, threads: dict[str, int] | None = None,
           models: pl.DataFrame | None = None, distributed: pl.DataFrame | None = None) -> Advice:
    """Rank the candidates of one model for each objective; memory analysis and distributed advice beside."""
    if not targets.height:
        raise NoCandidatesError("no hardware targets with measured peaks; materialize hardware_targets first")
    figures, excluded = candidate_figures(spec, seq_len, mode, targets, results=results, failures=failures,
                                          predictor=predictor, counter=counter, batches=batches,
                                          precisions=precisions, threads=threads, models=models)
    if not figures.height:
        raise NoCandidatesError(f"no candidate configuration for {spec.label}: "
                                + ("; ".join(excluded) if excluded else "no target runs the requested precision"))
    figures = with_costs_and_limits(figures, targets, prices, constraints)
    rankings = {objective: rank(figures, objective, constraints) for objective in objectives}
    for ranking in rankings.values():
        ranking.excluded = excluded
    memory = memory_fit(spec, seq_len, mode, targets, results=results, failures=failures, predictor=predictor,
                        counter=counter, constraints=constraints, threads=threads, models=models)
    return Advice(spec=spec, seq_len=seq_len, mode=mode, constraints=constraints, rankings=rankings, memory=memory,
                  distributed=distributed_advice(distributed, spec.family, spec.preset), excluded=excluded,
                  candidates=figures.height)


def recommendation_row(advice: Advice, objective: str, run_id: str) -> dict | None:
    """One row of the recommendations table: the pick for an objective, or None when nothing is feasible."""
    ranking = advice.rankings[objective]
    pick = ranking.pick
    if pick is None:
        return None
    column, _, unit = OBJECTIVES[objective]
    low_high = {"latency": ("latency_low_ms", "latency_high_ms")}.get(objective)
    interval = (pick.get(low_high[0]), pick.get(low_high[1])) if low_high else (None, None)
    if objective == "throughput" and pick.get("latency_low_ms"):
        interval = (pick["batch_size"] / pick["latency_high_ms"] * 1e3 if pick.get("latency_high_ms") else None,
                    pick["batch_size"] / pick["latency_low_ms"] * 1e3)
    fits = advice.memory.filter((pl.col("target") == pick["target"]) & (pl.col("precision") == pick["precision"])) \
        if advice.memory.height else advice.memory
    notes = []
    if pick["source"] != "measured":
        notes.append(f"{pick['source']} figure, not measured")
    if advice.distributed:
        notes.append(advice.distributed)
    return {
        "run_id": run_id, "family": advice.spec.family, "preset": advice.spec.preset, "objective": objective,
        "target": pick["target"], "batch_size": pick["batch_size"], "seq_len": pick["seq_len"],
        # the candidate's precision is a spec; the table keeps the number format and the recipe apart
        "precision": parse_spec(pick["precision"])[0] if pick["precision"] in SPECS else pick["precision"],
        "quantization": parse_spec(pick["precision"])[1] if pick["precision"] in SPECS else None,
        "accuracy_drop": _finite(pick.get("accuracy_drop")),
        "value": float(pick[column]), "unit": unit, "source": pick["source"],
        "source_run_id": pick.get("source_run_id"), "candidates": advice.candidates,
        "latency_ms": pick["latency_ms"], "throughput_samples_s": pick["throughput_samples_s"],
        "peak_memory_mb": pick.get("memory_mb"),
        "interval_low": _finite(interval[0]), "interval_high": _finite(interval[1]),
        "confidence": pick.get("confidence"), "mode": advice.mode, "constraints": advice.constraints.describe(),
        "max_batch_that_fits": fits["max_batch_that_fits"][0] if fits.height else None,
        "price_per_hour": pick.get("price_per_hour"), "note": "; ".join(notes) or None,
    }


def _finite(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
