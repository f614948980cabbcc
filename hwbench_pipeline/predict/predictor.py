"""The performance predictor: XGBoost on how far a configuration sits from an analytical model of it.

Two boosters, both on a log scale so an error is a ratio:

* latency: ``log(p50 / (a x leaf modules + b x roofline bound))``: a per-call dispatch cost per module plus
  the roofline bound (FLOPs and bytes over the target's measured peaks) over an efficiency, both fitted per
  backend on the training rows. The analytical part carries the scale, so the trees only learn what it
  misses, and a bigger model than any trained on still gets a sensible figure (trees cannot extrapolate a
  raw latency);
* peak memory: ``log(peak RSS / memory floor)`` (process + weights + one layer's activations).

Throughput is not a third booster: every measured throughput is batch / median latency, so a separate model
could only disagree with the latency model. It is derived, interval included.

Intervals are split-conformal, calibrated on out-of-fold residuals: residuals of whole architectures held out
(for questions about a model the predictor never saw) and of random folds (for models it saw). Questions
outside the training data (a backend, precision or mode it has no rows for, FLOPs a decade beyond anything
trained on), and every question when there are too few rows, get the roofline fallback instead: the
analytical model alone, scaled by the backend's typical measured/analytical ratio (with no measurements at
all, the bare bound, with no upper limit). Where the leave-architecture-out evaluation finds the roofline baseline
more accurate than the boosters on architectures they never saw (a handful of them is too few to learn
across architectures), questions about architectures outside the training data get the roofline fallback
too (``unseen_architectures_from_roofline`` in the schema, with both errors). Each figure says which
estimator produced it (``predicted`` or ``roofline``), how confident it is, and that estimator's own
held-out error (``held_out_mape``).

Saved as XGBoost UBJSON files beside ``latency_model.schema.json`` (features, vocabulary, calibration,
peaks it was trained with, training-data fingerprint, evaluation).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from hwbench_pipeline.predict import roofline
from hwbench_pipeline.predict.features import (
    HARDWARE_COLUMNS,
    derived,
    feature_matrix,
    feature_names,
    hardware_rows,
    training_frame,
    vocabulary,
    with_hardware,
)

XGB_PARAMS = {
    "objective": "reg:squarederror",
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 2.0,
    "lambda": 1.0,
    "seed": 0,
    "nthread": 1,
}
ROUNDS = 150
LEVEL = 0.90  # the prediction intervals' nominal coverage
MIN_ROWS = 4  # fewer: no model at all
MIN_USABLE_ROWS = 30  # fewer rows or architectures: every answer comes from the roofline fallback
MIN_USABLE_ARCHITECTURES = 4
CALIBRATION_FOLDS = 5
HIGH_CONFIDENCE_RATIO = 1.5  # interval high / low
MEDIUM_CONFIDENCE_RATIO = 3.0
EXTRAPOLATION_DECADES = 1.0  # FLOPs further than this (log10) outside the training range → roofline
SCHEMA_FILE = "latency_model.schema.json"
LATENCY_FILE = "latency_model.ubj"
MEMORY_FILE = "memory_model.ubj"
PREDICTION_COLUMNS = ["latency_ms", "latency_low_ms", "latency_high_ms", "throughput_samples_s",
                      "throughput_low", "throughput_high", "memory_mb", "memory_low_mb", "memory_high_mb",
                      "source", "confidence", "interval_level", "held_out_mape"]

#: the leave-architecture-out predictions saved beside the model (predicted against measured, in the report)
HELD_OUT_FILE = "held_out_predictions.parquet"


class NotEnoughDataError(ValueError):
    pass


def fingerprint(frame: pl.DataFrame) -> str:
    """A hash of the training rows' identities and medians: two predictors with the same one saw the same data."""
    keyed = frame.select("run_id", "target", "family", "preset", "batch_size", "seq_len", "precision", "p50_ms")
    text = keyed.sort(keyed.columns).write_csv()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: how much a measured row counts in training (docs/predictor.md, "Rows that count less"): one whose host was
#: busy with other work, and one whose interval is wider than ±NOISY_HALFWIDTH
CONTAMINATED_WEIGHT = 0.25
NOISY_WEIGHT = 0.5


def measurement_weights(frame: pl.DataFrame) -> np.ndarray:
    """Each training row's weight: 1, or less for a contaminated or noisy measurement (the smaller applies)."""
    from hwbench_pipeline.bench.trackers.stats import NOISY_HALFWIDTH

    weights = np.ones(frame.height)
    if "median_ci_low_ms" in frame.columns and "median_ci_high_ms" in frame.columns:
        halfwidth = ((frame["median_ci_high_ms"] - frame["median_ci_low_ms"]) / 2 / frame["p50_ms"]).to_numpy()
        weights[np.nan_to_num(halfwidth.astype(float), nan=0.0) > NOISY_HALFWIDTH] = NOISY_WEIGHT
    if "contaminated" in frame.columns:
        weights[frame["contaminated"].fill_null(False).to_numpy().astype(bool)] = CONTAMINATED_WEIGHT
    return weights


def _fit(x: np.ndarray, y: np.ndarray, names: list[str], rounds: int = ROUNDS, weights: np.ndarray | None = None):
    import xgboost as xgb

    return xgb.train(XGB_PARAMS, xgb.DMatrix(x, label=y, weight=weights, feature_names=names),
                     num_boost_round=rounds)


def _predict(booster, x: np.ndarray, names: list[str]) -> np.ndarray:
    import xgboost as xgb

    return booster.predict(xgb.DMatrix(x, feature_names=names))


def conformal_quantiles(residuals: np.ndarray, level: float) -> tuple[float, float] | None:
    """Signed residual quantiles for a two-sided interval of ``level`` (finite-sample corrected)."""
    n = residuals.size
    if n < 5:
        return None
    tail = (1 - level) / 2
    lo_rank = max(math.floor(tail * (n + 1)), 1)
    hi_rank = min(math.ceil((1 - tail) * (n + 1)), n)
    ordered = np.sort(residuals)
    return float(ordered[lo_rank - 1]), float(ordered[hi_rank - 1])


def _folds(groups: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """Row masks of k folds that keep each group whole (groups spread round-robin after a seeded shuffle)."""
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(unique)
    k = min(k, unique.size)
    return [np.isin(groups, unique[i::k]) for i in range(k)]


def _out_of_fold(x: np.ndarray, y: np.ndarray, names: list[str], folds: list[np.ndarray],
                 weights: np.ndarray | None = None) -> np.ndarray:
    residuals = []
    for test in folds:
        if test.all() or not test.any():
            continue
        booster = _fit(x[~test], y[~test], names, weights=None if weights is None else weights[~test])
        residuals.append(y[test] - _predict(booster, x[test], names))
    return np.concatenate(residuals) if residuals else np.empty(0)


def calibrate(x: np.ndarray, y: np.ndarray, names: list[str], architectures: np.ndarray, level: float,
              unseen_residuals: np.ndarray | None = None, weights: np.ndarray | None = None) -> dict:
    """Interval quantiles for questions about models never seen and about seen ones.

    ``unseen_residuals``: out-of-fold residuals of whole architectures held out, when the caller has them
    already (training computes them for its evaluation); otherwise they come from architecture-grouped folds.
    """
    if unseen_residuals is None and np.unique(architectures).size > 2:
        unseen_residuals = _out_of_fold(x, y, names, _folds(architectures, CALIBRATION_FOLDS), weights)
    seen = _out_of_fold(x, y, names, _folds(np.arange(len(y)), CALIBRATION_FOLDS), weights)
    return {"unseen_model": conformal_quantiles(unseen_residuals, level) if unseen_residuals is not None else None,
            "seen_model": conformal_quantiles(seen, level)}


def targets_of(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select([c for c in frame.columns if c in HARDWARE_COLUMNS])


def latency_target(frame: pl.DataFrame, overhead: dict | None = None) -> np.ndarray:
    """What the latency booster learns: log(measured median / two-term model); with no overhead model, log
    (measured median / roofline bound), the roofline baseline's view."""
    return np.log(frame["p50_ms"].to_numpy() / roofline.overhead_model_ms(frame, overhead))


def memory_target(frame: pl.DataFrame, baselines: dict[str, float]) -> np.ndarray | None:
    """What the memory booster learns: log(peak RSS / memory floor); None without a peak for every row."""
    if "peak_rss_mb" not in frame.columns or frame["peak_rss_mb"].drop_nulls().len() != frame.height:
        return None
    return np.log(frame["peak_rss_mb"].to_numpy() / memory_floor(frame, baselines).to_numpy())


def _memory_baselines(frame: pl.DataFrame) -> dict[str, float]:
    """Median RSS of a fresh worker before the model is built, per backend (the process floor)."""
    if "baseline_rss_mb" not in frame.columns:
        return {}
    rows = frame.filter(pl.col("baseline_rss_mb").is_not_null()).group_by("backend").agg(
        pl.col("baseline_rss_mb").median())
    out = {b: float(v) for b, v in rows.iter_rows()}
    if frame["baseline_rss_mb"].drop_nulls().len():
        out["*"] = float(frame["baseline_rss_mb"].drop_nulls().median())
    return out


def memory_floor(frame: pl.DataFrame, baselines: dict[str, float]) -> pl.Series:
    base = pl.col("backend").replace_strict(baselines, default=baselines.get("*", 0.0), return_dtype=pl.Float64)
    return frame.select(roofline.memory_floor_mb(frame, base).alias("floor"))["floor"]


@dataclass
class Predictor:
    """Both boosters and everything needed to answer a question honestly."""

    schema: dict
    latency: object | None = None
    memory: object | None = None
    names: list[str] = field(default_factory=list)

    @property
    def numeric_features(self) -> list[str]:
        """The numeric features, in the order the boosters were trained on (the names without a category)."""
        return [name for name in self.names if "=" not in name]

    @property
    def usable(self) -> bool:
        return bool(self.schema.get("usable")) and self.latency is not None

    # ---- training --------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, frame: pl.DataFrame, *, level: float = LEVEL, calibrate_intervals: bool = True,
            unseen_residuals: dict[str, np.ndarray] | None = None, memory: bool = True) -> Predictor:
        """Train on a feature frame of measured rows (see features.training_frame with targets).

        ``unseen_residuals`` (metric -> residuals of whole architectures held out) skips recomputing them;
        ``memory=False`` trains the latency booster alone (the planner's committee asks only about latency).
        """
        if frame.height < MIN_ROWS:
            raise NotEnoughDataError(f"the predictor needs at least {MIN_ROWS} measured rows, found {frame.height}")
        vocab = vocabulary(frame)
        names = feature_names(vocab)
        x = feature_matrix(frame, vocab)
        architectures = frame["architecture"].to_numpy()
        baselines = _memory_baselines(frame)
        # the two-term model's two coefficients are fitted on every training row, the calibration folds included
        overhead = roofline.fit_overhead_model(frame)
        y_latency = latency_target(frame, overhead)
        y_memory = memory_target(frame, baselines) if memory else None
        backends = frame["backend"].to_numpy()
        log_flops = frame["log_flops"].to_numpy()
        n_architectures = int(np.unique(architectures).size)
        schema = {
            "target_variable": "log(p50_ms / roofline_ms); peak memory: log(peak_rss_mb / memory floor)",
            "features": names,
            "vocabulary": vocab,
            "xgboost_params": XGB_PARAMS,
            "rounds": ROUNDS,
            "n_rows": frame.height,
            "n_architectures": n_architectures,
            "usable": frame.height >= MIN_USABLE_ROWS and n_architectures >= MIN_USABLE_ARCHITECTURES,
            "seen_architectures": sorted(set(frame["architecture"].to_list())),
            "interval_level": level,
            "seen_models": sorted({f"{f}/{p}" for f, p in frame.select("family", "preset").iter_rows()}),
            "seen_backends": sorted(set(frame["backend"].to_list())),
            "seen_targets": sorted(set(frame["target"].to_list())),
            "flops_range_log10": [float(log_flops.min()), float(log_flops.max())],
            "overhead_model": overhead,
            "efficiency": roofline.Efficiency(y_latency, backends, level).as_dict(),
            "memory_efficiency": roofline.Efficiency(y_memory, backends, level).as_dict()
            if y_memory is not None else None,
            "process_baseline_mb": baselines,
            "targets": hardware_rows(targets_of(frame)).to_dicts(),
            "training_fingerprint": fingerprint(frame),
            "trained_at": datetime.now(UTC).isoformat(),
        }
        weights = measurement_weights(frame)
        schema["down_weighted_rows"] = int((weights < 1).sum())
        latency = _fit(x, y_latency, names, weights=weights)
        memory = _fit(x, y_memory, names, weights=weights) if y_memory is not None else None
        if calibrate_intervals:
            given = unseen_residuals or {}
            schema["calibration"] = {"latency": calibrate(x, y_latency, names, architectures, level,
                                                          given.get("latency"), weights)}
            if y_memory is not None:
                schema["calibration"]["memory"] = calibrate(x, y_memory, names, architectures, level,
                                                            given.get("memory"), weights)
        return cls(schema=schema, latency=latency, memory=memory, names=names)

    def log_ratios(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """The boosters' raw answers (log measured/bound, log peak/floor), no fallback, no interval."""
        x = feature_matrix(frame, self.schema["vocabulary"], self.numeric_features)
        memory = _predict(self.memory, x, self.names) if self.memory is not None else None
        return _predict(self.latency, x, self.names), memory

    # ---- answering -------------------------------------------------------------------------------------------
    def predict(self, frame: pl.DataFrame) -> pl.DataFrame:
        """PREDICTION_COLUMNS for every row of a feature frame (query_frame), each labelled with its source and
        that estimator's latency MAPE on architectures held out (NaN before an evaluation)."""
        n = frame.height
        analytic = roofline.overhead_model_ms(frame, self.schema.get("overhead_model"))
        floor = memory_floor(frame, self.schema.get("process_baseline_mb", {})).to_numpy()
        backends = frame["backend"].to_list()
        lat_value, lat_lo, lat_hi = self.roofline_answer(analytic, backends, self.schema.get("efficiency"))
        mem_value, mem_lo, mem_hi = self.roofline_answer(floor, backends, self.schema.get("memory_efficiency"))
        source = np.array(["roofline"] * n, dtype=object)
        confidence = np.array(["low"] * n, dtype=object)
        use = self.in_domain(frame) if self.usable else np.zeros(n, dtype=bool)
        if self.schema.get("unseen_architectures_from_roofline"):
            use &= frame["architecture"].is_in(self.schema.get("seen_architectures", [])).to_numpy()
        if use.any():
            sub = frame.filter(pl.Series(use))
            x = feature_matrix(sub, self.schema["vocabulary"], self.numeric_features)
            seen = np.array([f"{f}/{p}" in set(self.schema["seen_models"])
                             for f, p in sub.select("family", "preset").iter_rows()])
            lat = self._conformal_answer(self.latency, x, seen, "latency", analytic[use])
            lat_value[use], lat_lo[use], lat_hi[use] = lat
            if self.memory is not None:
                mem_value[use], mem_lo[use], mem_hi[use] = self._conformal_answer(
                    self.memory, x, seen, "memory", floor[use])
            source[use] = "predicted"
            counted = (sub["flops_source"] != "estimated").to_numpy() if "flops_source" in sub.columns \
                else np.ones(sub.height, dtype=bool)
            confidence[use] = np.where(counted, width_confidence(lat[1], lat[2]), "low")
        batch = frame["batch_size"].cast(pl.Float64).to_numpy()
        level = np.where(np.isfinite(lat_hi), self.schema.get("interval_level", LEVEL), np.nan)
        errors = (self.schema.get("evaluation") or {}).get("estimators") or {}
        held_out = np.array([(errors.get(s) or {}).get("mape") for s in source], dtype=float)
        return pl.DataFrame({
            "latency_ms": lat_value, "latency_low_ms": lat_lo, "latency_high_ms": lat_hi,
            "throughput_samples_s": batch / lat_value * 1e3,
            "throughput_low": batch / lat_hi * 1e3, "throughput_high": batch / lat_lo * 1e3,
            "memory_mb": mem_value, "memory_low_mb": mem_lo, "memory_high_mb": mem_hi,
            "source": source.astype(str), "confidence": confidence.astype(str), "interval_level": level,
            "held_out_mape": held_out,
        })

    def in_domain(self, frame: pl.DataFrame) -> np.ndarray:
        """Rows the boosters may answer: a backend, device kind, mode and precision trained on, and FLOPs near
        the trained range."""
        lo, hi = self.schema["flops_range_log10"]
        log_flops = frame["log_flops"].to_numpy()
        backend_ok = frame["backend"].is_in(self.schema["seen_backends"]).to_numpy()
        kinds = self.schema["vocabulary"]["device_kind"]
        kind_ok = frame["device_kind"].is_in(kinds).to_numpy()
        near = (log_flops >= lo - EXTRAPOLATION_DECADES) & (log_flops <= hi + EXTRAPOLATION_DECADES)
        mode_ok = frame["mode"].is_in(self.schema["vocabulary"]["mode"]).to_numpy()
        precision_ok = frame["precision"].is_in(self.schema["vocabulary"]["precision"]).to_numpy()
        return backend_ok & kind_ok & near & mode_ok & precision_ok

    def _conformal_answer(self, booster, x: np.ndarray, seen: np.ndarray, metric: str, scale: np.ndarray):
        log_ratio = _predict(booster, x, self.names)
        value = scale * np.exp(log_ratio)
        calibration = self.schema.get("calibration", {}).get(metric, {})
        lo, hi = np.full(len(value), np.nan), np.full(len(value), np.nan)
        for mask, pool in ((seen, "seen_model"), (~seen, "unseen_model")):
            quantiles = calibration.get(pool) or calibration.get("unseen_model") or calibration.get("seen_model")
            if quantiles is None:
                lo[mask], hi[mask] = value[mask], np.inf
                continue
            lo[mask] = value[mask] * np.exp(min(quantiles[0], 0.0))
            hi[mask] = value[mask] * np.exp(max(quantiles[1], 0.0))
        return value, lo, hi

    @staticmethod
    def roofline_answer(scale: np.ndarray, backends: list[str], efficiency: dict | None):
        """The roofline fallback: the analytical figure (the bound, plus the per-module overhead when fitted)
        times the typical measured/analytical ratio of the backend, with that ratio's spread as interval."""
        value, lo, hi = scale.astype(float).copy(), scale.astype(float).copy(), np.full(len(scale), np.inf)
        if not efficiency:
            return value, lo, hi  # nothing measured anywhere: the bound itself, no upper limit known
        for i, backend in enumerate(backends):
            stats = efficiency["by_backend"].get(backend) or efficiency["pooled"]
            if stats:
                median, q_lo, q_hi = stats
                value[i], lo[i], hi[i] = scale[i] * math.exp(median), scale[i] * math.exp(min(q_lo, median)), \
                    scale[i] * math.exp(max(q_hi, median))
        return value, lo, hi

    # ---- saving ----------------------------------------------------------------------------------------------
    def save(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.latency.save_model(out_dir / LATENCY_FILE)
        self.schema["model_file"] = LATENCY_FILE
        if self.memory is not None:
            self.memory.save_model(out_dir / MEMORY_FILE)
            self.schema["memory_model_file"] = MEMORY_FILE
        path = out_dir / SCHEMA_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.schema, indent=2, default=_json_default))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, out_dir: Path) -> Predictor:
        import xgboost as xgb

        schema = json.loads((out_dir / SCHEMA_FILE).read_text())
        latency = xgb.Booster()
        latency.load_model(out_dir / schema["model_file"])
        memory = None
        if schema.get("memory_model_file"):
            memory = xgb.Booster()
            memory.load_model(out_dir / schema["memory_model_file"])
        return cls(schema=schema, latency=latency, memory=memory, names=schema["features"])

    def targets_frame(self) -> pl.DataFrame:
        """The peaks the predictor was trained with (to answer when no hardware_targets table is at hand)."""
        return pl.DataFrame(self.schema.get("targets", []))


def width_confidence(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Confidence from the calibrated interval's width: high within about ±20 % (high/low <= 1.5), medium
    within a factor of 3, low beyond (or without an upper bound)."""
    ratio = np.where(low > 0, high / np.where(low > 0, low, 1.0), np.inf)
    return np.where(ratio <= HIGH_CONFIDENCE_RATIO, "high", np.where(ratio <= MEDIUM_CONFIDENCE_RATIO, "medium", "low"))


def _json_default(value):
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# ---- the asset's entry point and the helpers older callers use ---------------------------------------------
def train(results: pl.DataFrame, models: pl.DataFrame, targets: pl.DataFrame, out_dir: Path,
          evaluate: bool = True) -> dict:
    """Train on every measured row, evaluate on held-out data, save. Returns the saved schema."""
    from hwbench_pipeline.predict.evaluation import evaluate_all

    frame = training_frame(results, models, targets)
    if frame.height < MIN_ROWS:
        raise NotEnoughDataError(f"the predictor needs at least {MIN_ROWS} measured rows, found {frame.height}")
    evaluations = evaluate_all(frame) if evaluate else None
    residuals = evaluations.pop("unseen_architecture_residuals", None) if evaluations else None
    held_out = evaluations.pop("held_out_rows", None) if evaluations else None
    predictor = Predictor.fit(frame, unseen_residuals=residuals)
    if evaluations:
        predictor.schema["evaluations"] = evaluations
        predictor.schema["evaluation"] = evaluations["headline"]
        predictor.schema["unseen_architectures_from_roofline"] = roofline_beats_boosters(evaluations["headline"])
    predictor.save(out_dir)
    path = Path(out_dir) / HELD_OUT_FILE
    if held_out is not None:
        tmp = path.with_name(f".{path.name}.tmp")
        held_out.write_parquet(tmp)
        tmp.replace(path)
    else:
        path.unlink(missing_ok=True)  # a previous model's held-out rows do not describe this one
    return predictor.schema


def roofline_beats_boosters(headline: dict) -> bool:
    """Whether the roofline baseline's leave-architecture-out MAPE is below the boosters': then architectures the
    predictor was not trained on are better answered by the roofline."""
    mape, baseline = headline.get("mape"), headline.get("baseline_mape")
    return mape is not None and baseline is not None and baseline < mape


def held_out_predictions(out_dir: Path) -> pl.DataFrame | None:
    """The saved predictor's leave-architecture-out predictions of the rows it was trained on (None until a
    predictor with an evaluation is saved)."""
    path = Path(out_dir) / HELD_OUT_FILE
    return pl.read_parquet(path) if path.exists() else None


def load(out_dir: Path):
    """(latency booster, schema) of a saved predictor."""
    predictor = Predictor.load(out_dir)
    return predictor.latency, predictor.schema


def predict_latency_ms(booster, schema: dict, frame: pl.DataFrame) -> np.ndarray:
    """Booster latency for measured-style rows (hardware columns filled from the saved peaks when absent)."""
    from hwbench_pipeline.predict.features import feature_matrix as matrix

    if "roofline_ms" not in frame.columns:
        if "peak_gbps" not in frame.columns:
            frame = with_hardware(frame, pl.DataFrame(schema["targets"]))
        frame = derived(frame)
    scale = roofline.overhead_model_ms(frame, schema.get("overhead_model"))
    numeric = [name for name in schema["features"] if "=" not in name]
    return scale * np.exp(_predict(booster, matrix(frame, schema["vocabulary"], numeric), schema["features"]))
