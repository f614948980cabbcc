"""The comparison report's generation section: greedy decoding with a KV cache (docs/generation.md).

* time to first token (p50, whisker to p99) against the prompt length, one chart per model;
* inter-token latency p50 against the batch size, with p99 as a dashed line (diamonds) of the same colour;
* a table of every configuration's newest successful row (``GENERATION_KEY``): TTFT and ITL percentiles,
  tokens/s, KV-cache bytes per token, peak RSS and how many leading tokens equal transformers' generate();
* where a configuration was also streamed over hwbench serve-generate's WebSocket: the streaming overhead
  against in-process generation and TTFT p50/p99 at each number of concurrent clients;
* quantized KV caches: memory saved and decode slowdown against the model's own cache, and what the precision
  costs the learned copy decoder;
* the generation configurations whose newest attempt failed, with their class and message.

A line is a model × target, and × precision, cache, KV precision, threads, new tokens (and batch or prompt,
whichever is not the x axis) where those vary within the model.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from hwbench_pipeline.bench.precision import MODEL_CACHE_PRECISION, spec_expr
from hwbench_pipeline.report import charts
from hwbench_pipeline.report.charts import Series, XYChart
from hwbench_pipeline.report.comparison_sections import Section, Table, varying_dimensions
from hwbench_pipeline.report.text import number, slug
from hwbench_pipeline.report.training_sections import newest_successful
from hwbench_pipeline.warehouse.schema import GENERATION_KEY

NO_GENERATION = "No generation results yet: materialize generation_runs."
TITLE = "Generation: time to first token, inter-token latency and tokens/s"
#: what sets a line apart besides the model and the x axis, in the order a line's name gives them
LINE_DIMENSIONS = ("target", "spec", "cache_implementation", "cache_precision", "threads", "new_tokens",
                   "batch_size", "seq_len")
_LABELS = {"target": "{}", "spec": "{}", "cache_implementation": "cache={}", "cache_precision": "kv={}",
           "threads": "t={}", "new_tokens": "new={}", "batch_size": "bs={}", "seq_len": "prompt={}"}
_ORDER = ["family", "preset", "target", "spec", "cache_implementation", "cache_precision", "threads", "new_tokens",
          "seq_len", "batch_size"]
TABLE_COLUMNS = ["target", "model", "batch", "prompt", "new tokens", "precision", "threads", "cache",
                 "KV precision ran", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms", "tokens/s",
                 "KV bytes/token", "peak RSS MiB", "tokens equal to generate()", "run"]
#: a failure's message is cut to its first line, at most this long (the cause is often at its end: keep it)
MESSAGE_CHARS = 240
STREAM_COLUMNS = ["target", "model", "batch", "prompt", "new tokens", "cache", "TTFT overhead ms", "ITL overhead ms",
                  "clients", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "tokens/s (all clients)",
                  "tokens equal in process", "run"]
KV_COLUMNS = ["target", "model", "batch", "prompt", "cache", "KV precision ran", "residual", "KV bytes/token",
              "saved vs the model's cache", "ITL p50 ms", "ITL vs the model's cache", "copy accuracy",
              "with the full cache", "top-1 agreement", "KL nats/step", "run"]
FAILURE_COLUMNS = ["target", "model", "batch", "prompt", "new tokens", "precision", "cache", "KV precision",
                   "failure class", "message", "run"]


def _with_spec(frame: pl.DataFrame) -> pl.DataFrame:
    """A ``spec`` column (``int8-static``): the precision as the other sections name it."""
    return frame.with_columns(spec=spec_expr()) if frame.height else frame


def _name(row: dict, dimensions: Iterable[str]) -> str:
    return " ".join(_LABELS[d].format(row[d]) for d in dimensions)


def _log_scale(values: Iterable[float | None]) -> bool:
    """A log axis when the figures span more than a factor of 20: one slow target would flatten the rest."""
    positive = [v for v in values if v is not None and v > 0]
    return bool(positive) and max(positive) >= 20 * min(positive)


def _ticks(values: Iterable[int]) -> list[tuple[float, str]]:
    return [(v, str(v)) for v in sorted(set(values))]


def _ran(asked: str, ran: str | None) -> str:
    return asked if ran in (None, asked) else f"{asked} (ran {ran})"


def newest_failures(failures: pl.DataFrame, measured: pl.DataFrame) -> pl.DataFrame:
    """The generation failures whose configuration has no successful row newer than the failure: a failure
    measured again successfully since is history, not news."""
    rows = failures.filter(pl.col("scenario") == "generation") if failures.height else failures
    if not rows.height:
        return rows
    # ``_written_at`` of an empty table is "UTC", of a DuckDB read "Etc/UTC": compare both in one zone
    at = pl.col("_written_at").dt.convert_time_zone("UTC")
    if measured.height:
        newest_ok = measured.select(*GENERATION_KEY, at.alias("_ok_at"))
        rows = (rows.join(newest_ok, on=GENERATION_KEY, how="left", nulls_equal=True)
                .filter(pl.col("_ok_at").is_null() | (at > pl.col("_ok_at"))).drop("_ok_at"))
    return rows


def _ttft_chart(model: str, group: pl.DataFrame, dims: list[str], colors: dict[str, str]) -> XYChart:
    series = []
    for _, rows in group.group_by(dims, maintain_order=True):
        rows = rows.sort("seq_len")
        name = _name(rows.row(0, named=True), dims)
        hover = [f"{name} prompt={r['seq_len']}<br>TTFT p50 {r['ttft_p50_ms']:.3f} ms, p99 {r['ttft_p99_ms']:.3f} ms"
                 f"<br>prefill {number(r['prefill_tokens_per_s'], '.0f')} tokens/s, run {r['run_id']}"
                 for r in rows.iter_rows(named=True)]
        series.append(Series(name, rows["seq_len"].to_list(), rows["ttft_p50_ms"].to_list(),
                             y_high=rows["ttft_p99_ms"].to_list(), hover=hover, color=colors[name]))
    return XYChart(f"generation-ttft-{slug(model)}", f"{model}: time to first token", "prompt tokens",
                   "TTFT ms (p50, whisker to p99)", series, log_x=True,
                   log_y=_log_scale([*group["ttft_p50_ms"], *group["ttft_p99_ms"]]), x_ticks=_ticks(group["seq_len"]))


def _itl_chart(model: str, group: pl.DataFrame, dims: list[str], colors: dict[str, str]) -> XYChart | None:
    # one new token has no inter-token latency: such rows have no point here
    with_itl = group.filter(pl.col("itl_p50_ms").is_not_null())
    if not with_itl.height:
        return None
    series = []
    for _, rows in with_itl.group_by(dims, maintain_order=True):
        rows = rows.sort("batch_size")
        name = _name(rows.row(0, named=True), dims)
        points = list(rows.iter_rows(named=True))
        batches = rows["batch_size"].to_list()
        hover = [f"{name} bs={r['batch_size']}<br>ITL p50 {r['itl_p50_ms']:.3f} ms, "
                 f"p99 {number(r['itl_p99_ms'], '.3f')} ms<br>"
                 f"decode {number(r['decode_tokens_per_s'], '.0f')} tokens/s, run {r['run_id']}"
                 for r in points]
        series.append(Series(name, batches, rows["itl_p50_ms"].to_list(), hover=hover, color=colors[name]))
        series.append(Series(f"{name} p99", batches, rows["itl_p99_ms"].to_list(), hover=hover, color=colors[name],
                             dash=True, marker="diamond"))  # a marker: a lone batch size has no line to show
    return XYChart(f"generation-itl-{slug(model)}", f"{model}: inter-token latency", "batch size",
                   "ITL ms (p50; dashed, diamonds: p99)", series, log_x=True,
                   log_y=_log_scale([*with_itl["itl_p50_ms"], *with_itl["itl_p99_ms"]]),
                   x_ticks=_ticks(with_itl["batch_size"]))


def _table_row(r: dict) -> list[str]:
    kv = r["cache_precision_ran"] or "n/a"
    if r["cache_precision"] != MODEL_CACHE_PRECISION:
        kv = f"{kv} (asked {r['cache_precision']})"
    return [r["target"], f"{r['family']}/{r['preset']}", str(r["batch_size"]), str(r["seq_len"]), str(r["new_tokens"]),
            _ran(r["spec"], r["precision_ran"]), str(r["threads"]), _ran(r["cache_implementation"], r["cache_ran"]),
            kv, number(r["ttft_p50_ms"], ".3f"), number(r["ttft_p99_ms"], ".3f"), number(r["itl_p50_ms"], ".3f"),
            number(r["itl_p99_ms"], ".3f"), number(r["tokens_per_s"], ".1f"),
            number(r["kv_cache_bytes_per_token"], ".0f"), number(r["peak_rss_mb"], ".0f"),
            f"{r['tokens_matching_reference']}/{r['new_tokens']}", r["run_id"]]


def _figures(values: list | None, spec: str) -> str:
    return " / ".join(number(v, spec) for v in values or [])


def _stream_row(r: dict) -> list[str]:
    return [r["target"], f"{r['family']}/{r['preset']}", str(r["batch_size"]), str(r["seq_len"]), str(r["new_tokens"]),
            r["cache_implementation"], number(r["stream_overhead_ttft_ms"], "+.2f"),
            number(r["stream_overhead_itl_ms"], "+.3f"), " / ".join(map(str, r["stream_clients"])),
            _figures(r["stream_ttft_p50_ms"], ".2f"), _figures(r["stream_ttft_p99_ms"], ".2f"),
            _figures(r["stream_itl_p50_ms"], ".3f"), _figures(r["stream_tokens_per_s"], ".1f"),
            "yes" if r["stream_tokens_match"] else "NO", r["run_id"]]


def _streaming_table(measured: pl.DataFrame) -> Table | None:
    if "stream_clients" not in measured.columns:
        return None
    streamed = measured.filter(pl.col("stream_clients").list.len().fill_null(0) > 0)
    if not streamed.height:
        return None
    return Table(STREAM_COLUMNS, [_stream_row(r) for r in streamed.iter_rows(named=True)],
                 [False, False, True, True, True, False, True, True, False, True, True, True, True, False, False])


def _kv_table(measured: pl.DataFrame) -> Table | None:
    """Quantized caches beside the same configuration with the model's own cache (where it was measured): memory
    saved, decode slowdown, and what the precision costs the learned copy decoder (bench/kv_quality)."""
    if "kv_quality_model" not in measured.columns:
        return None
    quantized = measured.filter(pl.col("kv_quality_model").is_not_null())
    if not quantized.height:
        return None
    same = [c for c in GENERATION_KEY if c != "cache_precision"]
    plain = measured.filter(pl.col("cache_precision") == MODEL_CACHE_PRECISION).select(
        *same, pl.col("kv_cache_bytes_per_token").alias("plain_bytes"), pl.col("itl_p50_ms").alias("plain_itl"))
    rows = quantized.join(plain, on=same, how="left", nulls_equal=True)
    lines = []
    for r in rows.iter_rows(named=True):
        saved = 1 - r["kv_cache_bytes_per_token"] / r["plain_bytes"] if r["plain_bytes"] else None
        slower = r["itl_p50_ms"] / r["plain_itl"] if r["plain_itl"] and r["itl_p50_ms"] else None
        lines.append([r["target"], f"{r['family']}/{r['preset']}", str(r["batch_size"]), str(r["seq_len"]),
                      r["cache_implementation"], r["cache_precision_ran"] or "n/a", str(r["residual_length"]),
                      number(r["kv_cache_bytes_per_token"], ".0f"), number(saved, ".0%"),
                      number(r["itl_p50_ms"], ".3f"), number(slower, ".2f") + ("x" if slower else ""),
                      number(r["kv_task_accuracy"], ".3f"), number(r["kv_task_accuracy_full"], ".3f"),
                      number(r["kv_top1_agreement"], ".3f"), number(r["kv_kl_divergence"], ".4f"), r["run_id"]])
    return Table(KV_COLUMNS, lines, [False, False, True, True, False, False, True, True, True, True, True, True, True,
                                     True, True, False])


def _failure_row(r: dict) -> list[str]:
    message = (r["message"] or "").strip()
    return [r["target"], f"{r['family']}/{r['preset']}", str(r["batch_size"]), str(r["seq_len"]),
            number(r["new_tokens"], "d"), r["spec"], r["cache_implementation"] or "n/a", r["cache_precision"] or "n/a",
            r["failure_class"], message.splitlines()[0][:MESSAGE_CHARS] if message else "", r["run_id"]]


def _notes(measured: pl.DataFrame) -> list[str]:
    notes = []
    differ = measured.filter(pl.col("tokens_matching_reference") < pl.col("new_tokens"))
    if differ.height:
        notes.append(f"{differ.height} of {measured.height} configurations chose tokens other than transformers' "
                     "generate() before their last step (column 'tokens equal to generate()': leading steps that "
                     "agree); a lower precision or a quantized cache can change a greedy choice.")
    busy = measured.filter(pl.col("contaminated").fill_null(False))
    if busy.height:
        notes.append(f"{busy.height} of {measured.height} configurations ran while other work kept the machine busy "
                     "(contaminated): their latencies may be higher than the hardware's.")
    return notes


def generation_section(generation: pl.DataFrame, failures: pl.DataFrame) -> Section:
    """The section from every ``generation_results`` row and the ``failures`` table's newest rows."""
    section = Section("generation", TITLE,
                      "Greedy decoding with a KV cache, every new token fed back as the next step's input. Time to "
                      "first token (TTFT) is the prefill of the prompt up to the first token back on the host; "
                      "inter-token latency (ITL) is each later step's. Percentiles are over every measured sequence "
                      "(TTFT) and every step of them (ITL). tokens/s is batch × new tokens ÷ the median whole "
                      "sequence, prefill included. KV bytes/token is the cache's size after the last step ÷ (batch "
                      "× positions held). 'Tokens equal to generate()' counts the leading steps whose tokens equal "
                      "transformers' own greedy generate() on the fp32 model, of the new tokens. A line is a model × "
                      "target (and precision, cache, KV precision, threads, new tokens, batch or prompt where those "
                      "vary).")
    measured = _with_spec(newest_successful(generation, GENERATION_KEY))
    failed = _with_spec(newest_failures(failures, measured))
    if not measured.height and not failed.height:
        section.empty = NO_GENERATION
        return section
    if measured.height:
        measured = measured.sort(_ORDER)
        for (family, preset), group in measured.group_by(["family", "preset"], maintain_order=True):
            model = f"{family}/{preset}"
            varying = varying_dimensions(group, LINE_DIMENSIONS)
            ttft_dims = ["target", *[d for d in varying if d not in ("target", "seq_len")]]
            itl_dims = ["target", *[d for d in varying if d not in ("target", "batch_size")]]
            colors = charts.palette([_name(r, dims) for r in group.iter_rows(named=True)
                                     for dims in (ttft_dims, itl_dims)])
            section.charts.append(_ttft_chart(model, group, ttft_dims, colors))
            itl = _itl_chart(model, group, itl_dims, colors)
            if itl is not None:
                section.charts.append(itl)
        section.tables.append(Table(TABLE_COLUMNS, [_table_row(r) for r in measured.iter_rows(named=True)],
                                    [False, False, True, True, True, False, True, False, False, True, True, True, True,
                                     True, True, True, True, False]))
        section.notes.extend(_notes(measured))
        streaming = _streaming_table(measured)
        if streaming is not None:
            section.notes.append(
                "The streaming table: the same configurations streamed token by token over hwbench serve-generate's "
                "WebSocket (a server in the measuring process, clients in another process timing each token on "
                "arrival). Overhead = one client's streamed p50 − the in-process p50; the figures after it are per "
                "number of concurrent clients (one value per count, in the order of 'clients').")
            section.tables.append(streaming)
        kv = _kv_table(measured)
        if kv is not None:
            section.notes.append(
                "The KV-cache table: each quantized cache beside the same configuration with the model's own cache "
                "(memory saved per token, decode slowdown), and what that precision costs a decoder trained on a "
                "copy task whose answers need the cached prompt (docs/generation.md, 'KV-cache precision'): copy "
                "accuracy under it and under the full cache, top-1 agreement and KL divergence of the next token.")
            section.tables.append(kv)
    else:
        section.notes.append(NO_GENERATION)
    if failed.height:
        failed = failed.sort(["target", "family", "preset", "batch_size", "seq_len"])
        section.notes.append(f"The last table lists the {failed.height} generation configurations whose newest "
                             "attempt failed, with the failure class and the first line of its message.")
        section.tables.append(Table(FAILURE_COLUMNS, [_failure_row(r) for r in failed.iter_rows(named=True)],
                                    [False, False, True, True, True, False, False, False, False, False, False]))
    return section
