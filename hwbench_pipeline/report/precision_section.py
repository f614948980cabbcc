"""The comparison report's precision section: what each precision gains in speed over fp32 and what it costs in
output quality, configuration by configuration (same model, target, shape and threads; docs/precision.md)."""

from __future__ import annotations

import polars as pl

from hwbench_pipeline.bench.precision import SPECS
from hwbench_pipeline.report import charts
from hwbench_pipeline.report.charts import Series, XYChart
from hwbench_pipeline.report.comparison_sections import ReportData, Section, Table
from hwbench_pipeline.report.text import number
from hwbench_pipeline.warehouse.schema import CONFIG_KEY

#: what makes two rows the same configuration but for the precision: the whole key but the format and recipe
SAME_BUT_PRECISION = [k for k in CONFIG_KEY if k not in ("precision", "quantization")]
QUALITY_COLUMNS = ("max_rel_diff", "mean_rel_diff", "task_accuracy", "task_accuracy_fp32", "accuracy_drop")


def precision_rows(measured: pl.DataFrame) -> pl.DataFrame:
    """Every measured row that has an fp32 row of the same configuration, with its speed-up over it."""
    if measured.is_empty() or "spec" not in measured.columns:
        return pl.DataFrame()
    frame = measured.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in QUALITY_COLUMNS
                                   if c not in measured.columns])
    fp32 = frame.filter(pl.col("spec") == "fp32").select(*SAME_BUT_PRECISION, fp32_p50_ms=pl.col("p50_ms"))
    return (frame.join(fp32, on=SAME_BUT_PRECISION, how="inner")
            .with_columns(speedup=pl.col("fp32_p50_ms") / pl.col("p50_ms"),
                          order=pl.col("spec").replace_strict({s: i for i, s in enumerate(SPECS)}, default=len(SPECS),
                                                              return_dtype=pl.Int64))
            .sort(["family", "preset", "target", "batch_size", "seq_len", "order"]))


def precision_section(data: ReportData) -> Section:
    section = Section("precision", "Precision: speed against quality",
                      "Each precision against fp32 on the same model, target, shape and threads: the speed-up (fp32 "
                      "median ÷ this median, from rows measured apart: a profile's comparisons section measures two "
                      "precisions interleaved), and what it costs. Output error is |output − torch fp32 output| on "
                      "the same inputs, its maximum and mean relative to the fp32 output's largest magnitude. Task "
                      "accuracy is measured where the model has learned a task (weights kept by the training "
                      "scenario): the held-out accuracy at this precision, and its drop from torch fp32.")
    rows = precision_rows(data.measured)
    if rows.is_empty() or rows.filter(pl.col("spec") != "fp32").is_empty():
        section.empty = ("Only fp32 was measured, or no other precision has an fp32 row of the same configuration: "
                         "add precisions to the profile (e.g. [fp32, bf16, int8-dynamic, int8-static]).")
        return section
    others = rows.filter(pl.col("spec") != "fp32")
    colors = charts.palette(sorted(set(others["spec"])))
    series = []
    for (spec,), group in others.group_by(["spec"], maintain_order=True):
        points = [r for r in group.iter_rows(named=True) if r["mean_rel_diff"] and r["mean_rel_diff"] > 0]
        if points:
            series.append(Series(spec, [r["mean_rel_diff"] for r in points], [r["speedup"] for r in points],
                                 hover=[f"{r['family']}/{r['preset']} on {r['target']} bs={r['batch_size']} "
                                        f"seq={r['seq_len']}: ×{r['speedup']:.2f}, mean error {r['mean_rel_diff']:.2g}"
                                        for r in points], color=colors[spec], line=False))
    if series:
        section.charts.append(XYChart("precision", "Speed-up over fp32 against output error",
                                      "mean output error (relative to the fp32 output's scale)",
                                      "speed-up over fp32 (×)", series, log_x=True))
    table = [[f"{r['family']}/{r['preset']}", r["target"], str(r["batch_size"]), str(r["seq_len"]), r["spec"],
              r.get("precision_ran") or r["precision"], number(r["p50_ms"], ".3f"), number(r["speedup"], ".2f"),
              number(r["max_rel_diff"], ".2g"), number(r["mean_rel_diff"], ".2g"),
              number(100 * r["task_accuracy"] if r["task_accuracy"] is not None else None, ".1f"),
              number(100 * r["accuracy_drop"] if r["accuracy_drop"] is not None else None, "+.1f")]
             for r in rows.iter_rows(named=True)]
    section.tables.append(Table(["model", "target", "batch", "seq", "precision", "ran", "p50 ms", "× fp32",
                                 "max error", "mean error", "task accuracy %", "accuracy drop pts"], table,
                                [False, False, True, True, False, False, True, True, True, True, True, True]))
    return section
