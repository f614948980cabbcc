"""Generation rows as two predictor modes: ``prefill`` (the time to the first token) and ``decode`` (one step).

A decoder-only model's generation is two kinds of call, each one forward pass the predictor can learn like an
inference call: the prefill reads the whole prompt, a decode step reads one token against a cache of the
positions before it. So a ``generation_results`` row becomes a ``prefill`` row (its median TTFT, the prompt's
tokens) and a ``decode`` row (its median inter-token latency, one token per sequence, the cache's mean length over
the sequence as its context).

Only rows that mean the same thing for every runtime are learned: text decoders, each runtime's default cache in
the model's precision. Encoder-decoders and prompts with an image stay measured-only (their prefill runs another
tower), as do static, compiled and quantized caches (the recommender ranks those from their measurements).

FLOPs: counted forward passes (:class:`~hwbench_pipeline.predict.shapes.FlopCounter`) with the difference of a
generation call worked out from the model's shape: a prefill computes the vocabulary projection for its last
position only (``logits_to_keep=1``), and a decode step is the forward of one token plus its attention over the
cached positions (two products of ``hidden`` per position and layer). A test checks both against FLOPs counted
while transformers' generate() runs. docs/predictor.md gives the reasoning.
"""

from __future__ import annotations

import functools

import polars as pl

from hwbench_pipeline.bench.precision import MODEL_CACHE_PRECISION

GENERATION_MODES = ("prefill", "decode")
#: each runtime's default cache: the cache a predicted generation figure means
DEFAULT_CACHE_BY_BACKEND = {"torch": "dynamic", "onnxruntime": "past-io", "openvino": "stateful"}
DEFAULT_CACHES = tuple(DEFAULT_CACHE_BY_BACKEND.values())
LEARNED_CATEGORY = "text decoder"
#: flops per cached position and layer of one decoded token: q·k and the weighted sum of v, 2 flops per multiply-add
ATTENTION_FLOPS_PER_POSITION = 4


def decode_context(prompt: pl.Expr, new_tokens: pl.Expr) -> pl.Expr:
    """The mean number of cached positions a decode step attends over: from the prompt to the prompt plus all new
    tokens but the last."""
    return prompt.cast(pl.Float64) + (new_tokens.cast(pl.Float64) - 1.0).clip(lower_bound=0.0) / 2.0


def generation_as_results(generation: pl.DataFrame) -> pl.DataFrame:
    """Successful generation rows with each runtime's default cache in the model's precision, as one ``prefill``
    and one ``decode`` row each (``p50_ms`` the median TTFT and inter-token latency; ``context_len`` the
    positions attended). The category filter comes later, once shapes are known (:func:`learnable`)."""
    needed = {"ttft_p50_ms", "itl_p50_ms", "cache_implementation", "new_tokens"}
    if not generation.height or not needed <= set(generation.columns):
        return pl.DataFrame()
    kept = generation.filter(
        (pl.col("status") == "ok") & pl.col("cache_implementation").is_in(DEFAULT_CACHES)
        & (pl.col("cache_precision").fill_null(MODEL_CACHE_PRECISION) == MODEL_CACHE_PRECISION))
    # the sequence's interval and samples do not describe a prefill or a step: left out, so they weigh nothing
    drop = [c for c in kept.columns if c.startswith("median_ci") or c in ("p90_ms", "p99_ms", "mean_ms")]
    kept = kept.drop(drop)
    prefill = kept.filter(pl.col("ttft_p50_ms") > 0).with_columns(
        mode=pl.lit("prefill"), p50_ms=pl.col("ttft_p50_ms"), context_len=pl.col("seq_len").cast(pl.Float64))
    decode = kept.filter(pl.col("itl_p50_ms") > 0).with_columns(
        mode=pl.lit("decode"), p50_ms=pl.col("itl_p50_ms"),
        context_len=decode_context(pl.col("seq_len"), pl.col("new_tokens")))
    return pl.concat([prefill, decode], how="diagonal_relaxed").with_columns(flops_per_call=pl.lit(None, pl.Float64))


def is_generation_mode(frame: pl.DataFrame) -> pl.Expr:
    """True on the ``prefill`` and ``decode`` rows of ``frame``."""
    return pl.col("mode").is_in(GENERATION_MODES) if "mode" in frame.columns else pl.lit(False)


def has_generation_rows(frame: pl.DataFrame) -> bool:
    return frame.height > 0 and bool(frame.select(is_generation_mode(frame).any()).item())


def learnable(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (shapes known) without the generation rows the predictor does not learn: other categories than
    text decoders."""
    return frame.filter(~is_generation_mode(frame) | (pl.col("category") == LEARNED_CATEGORY))


def with_query_context(frame: pl.DataFrame) -> pl.DataFrame:
    """Questions with their ``context_len``: a prefill attends its prompt, a decode step the mean cache over
    ``new_tokens`` (which a decode question must give)."""
    if not has_generation_rows(frame):
        return frame
    decode = pl.col("mode") == "decode"
    if "new_tokens" not in frame.columns or frame.filter(decode & pl.col("new_tokens").is_null()).height:
        raise ValueError("a decode question needs new_tokens: its context grows with every token generated")
    return frame.with_columns(context_len=pl.when(decode).then(decode_context(pl.col("seq_len"), pl.col("new_tokens")))
                              .otherwise(pl.col("seq_len").cast(pl.Float64)))


@functools.cache
def head_flops(family: str, preset: str) -> float | None:
    """FLOPs of projecting one position onto the vocabulary: 2 per weight of the model's output embedding, read
    from the generating model built on the meta device."""
    from hwbench_pipeline.bench.models import build_generative_model

    try:
        head = build_generative_model(family, preset, device="meta").get_output_embeddings()
    except Exception:  # noqa: BLE001 - any model that cannot be built on meta: the caller estimates from the shape
        return None
    return 2.0 * float(head.weight.numel()) if head is not None else None


def with_generation_flops(frame: pl.DataFrame, counter) -> pl.DataFrame:
    """FLOPs per call of the ``prefill`` and ``decode`` rows (other rows unchanged), from the counter's forward
    passes and the model's shape (``hidden_size``, ``vocab_size``, ``layers``; see the module's docstring)."""
    from hwbench_pipeline.bench.models import is_curated
    from hwbench_pipeline.predict.shapes import ModelSpec

    if not has_generation_rows(frame):
        return frame
    flops, sources = [], []
    for row in frame.iter_rows(named=True):
        if row["mode"] not in GENERATION_MODES:
            flops.append(row.get("flops_per_call"))
            sources.append(row.get("flops_source"))
            continue
        spec = ModelSpec(row["family"], row["preset"])
        hidden, layers = row.get("hidden_size") or 0, row.get("layers") or 0
        head = head_flops(row["family"], row["preset"])
        estimated_head = head is None
        if estimated_head:  # the model did not build on the meta device: hidden size x vocabulary
            head = 2.0 * hidden * (row.get("vocab_size") or 0)
        # a curated generative family is counted with its LM head at every position; any other architecture's
        # count is its base model's, without one
        counted_heads = 1.0 if is_curated(row["family"]) else 0.0
        seq = int(row["seq_len"]) if row["mode"] == "prefill" else 1
        forward, how = counter.per_sample(spec, seq)
        per_sample = forward + head * (1.0 - counted_heads * seq)
        if row["mode"] == "decode":
            per_sample += ATTENTION_FLOPS_PER_POSITION * layers * hidden * float(row["context_len"])
        if per_sample <= 0:  # a shape that contradicts the count: the forward pass alone, said to be estimated
            per_sample, how = forward, "estimated"
        elif estimated_head:
            how = "estimated"
        flops.append(per_sample * int(row["batch_size"]))
        sources.append(how)
    return frame.with_columns(flops_per_call=pl.Series(flops, dtype=pl.Float64),
                              flops_source=pl.Series(sources, dtype=pl.String))
