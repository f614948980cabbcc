"""The comparison report's charts: each described once, then drawn two ways.

* ``draw_png`` draws with matplotlib (its object API, no pyplot and no global state) for the Markdown and PDF
  reports.
* ``plotly_figure`` gives a Plotly figure as plain data (traces and layout). The HTML report draws it with
  the plotly.js bundle that ``plotly_bundle`` returns, embedded in the page, so the page works offline.

Three kinds of chart cover the report: ``XYChart`` (lines or points, optional whiskers, log axes, vertical
markers), ``DistributionChart`` (violins of latency samples) and ``HeatmapChart`` (a grid of labelled states).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

#: matplotlib's tab10 colours; series get them in order, so one target keeps its colour across a chart
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
#: the states of a compatibility cell; a cell's label starts with its state ("failed:oom")
STATE_COLORS = {"measured": "#2ca02c", "failed": "#d62728", "predicted": "#1f77b4", "untested": "#d9d9d9"}
MARKER_COLOR = "#d62728"
_MPL_MARKERS = {"circle": "o", "x": "X", "diamond": "D", "square": "s", "none": ""}


def palette(names: list[str]) -> dict[str, str]:
    """A colour per name, stable for a given list (sorted, so the order names arrive in does not matter)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


@dataclass
class Series:
    name: str
    x: list[float]
    y: list[float]
    y_low: list[float | None] | None = None  # whisker ends in data units (None: no whisker at that point)
    y_high: list[float | None] | None = None
    hover: list[str] | None = None
    color: str | None = None
    line: bool = True
    dash: bool = False
    marker: str = "circle"  # circle, x, diamond, square, none


@dataclass
class XYChart:
    key: str
    title: str
    x_label: str
    y_label: str
    series: list[Series]
    log_x: bool = False
    log_y: bool = False
    x_ticks: list[tuple[float, str]] | None = None
    vlines: list[tuple[float, str]] = field(default_factory=list)  # (x, label): a change point, for instance


@dataclass
class Distribution:
    label: str
    quantiles: list[float]  # evenly spaced quantiles of the raw samples (or the samples themselves)
    n_samples: int
    color: str | None = None


@dataclass
class DistributionChart:
    key: str
    title: str
    y_label: str
    groups: list[Distribution]
    log_y: bool = False


@dataclass
class HeatmapChart:
    key: str
    title: str
    rows: list[str]
    columns: list[str]
    cells: list[list[str]]  # rows x columns labels, each starting with a key of STATE_COLORS
    hover: list[list[str]]


Chart = XYChart | DistributionChart | HeatmapChart


def _finite(values: list) -> list:
    return [v if isinstance(v, int | float) and math.isfinite(v) else None for v in values]


def _state(label: str) -> str:
    return label.split(":", 1)[0]


# ---- matplotlib --------------------------------------------------------------------------------------------
def _whiskers(series: Series) -> list[list[float]]:
    lows = series.y_low or [None] * len(series.y)
    highs = series.y_high or [None] * len(series.y)
    below = [y - lo if lo is not None and y is not None else 0.0 for y, lo in zip(series.y, lows, strict=True)]
    above = [hi - y if hi is not None and y is not None else 0.0 for y, hi in zip(series.y, highs, strict=True)]
    return [below, above]


def _draw_xy(fig, chart: XYChart) -> None:
    ax = fig.add_subplot()
    for s in chart.series:
        style = {"color": s.color, "label": s.name, "marker": _MPL_MARKERS[s.marker], "markersize": 5,
                 "linestyle": ("--" if s.dash else "-") if s.line else "none", "linewidth": 1.4}
        if s.marker == "x":
            style.update(markersize=9, zorder=5)
        if s.y_low or s.y_high:
            ax.errorbar(s.x, s.y, yerr=_whiskers(s), capsize=3, elinewidth=1, **style)
        else:
            ax.plot(s.x, s.y, **style)
    for x, label in chart.vlines:
        ax.axvline(x, color=MARKER_COLOR, linestyle=":", linewidth=1.2)
        ax.annotate(label, (x, 0.98), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=7, color=MARKER_COLOR)
    if chart.log_x:
        ax.set_xscale("log")
    if chart.log_y:
        ax.set_yscale("log")
    _plain_log_labels(ax)
    if chart.x_ticks:
        ax.set_xticks([t for t, _ in chart.x_ticks], [text for _, text in chart.x_ticks],
                      rotation=30 if len(chart.x_ticks) > 4 else 0, ha="right" if len(chart.x_ticks) > 4 else "center")
        ax.xaxis.set_minor_locator(_null_locator())
    ax.set_xlabel(chart.x_label)
    ax.set_ylabel(chart.y_label)
    ax.grid(True, which="major", alpha=0.3)
    if any(s.name for s in chart.series):
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _plain_log_labels(ax) -> None:
    """Label log axes with plain numbers (20, not 2×10¹); label minor ticks too when an axis spans < 1 decade."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()), (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
        if scale != "log":
            continue
        axis.set_major_formatter(plain)
        low, high = sorted(limits)
        axis.set_minor_formatter(plain if low > 0 and high / low < 10 else NullFormatter())


def _draw_distribution(fig, chart: DistributionChart) -> None:
    ax = fig.add_subplot()
    positions = list(range(1, len(chart.groups) + 1))
    parts = ax.violinplot([g.quantiles for g in chart.groups], positions=positions, widths=0.8,
                          showmedians=True, showextrema=True)
    for body, group in zip(parts["bodies"], chart.groups, strict=True):
        body.set_facecolor(group.color or PALETTE[0])
        body.set_edgecolor("#333333")
        body.set_alpha(0.6)
    for name in ("cmedians", "cmins", "cmaxes", "cbars"):
        parts[name].set_color("#333333")
        parts[name].set_linewidth(0.8)
    rotate = len(chart.groups) > 3
    ax.set_xticks(positions, [f"{g.label}\n(n={g.n_samples})" for g in chart.groups],
                  rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=7)
    if chart.log_y:
        ax.set_yscale("log")
        _plain_log_labels(ax)
    ax.set_ylabel(chart.y_label)
    ax.grid(True, axis="y", alpha=0.3)


def _draw_heatmap(fig, chart: HeatmapChart) -> None:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    states = list(STATE_COLORS)
    codes = [[states.index(_state(label)) for label in row] for row in chart.cells]
    ax = fig.add_subplot()
    ax.imshow(codes, cmap=ListedColormap([STATE_COLORS[s] for s in states]), vmin=-0.5, vmax=len(states) - 0.5,
              aspect="auto")
    for i, row in enumerate(chart.cells):
        for j, label in enumerate(row):
            text = label.replace(":", ":\n", 1)
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5,
                    color="#222222" if _state(label) == "untested" else "white")
    ax.set_xticks(range(len(chart.columns)), chart.columns, fontsize=8)
    ax.set_yticks(range(len(chart.rows)), chart.rows, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_xticks([x - 0.5 for x in range(1, len(chart.columns))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(chart.rows))], minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.legend(handles=[Patch(color=STATE_COLORS[s], label=s) for s in states], fontsize=7, frameon=False,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _figure_size(chart: Chart) -> tuple[float, float]:
    if isinstance(chart, HeatmapChart):
        return (max(5.0, 1.6 * len(chart.columns) + 3.0), max(2.5, 0.36 * len(chart.rows) + 1.2))
    if isinstance(chart, DistributionChart):
        return (max(6.4, 0.9 * len(chart.groups) + 2.5), 3.8)
    return (6.4, 3.6)


def draw_png(chart: Chart, path: Path, *, dpi: int = 130) -> Path:
    """Draw ``chart`` as a PNG at ``path``, written under a temporary name and renamed into place."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=_figure_size(chart), layout="constrained")
    if isinstance(chart, XYChart):
        _draw_xy(fig, chart)
    elif isinstance(chart, DistributionChart):
        _draw_distribution(fig, chart)
    else:
        _draw_heatmap(fig, chart)
    fig.suptitle(chart.title, fontsize=10)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---- plotly ------------------------------------------------------------------------------------------------
# Title on the left and legend under the plot: the mode bar takes the top right, and charts sit two to a row.
_LAYOUT = {"margin": {"l": 60, "r": 20, "t": 60, "b": 40}, "hovermode": "closest", "plot_bgcolor": "white",
           "legend": {"font": {"size": 10}, "orientation": "h", "x": 0, "xanchor": "left", "y": -0.2,
                      "yanchor": "top"}}
_AXIS = {"showgrid": True, "gridcolor": "#e5e5e5", "linecolor": "#999999", "zeroline": False}


def _axis_position(value: float, log: bool) -> float:
    # Shapes and annotations on a log axis are placed in log10 units.
    return math.log10(value) if log and value > 0 else value


def _xy_traces(chart: XYChart) -> list[dict]:
    traces = []
    for s in chart.series:
        mode = "+".join(m for m, on in (("lines", s.line), ("markers", s.marker != "none")) if on)
        trace = {"type": "scatter", "name": s.name, "x": _finite(s.x), "y": _finite(s.y), "mode": mode,
                 "showlegend": bool(s.name)}
        if s.color:
            trace["line"] = {"color": s.color, "dash": "dash" if s.dash else "solid"}
        if s.marker != "none":
            trace["marker"] = {"symbol": s.marker, "size": 12 if s.marker == "x" else 7, **(
                {"color": s.color} if s.color else {})}
        if s.hover:
            trace.update(text=s.hover, hovertemplate="%{text}<extra></extra>")
        if s.y_low or s.y_high:
            below, above = _whiskers(s)
            trace["error_y"] = {"type": "data", "symmetric": False, "array": _finite(above),
                                "arrayminus": _finite(below), "thickness": 1, "width": 3}
        traces.append(trace)
    return traces


def _log_axis(values: list) -> dict:
    """A log axis labelled with plain numbers: each power of ten over two decades or more, else 1, 2 and 5 times
    each (plotly's own labels either skip to "2" for 20 or crowd every minor tick)."""
    positive = [v for v in _finite(values) if v is not None and v > 0]
    if not positive:
        return {"type": "log"}
    low, high = min(positive) / 1.5, max(positive) * 1.5
    steps = (1,) if high / low >= 100 else (1, 2, 5)
    ticks = [m * 10.0**k for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1) for m in steps]
    ticks = [t for t in ticks if low <= t <= high]
    return {"type": "log", "tickmode": "array", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def _xy_layout(chart: XYChart) -> dict:
    xs = [v for s in chart.series for v in s.x]
    ys = [v for s in chart.series for v in [*s.y, *(s.y_low or []), *(s.y_high or [])]]
    x_axis = {**_AXIS, "title": {"text": chart.x_label}, **(_log_axis(xs) if chart.log_x else {"type": "linear"})}
    if chart.x_ticks:
        x_axis.update(tickmode="array", tickvals=[t for t, _ in chart.x_ticks], ticktext=[s for _, s in chart.x_ticks])
    y_axis = {**_AXIS, "title": {"text": chart.y_label}, **(_log_axis(ys) if chart.log_y else {"type": "linear"})}
    layout = {"xaxis": x_axis, "yaxis": y_axis}
    if chart.vlines:
        layout["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "y0": 0, "y1": 1,
                             "x0": _axis_position(x, chart.log_x), "x1": _axis_position(x, chart.log_x),
                             "line": {"color": MARKER_COLOR, "dash": "dot", "width": 1.5}} for x, _ in chart.vlines]
        layout["annotations"] = [{"x": _axis_position(x, chart.log_x), "y": 1, "xref": "x", "yref": "paper",
                                  "text": label, "showarrow": False, "textangle": -90, "xanchor": "right",
                                  "yanchor": "top", "font": {"size": 10, "color": MARKER_COLOR}}
                                 for x, label in chart.vlines]
    return layout


def _distribution_traces(chart: DistributionChart) -> list[dict]:
    return [{"type": "violin", "name": f"{g.label} (n={g.n_samples})", "y": _finite(g.quantiles),
             "box": {"visible": True}, "meanline": {"visible": False}, "points": False, "spanmode": "hard",
             "line": {"color": g.color or PALETTE[0]}, "showlegend": False} for g in chart.groups]


def _heatmap_traces(chart: HeatmapChart) -> list[dict]:
    states = list(STATE_COLORS)
    n = len(states)
    # A stepped colour scale: code k fills the band [k/n, (k+1)/n] with its state's colour.
    scale = [step for k, s in enumerate(states) for step in ([k / n, STATE_COLORS[s]], [(k + 1) / n, STATE_COLORS[s]])]
    heatmap = {"type": "heatmap", "x": chart.columns, "y": chart.rows,
               "z": [[states.index(_state(label)) for label in row] for row in chart.cells],
               "zmin": -0.5, "zmax": n - 0.5, "colorscale": scale, "showscale": False, "xgap": 2, "ygap": 2,
               "text": chart.cells, "texttemplate": "%{text}", "textfont": {"size": 10},
               "hovertext": chart.hover, "hoverinfo": "text"}
    # The heat map has no legend of its own: one empty trace per state lists the colours.
    legend = [{"type": "scatter", "x": [None], "y": [None], "mode": "markers", "name": s,
               "marker": {"color": STATE_COLORS[s], "symbol": "square", "size": 12}} for s in states]
    return [heatmap, *legend]


def plotly_figure(chart: Chart) -> dict:
    """The chart as a Plotly figure: ``{"data": [...], "layout": {...}}`` of plain JSON values."""
    layout = {**_LAYOUT, "title": {"text": chart.title, "font": {"size": 15}, "x": 0.01, "xanchor": "left"}}
    if isinstance(chart, XYChart):
        return {"data": _xy_traces(chart), "layout": {**layout, **_xy_layout(chart), "height": 470}}
    if isinstance(chart, DistributionChart):
        y_axis = {**_AXIS, "title": {"text": chart.y_label}, "type": "log" if chart.log_y else "linear"}
        rotate = len(chart.groups) > 4
        return {"data": _distribution_traces(chart),
                "layout": {**layout, "yaxis": y_axis, "xaxis": {"tickangle": -30 if rotate else 0, "automargin": True},
                           "margin": {**layout["margin"], "b": 120 if rotate else 50}, "height": 480}}
    height = max(260, 34 * len(chart.rows) + 140)
    return {"data": _heatmap_traces(chart),
            "layout": {**layout, "height": height, "plot_bgcolor": "white",
                       "xaxis": {"side": "top", "showgrid": False, "type": "category"},
                       "yaxis": {"autorange": "reversed", "showgrid": False, "type": "category"}}}


def figure_json(chart: Chart) -> str:
    """``plotly_figure`` as JSON that is safe inside a ``<script>`` element: each ``</`` has its slash escaped,
    which JSON reads back as the same text."""
    return json.dumps(plotly_figure(chart), allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


def plotly_bundle() -> str:
    """The plotly.js library that the installed plotly package ships, to embed in a page (about 4.8 MB)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
