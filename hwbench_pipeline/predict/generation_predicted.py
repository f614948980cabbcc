"""Generation candidates nobody measured, predicted: a sequence's figures from a ``prefill`` and a ``decode`` answer.

The predictor learns the two calls a greedy sequence is made of (:mod:`~hwbench_pipeline.predict.generation_modes`),
so a configuration of a text decoder that was never decoded gets both answers, and its sequence follows from them:
TTFT is the prefill; each of the other ``new_tokens - 1`` tokens is one decode step (at the mean context, as the
decode rows were learned); the sequence takes TTFT + (new tokens - 1) x ITL; tokens/s is batch x new tokens over
that. Intervals add the same way (both ends): an approximate 90 % interval (two 90 % intervals together guarantee
80 %), not checked on whole sequences. Each candidate says which estimator answered
(``predicted`` only when both calls were the boosters'), takes the lower confidence of the two, and no more than
the held-out error of the prefill and decode answers supports (``CONFIDENCE_CEILINGS``); it quotes that error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from hwbench_pipeline.predict.generation_modes import DEFAULT_CACHE_BY_BACKEND, LEARNED_CATEGORY

if TYPE_CHECKING:
    from hwbench_pipeline.predict.predictor import Predictor
    from hwbench_pipeline.predict.shapes import FlopCounter

DEFAULT_BATCHES = (1, 2, 4, 8)
CONFIDENCE_ORDER = ("low", "medium", "high")


def generation_category(family: str) -> str | None:
    """The registry's category of a model (a curated family or any other architecture); None when unknown."""
    from hwbench_pipeline.bench.catalog.registry import architectures
    from hwbench_pipeline.bench.catalog.sources import resolve_model
    from hwbench_pipeline.predict.features import registry_category

    try:
        model_type = resolve_model(family).model_type
    except ValueError:
        return None
    entry = architectures().get(model_type)
    return registry_category(family, entry.category if entry else None)


def predictable_reason(family: str, predictor: Predictor | None) -> str | None:
    """Why generation figures of ``family`` cannot be predicted (None: they can)."""
    if predictor is None:
        return "no predictor is saved (materialize performance_predictor)"
    modes = set(predictor.schema.get("vocabulary", {}).get("mode", []))
    if not {"prefill", "decode"} <= modes:
        return "the saved predictor has learned no generation rows (materialize generation_runs, then the predictor)"
    category = generation_category(family)
    if category != LEARNED_CATEGORY:
        return (f"{family}'s category is {category or 'unknown'}: the predictor learns the generation of "
                f"{LEARNED_CATEGORY}s only")
    return None


def decode_loops(family: str, preset: str, targets: pl.DataFrame, prompt: int,
                 new_tokens: int) -> dict[str, tuple[str, tuple[str, ...]]]:
    """{target: (its default cache, the precisions its decode loop runs)} for the targets that can decode
    ``family``/``preset`` at this length, as the generation scenario would find before building anything: a
    backend with a decode loop on that device, a model the exported runtimes can take (one full-attention cache
    layer per layer), a prompt and new tokens within the model's context."""
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.backends.decoder_graph import cache_layout
    from hwbench_pipeline.bench.failures import UnsupportedConfigurationError
    from hwbench_pipeline.bench.scenarios.generation.inputs import context_limit

    limit = context_limit(models.build_config(family, preset))
    if limit is not None and prompt + new_tokens > limit:
        return {}
    exported_ok: bool | None = None
    loops = {}
    for target in targets.iter_rows(named=True):
        if target.get("backend") not in DEFAULT_CACHE_BY_BACKEND:
            continue
        backend = load_backend(target["backend"])
        caches = backend.generation_caches(target["device_kind"])
        if not caches:
            continue
        if target["backend"] != "torch":
            if exported_ok is None:
                try:
                    cache_layout(models.build_generative_model(family, preset, device="meta"))
                    exported_ok = True
                except UnsupportedConfigurationError:
                    exported_ok = False
            if not exported_ok:
                continue
        loops[target["target"]] = (caches[0], backend.generation_precisions(target["device_kind"]))
    return loops


def questions(family: str, preset: str, targets: pl.DataFrame, prompt: int, new_tokens: int,
              batches: tuple[int, ...], precisions: tuple[str, ...],
              threads: dict[str, int] | None = None) -> pl.DataFrame:
    """One prefill and one decode question per target that can decode the model x batch x precision it runs, at
    the target's thread count (``threads``, else the threads its peaks were measured with)."""
    loops = decode_loops(family, preset, targets, prompt, new_tokens)
    rows = []
    for target in targets.filter(pl.col("target").is_in(list(loops))).iter_rows(named=True):
        cache, runs = loops[target["target"]]
        count = (threads or {}).get(target["target"]) or int(target.get("peak_threads") or 1)
        for batch in batches:
            for precision in [p for p in precisions if p in runs]:
                for mode in ("prefill", "decode"):
                    rows.append({"family": family, "preset": preset, "target": target["target"],
                                 "batch_size": batch, "seq_len": prompt, "precision": precision,
                                 "threads": count, "mode": mode, "new_tokens": new_tokens, "cache": cache})
    return pl.DataFrame(rows, schema={"family": pl.String, "preset": pl.String, "target": pl.String,
                                      "batch_size": pl.Int64, "seq_len": pl.Int64, "precision": pl.String,
                                      "threads": pl.Int64, "mode": pl.String, "new_tokens": pl.Int64,
                                      "cache": pl.String})


def lower_confidence(a: str, b: str) -> str:
    return min(a, b, key=CONFIDENCE_ORDER.index)


#: the most confidence a held-out error (MAPE) of the prefill and decode answers supports: the intervals are
#: calibrated on every mode's residuals together, so a mode with few rows could look surer than it has shown to be
CONFIDENCE_CEILINGS = ((0.10, "high"), (0.30, "medium"))


def supported_confidence(errors: dict[str, float | None]) -> str:
    """The highest confidence the prefill and decode answers' held-out errors allow ("low" when either was not
    evaluated)."""
    if any(value is None or value != value for value in errors.values()):
        return "low"
    worst = worse_error(*errors.values())
    return next((level for bound, level in CONFIDENCE_CEILINGS if worst <= bound), "low")


def worse_error(a: float | None, b: float | None) -> float | None:
    """The larger of two held-out errors; None when neither was evaluated."""
    known = [v for v in (a, b) if v is not None and v == v]
    return max(known) if known else None


def predicted_candidates(predictor: Predictor, targets: pl.DataFrame, counter: FlopCounter,
                         models: pl.DataFrame | None, family: str, preset: str, prompt: int, new_tokens: int, *,
                         batches: tuple[int, ...], precisions: tuple[str, ...],
                         threads: dict[str, int] | None = None) -> pl.DataFrame:
    """Predicted candidates with the columns of a measured one (generation_advice.py), plus each call's interval
    and the answering estimator's held-out error."""
    from hwbench_pipeline.predict.features import query_frame

    asked = questions(family, preset, targets, prompt, new_tokens, batches, precisions, threads)
    if not asked.height:
        return pl.DataFrame()
    frame = query_frame(asked, targets, counter, models)
    errors = held_out_by_mode(predictor)
    answers = pl.concat([frame.select("target", "batch_size", "precision", "threads", "mode", "cache"),
                         predictor.predict(frame)], how="horizontal")
    prefill = answers.filter(pl.col("mode") == "prefill")
    decode = answers.filter(pl.col("mode") == "decode")
    key = ["target", "batch_size", "precision", "threads"]
    both = prefill.join(decode, on=key, suffix="_decode")
    out = []
    for r in both.iter_rows(named=True):
        steps = new_tokens - 1
        latency = r["latency_ms"] + steps * r["latency_ms_decode"]
        low = r["latency_low_ms"] + steps * r["latency_low_ms_decode"]
        high = r["latency_high_ms"] + steps * r["latency_high_ms_decode"]
        tokens = r["batch_size"] * new_tokens * 1e3
        out.append({
            "target": r["target"], "batch_size": r["batch_size"], "precision": r["precision"], "precision_ran": None,
            "cache": r["cache"], "cache_ran": None, "cache_precision": "model",
            "cache_precision_ran": None, "threads": r["threads"], "seq_len": prompt, "new_tokens": new_tokens,
            "ttft_p50_ms": r["latency_ms"], "ttft_p99_ms": None, "itl_p50_ms": r["latency_ms_decode"],
            "itl_p99_ms": None, "latency_ms": latency, "tokens_per_s": tokens / latency,
            "decode_tokens_per_s": r["batch_size"] * 1e3 / r["latency_ms_decode"],
            "memory_mb": max(r["memory_mb"], r["memory_mb_decode"]), "kv_cache_bytes_per_token": None,
            "tokens_matching_reference": None, "run_id": None,
            "source": "predicted" if r["source"] == r["source_decode"] == "predicted" else "roofline",
            "confidence": lower_confidence(lower_confidence(r["confidence"], r["confidence_decode"]),
                                           supported_confidence(errors)),
            "ttft_low_ms": r["latency_low_ms"], "ttft_high_ms": r["latency_high_ms"],
            "itl_low_ms": r["latency_low_ms_decode"], "itl_high_ms": r["latency_high_ms_decode"],
            "latency_low_ms": low, "latency_high_ms": high,
            # the generation answers' own error held out, where the evaluation has it; else the estimators'
            "held_out_mape": worse_error(*errors.values()) if any(v is not None for v in errors.values())
            else worse_error(r["held_out_mape"], r["held_out_mape_decode"]),
        })
    return pl.DataFrame(out)


def held_out_by_mode(predictor: Predictor) -> dict[str, float | None]:
    """The saved predictor's leave-architecture-out MAPE of the prefill and decode rows."""
    by_mode = (predictor.schema.get("evaluation") or {}).get("by_mode") or {}
    return {mode: (by_mode.get(mode) or {}).get("mape") for mode in ("prefill", "decode")}
