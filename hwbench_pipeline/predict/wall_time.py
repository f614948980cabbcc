"""How long measuring a configuration occupies the machine (build, export, warm-up, stopping), learned from
stored runs: what a budget in machine-minutes is spent against.

What a stored row says it took: see :func:`observed_wall_s`. The model is a booster on log(seconds) over the
predictor's features, with its error on held-out rows; with fewer rows than ``MIN_ROWS``, the median per backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from hwbench_pipeline.predict.features import feature_matrix, feature_names, vocabulary

MIN_ROWS = 12
FOLDS = 5
PARAMS = {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.1, "subsample": 0.8, "min_child_weight": 2.0,
          "seed": 0, "nthread": 1}
ROUNDS = 100


class NoWallTimesError(ValueError):
    """No stored run says how long it took: a budget in machine time cannot be planned."""


def observed_wall_s(frame: pl.DataFrame) -> pl.Series:
    """Each row's time on the machine in seconds, null where the row does not say: a benchmark's ``machine_s``
    (its processes timed from launch to row by the dispatcher), a coverage probe's ``wall_s`` (spawn to row).
    Rows measured before ``machine_s`` existed say neither: from the first process's start to the last one's end,
    other configurations' processes ran too (a partition is measured in rounds), so that span is not theirs."""
    parts = [pl.col(c).cast(pl.Float64) for c in ("machine_s", "wall_s") if c in frame.columns]
    if not parts:
        return pl.Series("wall_s", [None] * frame.height, dtype=pl.Float64)
    return frame.select(pl.coalesce(parts).alias("wall_s"))["wall_s"]


@dataclass
class WallTimeModel:
    """Predicted wall seconds per configuration, and how wrong that was on runs held out."""

    vocab: dict = field(default_factory=dict)
    booster: object | None = None
    per_backend: dict[str, float] = field(default_factory=dict)
    n_rows: int = 0
    held_out_mape: float | None = None

    @classmethod
    def fit(cls, frame: pl.DataFrame) -> WallTimeModel:
        """Learn from the rows of a feature frame that say how long they took; raises NoWallTimesError when none
        does."""
        wall = observed_wall_s(frame)
        rows = frame.with_columns(wall.alias("_wall")).filter(pl.col("_wall") > 0)
        if not rows.height:
            raise NoWallTimesError("no stored run records its time on the machine (machine_s); measure a few "
                                   "configurations first, or give the budget as a number of configurations")
        per_backend = {b: float(v) for b, v in rows.group_by("backend").agg(pl.col("_wall").median()).iter_rows()}
        per_backend["*"] = float(rows["_wall"].median())
        model = cls(per_backend=per_backend, n_rows=rows.height)
        if rows.height < MIN_ROWS:
            return model
        y = np.log(rows["_wall"].to_numpy())
        model.vocab = vocabulary(rows)
        model.booster = _fit(feature_matrix(rows, model.vocab), y, model.vocab)
        model.held_out_mape = _cross_validated_mape(rows, y)
        return model

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Wall seconds for each configuration of a feature frame."""
        if self.booster is None:
            fallback = self.per_backend["*"]
            return np.array([self.per_backend.get(b, fallback) for b in frame["backend"].to_list()], dtype=float)
        import xgboost as xgb

        x = xgb.DMatrix(feature_matrix(frame, self.vocab), feature_names=feature_names(self.vocab))
        return np.exp(self.booster.predict(x))

    def describe(self) -> str:
        if self.booster is None:
            return f"median wall time per backend of {self.n_rows} stored runs (too few to learn more)"
        error = f"{self.held_out_mape:.0%}" if self.held_out_mape is not None else "unknown"
        return f"booster on {self.n_rows} stored runs' wall times; held-out MAPE {error}"


def _fit(x: np.ndarray, y: np.ndarray, vocab: dict):
    import xgboost as xgb

    return xgb.train(PARAMS, xgb.DMatrix(x, label=y, feature_names=feature_names(vocab)), num_boost_round=ROUNDS)


def _cross_validated_mape(rows: pl.DataFrame, y: np.ndarray) -> float | None:
    """Mean absolute percentage error of wall times predicted by models that did not see them (random folds)."""
    import xgboost as xgb

    order = np.random.default_rng(0).permutation(rows.height)
    errors = []
    for k in range(FOLDS):
        test = np.zeros(rows.height, dtype=bool)
        test[order[k::FOLDS]] = True
        train = rows.filter(pl.Series(~test))
        vocab = vocabulary(train)
        booster = _fit(feature_matrix(train, vocab), y[~test], vocab)
        x = xgb.DMatrix(feature_matrix(rows.filter(pl.Series(test)), vocab), feature_names=feature_names(vocab))
        errors.append(np.abs(np.exp(booster.predict(x) - y[test]) - 1))
    return float(np.concatenate(errors).mean()) if errors else None
