"""Pool-based evaluation of the planner's strategies (docs/planner.md, "Evaluation").

A pool of real measurements is hidden; each strategy starts from the same few random rows, picks one batch at a
time from the rest of the pool, the predictor is retrained on what was picked, and it is scored on a fixed set of
architectures held out of the pool. The learning curve is the held-out error against configurations measured and
against the machine time they took (their recorded wall time).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from hwbench_pipeline.predict.data import probes_as_results
from hwbench_pipeline.predict.evaluation import metrics
from hwbench_pipeline.predict.features import training_frame
from hwbench_pipeline.predict.planner import INFORMED, Budget, PlanError, plan_target
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.wall_time import WallTimeModel, observed_wall_s

HELD_OUT_SHARE = 0.25
INITIAL_ROWS = 10


def load_pool(pool_path: Path, hardware_path: Path) -> pl.DataFrame:
    """The pool's timed probes as a feature frame, each with its wall time and a stable ``pool_index``."""
    raw = pl.read_parquet(pool_path)
    targets = pl.DataFrame(json.loads(Path(hardware_path).read_text()), infer_schema_length=None)
    frame = training_frame(probes_as_results(raw), None, targets)
    return frame.with_columns(wall_s=observed_wall_s(frame)).filter(pl.col("wall_s") > 0).with_row_index(
        "pool_index")


@dataclass
class Split:
    train: pl.DataFrame  # the pool the strategies pick from
    test: pl.DataFrame  # the architectures held out, never picked
    initial: list[int]  # pool_index of the rows every strategy starts from


def split(pool: pl.DataFrame, seed: int, held_out_share: float = HELD_OUT_SHARE,
          initial_rows: int = INITIAL_ROWS) -> Split:
    rng = np.random.default_rng(seed)
    architectures = sorted(pool["architecture"].unique().to_list())
    held = set(rng.choice(architectures, size=max(1, round(held_out_share * len(architectures))), replace=False))
    test = pool.filter(pl.col("architecture").is_in(sorted(held)))
    train = pool.filter(~pl.col("architecture").is_in(sorted(held)))
    initial = rng.choice(train["pool_index"].to_numpy(), size=min(initial_rows, train.height), replace=False)
    return Split(train=train, test=test, initial=sorted(int(i) for i in initial))


@dataclass
class CurvePoint:
    n_measured: int
    machine_s: float
    mape: float
    within_10pct: float


@dataclass
class Curve:
    strategy: str
    seed: int
    per_round: str
    points: list[CurvePoint] = field(default_factory=list)


def score_on(predictor: Predictor, test: pl.DataFrame) -> tuple[float, float]:
    """(MAPE, share within ±10 %) of the predictor's latency answers on the held-out rows."""
    found = metrics(test["p50_ms"].to_numpy(), predictor.predict(test)["latency_ms"].to_numpy())
    return found["mape"], found["within_10pct"]


def learning_curve(data: Split, strategy: str, per_round: Budget, *, seed: int = 0,
                   rounds: int | None = None) -> Curve:
    """Pick ``per_round`` at a time with ``strategy`` until the pool (or ``rounds``) is exhausted."""
    curve = Curve(strategy=strategy, seed=seed, per_round=per_round.describe())
    labelled = set(data.initial)
    n_round = 0
    while True:
        train = data.train.filter(pl.col("pool_index").is_in(sorted(labelled)))
        predictor = Predictor.fit(train, calibrate_intervals=strategy == "uncertainty")
        mape, within = score_on(predictor, data.test)
        curve.points.append(CurvePoint(train.height, float(train["wall_s"].sum()), mape, within))
        candidates = data.train.filter(~pl.col("pool_index").is_in(sorted(labelled)))
        if not candidates.height or (rounds is not None and n_round >= rounds):
            return curve
        wall = WallTimeModel.fit(train) if per_round.machine_s is not None else None
        try:
            picked = plan_target(candidates["target"][0], train, candidates, predictor, strategy, per_round, wall,
                                 seed=seed + n_round).picks["pool_index"].to_list()
        except PlanError:  # nothing left fits a round's machine time: the one predicted shortest is next
            picked = candidates[int(np.argmin(wall.predict(candidates)))]["pool_index"].to_list()
        labelled |= set(picked)
        n_round += 1


def full_grid(data: Split) -> tuple[float, float]:
    """The held-out error of a predictor trained on the whole pool (what every strategy ends at)."""
    return score_on(Predictor.fit(data.train, calibrate_intervals=False), data.test)


#: where benchmarks/planner_eval.py leaves its learning curves for the comparison report (under the data dir)
LEARNING_CURVES_FILE = Path("planner") / "learning_curves.json"


def average_curves(curves: list[Curve]) -> dict[str, dict[str, list[dict]]]:
    """{per_round: {strategy: points}}: each round's figures averaged over the seeds. The pools of the seeds differ
    in size (their held-out architectures do), so the curves stop at the round every seed reached: each point
    averages all of them."""
    out: dict[str, dict[str, list[dict]]] = {}
    groups: dict[tuple[str, str], list[Curve]] = {}
    for curve in curves:
        groups.setdefault((curve.per_round, curve.strategy), []).append(curve)
    for (per_round, strategy), mine in groups.items():
        points = []
        for i in range(min(len(c.points) for c in mine)):
            at = [c.points[i] for c in mine]
            points.append({"round": i, "seeds": len(at),
                           **{k: float(np.mean([getattr(p, k) for p in at]))
                              for k in ("n_measured", "machine_s", "mape", "within_10pct")}})
        out.setdefault(per_round, {})[strategy] = points
    return out


def versus_random(curves: list[dict], per_round: str) -> dict[str, list[float]]:
    """{strategy: per seed, its MAPE minus random's averaged over the budgets both reached}: below zero, the
    strategy taught the predictor more than random at the same budgets. The first point (the shared start) and
    the last (the whole pool, the same for all) are left out. ``curves``: curves_json's saved curves."""
    mine = [c for c in curves if c["per_round"] == per_round]
    random = {c["seed"]: c["points"] for c in mine if c["strategy"] == "random"}
    out: dict[str, list[float]] = {}
    for curve in sorted(mine, key=lambda c: c["seed"]):
        base = random.get(curve["seed"])
        if curve["strategy"] == "random" or base is None:
            continue
        shared = min(len(base), len(curve["points"])) - 1
        gaps = [a["mape"] - b["mape"] for a, b in zip(curve["points"][1:shared], base[1:shared], strict=True)]
        if gaps:
            out.setdefault(curve["strategy"], []).append(float(np.mean(gaps)))
    return out


def curves_json(curves: list[Curve], grid: dict[int, tuple[float, float]], meta: dict) -> dict:
    """What planner_eval saves: its settings, the full grid's error per seed and averaged, every curve, and the
    curves averaged over seeds."""
    return {"meta": meta,
            "full_grid": {str(s): {"mape": m, "within_10pct": w} for s, (m, w) in grid.items()},
            "full_grid_mean": {"mape": float(np.mean([m for m, _ in grid.values()])),
                               "within_10pct": float(np.mean([w for _, w in grid.values()]))},
            "curves": [asdict(c) for c in curves], "averaged": average_curves(curves), "informed": list(INFORMED)}
