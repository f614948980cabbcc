"""How good the predictor is on data it has not seen, beside the roofline-only baseline.

* ``leave_architecture_out`` (the headline): one booster per architecture (model type: a curated family, or
  a coverage probe's architecture), trained without it, predicts it. The 90 % interval of a held-out
  architecture comes from the out-of-fold residuals of the *other* architectures only (the cross-conformal /
  CV+ construction), so no architecture calibrates its own interval.
* ``leave_preset_out``: train on the smaller presets, predict the next size up (tiny → small, tiny+small →
  base); a fresh predictor with its own nested calibration per split.
* ``leave_range_out``: train on the smaller batches (or shorter sequences), predict the largest.

Latency errors are absolute percentage errors of the median; coverage is the share of held-out medians inside
the 90 % interval. The baseline is the roofline bound scaled by the median measured/bound ratio of the
training rows' backend (what the fallback answers), with an interval from that ratio's spread.

The recommendation evaluation reuses the leave-architecture-out predictions: for each held-out model, the pick made
from predictions alone against the measured optimum among the same candidates.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl

from hwbench_pipeline.predict.generation_modes import GENERATION_MODES
from hwbench_pipeline.predict.predictor import (
    LEVEL,
    MIN_ROWS,
    NotEnoughDataError,
    Predictor,
    conformal_quantiles,
    latency_target,
    memory_floor,
    memory_target,
)
from hwbench_pipeline.predict.roofline import Efficiency, overhead_model_ms
from hwbench_pipeline.warehouse.schema import IDENTITY_COLUMNS

#: the metric a held-out row predicts (the ``predictions`` table's name for median latency)
PREDICTED_METRIC = "p50_ms"

PRESET_ORDER = ("tiny", "small", "base", "full")


def metrics(actual: np.ndarray, predicted: np.ndarray, low: np.ndarray | None = None,
            high: np.ndarray | None = None) -> dict:
    """MAPE, median APE, share within ±10 % and ±20 %, interval coverage (None when there is no interval)."""
    if actual.size == 0:
        return {"n": 0, "mape": None, "median_ape": None, "within_10pct": None, "within_20pct": None,
                "coverage": None}
    ape = np.abs(predicted - actual) / actual
    coverage = None
    if low is not None and high is not None:
        coverage = float(((actual >= low) & (actual <= high)).mean())
    return {"n": int(actual.size), "mape": float(ape.mean()), "median_ape": float(np.median(ape)),
            "within_10pct": float((ape <= 0.10).mean()), "within_20pct": float((ape <= 0.20).mean()),
            "coverage": coverage}


def baseline(train: pl.DataFrame, test: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The roofline-only answer (value, low, high) for the test rows, calibrated on the training rows."""
    efficiency = Efficiency(latency_target(train), train["backend"].to_numpy(), LEVEL).as_dict()
    return Predictor.roofline_answer(test["roofline_ms"].to_numpy(), test["backend"].to_list(), efficiency)


def _contaminated(frame: pl.DataFrame) -> np.ndarray:
    if "contaminated" not in frame.columns:
        return np.zeros(frame.height, dtype=bool)
    return frame["contaminated"].fill_null(False).to_numpy().astype(bool)


# ---- leave one architecture out ----------------------------------------------------------------------------
def architecture_out_of_fold(frame: pl.DataFrame) -> pl.DataFrame:
    """Every row predicted by a predictor that never saw its architecture, with a CV+ interval and the
    baseline."""
    parts = []
    for architecture in sorted(frame["architecture"].unique().to_list()):
        held_out = pl.col("architecture") == architecture
        train, test = frame.filter(~held_out), frame.filter(held_out)
        predictor = Predictor.fit(train, calibrate_intervals=False)
        predictor.schema["usable"] = True  # the boosters themselves, not the small-data fallback
        in_domain = predictor.in_domain(test)
        log_latency, log_memory = predictor.log_ratios(test)
        # the roofline fallback's answer for every row: what answers outside the boosters' domain
        fallback_ms, fallback_low, fallback_high = Predictor.roofline_answer(
            overhead_model_ms(test, predictor.schema["overhead_model"]), test["backend"].to_list(),
            predictor.schema["efficiency"])
        base_value, base_low, base_high = baseline(train, test)
        overhead = predictor.schema["overhead_model"]
        baselines = predictor.schema["process_baseline_mb"]
        memory_actual = memory_target(test, baselines)
        floor_mb = memory_floor(test, baselines).to_numpy()
        parts.append(test.select("architecture", "family", "preset", "target", "batch_size", "seq_len", "precision",
                                 "threads", "mode", "p50_ms", "roofline_ms",
                                 *[c for c in IDENTITY_COLUMNS if c in test.columns]).with_columns(
            peak_rss_mb=test["peak_rss_mb"] if "peak_rss_mb" in test.columns else None,
            contaminated=pl.Series(_contaminated(test)),
            in_domain=pl.Series(in_domain),
            residual=pl.Series(latency_target(test, overhead) - log_latency),
            booster_ms=pl.Series(overhead_model_ms(test, overhead) * np.exp(log_latency)),
            fallback_ms=pl.Series(fallback_ms), fallback_low=pl.Series(fallback_low),
            fallback_high=pl.Series(fallback_high),
            memory_residual=pl.Series(memory_actual - log_memory)
            if log_memory is not None and memory_actual is not None else None,
            memory_booster=pl.Series(floor_mb * np.exp(log_memory)) if log_memory is not None else None,
            baseline_ms=pl.Series(base_value), baseline_low=pl.Series(base_low), baseline_high=pl.Series(base_high),
        ))
    return pl.concat(parts, how="diagonal_relaxed")


def _cv_plus(oof: pl.DataFrame, residual: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    """Interval per row from the residual quantiles of the other architectures' in-domain rows."""
    low, high = np.full(oof.height, np.nan), np.full(oof.height, np.nan)
    families = oof["architecture"].to_numpy()
    in_domain = oof["in_domain"].to_numpy()
    residuals = oof[residual].to_numpy()
    values = oof[value].to_numpy()
    for family in np.unique(families):
        q = conformal_quantiles(residuals[(families != family) & in_domain & np.isfinite(residuals)], LEVEL)
        mine = families == family
        if q is None:
            low[mine], high[mine] = values[mine], np.inf
        else:
            low[mine], high[mine] = values[mine] * np.exp(min(q[0], 0.0)), values[mine] * np.exp(max(q[1], 0.0))
    return low, high


def leave_architecture_out(frame: pl.DataFrame) -> tuple[dict, pl.DataFrame]:
    """(pooled result, per-row out-of-fold frame with the predictor's final answer per row)."""
    oof = architecture_out_of_fold(frame)
    low, high = _cv_plus(oof, "residual", "booster_ms")
    in_domain = oof["in_domain"].to_numpy()
    oof = oof.with_columns(
        predicted_ms=pl.when(pl.col("in_domain")).then(pl.col("booster_ms")).otherwise(pl.col("fallback_ms")),
        predicted_low=pl.Series(np.where(in_domain, low, oof["fallback_low"].to_numpy())),
        predicted_high=pl.Series(np.where(in_domain, high, oof["fallback_high"].to_numpy())),
    )
    # the headline and each estimator's error are the forward passes' (what inference and training answers quote,
    # and what decides whether unseen architectures get the roofline); generation's are in by_mode
    forward = ~oof["mode"].is_in(GENERATION_MODES).to_numpy()
    if not forward.any():  # generation rows alone: they are the headline
        forward[:] = True
    rows = oof.filter(pl.Series(forward))
    result = _pooled(rows, "leave_architecture_out", sorted(oof["architecture"].unique().to_list()))
    result["estimators"] = estimator_errors(rows, low[forward], high[forward])
    result["by_mode"] = errors_by_mode(oof)
    if "memory_booster" in oof.columns and oof["memory_booster"].null_count() == 0:
        m_low, m_high = _cv_plus(oof, "memory_residual", "memory_booster")
        result["memory_predictor"] = metrics(oof["peak_rss_mb"].to_numpy(), oof["memory_booster"].to_numpy(),
                                             m_low, m_high)
    return result, oof


def errors_by_mode(oof: pl.DataFrame) -> dict:
    """The final answers' held-out errors per mode (inference, training, prefill, decode): one pooled figure would
    hide a mode the predictor has few rows of."""
    out = {}
    for mode in sorted(oof["mode"].unique().to_list()):
        rows = oof.filter(pl.col("mode") == mode)
        out[mode] = metrics(rows["p50_ms"].to_numpy(), rows["predicted_ms"].to_numpy(),
                            rows["predicted_low"].to_numpy(), rows["predicted_high"].to_numpy())
    return out


def estimator_errors(oof: pl.DataFrame, low: np.ndarray, high: np.ndarray) -> dict:
    """Each estimator that can answer a question about an unseen architecture, scored on the rows it would
    answer held out: the boosters on the rows inside their domain, and the roofline fallback (the two-term
    model times the backend's typical ratio) on every row, so its error is known wherever it may answer."""
    actual = oof["p50_ms"].to_numpy()
    inside = oof["in_domain"].to_numpy().astype(bool)
    return {
        "predicted": metrics(actual[inside], oof["booster_ms"].to_numpy()[inside], low[inside], high[inside]),
        "roofline": metrics(actual, oof["fallback_ms"].to_numpy(), oof["fallback_low"].to_numpy(),
                            oof["fallback_high"].to_numpy()),
    }


def _pooled(rows: pl.DataFrame, method: str, groups: list[str]) -> dict:
    actual = rows["p50_ms"].to_numpy()
    clean = ~rows["contaminated"].to_numpy().astype(bool)
    predicted, low, high = (rows[c].to_numpy() for c in ("predicted_ms", "predicted_low", "predicted_high"))
    return {
        "method": method,
        "held_out": groups,
        "n_groups": len(groups),
        "n_rows": rows.height,
        "predictor": metrics(actual, predicted, low, high),
        "roofline_baseline": metrics(actual, rows["baseline_ms"].to_numpy(), rows["baseline_low"].to_numpy(),
                                     rows["baseline_high"].to_numpy()),
        "roofline_bound_only": metrics(actual, rows["roofline_ms"].to_numpy()),
        "predictor_uncontaminated_rows": metrics(actual[clean], predicted[clean], low[clean], high[clean]),
        "share_answered_by_roofline": float((~rows["in_domain"].to_numpy().astype(bool)).mean()),
    }


# ---- preset and range splits -------------------------------------------------------------------------------
def held_out_splits(frame: pl.DataFrame) -> Iterator[tuple[str, pl.Series, pl.Series]]:
    """(label, training mask, test mask) for the preset and batch/sequence-range splits the data allow."""
    presets = [p for p in PRESET_ORDER if p in set(frame["preset"].to_list())]
    for i in range(1, len(presets)):
        # train on every preset below presets[i], predict presets[i] (bigger presets stay out of both)
        yield (f"leave_preset_out:{'+'.join(presets[:i])}->{presets[i]}", frame["preset"].is_in(presets[:i]),
               frame["preset"] == presets[i])
    batches = sorted(frame["batch_size"].unique().to_list())
    if len(batches) >= 2:
        test = frame["batch_size"] == batches[-1]
        yield f"leave_range_out:batch<{batches[-1]}->batch={batches[-1]}", ~test, test
    # sequence: only families whose input length varies; each family's longest length is held out
    varying = frame.group_by("family").agg(pl.col("seq_len").n_unique().alias("n"),
                                           pl.col("seq_len").max().alias("longest")).filter(pl.col("n") > 1)
    if varying.height:
        longest = frame.join(varying, on="family", how="left", maintain_order="left")["longest"]
        test = (frame["seq_len"] == longest).fill_null(False)
        yield "leave_range_out:seq<longest->seq=longest", ~test, test


def evaluate_split(frame: pl.DataFrame, train_mask: pl.Series, test_mask: pl.Series, label: str) -> dict | None:
    """A fresh predictor (nested calibration) on the training rows, scored on the test rows."""
    train, test = frame.filter(train_mask), frame.filter(test_mask)
    if train.height < MIN_ROWS or not test.height:
        return None
    try:
        predictor = Predictor.fit(train)
    except NotEnoughDataError:
        return None
    predictor.schema["usable"] = True
    answer = predictor.predict(test)
    base_value, base_low, base_high = baseline(train, test)
    rows = test.select("p50_ms", "roofline_ms").with_columns(
        contaminated=pl.Series(_contaminated(test)), in_domain=answer["source"] == "predicted",
        predicted_ms=answer["latency_ms"], predicted_low=answer["latency_low_ms"],
        predicted_high=answer["latency_high_ms"], baseline_ms=pl.Series(base_value),
        baseline_low=pl.Series(base_low), baseline_high=pl.Series(base_high))
    result = _pooled(rows, label, [label.split(":", 1)[1]])
    if "peak_rss_mb" in test.columns and test["peak_rss_mb"].null_count() == 0:
        result["memory_predictor"] = metrics(test["peak_rss_mb"].to_numpy(), answer["memory_mb"].to_numpy(),
                                             answer["memory_low_mb"].to_numpy(), answer["memory_high_mb"].to_numpy())
    return result


def evaluate_all(frame: pl.DataFrame, *, recommendations: bool = True) -> dict:
    """Every split the data allow; ``headline`` is leave-architecture-out; ``unseen_architecture_residuals``
    (metric -> array) are its residuals, for the final predictor's calibration; ``held_out_rows`` are its
    predictions of every measured row (:func:`held_out_rows`)."""
    splits, residuals, oof = {}, None, None
    if frame["architecture"].n_unique() >= 3:
        splits["leave_architecture_out"], oof = leave_architecture_out(frame)
        in_domain = oof["in_domain"].to_numpy()
        residuals = {"latency": oof["residual"].to_numpy()[in_domain]}
        if "memory_residual" in oof.columns and oof["memory_residual"].null_count() == 0:
            residuals["memory"] = oof["memory_residual"].to_numpy()[in_domain]
    for label, train_mask, test_mask in held_out_splits(frame):
        result = evaluate_split(frame, train_mask, test_mask, label)
        if result is not None:
            splits[label] = result
    family = splits.get("leave_architecture_out")
    headline = {"method": "leave_one_architecture_out", "n_rows": frame.height,
                "n_groups": family["n_groups"] if family else 0, "mape": None, "median_ape": None,
                "within_10pct": None, "within_20pct": None, "coverage": None, "baseline_mape": None}
    if family:
        headline.update({k: family["predictor"][k] for k in ("mape", "median_ape", "within_10pct",
                                                              "within_20pct", "coverage")})
        headline["baseline_mape"] = family["roofline_baseline"]["mape"]
        headline["baseline_within_10pct"] = family["roofline_baseline"]["within_10pct"]
        headline["estimators"] = family["estimators"]
        headline["by_mode"] = family["by_mode"]
    out = {"headline": headline, "splits": splits, "unseen_architecture_residuals": residuals,
           "held_out_rows": held_out_rows(oof) if oof is not None else None}
    if recommendations and oof is not None:
        out["recommendations"] = evaluate_recommendations(oof)
    return out


def held_out_rows(oof: pl.DataFrame) -> pl.DataFrame:
    """Each measured configuration's latency as predicted without its family, with its interval, what answered
    (the boosters, or the roofline fallback for a row outside their domain) and the measurement: what the
    comparison report plots as predicted against measured."""
    return oof.select(
        "family", "preset", "target", "batch_size", "seq_len", "precision", "threads", "mode",
        *[c for c in IDENTITY_COLUMNS if c in oof.columns],
        pl.lit(PREDICTED_METRIC).alias("metric"),
        pl.col("predicted_ms").alias("value"),
        pl.col("predicted_low").alias("interval_low"),
        pl.col("predicted_high").alias("interval_high"),
        pl.when(pl.col("in_domain")).then(pl.lit("held out: predictor without this architecture"))
        .otherwise(pl.lit("held out: roofline fallback")).alias("source"),
        pl.col("p50_ms").alias("measured_p50_ms"),
    )


# ---- recommendations ---------------------------------------------------------------------------------------
def evaluate_recommendations(oof: pl.DataFrame) -> dict:
    """On each held-out model: how often the pick made from predictions alone is the measured optimum, and the
    mean regret (how much worse the pick measured than the optimum), per objective; the roofline baseline's
    picks beside them. A decision is one (model, sequence, mode) with at least two measured candidates
    (target x batch x precision x threads). Prefill and decode rows are not decisions the inference recommender
    makes (a generation candidate is a whole sequence), so they are left out."""
    from hwbench_pipeline.predict.recommender import OBJECTIVES, Constraints, rank

    outcomes: dict[str, dict[str, list]] = {}
    forward = oof.filter(~pl.col("mode").is_in(GENERATION_MODES))
    for _, group in forward.group_by(["family", "preset", "seq_len", "mode"], maintain_order=True):
        if group.height < 2:
            continue
        truth = _figures(group, "p50_ms")
        for objective in ("latency", "throughput"):
            column, maximize, _ = OBJECTIVES[objective]
            best = rank(truth, objective, Constraints()).pick
            for who, latency in (("predictor", "predicted_ms"), ("roofline_baseline", "baseline_ms")):
                pick = rank(_figures(group, latency), objective, Constraints()).pick
                actual = truth.filter(pl.col("key") == pick["key"]).row(0, named=True)
                regret = (best[column] / actual[column] - 1) if maximize else (actual[column] / best[column] - 1)
                slot = outcomes.setdefault(f"{who}:{objective}", {"hit": [], "regret": []})
                slot["hit"].append(pick["key"] == best["key"])
                slot["regret"].append(regret)
    summary: dict[str, dict] = {}
    for key, slot in outcomes.items():
        who, objective = key.split(":")
        summary.setdefault(who, {})[objective] = {
            "decisions": len(slot["hit"]), "picked_optimum": float(np.mean(slot["hit"])),
            "mean_regret": float(np.mean(slot["regret"])), "max_regret": float(np.max(slot["regret"]))}
    return summary


def _figures(group: pl.DataFrame, latency_column: str) -> pl.DataFrame:
    """A candidate frame for recommender.rank from rows and a latency column (measured or predicted)."""
    return group.select(
        "target", "batch_size", "precision", latency_ms=pl.col(latency_column),
        key=pl.concat_str(["target", "batch_size", "precision", "threads"], separator="|"),
    ).with_columns(throughput_samples_s=pl.col("batch_size").cast(pl.Float64) / pl.col("latency_ms") * 1e3,
                   memory_mb=pl.lit(None, pl.Float64))


def repeat_error(first_ms: np.ndarray, second_ms: np.ndarray) -> dict:
    """How far second measurements of the same configurations land from the first ones: the noise floor no
    predictor can beat on such data (absolute percentage error against the first)."""
    first, second = np.asarray(first_ms, dtype=float), np.asarray(second_ms, dtype=float)
    ape = np.abs(second - first) / first
    return {"n": int(ape.size), "mape": float(ape.mean()), "median_ape": float(np.median(ape)),
            "within_10pct": float((ape <= 0.10).mean()), "within_20pct": float((ape <= 0.20).mean())}
