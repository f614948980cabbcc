"""Generation advice: rank target × batch × precision × cache for one generative model.

A candidate is a configuration somebody measured (the newest successful ``generation_results`` row of its
``GENERATION_KEY``) at one prompt length and one number of new tokens, and, where a predictor that learned
generation is at hand, each target × batch × precision with the runtime's default cache that nobody measured,
predicted from its prefill and decode steps (generation_predicted.py) and labelled so. Without a predictor,
nothing else is invented.

Objectives: ``latency`` (lowest median time to first token), ``throughput`` (most tokens/s over whole
sequences, prefill included). Constraints: ``max_ttft_ms`` (TTFT p50), ``min_tokens_per_s``,
``max_latency_ms`` (the median whole sequence, end to end) and ``memory_gb`` (the measured peak: the device
allocator's on a GPU, else the process's RSS). When nothing meets them the advice says what was measured for
the model, the best figures measured, and the nearest miss.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import polars as pl

from hwbench_pipeline.bench.precision import spec_expr
from hwbench_pipeline.predict.recommender import measured_confidence
from hwbench_pipeline.warehouse.schema import GENERATION_KEY
from hwbench_pipeline.warehouse.store import Warehouse

NOT_PREDICTED_YET = "generation figures of this model are not predicted here"
NOT_PREDICTED = (f"{NOT_PREDICTED_YET}: only configurations measured by the generation scenario are ranked, and a "
                 "configuration nobody measured is not a candidate")
#: objective -> (column, best is the largest?, unit)
OBJECTIVES = {
    "latency": ("ttft_p50_ms", False, "ms to the first token (p50)"),
    "throughput": ("tokens_per_s", True, "tokens/s"),
}
#: a candidate: one measured configuration of the model at the chosen prompt and new tokens
CANDIDATE = ["target", "batch_size", "precision", "cache", "cache_precision", "threads"]
PREFERRED_PRESET = "small"  # what --model FAMILY means elsewhere in recommend, when that preset was measured
TABLE_COLUMNS = ["target", "batch", "precision", "cache", "KV precision", "threads", "TTFT p50 ms", "TTFT p99 ms",
                 "ITL p50 ms", "sequence p50 ms", "tokens/s", "peak MiB", "equal to generate()", "source",
                 "confidence"]
#: columns a predicted candidate adds (its intervals and its estimator's held-out error); null on measured ones
PREDICTED_COLUMNS = {"ttft_low_ms": pl.Float64, "ttft_high_ms": pl.Float64, "itl_low_ms": pl.Float64,
                     "itl_high_ms": pl.Float64, "latency_low_ms": pl.Float64, "latency_high_ms": pl.Float64,
                     "held_out_mape": pl.Float64}


class GenerationRequestError(ValueError):
    """A request that the measured generation rows cannot answer (one line that says what was measured)."""


@dataclass(frozen=True)
class GenerationConstraints:
    max_ttft_ms: float | None = None
    min_tokens_per_s: float | None = None
    max_latency_ms: float | None = None  # the median whole sequence (prefill and every new token)
    memory_gb: float | None = None

    def describe(self) -> str:
        given = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(given, sort_keys=True) if given else "none"

    def misses(self, row: dict) -> dict[str, float]:
        """Constraint -> how far the row misses it, as a factor over the bound (0.5: half again too slow)."""
        out = {}
        if self.max_ttft_ms is not None and row["ttft_p50_ms"] > self.max_ttft_ms:
            out["max_ttft_ms"] = row["ttft_p50_ms"] / self.max_ttft_ms - 1
        if self.min_tokens_per_s is not None and row["tokens_per_s"] < self.min_tokens_per_s:
            out["min_tokens_per_s"] = self.min_tokens_per_s / row["tokens_per_s"] - 1
        if self.max_latency_ms is not None and row["latency_ms"] > self.max_latency_ms:
            out["max_latency_ms"] = row["latency_ms"] / self.max_latency_ms - 1
        if self.memory_gb is not None:
            # a peak nobody measured cannot be shown to fit
            limit = self.memory_gb * 1024
            memory = row["memory_mb"]
            if memory is None or memory > limit:
                out["memory_gb"] = math.inf if memory is None else memory / limit - 1
        return out

    def miss_text(self, row: dict) -> list[str]:
        texts = {
            "max_ttft_ms": lambda: f"TTFT p50 {row['ttft_p50_ms']:.4g} ms > {self.max_ttft_ms:g} ms",
            "min_tokens_per_s": lambda: f"{row['tokens_per_s']:.4g} tokens/s < {self.min_tokens_per_s:g}",
            "max_latency_ms": lambda: f"sequence p50 {row['latency_ms']:.4g} ms > {self.max_latency_ms:g} ms",
            "memory_gb": lambda: ("peak memory not measured" if row["memory_mb"] is None else
                                  f"peak {row['memory_mb']:.0f} MiB > {self.memory_gb * 1024:.0f} MiB"),
        }
        out = []
        for name, factor in self.misses(row).items():
            text = texts[name]()
            out.append(text if math.isinf(factor) else f"{text} ({factor + 1:.3g}x off)")
        return out


@dataclass
class GenerationAdvice:
    model: str  # family/preset
    family: str
    preset: str
    prompt: int
    new_tokens: int
    objective: str
    constraints: GenerationConstraints
    candidates: pl.DataFrame  # every measured candidate at this prompt and new tokens, feasible ones first, best first
    measured: dict[str, list]  # what was measured for the model at all: targets, batches, prompts, …
    excluded: list[str] = field(default_factory=list)  # candidates whose newest attempt failed, and why
    notes: list[str] = field(default_factory=lambda: [NOT_PREDICTED])

    @property
    def feasible(self) -> pl.DataFrame:
        return self.candidates.filter(pl.col("meets"))

    @property
    def pick(self) -> dict | None:
        feasible = self.feasible
        return feasible.row(0, named=True) if feasible.height else None

    @property
    def nearest_miss(self) -> dict | None:
        """The candidate whose worst miss is the smallest, when none is feasible."""
        if self.pick is not None or not self.candidates.height:
            return None
        return min(self.candidates.iter_rows(named=True), key=lambda r: (r["worst_miss"], r["batch_size"]))

    def best(self) -> dict[str, dict]:
        """The best measured figure of each kind among the candidates, and where it was measured (predicted
        candidates are left out: their figures were not measured)."""
        rows = list(self.candidates.filter(pl.col("source") == "measured").iter_rows(named=True))
        if not rows:
            return {}
        found = {"ttft_p50_ms": min(rows, key=lambda r: r["ttft_p50_ms"]),
                 "tokens_per_s": max(rows, key=lambda r: r["tokens_per_s"]),
                 "latency_ms": min(rows, key=lambda r: r["latency_ms"])}
        return {column: {"value": r[column], "configuration": configuration(r)} for column, r in found.items()}

    def headline(self) -> str:
        return (f"{self.model} generation, prompt {self.prompt}, {self.new_tokens} new tokens, objective "
                f"{self.objective} ({OBJECTIVES[self.objective][2]}), constraints {self.constraints.describe()}")

    def no_match(self) -> list[str]:
        """Lines that say nothing meets the constraints, what was measured and how far the best figures are."""
        kinds = "measured" if set(self.candidates["source"]) <= {"measured"} else "measured or predicted"
        lines = [f"no {kinds} configuration of {self.model} at prompt {self.prompt}, {self.new_tokens} new tokens "
                 f"meets {self.constraints.describe()}",
                 f"measured for {self.model}: " + "; ".join(f"{k} {', '.join(map(str, v))}"
                                                            for k, v in self.measured.items())]
        best = self.best()
        if best:
            lines.append(f"best measured at prompt {self.prompt}, {self.new_tokens} new tokens: TTFT p50 "
                         f"{best['ttft_p50_ms']['value']:.4g} ms ({best['ttft_p50_ms']['configuration']}), "
                         f"{best['tokens_per_s']['value']:.4g} tokens/s ({best['tokens_per_s']['configuration']}), "
                         f"sequence p50 {best['latency_ms']['value']:.4g} ms ({best['latency_ms']['configuration']})")
        miss = self.nearest_miss
        if miss is not None:
            lines.append(f"nearest miss: {configuration(miss)}: {'; '.join(miss['misses'])}")
        return lines

    def to_json(self, top: int) -> dict:
        """The advice as JSON values (worst_miss is internal: it can be infinite, which JSON cannot say)."""
        def plain(row: dict | None) -> dict | None:
            return None if row is None else {k: v for k, v in row.items() if k != "worst_miss"}

        pick = self.pick
        return {"model": self.model, "mode": "generation", "prompt": self.prompt, "new_tokens": self.new_tokens,
                "objective": self.objective, "objective_column": OBJECTIVES[self.objective][0],
                "constraints": {k: v for k, v in asdict(self.constraints).items() if v is not None},
                "pick": plain(pick), "ranked": [plain(r) for r in self.feasible.head(top).to_dicts()],
                "nearest_miss": plain(self.nearest_miss), "best": self.best(), "measured": self.measured,
                "candidates": [plain(r) for r in self.candidates.to_dicts()],
                "excluded": self.excluded, "notes": self.notes,
                "message": None if pick else self.no_match()[0]}


def configuration(row: dict) -> str:
    kv = "" if row["cache_precision"] in (None, "model") else f" kv={row['cache_precision']}"
    return f"{row['target']} bs={row['batch_size']} {row['precision']} {row['cache']}{kv} t={row['threads']}"


def number(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def table_rows(frame: pl.DataFrame, *, misses: bool = False) -> list[list[str]]:
    """Candidates as the cells of ``TABLE_COLUMNS`` (and of a last column, what each misses, with ``misses``)."""
    return [[r["target"], str(r["batch_size"]), r["precision"], r["cache"], r["cache_precision_ran"] or "n/a",
             str(r["threads"]), number(r["ttft_p50_ms"], ".4g"), number(r["ttft_p99_ms"], ".4g"),
             number(r["itl_p50_ms"], ".4g"), number(r["latency_ms"], ".4g"), number(r["tokens_per_s"], ".4g"),
             number(r["memory_mb"], ".0f"),
             "not run" if r["tokens_matching_reference"] is None
             else f"{r['tokens_matching_reference']}/{r['new_tokens']}", r["source"], r["confidence"]]
            + (["; ".join(r["misses"]) or "meets all"] if misses else [])
            for r in frame.iter_rows(named=True)]


# ---- reading -----------------------------------------------------------------------------------------------
def _measured_at() -> pl.Expr:
    # "newest" is the newest measurement, as the warehouse's latest views order rows; one zone for both columns
    return pl.coalesce(pl.col("finished_at").dt.convert_time_zone("UTC"),
                       pl.col("_written_at").dt.convert_time_zone("UTC"))


def load_generation(warehouse: Warehouse) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the newest successful row of every generation configuration, the failures table's generation rows),
    each with the precision as a spec (``int8-static``)."""
    results = warehouse.read("generation_results", latest=True).filter(pl.col("status") == "ok")
    failures = warehouse.read("failures", latest=True).filter(pl.col("scenario") == "generation")
    return (results.with_columns(precision=spec_expr(), _measured_at=_measured_at()),
            failures.with_columns(precision=spec_expr(), _measured_at=_measured_at()))


def measured_models(results: pl.DataFrame) -> list[str]:
    return sorted({f"{f}/{p}" for f, p in results.select("family", "preset").iter_rows()})


def resolve_model(results: pl.DataFrame, text: str) -> tuple[str, str] | None:
    """``FAMILY/PRESET`` as measured, or ``FAMILY`` alone: its small preset when that was measured, else its one
    measured preset. None when the warehouse holds no generation row of it."""
    family, _, preset = text.partition("/")
    presets = sorted(set(results.filter(pl.col("family") == family)["preset"]))
    if preset:
        return (family, preset) if preset in presets else None
    if not presets:
        return None
    if PREFERRED_PRESET in presets or len(presets) == 1:
        return family, PREFERRED_PRESET if PREFERRED_PRESET in presets else presets[0]
    raise GenerationRequestError(f"{family} was measured at presets {', '.join(presets)}: name one, as "
                                 f"--model {family}/{presets[0]}")


def _values(frame: pl.DataFrame, column: str) -> list:
    return sorted(set(frame[column].drop_nulls()))


def _newest(frame: pl.DataFrame, column: str) -> int:
    return int(frame.sort("_measured_at").row(-1, named=True)[column])


def _pick_shape(rows: pl.DataFrame, model: str, prompt: int | None, new_tokens: int | None,
                predicting: bool = False, why_not: str | None = None) -> tuple[int, int]:
    """The prompt and new tokens asked for, or those of the model's newest measurement (given the other). Without
    ``predicting``, a prompt or a number of new tokens nobody measured is refused."""
    if predicting:
        if prompt is None or new_tokens is None:
            if not rows.height:
                raise GenerationRequestError(f"no generation row of {model}: give --prompt and --new-tokens for "
                                             "predicted figures")
            measured = rows if prompt is None else rows.filter(pl.col("seq_len") == prompt)
            measured = measured if measured.height else rows
            prompt = prompt if prompt is not None else _newest(measured, "seq_len")
            new_tokens = new_tokens if new_tokens is not None else _newest(measured, "new_tokens")
        return prompt, new_tokens
    hint = f"measure it with 'hwbench bench --scenario generation --model {model.replace('/', ' --preset ')}"
    not_predicted = NOT_PREDICTED_YET + (f", as {why_not}" if why_not else "")
    if prompt is not None and prompt not in _values(rows, "seq_len"):
        raise GenerationRequestError(
            f"{model} generation was measured at prompts {', '.join(map(str, _values(rows, 'seq_len')))}, not "
            f"{prompt}; {not_predicted}: {hint} --prompt {prompt}'")
    if prompt is not None:
        rows = rows.filter(pl.col("seq_len") == prompt)
    if new_tokens is not None and new_tokens not in _values(rows, "new_tokens"):
        at = f" at prompt {prompt}" if prompt is not None else ""
        raise GenerationRequestError(
            f"{model} generation{at} was measured with {', '.join(map(str, _values(rows, 'new_tokens')))} new "
            f"tokens, not {new_tokens}; {not_predicted}: {hint} --new-tokens {new_tokens}'")
    if new_tokens is not None:
        rows = rows.filter(pl.col("new_tokens") == new_tokens)
    return (prompt if prompt is not None else _newest(rows, "seq_len"),
            new_tokens if new_tokens is not None else _newest(rows, "new_tokens"))


def _restrict(rows: pl.DataFrame, column: str, wanted: tuple | None, option: str, model: str,
              predicting: bool = False) -> pl.DataFrame:
    """Rows whose ``column`` is one of ``wanted`` (everything when None); refused when none of them was measured,
    unless predicted candidates may stand in."""
    if wanted is None:
        return rows
    kept = rows.filter(pl.col(column).is_in(list(wanted)))
    if not kept.height and not predicting:
        measured = ", ".join(map(str, _values(rows, column))) or "none"
        raise GenerationRequestError(f"{option} {','.join(map(str, wanted))}: no generation row of {model} there; "
                                     f"measured: {measured}")
    return kept


def _excluded(failures: pl.DataFrame, ok: pl.DataFrame) -> list[str]:
    """Failures whose configuration has no successful measurement since: why each is not a candidate."""
    newest_ok = {tuple(r[k] for k in GENERATION_KEY): r["_measured_at"] for r in ok.iter_rows(named=True)}
    lines = []
    for r in failures.sort("target", "batch_size").iter_rows(named=True):
        ok_at = newest_ok.get(tuple(r[k] for k in GENERATION_KEY))
        if ok_at is not None and ok_at >= r["_measured_at"]:
            continue
        message = (r["message"] or "").strip().splitlines()
        row = {**r, "cache": r["cache_implementation"]}
        lines.append(f"{configuration(row)}: {r['failure_class']}" + (f": {message[0][:200]}" if message else ""))
    return lines


def advise_generation(results: pl.DataFrame, failures: pl.DataFrame, family: str, preset: str, *,
                      prompt: int | None = None, new_tokens: int | None = None, objective: str = "latency",
                      constraints: GenerationConstraints | None = None, targets: tuple[str, ...] | None = None,
                      batches: tuple[int, ...] | None = None, precisions: tuple[str, ...] | None = None,
                      predict: Callable[[int, int], pl.DataFrame] | None = None,
                      prediction_note: str | None = None) -> GenerationAdvice:
    """Rank the configurations of ``family/preset``: the measured ones (rows from :func:`load_generation`) and,
    with ``predict`` ((prompt, new tokens) -> predicted candidates, generation_predicted.py), those nobody
    measured, labelled as predictions. ``prediction_note`` says with what error they are predicted, or, without
    ``predict``, why nothing is."""
    constraints = constraints or GenerationConstraints()
    model = f"{family}/{preset}"
    predicting = predict is not None
    rows = results.filter((pl.col("family") == family) & (pl.col("preset") == preset))
    if not rows.height and not predicting:
        raise GenerationRequestError(f"no generation row of {model}; measured: "
                                     f"{', '.join(measured_models(results)) or 'none'}")
    measured = {"targets": _values(rows, "target"), "batches": _values(rows, "batch_size"),
                "prompts": _values(rows, "seq_len"), "new tokens": _values(rows, "new_tokens"),
                "precisions": _values(rows, "precision"), "caches": _values(rows, "cache_implementation")}
    prompt, new_tokens = _pick_shape(rows, model, prompt, new_tokens, predicting,
                                     None if predicting else prediction_note)
    shape = rows.filter((pl.col("seq_len") == prompt) & (pl.col("new_tokens") == new_tokens))
    for column, wanted, option in (("target", targets, "--targets"), ("batch_size", batches, "--batch"),
                                   ("precision", precisions, "--precision")):
        shape = _restrict(shape, column, wanted, option, f"{model} at prompt {prompt}, {new_tokens} new tokens",
                          predicting)
    failed = failures.filter((pl.col("family") == family) & (pl.col("preset") == preset)
                             & (pl.col("seq_len") == prompt) & (pl.col("new_tokens") == new_tokens))
    for column, wanted in (("target", targets), ("batch_size", batches), ("precision", precisions)):
        if wanted is not None:
            failed = failed.filter(pl.col(column).is_in(list(wanted)))
    # one candidate per target x batch x precision x cache x threads: the newest, whatever its method or attention
    newest = shape.sort("_measured_at").unique(subset=["target", "batch_size", "precision", "cache_implementation",
                                                       "cache_precision", "threads"], keep="last",
                                               maintain_order=True)
    frame = newest.select(
        "target", "batch_size", "precision", "precision_ran", pl.col("cache_implementation").alias("cache"),
        "cache_ran", "cache_precision", "cache_precision_ran", "threads", "seq_len", "new_tokens", "ttft_p50_ms",
        "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", pl.col("p50_ms").alias("latency_ms"), "tokens_per_s",
        "decode_tokens_per_s", pl.coalesce("device_peak_mb", "peak_rss_mb").alias("memory_mb"),
        "kv_cache_bytes_per_token", "tokens_matching_reference", "run_id", source=pl.lit("measured"),
        confidence=measured_confidence(newest)).with_columns(
        [pl.lit(None, dtype).alias(name) for name, dtype in PREDICTED_COLUMNS.items()])
    notes = [NOT_PREDICTED] + ([f"why: {prediction_note}"] if prediction_note else [])
    if predict is not None:
        model_failures = failures.filter((pl.col("family") == family) & (pl.col("preset") == preset))
        frame, notes = with_predictions(frame, without_failed(predict(prompt, new_tokens), failed, rows,
                                                              model_failures), prediction_note)
    scored = []
    for r in frame.iter_rows(named=True):
        misses = constraints.misses(r)
        scored.append({**r, "meets": not misses, "worst_miss": max(misses.values(), default=0.0),
                       "misses": constraints.miss_text(r)})
    column, largest, _ = OBJECTIVES[objective]
    other = OBJECTIVES["throughput" if objective == "latency" else "latency"]
    # feasible first; then the objective, the other objective, the smaller batch
    scored.sort(key=lambda r: (not r["meets"], -r[column] if largest else r[column],
                               -r[other[0]] if other[1] else r[other[0]], r["batch_size"], r["target"]))
    candidates = pl.DataFrame(scored, schema={**frame.schema, "meets": pl.Boolean, "worst_miss": pl.Float64,
                                              "misses": pl.List(pl.String)})
    return GenerationAdvice(model=model, family=family, preset=preset, prompt=prompt, new_tokens=new_tokens,
                            objective=objective, constraints=constraints, candidates=candidates, measured=measured,
                            excluded=_excluded(failed, rows), notes=notes)


def without_failed(predicted: pl.DataFrame, failed: pl.DataFrame, ok: pl.DataFrame,
                   model_failures: pl.DataFrame) -> pl.DataFrame:
    """Predicted candidates less those known to fail: a configuration whose newest attempt at this prompt failed
    (``failed``, against the successful ``ok`` rows), and every one on a target where the model itself failed
    (a model-level failure class: the model does not build, export or agree there, whatever the batch)."""
    from hwbench_pipeline.predict.recommender import MODEL_LEVEL_FAILURES

    if not predicted.height:
        return predicted
    newest_ok = {tuple(r[k] for k in GENERATION_KEY): r["_measured_at"] for r in ok.iter_rows(named=True)}
    known = {(r["target"], r["batch_size"], r["precision"], r["cache_implementation"])
             for r in failed.iter_rows(named=True)
             if newest_ok.get(tuple(r[k] for k in GENERATION_KEY)) is None
             or newest_ok[tuple(r[k] for k in GENERATION_KEY)] < r["_measured_at"]}
    broken = set(model_failures.filter(pl.col("failure_class").is_in(sorted(MODEL_LEVEL_FAILURES)))["target"])
    keep = [(r["target"], r["batch_size"], r["precision"], r["cache"]) not in known and r["target"] not in broken
            for r in predicted.iter_rows(named=True)]
    return predicted.filter(pl.Series(keep, dtype=pl.Boolean))


def with_predictions(measured: pl.DataFrame, predicted: pl.DataFrame,
                     note: str | None) -> tuple[pl.DataFrame, list[str]]:
    """The measured candidates and the predicted ones no measurement covers (same target, batch, precision and
    cache, at whatever thread count it was measured), and the notes that say so."""
    key = ["target", "batch_size", "precision", "cache"]
    fresh = predicted.join(measured.select(key), on=key, how="anti").select(measured.columns).cast(measured.schema) \
        if predicted.height else predicted
    if not fresh.height:
        why = f" ({note})" if note else ""
        return measured, [f"nothing left to predict at this prompt and number of new tokens: every configuration "
                          f"that can run was measured, or is known to fail{why}"]
    notes = [f"{fresh.height} candidate(s) were not measured: their figures are predictions (source predicted or "
             f"roofline, with an approximate 90 % interval){'; ' + note if note else ''}"]
    return pl.concat([measured, fresh]), notes
