"""Great Expectations suites that gate the warehouse's tables.

Each suite runs in an ephemeral GX context on a pandas frame. Row-level expectations report which rows
failed, so :func:`split_valid_rows` can send those to quarantine while the valid rows land; table-level
expectations (schema, uniqueness) fail the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

INFERENCE_REQUIRED_COLUMNS = [
    "run_id", "target", "family", "preset", "batch_size", "seq_len", "precision", "threads", "status",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "n_samples", "throughput_samples_s", "peak_rss_mb", "host",
]
INFERENCE_KEY = ["run_id", "target", "family", "preset", "batch_size", "seq_len", "precision", "threads"]


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
    return gx.ExpectationSuite(name="inference_results", expectations=expectations)


def validate(frame: pd.DataFrame, suite) -> ValidationOutcome:
    """Run a suite on a frame; row-level failures come back with their positional row indices."""
    import great_expectations as gx

    frame = frame.reset_index(drop=True)
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
