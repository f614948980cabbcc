"""Which configurations to measure next: the ones that should teach the predictor most for their cost.

Strategies (docs/planner.md):

* ``uncertainty``: the widest relative prediction interval (high / low) of the saved predictor;
* ``committee``: query by committee: boosters trained on bootstrap samples of the measured architectures
  disagree most about the configuration's latency (the standard deviation of their log answers);
* ``decision``: the configuration whose measurement could change a recommendation: among the options of one
  decision (a model at a sequence length: target x batch x precision), how often the committee's members
  disagree about whether it is the fastest, or the one with the most throughput;
* ``random`` and ``grid`` baselines: a seeded random order, and the order a sweep takes (every model at the
  first shape, then every model at the next).

With a budget in machine time, the informed strategies divide their score by the configuration's predicted
wall time (``wall_time.py``). Within one batch of an informed strategy's picks, each earlier pick of the same
architecture halves a candidate's score, so a batch is not ten sizes of one model. The baselines keep their own
order, and a budget in machine time only stops them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from hwbench_pipeline.predict import roofline
from hwbench_pipeline.predict.predictor import MIN_ROWS, Predictor
from hwbench_pipeline.predict.wall_time import WallTimeModel

STRATEGIES = ("uncertainty", "committee", "decision", "random", "grid")
INFORMED = ("uncertainty", "committee", "decision")
COMMITTEE_SIZE = 8
#: each earlier pick of the same architecture in a batch multiplies a candidate's score by this
DIVERSITY = 0.5
#: what the decision strategy breaks ties with: the committee's disagreement, scaled far below one decision
TIE_BREAK = 1e-3
#: the configuration a plan's rows are keyed by (the predictions table's key)
PLAN_KEY = ["target", "family", "preset", "batch_size", "seq_len", "precision", "threads", "mode"]


class PlanError(ValueError):
    """A plan cannot be made as asked (a bad budget, an unknown strategy, nothing left to measure)."""


@dataclass(frozen=True)
class Budget:
    """What one target may spend: a number of configurations, or seconds of machine time."""

    configurations: int | None = None
    machine_s: float | None = None

    def describe(self) -> str:
        if self.configurations is not None:
            return f"{self.configurations} configurations"
        if self.machine_s < 120:
            return f"{self.machine_s:.3g} machine-seconds"
        return f"{self.machine_s / 60:.4g} machine-minutes"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_budget(text: str) -> Budget:
    """``30m``, ``2h`` or ``90s`` is machine time per target; a bare number is a number of configurations."""
    text = str(text).strip()
    if re.fullmatch(r"[0-9]+", text):
        if int(text) < 1:
            raise PlanError("a budget of configurations must be at least 1")
        return Budget(configurations=int(text))
    match = _DURATION.match(text)
    if not match:
        raise PlanError(f"budget {text!r}: give a number of configurations (40) or machine time (90s, 30m, 2h)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2).lower()]
    if seconds <= 0:
        raise PlanError("a budget of machine time must be positive")
    return Budget(machine_s=seconds)


# ---- what each strategy scores -------------------------------------------------------------------------------
def interval_width(answer: pl.DataFrame) -> np.ndarray:
    """log(high / low) of each latency interval of the predictor's answers (inf without an upper bound)."""
    low, high = answer["latency_low_ms"].to_numpy(), answer["latency_high_ms"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((low > 0) & np.isfinite(high), np.log(high / np.where(low > 0, low, 1.0)), np.inf)


def committee_log_ms(measured: pl.DataFrame, candidates: pl.DataFrame, *, size: int = COMMITTEE_SIZE,
                     seed: int = 0) -> np.ndarray:
    """(size x candidates) log latency answered by boosters each trained on a bootstrap sample of the measured
    architectures (whole architectures drawn with replacement: the disagreement is about models not seen)."""
    rng = np.random.default_rng(seed)
    unique = np.unique(measured["architecture"].to_numpy())
    members = []
    for _ in range(size):
        sample = measured  # what a member learns from when no draw has enough rows (a handful of tiny groups)
        for _attempt in range(10):
            drawn = rng.choice(unique, size=unique.size, replace=True)
            rows = pl.concat([measured.filter(pl.col("architecture") == a) for a in drawn])
            if rows.height >= MIN_ROWS:
                sample = rows
                break
        member = Predictor.fit(sample, calibrate_intervals=False, memory=False)
        log_ratio, _ = member.log_ratios(candidates)
        scale = roofline.overhead_model_ms(candidates, member.schema["overhead_model"])
        members.append(np.log(scale) + log_ratio)
    return np.vstack(members)


def decision_groups(frame: pl.DataFrame) -> np.ndarray:
    """One decision per model at a sequence length and mode: its options are target x batch x precision."""
    keys = frame.select("family", "preset", "seq_len", "mode").rows()
    return np.array(["|".join(map(str, k)) for k in keys])


def decision_value(measured: pl.DataFrame, candidates: pl.DataFrame, committee: np.ndarray) -> np.ndarray:
    """How likely measuring each candidate changes a recommendation: 2 x min(p, 1 - p) where p is the share of
    committee members in which it is its decision's best option, averaged over latency and throughput (0: every
    member agrees it is, or is not, the best; 1: they split evenly)."""
    cand_groups, done_groups = decision_groups(candidates), decision_groups(measured)
    cand_batch = candidates["batch_size"].to_numpy().astype(float)
    done_ms, done_batch = measured["p50_ms"].to_numpy(), measured["batch_size"].to_numpy().astype(float)
    sampled_ms = np.exp(committee)
    value = np.zeros(candidates.height)
    for group in np.unique(cand_groups):
        mine = np.flatnonzero(cand_groups == group)
        known = done_groups == group
        for objective in ("latency", "throughput"):
            if objective == "latency":
                own, fixed = sampled_ms[:, mine], done_ms[known]
            else:  # throughput, negated so that smaller is better here too
                own, fixed = -cand_batch[mine] / sampled_ms[:, mine], -done_batch[known] / done_ms[known]
            best_fixed = fixed.min() if fixed.size else np.inf
            winner = own.argmin(axis=1)
            wins = (own[np.arange(own.shape[0]), winner] < best_fixed)
            p = np.array([np.mean(wins & (winner == j)) for j in range(mine.size)])
            value[mine] += np.minimum(p, 1 - p)  # 2 x min(...) / 2 objectives
    return value


@dataclass
class Scored:
    """Each candidate's score under one strategy and what measuring it is expected to teach."""

    score: np.ndarray
    lesson: list[str]


def score(strategy: str, measured: pl.DataFrame, candidates: pl.DataFrame, predictor: Predictor | None, *,
          seed: int = 0) -> tuple[Scored, pl.DataFrame]:
    """(scores and lessons, the predictor's answers for the candidates)."""
    if strategy not in STRATEGIES:
        raise PlanError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    n = candidates.height
    seen = set(measured["architecture"].to_list()) if "architecture" in measured.columns else set()
    unseen = [a not in seen for a in candidates["architecture"].to_list()]
    answer = predictor.predict(candidates) if predictor is not None else pl.DataFrame()
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(n)
        scores = np.empty(n)
        scores[order] = np.arange(n, 0, -1, dtype=float)
        return Scored(scores, ["a random pick (baseline)"] * n), answer
    if strategy == "grid":
        return Scored(grid_order(candidates, seed), ["the next configuration of the grid (baseline)"] * n), answer
    if strategy == "uncertainty":
        if predictor is None:
            raise PlanError("the uncertainty strategy needs a trained predictor")
        width = interval_width(answer)
        lessons = [f"the {_interval_text(w)} interval of a {'model not measured yet' if u else 'measured model'} "
                   f"({s})" for w, u, s in zip(width, unseen, answer["source"].to_list(), strict=True)]
        finite = width[np.isfinite(width)]
        ceiling = (finite.max() if finite.size else 0.0) + 1.0  # no upper bound ranks above every finite one
        return Scored(np.where(np.isfinite(width), width, ceiling), lessons), answer
    if measured.height < MIN_ROWS or "architecture" not in measured.columns or \
            measured["architecture"].n_unique() < 2:
        raise PlanError(f"the {strategy} strategy needs at least {MIN_ROWS} measured rows of two architectures or "
                        f"more; found {measured.height}")
    committee = committee_log_ms(measured, candidates, seed=seed)
    spread = committee.std(axis=0)
    if strategy == "committee":
        lessons = [f"{COMMITTEE_SIZE} boosters disagree by ±{math.expm1(s):.0%}"
                   + (" on a model not measured yet" if u else "") for s, u in zip(spread, unseen, strict=True)]
        return Scored(spread, lessons), answer
    value = decision_value(measured, candidates, committee)
    lessons = [f"could change {family}/{preset} seq {seq}'s pick: the committee splits {v:.0%} of the way"
               if v > 0 else f"no pick in sight changes; the boosters disagree by ±{math.expm1(s):.0%}"
               for family, preset, seq, v, s in zip(candidates["family"], candidates["preset"], candidates["seq_len"],
                                                     value, spread, strict=True)]
    return Scored(value + TIE_BREAK * spread, lessons), answer


def grid_order(candidates: pl.DataFrame, seed: int = 0) -> np.ndarray:
    """Scores that rank a sweep's order: shape by shape (batch, sequence, precision ascending), every model at
    one shape (in a seeded order) before the next shape."""
    models = sorted(set(candidates.select("family", "preset").rows()))
    rank = {m: i for i, m in enumerate(np.random.default_rng(seed).permutation(len(models)))}
    order = {m: rank[i] for i, m in enumerate(models)}
    keys = [(b, s, p, order[(f, pr)]) for f, pr, b, s, p in candidates.select(
        "family", "preset", "batch_size", "seq_len", "precision").rows()]
    ranked = sorted(range(len(keys)), key=lambda i: keys[i])
    scores = np.empty(len(keys))
    scores[ranked] = np.arange(len(keys), 0, -1, dtype=float)
    return scores


def _interval_text(width: float) -> str:
    return "unbounded" if not np.isfinite(width) else f"×{math.exp(width):.2g}-wide"


# ---- choosing a batch ------------------------------------------------------------------------------------------
def select(candidates: pl.DataFrame, scored: Scored, budget: Budget, wall_s: np.ndarray | None, *,
           diverse: bool = True, cost_weighted: bool | None = None) -> list[int]:
    """Candidate indices, best first, within the budget: greedy on score (per predicted second when
    ``cost_weighted``, by default with a budget in machine time), each earlier pick of the same architecture
    halving a candidate's score when ``diverse``. A candidate whose score or wall time is not a finite number is
    never picked."""
    if budget.machine_s is not None and wall_s is None:
        raise PlanError("a budget in machine time needs a wall-time model")
    weighted = budget.machine_s is not None if cost_weighted is None else cost_weighted
    base = scored.score.astype(float)
    usable = np.isfinite(base)
    if wall_s is not None and (weighted or budget.machine_s is not None):
        usable &= np.isfinite(wall_s) & (wall_s > 0)
        if weighted:
            base = np.where(usable, base / np.where(usable, wall_s, 1.0), 0.0)
    codes = np.unique(candidates["architecture"].fill_null("").to_numpy(), return_inverse=True)[1]
    picks_of = np.zeros(codes.max() + 1 if codes.size else 0)
    picked: list[int] = []
    available = usable.copy()
    left = budget.machine_s
    limit = budget.configurations if budget.configurations is not None else candidates.height
    while len(picked) < limit:
        if left is not None:
            available &= wall_s <= left  # what no longer fits is out for good: what is left only shrinks
        if not available.any():
            break
        penalty = DIVERSITY ** picks_of[codes] if diverse else np.ones(codes.size)
        # the tiny term orders equal scores (zero ones too) by diversity, then by position
        best = int(np.argmax(np.where(available, base * penalty + penalty * 1e-12, -np.inf)))
        available[best] = False
        if left is not None:
            left -= wall_s[best]
        picked.append(best)
        picks_of[codes[best]] += 1
    return picked


@dataclass
class Plan:
    """The configurations to measure on one target, best first, with why each was chosen."""

    target: str
    strategy: str
    budget: Budget
    picks: pl.DataFrame
    n_candidates: int
    wall_model: str | None

    @property
    def predicted_wall_s(self) -> float:
        return float(self.picks["predicted_wall_s"].sum()) if "predicted_wall_s" in self.picks.columns else math.nan


def plan_target(target: str, measured: pl.DataFrame, candidates: pl.DataFrame, predictor: Predictor | None,
                strategy: str, budget: Budget, wall_model: WallTimeModel | None, *, seed: int = 0,
                scored_all: tuple[Scored, pl.DataFrame] | None = None) -> Plan:
    """Choose the configurations of ``target`` to measure next among ``candidates`` (a feature frame of
    configurations not measured), learning from ``measured`` (a feature frame of measured rows).

    ``scored_all`` is :func:`score` of every candidate, every target's: a round scores once, so that a decision's
    options on other targets compete with this target's and the committee is trained once. Without it, only this
    target's candidates are scored."""
    on_target = (candidates["target"] == target).to_numpy() if candidates.height else np.zeros(0, dtype=bool)
    mine = candidates.filter(pl.Series(on_target))
    if not mine.height:
        raise PlanError(f"{target}: every configuration of the candidate space is measured or known to fail")
    if scored_all is None:
        scored, answer = score(strategy, measured, mine, predictor, seed=seed)
    else:
        every, every_answer = scored_all
        if every.score.size != candidates.height or every_answer.height not in (0, candidates.height):
            raise ValueError(f"scored_all holds {every.score.size} scores for {candidates.height} candidates: it "
                             "must be score() of exactly these candidates, in their order")
        at = np.flatnonzero(on_target)
        scored = Scored(every.score[at], [every.lesson[i] for i in at])
        answer = every_answer.filter(pl.Series(on_target)) if every_answer.height else every_answer
    wall_s = wall_model.predict(mine) if wall_model is not None else None
    informed = strategy in INFORMED  # the baselines keep their own order: no cost weighting, no diversity
    chosen = select(mine, scored, budget, wall_s, diverse=informed,
                    cost_weighted=informed and budget.machine_s is not None)
    if not chosen and budget.machine_s is not None and wall_s is not None:
        raise PlanError(f"{target}: a budget of {budget.describe()} is less than the shortest predicted wall time "
                        f"of a candidate ({np.nanmin(wall_s):.0f} s)")
    if "target" in measured.columns and target not in set(measured["target"].to_list()):
        # the boosters have never seen this target: what they say of it is what they say of the others
        scored.lesson = [f"{lesson}; the first rows of {target}" for lesson in scored.lesson]
    carried = [c for c in ("architecture", "pool_index") if c in mine.columns]  # pool_index: pool_eval's rows
    picks = mine.select([*PLAN_KEY, *carried]).with_columns(
        strategy=pl.lit(strategy), score=pl.Series(scored.score, dtype=pl.Float64),
        expected_lesson=pl.Series(scored.lesson, dtype=pl.String))
    if answer.height:
        picks = picks.with_columns(predicted_ms=answer["latency_ms"], predicted_low_ms=answer["latency_low_ms"],
                                   predicted_high_ms=answer["latency_high_ms"], prediction_source=answer["source"])
    if wall_s is not None:
        picks = picks.with_columns(predicted_wall_s=pl.Series(wall_s, dtype=pl.Float64))
    picks = picks[chosen].with_row_index("rank", offset=1)
    return Plan(target=target, strategy=strategy, budget=budget, picks=picks, n_candidates=mine.height,
                wall_model=wall_model.describe() if wall_model is not None else None)
