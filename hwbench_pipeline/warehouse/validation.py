"""Great Expectations suites that gate the warehouse's tables.

Each suite runs in an ephemeral GX context on a pandas frame. Row-level expectations report which rows
failed, so :func:`split_valid_rows` can send those to quarantine while the valid rows land; table-level
expectations (schema, uniqueness) fail the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from hwbench_pipeline.bench.precision import NO_QUANTIZATION, PRECISIONS, QUANTIZATIONS
from hwbench_pipeline.warehouse.schema import (
    COMPARISON_KEY,
    COMPARISON_PURPOSES,
    COMPARISON_VERDICTS,
    CONFIG_KEY,
    UNRECORDED,
)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

INFERENCE_REQUIRED_COLUMNS = [
    "run_id", *CONFIG_KEY, "status",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "n_samples", "throughput_samples_s", "peak_rss_mb", "host",
]
INFERENCE_KEY = ["run_id", *CONFIG_KEY]
#: the int8 recipes, none for the float formats, or unrecorded (an import that does not say)
QUANTIZATION_VALUES = (NO_QUANTIZATION, *QUANTIZATIONS, UNRECORDED)
SCENARIOS = ("inference", "training", "distributed", "generation")
THROUGHPUT_RATIO = "throughput_x_p50_per_batch"
#: the failures table's key columns of one scenario each (distributed, generation); null for the others
SCENARIO_KEY_COLUMNS = ("strategy", "workers", "new_tokens", "cache_implementation")
THROUGHPUT_AGREEMENT = 1.25
TOKENS_RATIO = "tokens_x_p50_per_sequence"


@dataclass
class ExpectationFailure:
    expectation: str
    column: str | None
    unexpected_count: int
    rows: list[int] = field(default_factory=list)  # positional indices of the failing rows, when row-level


@dataclass
class ValidationOutcome:
    suite: str
    success: bool
    n_rows: int
    evaluated: int
    failures: list[ExpectationFailure]

    def summary(self) -> str:
        if self.success:
            return f"{self.suite}: {self.evaluated} expectations passed on {self.n_rows} rows"
        parts = [f"{f.expectation}({f.column or ''}): {f.unexpected_count}" for f in self.failures]
        return f"{self.suite}: {len(self.failures)} of {self.evaluated} expectations failed on {self.n_rows} rows: " \
               + "; ".join(parts)


def inference_suite():
    """The inference_results suite: schema, non-null unique keys, positive latencies, ordered percentiles."""
    import great_expectations as gx

    e = gx.expectations
    expectations = [e.ExpectTableColumnsToMatchSet(column_set=INFERENCE_REQUIRED_COLUMNS, exact_match=False)]
    expectations += [e.ExpectColumnValuesToNotBeNull(column=c) for c in INFERENCE_KEY + ["host"]]
    expectations.append(e.ExpectCompoundColumnsToBeUnique(column_list=INFERENCE_KEY))
    expectations.append(e.ExpectColumnValuesToBeInSet(column="status", value_set=["ok"]))
    for column in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_samples_s", "peak_rss_mb"):
        expectations.append(e.ExpectColumnValuesToNotBeNull(column=column))
        expectations.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
    expectations.append(e.ExpectColumnValuesToBeBetween(column="n_samples", min_value=3))
    expectations.append(e.ExpectColumnValuesToBeBetween(column="batch_size", min_value=1))
    expectations.append(e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p90_ms", column_B="p50_ms",
                                                                  or_equal=True))
    expectations.append(e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p99_ms", column_B="p90_ms",
                                                                  or_equal=True))
    expectations.append(e.ExpectColumnValuesToBeInSet(column="precision", value_set=list(PRECISIONS)))
    expectations.append(e.ExpectColumnValuesToBeInSet(column="quantization", value_set=list(QUANTIZATION_VALUES)))
    # Throughput is batch / a latency statistic (the median here, the mean in some imported reports): it
    # must agree with batch / p50 within THROUGHPUT_AGREEMENT either way (see derived_columns).
    expectations.append(e.ExpectColumnValuesToBeBetween(
        column=THROUGHPUT_RATIO, min_value=1 / THROUGHPUT_AGREEMENT, max_value=THROUGHPUT_AGREEMENT))
    return gx.ExpectationSuite(name="inference_results", expectations=expectations)


def training_suite():
    """training_results: the inference checks (keys, positive ordered latencies, throughput = batch / p50) plus
    a memory budget, FLOPs of forward + backward above the forward's, and sane convergence figures."""
    import great_expectations as gx

    e = gx.expectations
    either_missing = {"ignore_row_if": "either_value_is_missing"}
    extra = [
        e.ExpectTableColumnsToMatchSet(column_set=INFERENCE_REQUIRED_COLUMNS + ["memory_budget_mb", "within_budget"],
                                       exact_match=False),
        e.ExpectColumnValuesToBeInSet(column="status", value_set=["ok"]),
        e.ExpectColumnValuesToBeInSet(column="precision", value_set=list(PRECISIONS)),
        e.ExpectColumnValuesToNotBeNull(column="host"),
        e.ExpectColumnValuesToBeBetween(column="n_samples", min_value=3),
        e.ExpectColumnValuesToBeBetween(column="batch_size", min_value=1),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p90_ms", column_B="p50_ms", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p99_ms", column_B="p90_ms", or_equal=True),
        e.ExpectColumnValuesToBeBetween(
            column=THROUGHPUT_RATIO, min_value=1 / THROUGHPUT_AGREEMENT, max_value=THROUGHPUT_AGREEMENT),
        e.ExpectColumnValuesToNotBeNull(column="within_budget"),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="flops_per_step", column_B="forward_flops_per_step",
                                                  **either_missing),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="convergence_steps", column_B="steps_to_target",
                                                  or_equal=True, **either_missing),
        e.ExpectColumnValuesToBeBetween(column="final_accuracy", min_value=0, max_value=1),
        e.ExpectColumnValuesToBeBetween(column="steps_to_target", min_value=1),
    ]
    for column in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_samples_s", "peak_rss_mb", "memory_budget_mb"):
        extra.append(e.ExpectColumnValuesToNotBeNull(column=column))
        extra.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
    for column in ("initial_loss", "final_loss"):  # null where no convergence ran
        extra.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0))
    return _keys_suite("training_results", INFERENCE_KEY, extra)


DISTRIBUTED_KEY = [*INFERENCE_KEY, "strategy", "workers"]
#: a scaling efficiency above this is a measurement to distrust (a 1-worker baseline slowed by other work)
MAX_SCALING_EFFICIENCY = 2.0


def distributed_suite():
    """distributed_results: keys with strategy and workers, every rank reported with a positive throughput,
    positive ordered step latencies, total throughput = batch / p50, a sane scaling efficiency and losses."""
    import great_expectations as gx

    from hwbench_pipeline.bench.scenarios.distributed import STRATEGIES

    e = gx.expectations
    extra = [
        e.ExpectTableColumnsToMatchSet(column_set=DISTRIBUTED_KEY + [
            "status", "backend", "p50_ms", "throughput_samples_s", "ranks_reported", "min_rank_throughput",
            "scaling_efficiency", "loss_start", "loss_end", "peak_rss_mb", "host"], exact_match=False),
        e.ExpectColumnValuesToBeInSet(column="status", value_set=["ok"]),
        e.ExpectColumnValuesToBeInSet(column="strategy", value_set=list(STRATEGIES)),
        e.ExpectColumnValuesToBeInSet(column="backend", value_set=["gloo", "nccl"]),
        e.ExpectColumnValuesToBeInSet(column="precision", value_set=list(PRECISIONS)),
        e.ExpectColumnValuesToNotBeNull(column="host"),
        e.ExpectColumnValuesToBeBetween(column="workers", min_value=1),
        e.ExpectColumnValuesToBeBetween(column="batch_size", min_value=1),
        e.ExpectColumnValuesToBeBetween(column="n_samples", min_value=3),
        # every rank's figures came back, none of them zero
        e.ExpectColumnPairValuesToBeEqual(column_A="ranks_reported", column_B="workers"),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p90_ms", column_B="p50_ms", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p99_ms", column_B="p90_ms", or_equal=True),
        e.ExpectColumnValuesToBeBetween(
            column=THROUGHPUT_RATIO, min_value=1 / THROUGHPUT_AGREEMENT, max_value=THROUGHPUT_AGREEMENT),
        e.ExpectColumnValuesToBeBetween(column="scaling_efficiency", min_value=0, max_value=MAX_SCALING_EFFICIENCY,
                                        strict_min=True),
    ]
    for column in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_samples_s", "min_rank_throughput",
                   "peak_rss_mb"):
        extra.append(e.ExpectColumnValuesToNotBeNull(column=column))
        extra.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
    for column in ("loss_start", "loss_end"):
        extra.append(e.ExpectColumnValuesToNotBeNull(column=column))
        extra.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0))
    return _keys_suite("distributed_results", DISTRIBUTED_KEY, extra)


GENERATION_KEY = [*INFERENCE_KEY, "new_tokens", "cache_implementation"]


def generation_suite():
    """generation_results: keys with new tokens and cache, positive ordered sequence, TTFT and inter-token
    latencies, TTFT within the sequence, tokens/s that agrees with the median sequence it comes from, and cache
    bytes that do not shrink as the context grows."""
    import great_expectations as gx

    from hwbench_pipeline.bench.precision import CACHE_PRECISIONS
    from hwbench_pipeline.bench.scenarios.generation import CACHE_NAMES

    e = gx.expectations
    either_missing = {"ignore_row_if": "either_value_is_missing"}
    extra = [
        e.ExpectTableColumnsToMatchSet(column_set=GENERATION_KEY + [
            "status", "p50_ms", "ttft_p50_ms", "itl_p50_ms", "tokens_per_s", "decode_tokens_per_s", "peak_rss_mb",
            "tokens_matching_reference", "host"], exact_match=False),
        e.ExpectColumnValuesToBeInSet(column="status", value_set=["ok"]),
        e.ExpectColumnValuesToBeInSet(column="precision", value_set=list(PRECISIONS)),
        e.ExpectColumnValuesToBeInSet(column="cache_implementation", value_set=list(CACHE_NAMES)),
        e.ExpectColumnValuesToBeInSet(column="cache_precision", value_set=list(CACHE_PRECISIONS)),
        e.ExpectColumnValuesToNotBeNull(column="host"),
        e.ExpectColumnValuesToBeBetween(column="n_samples", min_value=3),
        e.ExpectColumnValuesToBeBetween(column="batch_size", min_value=1),
        e.ExpectColumnValuesToBeBetween(column="new_tokens", min_value=1),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p90_ms", column_B="p50_ms", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p99_ms", column_B="p90_ms", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="ttft_p99_ms", column_B="ttft_p50_ms", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="itl_p99_ms", column_B="itl_p50_ms", or_equal=True,
                                                  **either_missing),
        # the first token is part of its sequence, and tokens/s is batch x new tokens / the median sequence
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="p50_ms", column_B="ttft_p50_ms", or_equal=True),
        e.ExpectColumnValuesToBeBetween(column=TOKENS_RATIO, min_value=1 / THROUGHPUT_AGREEMENT,
                                        max_value=THROUGHPUT_AGREEMENT),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="kv_cache_bytes", column_B="kv_cache_bytes_prompt",
                                                  or_equal=True, **either_missing),
        e.ExpectColumnValuesToBeBetween(column="tokens_matching_reference", min_value=0),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="new_tokens", column_B="tokens_matching_reference",
                                                  or_equal=True),
    ]
    for column in ("p50_ms", "ttft_p50_ms", "tokens_per_s", "prefill_tokens_per_s", "peak_rss_mb"):
        extra.append(e.ExpectColumnValuesToNotBeNull(column=column))
        extra.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
    for column in ("itl_p50_ms", "decode_tokens_per_s", "kv_cache_bytes_per_token"):  # null: one new token / unseen
        extra.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
    return _keys_suite("generation_results", GENERATION_KEY, extra)


def _keys_suite(name: str, key: list[str], extra: list, unique: list[str] | None = None) -> object:
    """A suite with the table's key columns present, not null and unique within a run, plus ``extra``.

    ``unique``, when given, is the (wider) column list that must be unique instead of ``key``."""
    import great_expectations as gx

    e = gx.expectations
    expectations = [e.ExpectTableColumnsToMatchSet(column_set=key, exact_match=False)]
    expectations += [e.ExpectColumnValuesToNotBeNull(column=c) for c in key]
    expectations.append(e.ExpectCompoundColumnsToBeUnique(column_list=unique or key, ignore_row_if="never"))
    return gx.ExpectationSuite(name=name, expectations=expectations + extra)


def failures_suite():
    """failures: classified, with a message, keys unique per run and scenario."""
    import great_expectations as gx

    from hwbench_pipeline.bench.failures import FAILURE_CLASSES

    e = gx.expectations
    # Distributed failures are also told apart by strategy and workers, generation ones by new tokens and cache
    # (null for the other scenarios).
    return _keys_suite("failures", ["run_id", "scenario", *CONFIG_KEY], unique=[
        "run_id", "scenario", *CONFIG_KEY, *SCENARIO_KEY_COLUMNS], extra=[
        e.ExpectColumnValuesToBeInSet(column="failure_class", value_set=list(FAILURE_CLASSES)),
        e.ExpectColumnValuesToBeInSet(column="scenario", value_set=list(SCENARIOS)),
        e.ExpectColumnValuesToBeInSet(column="status", value_set=["failed"]),
        e.ExpectColumnValuesToNotBeNull(column="message"),
        e.ExpectColumnValuesToNotBeNull(column="failure_class"),
    ])


def latency_samples_suite():
    """latency_samples: one positive latency per (configuration, sample index) within a run."""
    import great_expectations as gx

    e = gx.expectations
    return _keys_suite("latency_samples", ["run_id", "scenario", *CONFIG_KEY, "sample_index"], [
        e.ExpectColumnValuesToNotBeNull(column="latency_ms"),
        e.ExpectColumnValuesToBeBetween(column="latency_ms", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeBetween(column="sample_index", min_value=0),
    ])


def recommendations_suite():
    """recommendations: a positive figure whose source is named (measured or predicted)."""
    import great_expectations as gx

    e = gx.expectations
    return _keys_suite("recommendations", ["run_id", "family", "preset", "objective"], [
        e.ExpectColumnValuesToNotBeNull(column="target"),
        e.ExpectColumnValuesToBeBetween(column="value", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeInSet(column="source", value_set=["measured", "predicted", "roofline"]),
    ])


def predictions_suite():
    """predictions: a positive figure inside its own interval, labelled with confidence and source."""
    import great_expectations as gx

    e = gx.expectations
    return _keys_suite("predictions", ["run_id", "mode", *CONFIG_KEY, "metric"], [
        e.ExpectColumnValuesToBeBetween(column="value", min_value=0, strict_min=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="value", column_B="interval_low", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="interval_high", column_B="value", or_equal=True),
        e.ExpectColumnValuesToBeInSet(column="confidence", value_set=["high", "medium", "low"]),
        e.ExpectColumnValuesToNotBeNull(column="source"),
    ])


def regressions_suite():
    """regressions: a verdict from the allowed set, a p-value in [0, 1]."""
    import great_expectations as gx

    e = gx.expectations
    return _keys_suite("regressions", ["run_id", "scenario", *CONFIG_KEY, "metric"], [
        e.ExpectColumnValuesToBeInSet(column="verdict",
                                      value_set=["slower", "faster", "unchanged", "new", "unreliable"]),
        e.ExpectColumnValuesToBeBetween(column="p_value", min_value=0, max_value=1),
    ])


def comparisons_suite():
    """comparisons: an allowed purpose, kind and verdict; no more pairs compared than asked for; a p-value and a
    coverage in [0, 1]; a positive ratio inside its interval; a positive threshold."""
    import great_expectations as gx

    e = gx.expectations
    return _keys_suite("comparisons", ["run_id", *COMPARISON_KEY], [
        e.ExpectColumnValuesToBeInSet(column="verdict", value_set=COMPARISON_VERDICTS),
        e.ExpectColumnValuesToBeInSet(column="kind", value_set=["targets", "precisions", "builds"]),
        e.ExpectColumnValuesToBeInSet(column="purpose", value_set=COMPARISON_PURPOSES),
        e.ExpectColumnValuesToBeBetween(column="coverage", min_value=0, max_value=1),
        e.ExpectColumnValuesToBeBetween(column="threshold", min_value=0, strict_min=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="ratio", column_B="low", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="ratio", or_equal=True),
        e.ExpectColumnValuesToBeBetween(column="pairs", min_value=0),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="pairs_asked", column_B="pairs", or_equal=True),
        e.ExpectColumnValuesToBeBetween(column="p_value", min_value=0, max_value=1),
        e.ExpectColumnValuesToBeBetween(column="ratio", min_value=0, strict_min=True),
    ])


def derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns some expectations need that pandas' GX datasource cannot compute itself."""
    if "failure_class" in frame.columns:  # rows built in memory may omit the distributed-only key columns
        frame = frame.assign(**{c: None for c in SCENARIO_KEY_COLUMNS if c not in frame.columns})
    if {"tokens_per_s", "p50_ms", "batch_size", "new_tokens"} <= set(frame.columns):
        frame = frame.assign(**{TOKENS_RATIO: frame["tokens_per_s"] * frame["p50_ms"] / 1e3
                                / (frame["batch_size"] * frame["new_tokens"])})
    if {"throughput_samples_s", "p50_ms", "batch_size"} <= set(frame.columns):
        frame = frame.assign(**{THROUGHPUT_RATIO: frame["throughput_samples_s"] * frame["p50_ms"] / 1e3
                                / frame["batch_size"]})
    return frame


def validate(frame: pd.DataFrame, suite) -> ValidationOutcome:
    """Run a suite on a frame; row-level failures come back with their positional row indices."""
    import great_expectations as gx

    frame = derived_columns(frame.reset_index(drop=True))
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("hwbench")
    asset = source.add_dataframe_asset(suite.name)
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    failures = []
    for res in result.results:
        if res.success:
            continue
        config = res.expectation_config
        kwargs = config.kwargs
        columns = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B"),
                   *(kwargs.get("column_list") or [])]
        column = ",".join(str(c) for c in columns if c) or None
        details = res.result or {}
        rows = [int(i) for i in details.get("unexpected_index_list") or [] if isinstance(i, int)]
        count = int(details.get("unexpected_count") or len(rows) or 0)
        failures.append(ExpectationFailure(config.type, column, count, rows))
    return ValidationOutcome(suite.name, bool(result.success), len(frame), len(result.results), failures)


def split_valid_rows(rows: list[dict], suite) -> tuple[list[dict], list[tuple[dict, list[str]]], ValidationOutcome]:
    """(valid rows, [(invalid row, failed expectations)], outcome). Table-level failures reject nothing by row."""
    if not rows:
        return [], [], ValidationOutcome(suite.name, True, 0, 0, [])
    outcome = validate(pd.DataFrame(rows), suite)
    reasons: dict[int, list[str]] = {}
    for failure in outcome.failures:
        for index in failure.rows:
            reasons.setdefault(index, []).append(f"{failure.expectation}({failure.column})")
    valid = [row for i, row in enumerate(rows) if i not in reasons]
    invalid = [(rows[i], why) for i, why in sorted(reasons.items())]
    return valid, invalid, outcome
