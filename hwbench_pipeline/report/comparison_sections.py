"""The comparison report's sections, built from the warehouse's rows: what each chart and table shows.

* latency (p50, whisker to p90) and throughput against batch size, one chart per model, a line per target;
* latency distributions from the raw samples, one chart per target;
* compatibility: family × target, each cell measured / failed:<class> / predicted / untested;
* interleaved comparisons (their own module, :mod:`hwbench_pipeline.report.interleaved_section`): two sides
  measured by alternating fresh processes in one window, against the target-by-target figures here, which come
  from partitions measured apart;
* history: p50 per configuration across runs, with change points (given, or read from ``regressions``);
* roofline: achieved GFLOP/s against the target's measured peaks;
* predicted against measured latency;
* training and distributed training (their own module, :mod:`hwbench_pipeline.report.training_sections`):
  training throughput and peak memory (with the memory budget) against batch size and loss curves, one set per
  model; scaling efficiency and total throughput against workers, a line per model × strategy.

"Measured" means the newest successful run of a configuration; a configuration whose newest attempt failed
counts as failed in the compatibility grid and in the failure list. A section whose rows are missing carries
a sentence that says so (``Section.empty``) instead of charts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from hwbench_pipeline.bench.precision import BYTES_PER_WEIGHT, SPECS, spec_expr
from hwbench_pipeline.report import charts
from hwbench_pipeline.report.charts import Chart, Distribution, DistributionChart, HeatmapChart, Series, XYChart
from hwbench_pipeline.report.text import number, slug
from hwbench_pipeline.warehouse.schema import CONFIG_KEY
from hwbench_pipeline.warehouse.store import Warehouse

#: the metric of a ``predictions`` row that is compared with a measured median
PREDICTED_METRIC = "p50_ms"
#: bytes of one weight at the precision that ran (the roofline's arithmetic intensity)
#: a latency distribution is drawn from this many evenly spaced quantiles of the raw samples
DISTRIBUTION_QUANTILES = 201
#: dimensions of a configuration besides the model and the batch size, in the order labels name them
SERIES_DIMENSIONS = ("target", "spec", "attention", "seq_len", "threads")


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]


@dataclass
class Section:
    key: str
    title: str
    intro: str
    empty: str | None = None  # set when there is nothing to draw: says why
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---- reading the warehouse ---------------------------------------------------------------------------------
@dataclass
class ReportData:
    history: pl.DataFrame  # successful inference rows, one per (configuration, run)
    measured: pl.DataFrame  # the newest successful row of each configuration
    failures: pl.DataFrame  # the newest failure of each configuration whose newest attempt failed
    targets: pl.DataFrame  # the newest row of each hardware target
    families: list[str]  # the catalog's families (plus any that has rows)
    predictions: pl.DataFrame  # CONFIG_KEY + value (+ interval_low/high, source) for PREDICTED_METRIC
    training: pl.DataFrame  # the training_results table, every row (training_sections picks the newest)
    distributed: pl.DataFrame  # the distributed_results table, every row
    # the generation_results table, every row, and the failures table's newest rows (generation_section picks)
    generation: pl.DataFrame = field(default_factory=pl.DataFrame)
    generation_failures: pl.DataFrame = field(default_factory=pl.DataFrame)
    # the comparisons table, every row (interleaved_section picks the newest comparison of each key)
    comparisons: pl.DataFrame = field(default_factory=pl.DataFrame)
    # the benchmark_plans table's newest plan (planner_section)
    plans: pl.DataFrame = field(default_factory=pl.DataFrame)


def _normalize_predictions(frame: pl.DataFrame) -> pl.DataFrame:
    missing = sorted({*CONFIG_KEY, "value"} - set(frame.columns))
    if missing:
        raise ValueError(f"predictions lack the columns {', '.join(missing)} (a row needs {CONFIG_KEY} and value)")
    if "metric" in frame.columns:
        frame = frame.filter(pl.col("metric") == PREDICTED_METRIC)
    for name in ("interval_low", "interval_high", "source"):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(name))
    if "_written_at" in frame.columns:
        frame = frame.sort("_written_at")
    return frame.unique(subset=CONFIG_KEY, keep="last", maintain_order=True)


def _with_spec(frame: pl.DataFrame) -> pl.DataFrame:
    """A ``spec`` column (``int8-static``; bench/precision.py): the precision as the report names it."""
    if "quantization" not in frame.columns:
        frame = frame.with_columns(quantization=pl.lit(None, dtype=pl.String))
    return frame.with_columns(spec=spec_expr())


def load_report_data(warehouse: Warehouse, predictions: pl.DataFrame | list[dict] | None) -> ReportData:
    ok = warehouse.read("inference_results").filter(pl.col("status") == "ok").sort("_written_at")
    # A re-materialized partition keeps its run id: the newest copy of a (configuration, run) counts once.
    history = ok.unique(subset=[*CONFIG_KEY, "run_id"], keep="last", maintain_order=True)
    measured = history.unique(subset=CONFIG_KEY, keep="last", maintain_order=True)
    # An empty table's time zone is "UTC", DuckDB's "Etc/UTC": polars compares neither with the other.
    newest_ok = measured.select(*CONFIG_KEY, pl.col("_written_at").dt.convert_time_zone("UTC").alias("_ok_at"))
    failed_at = pl.col("_written_at").dt.convert_time_zone("UTC")
    # the inference sections count inference failures; training on an inference-only runtime is refused, and
    # that says nothing about whether a model runs there
    failures = (warehouse.read("failures", latest=True).filter(pl.col("scenario") == "inference")
                .join(newest_ok, on=CONFIG_KEY, how="left")
                .filter(pl.col("_ok_at").is_null() | (failed_at > pl.col("_ok_at"))).drop("_ok_at"))
    catalog = warehouse.read("models", latest=True)["family"].to_list()
    if predictions is None:
        predicted = warehouse.read("predictions", latest=True)
    else:
        predicted = predictions if isinstance(predictions, pl.DataFrame) else pl.DataFrame(predictions)
    predicted = _normalize_predictions(predicted)
    families = sorted(set(catalog) | set(measured["family"]) | set(failures["family"]) | set(predicted["family"]))
    order = ["family", "preset", "target", "precision", "seq_len", "threads", "batch_size"]
    history, measured, failures, predicted = (_with_spec(f) for f in (history, measured, failures, predicted))
    return ReportData(history=history, measured=measured.sort(order), failures=failures.sort(order),
                 targets=warehouse.read("hardware_targets", latest=True).sort("target"),
                 families=families, predictions=predicted, training=warehouse.read("training_results"),
                 distributed=warehouse.read("distributed_results"), generation=warehouse.read("generation_results"),
                 generation_failures=warehouse.read("failures", latest=True).filter(pl.col("scenario") == "generation"),
                 comparisons=warehouse.read("comparisons"), plans=warehouse.read_newest_run("benchmark_plans"))


def change_points_from_regressions(warehouse: Warehouse) -> dict[tuple, list[str]]:
    found = warehouse.read("regressions").filter(pl.col("first_suspicious_run_id").is_not_null()
                                                 & pl.col("verdict").is_in(["slower", "faster"]))
    points: dict[tuple, list[str]] = {}
    for row in found.iter_rows(named=True):
        runs = points.setdefault(tuple(row[k] for k in CONFIG_KEY), [])
        if row["first_suspicious_run_id"] not in runs:
            runs.append(row["first_suspicious_run_id"])
    return points


def normalize_change_points(change_points: dict) -> dict[tuple, set[str]]:
    normalized = {}
    for key, runs in change_points.items():
        if not isinstance(key, tuple) or len(key) != len(CONFIG_KEY):
            raise ValueError(f"a change-point key must be a tuple of {', '.join(CONFIG_KEY)}; got {key!r}")
        normalized[key] = {runs} if isinstance(runs, str) else set(runs)
    return normalized


# ---- formatting --------------------------------------------------------------------------------------------
def family_preset(row: dict) -> str:
    return f"{row['family']}/{row['preset']}"


def varying_dimensions(frame: pl.DataFrame, dimensions: Iterable[str]) -> list[str]:
    return [d for d in dimensions if d in frame.columns and frame[d].n_unique() > 1]


def series_label(row: dict, dimensions: Iterable[str]) -> str:
    names = {"target": "{}", "spec": "{}", "attention": "attn={}", "seq_len": "seq={}", "threads": "t={}",
             "batch_size": "bs={}", "family": "{}", "preset": "{}"}
    return " ".join(names[d].format(row[d]) for d in dimensions)


def spans_decades(values: Iterable[float | None], ratio: float = 20.0) -> bool:
    finite = [v for v in values if v is not None and v > 0]
    return bool(finite) and max(finite) / min(finite) >= ratio


def _peak(targets: pl.DataFrame, target: str, precision: str | None) -> tuple[float | None, float | None]:
    """(peak GFLOP/s for the precision, peak copy GB/s) measured for a target, or None where unknown."""
    rows = targets.filter(pl.col("target") == target)
    if rows.is_empty():
        return None, None
    row = rows.row(0, named=True)
    return row.get(f"peak_gflops_{precision}"), row.get("peak_gbps")


def _pct_of_peak(row: dict, targets: pl.DataFrame) -> float | None:
    if row.get("pct_of_peak") is not None:
        return row["pct_of_peak"]
    peak, _ = _peak(targets, row["target"], row.get("precision_ran") or row["precision"])
    return 100.0 * row["achieved_gflops"] / peak if peak and row.get("achieved_gflops") else None


# ---- sections ----------------------------------------------------------------------------------------------
NOTHING_MEASURED = "No configuration has been measured yet: the inference_results table has no successful row."


def overview_table(data: ReportData) -> Table:
    rows = []
    for target in sorted(set(data.targets["target"]) | set(data.measured["target"]) | set(data.failures["target"])):
        info = data.targets.filter(pl.col("target") == target)
        info_row = info.row(0, named=True) if not info.is_empty() else {}
        rows.append([target, info_row.get("device_name") or "not in hardware_targets",
                     number(info_row.get("peak_gflops_fp32"), ".1f"), number(info_row.get("peak_gflops_bf16"), ".1f"),
                     number(info_row.get("peak_gflops_int8"), ".1f"), number(info_row.get("peak_gbps"), ".1f"),
                     str(data.measured.filter(pl.col("target") == target).height),
                     str(data.failures.filter(pl.col("target") == target).height),
                     str(data.history.filter(pl.col("target") == target)["run_id"].n_unique())])
    return Table(["target", "device", "peak fp32 GFLOP/s", "peak bf16 GFLOP/s", "peak int8 GOPS", "copy GB/s",
                  "configurations measured", "failing", "runs"], rows, [False, False] + [True] * 7)


def batch_section(data: ReportData) -> Section:
    section = Section("batch", "Latency and throughput against batch size",
                      "One pair of charts per model, a line per target (and per precision, sequence length or thread "
                      "count where those vary). Latency is the median per call with a whisker up to the 90th "
                      "percentile; throughput is samples per second at the median. Each target's figures come from "
                      "its own partition, measured apart from the others (at a different time): a ratio between two "
                      "targets' figures here includes the host's drift in between, unlike the verdicts of the "
                      "interleaved comparisons.")
    if data.measured.is_empty():
        section.empty = NOTHING_MEASURED
        return section
    colors = charts.palette(data.measured["target"].to_list())
    for (family, preset), group in data.measured.group_by(["family", "preset"], maintain_order=True):
        dims = ["target", *[d for d in varying_dimensions(group, SERIES_DIMENSIONS) if d != "target"]]
        latency, throughput = [], []
        for _, rows in group.group_by(dims, maintain_order=True):
            rows = rows.sort("batch_size")
            first = rows.row(0, named=True)
            name = series_label(first, dims)
            hover = [f"{name} bs={r['batch_size']}<br>p50 {r['p50_ms']:.3f} ms, p90 {r['p90_ms']:.3f} ms<br>"
                     f"{r['throughput_samples_s']:.1f} samples/s, run {r['run_id']}"
                     for r in rows.iter_rows(named=True)]
            batches = rows["batch_size"].to_list()
            latency.append(Series(name, batches, rows["p50_ms"].to_list(), y_high=rows["p90_ms"].to_list(),
                                  hover=hover, color=colors[first["target"]]))
            throughput.append(Series(name, batches, rows["throughput_samples_s"].to_list(), hover=hover,
                                     color=colors[first["target"]]))
        ticks = [(b, str(b)) for b in sorted(set(group["batch_size"]))]
        model = f"{family}/{preset}"
        section.charts.append(XYChart(f"latency-{slug(model)}", f"{model}: latency per call", "batch size",
                                      "ms (p50, whisker to p90)", latency, log_x=True,
                                      log_y=spans_decades(group["p50_ms"]), x_ticks=ticks))
        section.charts.append(XYChart(f"throughput-{slug(model)}", f"{model}: throughput", "batch size",
                                      "samples/s (at p50)", throughput, log_x=True,
                                      log_y=spans_decades(group["throughput_samples_s"]), x_ticks=ticks))
    rows = [[family_preset(r), r["target"], str(r["batch_size"]), str(r["seq_len"]),
             r["precision_ran"] or r["precision"], str(r["threads"]), number(r["p50_ms"], ".3f"),
             number(r["p90_ms"], ".3f"), number(r["p99_ms"], ".3f"),
             number(r["throughput_samples_s"], ".1f"), number(r["achieved_gflops"], ".2f"),
             number(_pct_of_peak(r, data.targets), ".1f"), str(r["n_samples"]),
             r["stop_reason"] + (" (busy machine)" if r["contaminated"] else ""), r["run_id"]]
            for r in data.measured.iter_rows(named=True)]
    section.tables.append(Table(["model", "target", "batch", "seq", "precision ran", "threads", "p50 ms", "p90 ms",
                                 "p99 ms", "samples/s", "GFLOP/s", "% of peak", "samples", "stopped by", "run"], rows,
                                [False, False, True, True, False, True, True, True, True, True, True, True, True,
                                 False, False]))
    return section


def _quantiles(samples: list[float]) -> list[float]:
    values = np.asarray(samples, dtype=float)
    if values.size <= DISTRIBUTION_QUANTILES:
        return sorted(values.tolist())
    return np.quantile(values, np.linspace(0.0, 1.0, DISTRIBUTION_QUANTILES)).tolist()


def distribution_section(data: ReportData) -> Section:
    section = Section("distributions", "Latency distributions",
                      "Every raw latency sample of each configuration's newest run, one chart per target. Each "
                      f"violin is drawn from {DISTRIBUTION_QUANTILES} evenly spaced quantiles of the samples (all of "
                      "them when there are fewer), so its shape, tails and any second mode are the measurement's own.")
    with_samples = data.measured.filter(pl.col("samples_ms").list.len() > 0)
    if with_samples.is_empty():
        section.empty = NOTHING_MEASURED if data.measured.is_empty() else "No measured row carries raw samples."
        return section
    if with_samples.height < data.measured.height:
        section.notes.append(f"{data.measured.height - with_samples.height} configurations carry no raw samples "
                             "(imported summaries) and are left out.")
    colors = charts.palette(with_samples["family"].to_list())
    rows = []
    for (target,), group in with_samples.group_by(["target"], maintain_order=True):
        extra = varying_dimensions(group, ("spec", "attention", "seq_len", "threads"))
        groups = []
        for r in group.iter_rows(named=True):
            samples = np.asarray(r["samples_ms"], dtype=float)
            label = " ".join([family_preset(r), series_label(r, ["batch_size", *extra])])
            groups.append(Distribution(label, _quantiles(r["samples_ms"]), int(samples.size), colors[r["family"]]))
            p50, p99 = np.percentile(samples, [50, 99])
            rows.append([target, family_preset(r), str(r["batch_size"]), r["precision_ran"] or r["precision"],
                         str(samples.size), number(float(samples.min()), ".3f"), number(float(p50), ".3f"),
                         number(float(p99), ".3f"), number(float(samples.max()), ".3f"),
                         number(float(p99 / p50), ".2f"), number(r["cv"], ".3f")])
        section.charts.append(DistributionChart(f"distribution-{slug(target)}", f"{target}: latency per call",
                                                "ms per call", groups,
                                                log_y=spans_decades([q for g in groups for q in g.quantiles])))
    section.tables.append(Table(["target", "model", "batch", "precision ran", "samples", "min ms", "p50 ms", "p99 ms",
                                 "max ms", "p99 / p50", "CV"], rows,
                                [False, False, True, False, True, True, True, True, True, True, True]))
    return section


def _compatibility_cell(measured: int, failed: dict[str, int], predicted: int) -> tuple[str, str]:
    detail = f"{measured} measured, {sum(failed.values())} failing, {predicted} predicted"
    if failed:
        detail += " (" + ", ".join(f"{c}: {n}" for c, n in sorted(failed.items())) + ")"
    if measured:
        return "measured", detail
    if failed:
        return f"failed:{max(sorted(failed), key=failed.get)}", detail
    if predicted:
        return "predicted", detail
    return "untested", "nothing measured, failed or predicted"


def compatibility_section(data: ReportData) -> Section:
    section = Section("compatibility", "Compatibility: model family × target",
                      "Each cell sums up every configuration of the family on the target, by its newest attempt: "
                      "'measured' when at least one ran, else 'failed:' and the most common failure class, "
                      "else 'predicted' when the predictor gives a figure, else 'untested'. Where more than one "
                      "precision was asked for, each family has a row per precision.")
    targets = sorted(set(data.targets["target"]) | set(data.measured["target"]) | set(data.failures["target"])
                     | set(data.predictions["target"]))
    if not targets or not data.families:
        section.empty = "No hardware target and no model family is known yet (hardware_targets and models are empty)."
        return section
    measured = data.measured.join(data.failures.select(CONFIG_KEY), on=CONFIG_KEY, how="anti")
    seen = set(measured["spec"]) | set(data.failures["spec"]) | set(data.predictions["spec"])
    specs = [s for s in SPECS if s in seen] + sorted(seen - set(SPECS))
    by_precision = len(specs) > 1
    grid = [(family, spec) for family in data.families for spec in (specs if by_precision else [None])]
    cells, hover = [], []
    for family, spec in grid:
        cell_row, hover_row = [], []
        for target in targets:
            def rows(frame: pl.DataFrame, family: str = family, target: str = target,
                     spec: str | None = spec) -> pl.DataFrame:
                picked = (pl.col("family") == family) & (pl.col("target") == target)
                return frame.filter(picked & (pl.col("spec") == spec) if spec else picked)
            failed = dict(rows(data.failures).group_by("failure_class").len().iter_rows())
            label, detail = _compatibility_cell(rows(measured).height, failed, rows(data.predictions).height)
            cell_row.append(label)
            hover_row.append(f"{family}{' ' + spec if spec else ''} on {target}: {detail}")
        cells.append(cell_row)
        hover.append(hover_row)
    labels = [f"{family} {spec}" if spec else family for family, spec in grid]
    title = "Compatibility: family × precision × target" if by_precision else "Compatibility: family × target"
    section.charts.append(HeatmapChart("compatibility", title, labels, targets, cells, hover))
    if data.failures.is_empty():
        section.notes.append("No configuration is failing.")
    else:
        rows = [[r["target"], family_preset(r), str(r["batch_size"]), str(r["seq_len"]), r["spec"], r["failure_class"],
                 (r["message"] or "").splitlines()[0][:160] if r["message"] else "", r["run_id"]]
                for r in data.failures.iter_rows(named=True)]
        section.tables.append(Table(["target", "model", "batch", "seq", "precision", "failure class", "message",
                                     "run"], rows, [False, False, True, True, False, False, False, False]))
    return section


def _run_order(history: pl.DataFrame) -> list[str]:
    """Run ids, oldest first, by when each run's first configuration started."""
    when = pl.coalesce([c for c in ("started_at", "_written_at") if c in history.columns])
    return (history.group_by("run_id").agg(when.min().alias("_t")).sort(["_t", "run_id"])["run_id"].to_list())


def _short_run(run_id: str) -> str:
    return run_id if len(run_id) <= 12 else run_id[:8] + "…"


def history_section(data: ReportData, change_points: dict[tuple, set[str]]) -> Section:
    section = Section("history", "History and change points",
                      "The median latency of each configuration in every run, oldest run first (whiskers: the 95 % "
                      "confidence interval of the median). A red line and cross mark a change point: the first run "
                      "of a new level, as the regression detection reported it.")
    if data.history.is_empty():
        section.empty = NOTHING_MEASURED
        return section
    runs_per_config = data.history.group_by(CONFIG_KEY).len()
    if runs_per_config["len"].max() < 2:
        section.empty = (f"Every configuration has been measured in one run only ({data.history['run_id'].n_unique()} "
                         "runs in all): a history needs two runs of the same configuration.")
        return section
    order = {run: i for i, run in enumerate(_run_order(data.history))}
    marked, table = set(), []
    for (family, preset), group in data.history.group_by(["family", "preset"], maintain_order=True):
        dims = ["target", "batch_size", *varying_dimensions(group, ("spec", "attention", "seq_len", "threads"))]
        runs = sorted(set(group["run_id"]), key=order.get)
        position = {run: i for i, run in enumerate(runs)}
        series, change_x, change_y, change_hover, vlines = [], [], [], [], {}
        colors = charts.palette([series_label(r, dims) for r in group.iter_rows(named=True)])
        for key, rows in group.group_by(CONFIG_KEY, maintain_order=True):
            rows = rows.with_columns(pl.col("run_id").replace_strict(position).alias("_x")).sort("_x")
            first = rows.row(0, named=True)
            name = series_label(first, dims)
            points = list(rows.iter_rows(named=True))
            hover = [f"{name}<br>run {r['run_id']}: p50 {r['p50_ms']:.3f} ms"
                     + (" (busy machine)" if r["contaminated"] else "") for r in points]
            series.append(Series(name, rows["_x"].to_list(), rows["p50_ms"].to_list(),
                                 y_low=rows["median_ci_low_ms"].to_list(), y_high=rows["median_ci_high_ms"].to_list(),
                                 hover=hover, color=colors[name]))
            for i, r in enumerate(points):
                if r["run_id"] not in change_points.get(tuple(key), set()):
                    continue
                marked.add((tuple(key), r["run_id"]))
                change_x.append(r["_x"])
                change_y.append(r["p50_ms"])
                change_hover.append(f"change point: {name}, run {r['run_id']}")
                vlines[r["_x"]] = vlines.get(r["_x"], 0) + 1
                before = points[i - 1]["p50_ms"] if i > 0 else None
                table.append([f"{family}/{preset} {series_label(r, dims)}", r["run_id"], number(before, ".3f"),
                              number(r["p50_ms"], ".3f"),
                              number(100.0 * (r["p50_ms"] / before - 1.0), "+.1f") if before else "n/a"])
        if change_x:
            series.append(Series("change point", change_x, change_y, hover=change_hover, color=charts.MARKER_COLOR,
                                 line=False, marker="x"))
        model = f"{family}/{preset}"
        section.charts.append(XYChart(
            f"history-{slug(model)}", f"{model}: median latency per run", "run (oldest first)", "p50 ms",
            series, log_y=spans_decades(group["p50_ms"]), x_ticks=[(i, _short_run(r)) for i, r in enumerate(runs)],
            vlines=[(x, "change point" if n == 1 else f"{n} change points") for x, n in sorted(vlines.items())]))
    given = {(key, run) for key, runs in change_points.items() for run in runs}
    if given - marked:
        section.notes.append(f"{len(given - marked)} change points name a configuration or run that is not in the "
                             "history; they are not drawn.")
    if table:
        section.tables.append(Table(["configuration", "first run of the new level", "p50 ms before", "p50 ms at the "
                                     "change", "change %"], table, [False, False, True, True, True]))
    else:
        section.notes.append("No change point has been reported.")
    return section


def roofline_section(data: ReportData) -> Section:
    section = Section("roofline", "Roofline: achieved against peak",
                      "Achieved GFLOP/s (counted FLOPs per call ÷ median latency) against arithmetic intensity, one "
                      "chart per target, under the roof of that target's measured peaks: min(peak GFLOP/s, copy GB/s "
                      "× intensity). Arithmetic intensity here is the counted FLOPs per call ÷ the bytes of the "
                      "model's weights at the precision that ran (parameters × 4 for fp32, × 2 for bf16/fp16, × 1 for "
                      "int8): "
                      "weights read once per call. Activations and caches are not counted, so this overstates the "
                      "true intensity of shapes whose activations outweigh their weights.")
    rows = data.measured.filter(pl.col("flops_per_call").is_not_null() & pl.col("params").is_not_null()
                                & (pl.col("params") > 0))
    if rows.is_empty():
        section.empty = NOTHING_MEASURED if data.measured.is_empty() else "No measured row has a FLOP count."
        return section
    colors = charts.palette(rows["family"].to_list())
    table = []
    for (target,), group in rows.group_by(["target"], maintain_order=True):
        points: dict[str, list[tuple[float, float, str]]] = {}
        precisions = set()
        for r in group.iter_rows(named=True):
            precision = r["precision_ran"] or r["precision"]
            width = BYTES_PER_WEIGHT.get(precision)
            achieved = r["achieved_gflops"] or r["flops_per_call"] / (r["p50_ms"] / 1e3) / 1e9
            peak, _ = _peak(data.targets, target, precision)
            intensity = r["flops_per_call"] / (r["params"] * width) if width else None
            table.append([target, family_preset(r), str(r["batch_size"]), precision,
                          number(r["flops_per_call"] / 1e9, ".4g"),
                          number(r["params"] * width / 2**20, ".2f") if width else "n/a", number(intensity, ".3g"),
                          number(achieved, ".3g"), number(peak, ".1f"),
                          number(100.0 * achieved / peak if peak else None, ".1f")])
            if intensity:
                precisions.add(precision)
                points.setdefault(r["family"], []).append(
                    (intensity, achieved, f"{family_preset(r)} bs={r['batch_size']} {precision}<br>"
                                          f"{achieved:.3g} GFLOP/s, {intensity:.3g} FLOP/byte"))
        series = [Series(family, [p[0] for p in pts], [p[1] for p in pts], hover=[p[2] for p in pts],
                         color=colors[family], line=False) for family, pts in sorted(points.items())]
        title = f"{target}: roofline"
        all_x = [p[0] for pts in points.values() for p in pts]
        for precision in sorted(precisions):
            peak, bandwidth = _peak(data.targets, target, precision)
            if not peak or not bandwidth or not all_x:
                section.notes.append(f"{target}: no measured {precision} peak in hardware_targets: no roof drawn.")
                continue
            ridge = peak / bandwidth
            lo, hi = min([*all_x, ridge]) / 4, max([*all_x, ridge]) * 4
            xs = [lo, ridge, hi]
            series.append(Series(f"roof {precision} ({peak:.0f} GFLOP/s, {bandwidth:.1f} GB/s)", xs,
                                 [min(peak, bandwidth * x) for x in xs], color="#444444", dash=True, marker="none"))
            threads = data.targets.filter(pl.col("target") == target)["peak_threads"][0]
            title = f"{target}: roofline (peaks measured on {threads} thread{'' if threads == 1 else 's'})"
        if series:
            section.charts.append(XYChart(f"roofline-{slug(target)}", title, "arithmetic intensity (FLOP per byte of "
                                          "weights)", "GFLOP/s", series, log_x=True, log_y=True))
    section.tables.append(Table(["target", "model", "batch", "precision ran", "GFLOP per call", "weights MiB",
                                 "FLOP/byte", "GFLOP/s", "peak GFLOP/s", "% of peak"], table,
                                [False, False, True, False, True, True, True, True, True, True]))
    return section


def prediction_section(data: ReportData) -> Section:
    section = Section("predictions", "Predicted against measured",
                      f"Each point is a configuration that has both a predicted median latency ({PREDICTED_METRIC}) "
                      "and a measurement; whiskers show the prediction's interval where it has one. On the diagonal "
                      "the prediction was exact; the dashed lines are ±20 %.")
    if data.predictions.is_empty():
        section.empty = "No predictions: the predictions table is empty and none were passed in."
        return section
    joined = data.measured.select(*CONFIG_KEY, "p50_ms").join(data.predictions, on=CONFIG_KEY, how="inner")
    if joined.is_empty():
        section.empty = (f"{data.predictions.height} predictions, none of them for a configuration that has been "
                         "measured: nothing to compare yet.")
        return section
    joined = joined.sort(["target", "family", "preset", "batch_size"])
    measured, predicted = joined["p50_ms"].to_numpy(), joined["value"].to_numpy()
    ape = np.abs(predicted - measured) / measured
    colors = charts.palette(joined["target"].to_list())
    series = []
    for (target,), group in joined.group_by(["target"], maintain_order=True):
        hover = [f"{family_preset(r)} bs={r['batch_size']} on {target}<br>measured {r['p50_ms']:.3f} ms, predicted "
                 f"{r['value']:.3f} ms" for r in group.iter_rows(named=True)]
        series.append(Series(target, group["p50_ms"].to_list(), group["value"].to_list(),
                             y_low=group["interval_low"].to_list(), y_high=group["interval_high"].to_list(),
                             hover=hover, color=colors[target], line=False))
    lo = float(min(measured.min(), predicted.min())) / 1.5
    hi = float(max(measured.max(), predicted.max())) * 1.5
    series += [Series("exact", [lo, hi], [lo, hi], color="#444444", marker="none"),
               Series("±20 %", [lo, hi], [lo * 1.2, hi * 1.2], color="#999999", dash=True, marker="none"),
               Series("", [lo, hi], [lo * 0.8, hi * 0.8], color="#999999", dash=True, marker="none")]
    section.charts.append(XYChart("predicted-vs-measured", "Predicted against measured median latency",
                                  "measured p50 ms", "predicted p50 ms", series, log_x=True, log_y=True))
    section.notes.append(f"{joined.height} configurations: mean absolute error {100 * ape.mean():.1f} %, median "
                         f"{100 * np.median(ape):.1f} %, within ±10 %: {100 * (ape <= 0.1).mean():.0f} %, within "
                         f"±20 %: {100 * (ape <= 0.2).mean():.0f} %.")
    rows = [[r["target"], family_preset(r), str(r["batch_size"]), r["spec"], number(r["p50_ms"], ".3f"),
             number(r["value"], ".3f"), number(100.0 * (r["value"] / r["p50_ms"] - 1.0), "+.1f"),
             f"{number(r['interval_low'], '.3f')} – {number(r['interval_high'], '.3f')}"
             if r["interval_low"] is not None else "n/a", r["source"] or "n/a"] for r in joined.iter_rows(named=True)]
    section.tables.append(Table(["target", "model", "batch", "precision", "measured ms", "predicted ms", "error %",
                                 "interval ms", "source"], rows, [False, False, True, False, True, True, True, False,
                                                                  False]))
    return section
