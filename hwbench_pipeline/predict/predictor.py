"""The performance predictor: XGBoost on log latency, evaluated on whole families it has not seen.

Saved in XGBoost's own UBJSON format beside a JSON file that holds the feature schema, the categorical
vocabulary, the evaluation and a fingerprint of the training rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from hwbench_pipeline.predict.features import feature_matrix, feature_names, training_frame, vocabulary

XGB_PARAMS = {
    "objective": "reg:squarederror",
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 1.0,
    "min_child_weight": 1.0,
    "seed": 0,
    "nthread": 1,
}
ROUNDS = 200
MIN_ROWS = 4


class NotEnoughDataError(ValueError):
    pass


@dataclass
class Evaluation:
    method: str
    n_rows: int
    n_groups: int
    mape: float | None
    median_ape: float | None
    within_10pct: float | None
    within_20pct: float | None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def fingerprint(frame: pl.DataFrame) -> str:
    keyed = frame.select("run_id", "target", "family", "preset", "batch_size", "seq_len", "precision", "p50_ms")
    text = keyed.sort(keyed.columns).write_csv()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fit(x: np.ndarray, y: np.ndarray, names: list[str]):
    import xgboost as xgb

    return xgb.train(XGB_PARAMS, xgb.DMatrix(x, label=y, feature_names=names), num_boost_round=ROUNDS)


def _errors(actual: np.ndarray, predicted: np.ndarray) -> dict:
    ape = np.abs(predicted - actual) / actual
    return {
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        "within_10pct": float((ape <= 0.10).mean()),
        "within_20pct": float((ape <= 0.20).mean()),
    }


def evaluate_leave_family_out(frame: pl.DataFrame, vocab: dict) -> Evaluation:
    """Train on all families but one, predict that one; pool the errors over every family held out."""
    import xgboost as xgb

    families = sorted(frame["family"].unique().to_list())
    if len(families) < 3:
        return Evaluation("leave_one_family_out", frame.height, len(families), None, None, None, None)
    names = feature_names(vocab)
    actual, predicted = [], []
    for family in families:
        train = frame.filter(pl.col("family") != family)
        test = frame.filter(pl.col("family") == family)
        booster = _fit(feature_matrix(train, vocab), np.log(train["p50_ms"].to_numpy()), names)
        pred = booster.predict(xgb.DMatrix(feature_matrix(test, vocab), feature_names=names))
        actual.append(test["p50_ms"].to_numpy())
        predicted.append(np.exp(pred))
    errors = _errors(np.concatenate(actual), np.concatenate(predicted))
    return Evaluation("leave_one_family_out", frame.height, len(families), **errors)


def train(results: pl.DataFrame, models: pl.DataFrame, out_dir: Path) -> dict:
    """Train on every measured row, evaluate held-out families, save model + schema. Returns the schema."""
    frame = training_frame(results.filter(pl.col("status") == "ok"), models)
    if frame.height < MIN_ROWS:
        raise NotEnoughDataError(f"the predictor needs at least {MIN_ROWS} measured rows, found {frame.height}")
    vocab = vocabulary(frame)
    evaluation = evaluate_leave_family_out(frame, vocab)
    names = feature_names(vocab)
    booster = _fit(feature_matrix(frame, vocab), np.log(frame["p50_ms"].to_numpy()), names)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "latency_model.ubj"
    booster.save_model(model_path)
    schema = {
        "target_variable": "log(p50_ms)",
        "features": names,
        "vocabulary": vocab,
        "xgboost_params": XGB_PARAMS,
        "rounds": ROUNDS,
        "n_rows": frame.height,
        "training_fingerprint": fingerprint(frame),
        "evaluation": evaluation.as_dict(),
        "model_file": model_path.name,
    }
    (out_dir / "latency_model.schema.json").write_text(json.dumps(schema, indent=2))
    return schema


def load(out_dir: Path):
    """The saved booster and its schema."""
    import xgboost as xgb

    schema = json.loads((out_dir / "latency_model.schema.json").read_text())
    booster = xgb.Booster()
    booster.load_model(out_dir / schema["model_file"])
    return booster, schema


def predict_latency_ms(booster, schema: dict, frame: pl.DataFrame) -> np.ndarray:
    import xgboost as xgb

    x = feature_matrix(frame, schema["vocabulary"])
    return np.exp(booster.predict(xgb.DMatrix(x, feature_names=schema["features"])))
