"""The comparison report's training sections, built from ``training_results`` and ``distributed_results``.

Training (one set of charts per model, a line per target, and per precision, sequence length or thread count
where those vary):

* step throughput (samples/s at the median step time) against batch size;
* peak memory against batch size (RSS high-water mark on CPUs, allocator peak on GPUs), with each
  configuration's memory budget as a dashed line of its colour;
* loss curves: the training loss of every step of each configuration's convergence run, a cross where the
  running mean of the losses reached the target.

Distributed training (a line per model × strategy, and per target, batch, sequence length, precision or thread
count where those vary):

* scaling efficiency against workers: throughput(N) ÷ (N × the same run's 1-worker throughput), 100 % linear;
* total throughput against workers.

As in the inference sections, a configuration counts by its newest successful row (for distributed training, a
configuration includes its strategy and worker count), and a section without rows says so in
``Section.empty``.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from hwbench_pipeline.report import charts
from hwbench_pipeline.report.charts import Series, XYChart
from hwbench_pipeline.report.comparison_sections import (
    SERIES_DIMENSIONS,
    Section,
    Table,
    family_preset,
    series_label,
    spans_decades,
    varying_dimensions,
)
from hwbench_pipeline.report.text import number, slug
from hwbench_pipeline.warehouse.schema import CONFIG_KEY, DISTRIBUTED_KEY

NO_TRAINING = "No training results yet: materialize training_runs."
NO_DISTRIBUTED = "No distributed training results yet: materialize distributed_runs."
#: what sets a distributed series apart besides the model and the strategy (workers are its x axis)
DISTRIBUTED_DIMENSIONS = ("target", "batch_size", "seq_len", "precision", "attention", "threads")
_ORDER = ["family", "preset", "target", "precision", "seq_len", "threads", "batch_size"]


def newest_successful(frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
    """The newest successful row of each configuration (``key``), like ``load_report_data`` does for inference."""
    if frame.is_empty():
        return frame
    ok = frame.filter(pl.col("status") == "ok")
    if "_written_at" in ok.columns:
        ok = ok.sort("_written_at")
    return ok.unique(subset=list(key), keep="last", maintain_order=True)


def _peak_memory(row: dict) -> float | None:
    """The peak that the memory budget was checked against: the allocator's on a GPU, else the RSS."""
    return row["device_peak_mb"] if row.get("device_peak_mb") is not None else row["peak_rss_mb"]


def _busy_note(measured: pl.DataFrame) -> str | None:
    busy = measured.filter(pl.col("contaminated").fill_null(False))
    if busy.is_empty():
        return None
    return (f"{busy.height} of {measured.height} configurations ran while other work kept the machine busy "
            "(contaminated): their figures may be slower than the hardware allows.")


def _ticks(values) -> list[tuple[float, str]]:
    return [(v, str(v)) for v in sorted(set(values))]


def _convergence(row: dict) -> str:
    if not row.get("convergence_steps"):
        return "not run"
    if row.get("converged"):
        return f"yes, step {row['steps_to_target']} of {row['convergence_steps']}"
    return f"no ({row['convergence_steps']} steps)"


def _largest_batch(row: dict) -> str:
    if row.get("max_batch_in_budget") is None:
        return "n/a"
    stop = row.get("batch_scaling_stop")
    return f"{row['max_batch_in_budget']}" + (f" ({stop.replace('_', ' ')})" if stop else "")


def _loss_chart(model: str, group: pl.DataFrame, dims: list[str], colors: dict[str, str]) -> XYChart | None:
    series, hit_x, hit_y, hit_hover = [], [], [], []
    for r in group.filter(pl.col("loss_curve").list.len() > 0).iter_rows(named=True):
        name = series_label(r, [*dims, "batch_size"])
        steps = list(range(1, len(r["loss_curve"]) + 1))
        hover = [f"{name}<br>step {s}: loss {loss:.4g}" for s, loss in zip(steps, r["loss_curve"], strict=True)]
        series.append(Series(name, steps, r["loss_curve"], hover=hover, color=colors[name], marker="none"))
        if r.get("steps_to_target"):
            hit_x.append(r["steps_to_target"])
            hit_y.append(r["loss_curve"][r["steps_to_target"] - 1])
            hit_hover.append(f"{name}: target reached at step {r['steps_to_target']} (running mean of the losses "
                             f"≤ {number(r.get('target_fraction'), '.0%')} of the initial loss)"
                             + ("" if r.get("converged") else "; the held-out loss did not stay there"))
    if not series:
        return None
    if hit_x:
        series.append(Series("target reached", hit_x, hit_y, hover=hit_hover, color=charts.MARKER_COLOR,
                             line=False, marker="x"))
    return XYChart(f"training-loss-{slug(model)}", f"{model}: training loss per step", "step", "training loss",
                   series)


def training_section(training: pl.DataFrame) -> Section:
    section = Section("training", "Training: throughput, memory and convergence",
                      "One set of charts per model, a line per target (and per precision, sequence length or thread "
                      "count where those vary). A training step is forward, backward and an AdamW update; throughput "
                      "is samples per second at the median step time. Peak memory is the process's RSS high-water "
                      "mark on CPUs and the allocator's peak on GPUs; the dashed line of the same colour is the "
                      "memory budget the sweep checked it against. Loss curves are the training loss of each step "
                      "of a configuration's convergence run; a cross marks the step where the running mean of the "
                      "losses reached the target.")
    measured = newest_successful(training, CONFIG_KEY)
    if measured.is_empty():
        section.empty = NO_TRAINING
        return section
    measured = measured.sort(_ORDER)
    for (family, preset), group in measured.group_by(["family", "preset"], maintain_order=True):
        model = f"{family}/{preset}"
        dims = ["target", *[d for d in varying_dimensions(group, SERIES_DIMENSIONS) if d != "target"]]
        colors = charts.palette([series_label(r, dims) for r in group.iter_rows(named=True)]
                                + [series_label(r, [*dims, "batch_size"]) for r in group.iter_rows(named=True)])
        throughput, memory = [], []
        for _, rows in group.group_by(dims, maintain_order=True):
            rows = rows.sort("batch_size")
            name = series_label(rows.row(0, named=True), dims)
            points = list(rows.iter_rows(named=True))
            batches = rows["batch_size"].to_list()
            peaks = [_peak_memory(r) for r in points]
            throughput.append(Series(name, batches, rows["throughput_samples_s"].to_list(), color=colors[name],
                                     hover=[f"{name} bs={r['batch_size']}<br>{r['throughput_samples_s']:.1f} "
                                            f"samples/s, step p50 {r['p50_ms']:.2f} ms<br>run {r['run_id']}"
                                            for r in points]))
            memory.append(Series(name, batches, peaks, color=colors[name],
                                 hover=[f"{name} bs={r['batch_size']}<br>peak {number(p, '.0f')} MiB of a "
                                        f"{number(r['memory_budget_mb'], '.0f')} MiB budget"
                                        + ("" if r["within_budget"] else " (OVER the budget)")
                                        for r, p in zip(points, peaks, strict=True)]))
            if any(b is not None for b in rows["memory_budget_mb"]):
                memory.append(Series(f"{name} budget", batches, rows["memory_budget_mb"].to_list(),
                                     color=colors[name], dash=True, marker="none"))
        ticks = _ticks(group["batch_size"])
        section.charts.append(XYChart(f"training-throughput-{slug(model)}", f"{model}: training throughput",
                                      "batch size", "samples/s (at the median step)", throughput, log_x=True,
                                      log_y=spans_decades(group["throughput_samples_s"]), x_ticks=ticks))
        all_memory = [_peak_memory(r) for r in group.iter_rows(named=True)] + group["memory_budget_mb"].to_list()
        section.charts.append(XYChart(f"training-memory-{slug(model)}", f"{model}: peak memory per training step",
                                      "batch size", "peak MiB (dashed: memory budget)", memory, log_x=True,
                                      log_y=spans_decades(all_memory, ratio=10.0), x_ticks=ticks))
        loss = _loss_chart(model, group, dims, colors)
        if loss is not None:
            section.charts.append(loss)
    if measured.filter(pl.col("loss_curve").list.len() > 0).is_empty():
        section.notes.append("No configuration ran a convergence run (convergence_steps = 0): no loss curves.")
    if note := _busy_note(measured):
        section.notes.append(note)
    rows = [[family_preset(r), r["target"], str(r["batch_size"]), str(r["seq_len"]),
             r["precision_ran"] or r["precision"], str(r["threads"]), number(r["p50_ms"], ".2f"),
             number(r["p90_ms"], ".2f"),
             number(r["throughput_samples_s"], ".1f"), number(r["throughput_tokens_s"], ".0f"),
             number(_peak_memory(r), ".0f"), number(r["memory_budget_mb"], ".0f"), _largest_batch(r), _convergence(r),
             f"{number(r['initial_loss'], '.3g')} → {number(r['final_loss'], '.3g')}"
             if r["initial_loss"] is not None else "n/a", r["run_id"]]
            for r in measured.iter_rows(named=True)]
    section.tables.append(Table(["model", "target", "batch", "seq", "precision ran", "threads", "step p50 ms",
                                 "step p90 ms", "samples/s", "tokens/s", "peak MiB", "budget MiB",
                                 "largest batch in budget", "converged", "held-out loss before → after", "run"], rows,
                                [False, False, True, True, False, True, True, True, True, True, True, True, False,
                                 False, False, False]))
    return section


def distributed_section(distributed: pl.DataFrame) -> Section:
    section = Section("distributed", "Distributed training: scaling with workers",
                      "Data-parallel (DDP, FSDP) and pipeline training on Ray Train, a line per model and strategy "
                      "(and per target, global batch, sequence length, precision or thread count where those vary). "
                      "Total throughput is samples per second of the whole worker group at the median step time "
                      "(the sum of the ranks' throughputs for data parallelism, the slowest stage's for a "
                      "pipeline). Scaling efficiency is throughput with N workers ÷ (N × the 1-worker throughput of "
                      "the same run): 100 % is linear scaling.")
    measured = newest_successful(distributed, DISTRIBUTED_KEY)
    if measured.is_empty():
        section.empty = NO_DISTRIBUTED
        return section
    measured = measured.sort([*_ORDER, "strategy", "workers"])
    varying = varying_dimensions(measured, DISTRIBUTED_DIMENSIONS)
    dims = ["family", "preset", "strategy", *varying]

    def label(row: dict) -> str:
        return " ".join([family_preset(row), row["strategy"], series_label(row, varying)]).strip()

    colors = charts.palette([label(r) for r in measured.iter_rows(named=True)])
    efficiency, throughput, without_baseline = [], [], 0
    for _, rows in measured.group_by(dims, maintain_order=True):
        rows = rows.sort("workers")
        name = label(rows.row(0, named=True))
        points = list(rows.iter_rows(named=True))
        hover = [f"{name}, {r['workers']} workers<br>{r['throughput_samples_s']:.1f} samples/s, efficiency "
                 f"{number(100 * r['scaling_efficiency'] if r['scaling_efficiency'] is not None else None, '.0f')} %"
                 f"<br>per rank: {', '.join(f'{v:.1f}' for v in r['per_rank_throughput'] or [])}<br>run {r['run_id']}"
                 for r in points]
        throughput.append(Series(name, rows["workers"].to_list(), rows["throughput_samples_s"].to_list(),
                                 hover=hover, color=colors[name]))
        with_baseline = [(r, h) for r, h in zip(points, hover, strict=True) if r["scaling_efficiency"] is not None]
        without_baseline += len(points) - len(with_baseline)
        if with_baseline:
            efficiency.append(Series(name, [r["workers"] for r, _ in with_baseline],
                                     [100.0 * r["scaling_efficiency"] for r, _ in with_baseline],
                                     hover=[h for _, h in with_baseline], color=colors[name]))
    ticks = _ticks(measured["workers"])
    if efficiency:
        workers = [t for t, _ in ticks]
        efficiency.append(Series("linear (100 %)", [min(workers), max(workers)], [100.0, 100.0], color="#444444",
                                 dash=True, marker="none"))
        section.charts.append(XYChart("distributed-efficiency", "Scaling efficiency against workers", "workers",
                                      "scaling efficiency % (100 = linear)", efficiency, log_x=True, x_ticks=ticks))
    section.charts.append(XYChart("distributed-throughput", "Total training throughput against workers", "workers",
                                  "samples/s (whole group, at the median step)", throughput, log_x=True,
                                  log_y=spans_decades(measured["throughput_samples_s"]), x_ticks=ticks))
    if without_baseline:
        section.notes.append(f"{without_baseline} configurations have no scaling efficiency: their run measured no "
                             "1-worker configuration of the same series.")
    if note := _busy_note(measured):
        section.notes.append(note)
    rows = [[family_preset(r), r["target"], r["strategy"], str(r["workers"]), r["backend"] or "n/a",
             str(r["batch_size"]), str(r["seq_len"]), r["precision_ran"] or r["precision"], str(r["threads"]),
             number(r["p50_ms"], ".2f"),
             number(r["throughput_samples_s"], ".1f"),
             ", ".join(number(v, ".1f") for v in r["per_rank_throughput"] or []) or "n/a",
             number(100 * r["scaling_efficiency"] if r["scaling_efficiency"] is not None else None, ".0f"),
             number(r["peak_rss_mb"], ".0f"), f"{number(r['loss_start'], '.3g')} → {number(r['loss_end'], '.3g')}",
             str(r["attempts"]) if r["attempts"] is not None else "n/a", r["run_id"]]
            for r in measured.iter_rows(named=True)]
    section.tables.append(Table(["model", "target", "strategy", "workers", "backend", "global batch", "seq",
                                 "precision ran", "threads", "step p50 ms", "samples/s", "per-rank samples/s",
                                 "scaling efficiency %", "peak RSS MiB", "loss start → end", "attempts", "run"],
                                rows, [False, False, False, True, False, True, True, False, True, True, True, False,
                                       True, True, False, True, False]))
    return section
