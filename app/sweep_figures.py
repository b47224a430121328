"""The paper's sweep figures, as pure functions of per-run data (no Dash, no I/O)."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from app.figures import (
    AXIS_STYLE,
    FROM_STEP_ONE,
    LAYOUT_STYLE,
    NEARLY_MONO_DASH,
    NEARLY_MONO_NAME,
    POSITIVE_MONO_NAME,
    POSITIVE_PART_DASH,
    ema,
    empty_figure,
    log_thin,
)
from core.metrics import SfaSummary, monosemantic_neurons

# Scale knobs and the sizes the paper doubles (K_VALUES, the quick presets' N, m, batch): evenly spread on a log axis.
LOG_SCALED = ("lr", "eps", "l1_reg", "bias_decay", "n_features", "embed_dim", "n_neurons", "batch_size", "steps")
# The statuses whose last snapshot is a result; a failed (diverged) run's and an unfinished run's are not.
RESULT_STATUSES = ("done", "stopped")
# Why a run is left out of the results, in the order the note lists them.
LEFT_OUT_AS = {"failed": "failed", "running": "still training", "paused": "paused", "interrupted": "paused",
               "queued": "queued"}


@dataclass
class SweepRun:
    """One run of a sweep, reduced to what the figures need."""

    value: float
    seed: int
    loss_steps: np.ndarray
    losses: np.ndarray
    point_steps: np.ndarray
    mono: np.ndarray  # mono neurons per feature at each snapshot
    mean_bias: np.ndarray
    final_loss: float | None
    mono_per_feature: float | None
    mono_per_neuron: float | None
    dead: int | None
    bias: np.ndarray | None = None  # final first-layer biases
    sfa: np.ndarray | None = None
    nearly_mono_per_feature: float | None = None  # neurons with r > 0.9 / N: the signal short runs show first
    status: str = "done"
    complete: bool = True  # trained all its steps (a stopped run may not have)
    positive_mono_per_feature: float | None = None  # GeLU/SoLU only: max/sum on the positive part (ALGORITHM.md)


def trace_uid(*parts: object) -> str:
    """A trace's identity across redraws: with a uirevision, plotly keeps a user's edits (a hidden trace) by uid, and
    by index without one. Hex: plotly puts it in CSS selectors, where "=" or "." break the figure."""
    return "t" + hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def value_colours(values: list[float], field: str) -> dict[float, str]:
    """A colour per swept value along Viridis, spaced as `value_axis` spaces them: log for scale knobs, by rank
    where that axis is categorical (0 among them: 0 and 1e-5 had one colour on a linear scale)."""
    distinct = sorted(set(values))
    if len(distinct) == 1:
        return {distinct[0]: sample_colorscale("Viridis", [0.5])[0]}
    if value_axis(field, distinct)[1]:
        keys = list(range(len(distinct)))
    else:
        keys = [math.log(v) if field in LOG_SCALED else v for v in distinct]
    lo, hi = min(keys), max(keys)
    positions = [0.8 * (k - lo) / (hi - lo) for k in keys]  # Viridis beyond 0.8 is a pale yellow on white
    return dict(zip(distinct, sample_colorscale("Viridis", positions)))


def fmt(value: float) -> str:
    return f"{value:g}"


def training_panels(runs: list[SweepRun], field: str, smoothing: float = 0.9) -> go.Figure:
    """Loss, mono neurons per feature and mean bias against log-scale steps (as on the other pages), one line per
    run coloured by value."""
    if not runs:
        return empty_figure("Training", "No runs yet")
    if not any(len(run.loss_steps) for run in runs):
        return empty_figure("Training", f"{len(runs)} runs queued: their curves appear as they train")
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Loss", "Mono neurons per feature", "Mean bias"))
    colours = value_colours([r.value for r in runs], field)
    shown: set[float] = set()
    for run in runs:
        colour = colours[run.value]
        legend = run.value not in shown
        shown.add(run.value)
        name = f"{field}={fmt(run.value)}"
        if len(run.loss_steps):
            keep = log_thin(np.asarray(run.loss_steps), 1500)
            fig.add_trace(go.Scattergl(x=run.loss_steps[keep], y=ema(run.losses, smoothing)[keep],
                                       mode="lines", line={"color": colour}, name=name, legendgroup=name,
                                       showlegend=legend, uid=trace_uid(name, run.seed, "loss")), row=1, col=1)
        for col, series in ((2, run.mono), (3, run.mean_bias)):
            if len(run.point_steps):
                fig.add_trace(go.Scatter(x=run.point_steps, y=series, mode="lines", name=name,
                                         legendgroup=name, showlegend=False, line={"color": colour},
                                         uid=trace_uid(name, run.seed, col)), row=1, col=col)
    fig.add_hline(y=1.0, line_dash="dot", line_color="#888", row=1, col=2)
    fig.update_layout(**{**LAYOUT_STYLE, "margin": {**LAYOUT_STYLE["margin"], "t": 70}},
                      title={"text": f"Training, coloured by {field}", "font": {"size": 14}})
    fig.update_xaxes(**AXIS_STYLE, **FROM_STEP_ONE, type="log", title_text="Training step (log scale)")
    fig.update_yaxes(**AXIS_STYLE)
    return fig


def band(values: list[float], ys: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct value: (x, mean, min, max) over repeated seeds."""
    xs = np.array(sorted(set(values)), dtype=np.float64)
    groups = [[y for v, y in zip(values, ys) if v == x and y is not None] for x in xs]
    mean = np.array([np.mean(g) if g else np.nan for g in groups])
    lo = np.array([np.min(g) if g else np.nan for g in groups])
    hi = np.array([np.max(g) if g else np.nan for g in groups])
    return xs, mean, lo, hi


# One colour per sweep when several are overlaid; the metric is then told by the dash.
SWEEP_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")
# (legend name, SweepRun attribute, panel, colour alone, dash); the loss on the left, the mono ratios on the right
# beside the legend that names them
RESULT_SERIES = (("final loss", "final_loss", 1, "#2a3f5f", "solid"),
                 ("mono neurons / N (per feature)", "mono_per_feature", 2, "#1f77b4", "solid"),
                 ("mono neurons / k (per neuron)", "mono_per_neuron", 2, "#ff7f0e", "dash"),
                 (NEARLY_MONO_NAME, "nearly_mono_per_feature", 2, "#2ca02c", NEARLY_MONO_DASH),
                 # GeLU/SoLU: negatives shrink the paper's sum (ALGORITHM.md); None, so not drawn, for ReLU
                 (f"{POSITIVE_MONO_NAME} (not the paper's)", "positive_mono_per_feature", 2, "#9467bd",
                  POSITIVE_PART_DASH))


def left_out(runs: list[SweepRun]) -> str:
    """Why runs are missing from the results, e.g. "1 failed, 2 still training" ("" when none is)."""
    counts = Counter(LEFT_OUT_AS.get(r.status, r.status) for r in runs if r.status not in RESULT_STATUSES)
    order = list(dict.fromkeys(LEFT_OUT_AS.values()))
    return ", ".join(f"{counts[why]} {why}"
                     for why in sorted(counts, key=lambda w: order.index(w) if w in order else len(order)))


def value_axis(field: str, values: list[float]) -> tuple[dict, bool]:
    """The x axis of results against a swept value: ticks at the values themselves (a log axis labelled 0.003 and
    0.03 both "3"); log for scale knobs, and evenly spaced categories when one of them is 0 (0 and 0.001 fell on one
    point of a linear axis)."""
    distinct = sorted(set(values))
    if field in LOG_SCALED and any(v <= 0 for v in distinct) and len(distinct) > 1:
        return {"type": "category", "categoryorder": "array", "categoryarray": [fmt(v) for v in distinct]}, True
    axis = {"tickmode": "array", "tickvals": distinct, "ticktext": [fmt(v) for v in distinct]}
    return ({**axis, "type": "log"} if field in LOG_SCALED else axis), False


def seeding(runs: list[SweepRun]) -> str:
    """Whether a sweep's values differ in their seeds too (each its own world and init) or are paired: what else
    than the value moves between the points. Unpaired values' seeds never meet (seed + 1000 x value index); paired
    ones' are the same, less any run not finished."""
    seeds = [{r.seed for r in runs if r.value == value} for value in {r.value for r in runs}]
    if len(seeds) < 2:
        return ""
    apart = all(a.isdisjoint(b) for i, a in enumerate(seeds) for b in seeds[i + 1:])
    return "each value with seeds of its own (a world and init of its own)" if apart else \
        "paired: every value from the same seeds"


def metric_vs_value(runs: list[SweepRun], field: str, label: str = "",
                    others: list[tuple[str, list[SweepRun]]] = ()) -> go.Figure:
    """The final loss and the mono ratios (per feature, per neuron, and neurons with r > 0.9 per feature) against the
    swept value: the paper's claims pair them ("more monosemantic, at slightly lower loss"). Mean over seeds,
    min-max band where a value is repeated. Finished runs only (done or stopped), as the parallel coordinates: a
    diverged run's or a half-trained one's numbers are no result; the subtitle counts those left out.

    `others`: further sweeps of the same field, (label, runs) each, drawn over it in their own colours (the
    paper's key figure sets LR1, zero bias, beside LR3, bias -1 with decay)."""
    every = [(label, runs), *others]
    note = left_out([r for _, group in every for r in group])
    groups = [(name, [r for r in group if r.status in RESULT_STATUSES and r.mono_per_feature is not None])
              for name, group in every]
    groups = [(name, group) for name, group in groups if group]
    if not groups:
        return empty_figure("Results against the swept value",
                            f"Available once runs finish ({note})" if note else "Available once runs have snapshots")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Final loss (last 5% of steps)", "Mono neurons per feature"))
    overlaid = len(groups) > 1
    x_axis, categorical = value_axis(field, [r.value for _, group in groups for r in group])
    for g, (name, group) in enumerate(groups):
        values = [r.value for r in group]
        banded = len(values) > len(set(values))  # repeats of a value (seeds); a sweep's values have seeds of their own
        for series, attr, col, alone, dash in RESULT_SERIES:
            ys = [getattr(r, attr) for r in group]
            if all(y is None for y in ys):
                continue
            colour = SWEEP_COLOURS[g % len(SWEEP_COLOURS)] if overlaid else alone
            xs, mean, lo, hi = band(values, ys)
            at = [fmt(x) for x in xs] if categorical else xs
            if banded:
                fig.add_trace(go.Scatter(x=[*at, *at[::-1]], y=np.concatenate([hi, lo[::-1]]),
                                         fill="toself", fillcolor=colour, opacity=0.15 if overlaid else 0.2,
                                         line={"width": 0}, hoverinfo="skip", showlegend=False,
                                         uid=trace_uid(name, attr, "band")), row=1, col=col)
            # the loss's colour is its sweep's (overlaid) or explained by the panel's title: no legend entry. Overlaid,
            # each sweep's entries sit under its name (a group title), and hover names the sweep
            grouped = {"legendgroup": name, "legendgrouptitle": {"text": name},
                       "hovertemplate": f"%{{x}}, %{{y:.4g}}<extra>{name}: {series}</extra>"} if overlaid else {}
            fig.add_trace(go.Scatter(x=at, y=mean, mode="lines+markers", showlegend=col == 2, name=series,
                                     line={"color": colour, "dash": dash}, uid=trace_uid(name, attr), **grouped),
                          row=1, col=col)
    repeats = any(len(group) > len({r.value for r in group}) for _, group in groups)
    title = (f"Results against {field}: " + " vs ".join(name for name, _ in groups) if overlaid
             else f"Results against {field}") + (" (mean, min-max over seeds)" if repeats else "")
    early = sum(r.status == "stopped" and not r.complete for _, group in groups for r in group)
    said = "; ".join(filter(None, (seeding(groups[0][1]) if not overlaid else "", f"not shown: {note}" if note else "",
                                   f"{early} stopped early, shown as they stood" if early else "")))
    subtitle = {"subtitle": {"text": said, "font": {"size": 11, "color": "#6c757d"}}} if said else {}
    fig.update_layout(**{**LAYOUT_STYLE, "margin": {**LAYOUT_STYLE["margin"], "t": 90 if said else 70}},
                      title={"text": title, "font": {"size": 14}, **subtitle},
                      # beside the mono panel it names: inside, its entries (eight with two sweeps) hid the curves
                      legend={"x": 1.02, "y": 1.0, "xanchor": "left", "yanchor": "top", "groupclick": "toggleitem"})
    fig.update_xaxes(**AXIS_STYLE, **x_axis, title_text=field)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="mono neurons / N", rangemode="tozero", row=1, col=2)
    if all(not r.mono_per_feature for _, group in groups for r in group):
        fig.add_annotation(text="no run has a monosemantic neuron (r > 0.999)", xref="x2 domain", yref="y2 domain",
                           x=0.5, y=0.6, showarrow=False, font={"color": "#6c757d"})
    return fig


def sorted_biases(runs: list[SweepRun], field: str) -> go.Figure:
    """Final first-layer biases sorted ascending, one line per run coloured by value (a diverged run's last biases are
    no result, and would stretch the axis); a run still training shows its latest snapshot's, and the title says so."""
    done = [r for r in runs if r.bias is not None and r.status != "failed"]
    if not done:
        failed = sum(r.bias is not None for r in runs)
        return empty_figure("Final biases, sorted", f"{failed} failed runs: not shown" if failed
                            else "Available once runs have snapshots")
    colours = value_colours([r.value for r in done], field)
    fig = go.Figure()
    for run in done:
        fig.add_trace(go.Scatter(y=np.sort(run.bias), mode="lines", line={"color": colours[run.value]},
                                 uid=trace_uid(run.value, run.seed),
                                 name=f"{field}={fmt(run.value)} (seed {run.seed})"))
    # failed runs are left out above: the rest are finished once they are all done or stopped
    title = ("Final biases, sorted" if all(r.status in RESULT_STATUSES for r in done)
             else "Biases at the latest snapshot, sorted")
    fig.update_layout(**LAYOUT_STYLE, title={"text": title, "font": {"size": 14}},
                      xaxis={**AXIS_STYLE, "title": {"text": "neuron (sorted by bias)"}},
                      yaxis={**AXIS_STYLE, "title": {"text": "bias"}})
    return fig


# the results' axes as the other figures name them (a config field keeps its own name: the one a user types)
RESULT_LABELS = {"mean_bias": "mean bias", "final_loss": "final loss", "mono_ratio": "mono neurons / N"}


def parallel_coordinates(rows: list[dict[str, float]], fields: list[str]) -> go.Figure:
    """Config fields -> final mean bias, final loss and mono ratio across runs, as experiment trackers show them (the
    paper finds the more monosemantic minima at moderately negative biases)."""
    rows = [r for r in rows if r.get("final_loss") is not None and r.get("mono_ratio") is not None]
    if not rows:
        return empty_figure("Runs: config against results", "No finished runs yet")
    mono = np.array([float(r["mono_ratio"]) for r in rows])
    # a ratio from 0: all-zero ratios drew an axis (and colours) from -1 to 1, then from 0 to 0.01 (ticked 0.002,
    # 0.004, ...): all zero, it spans the ratio's whole range
    mono_top = float(mono.max()) or 1.0
    dims = []
    for name in [*fields, *(["mean_bias"] if all(r.get("mean_bias") is not None for r in rows) else []),
                 "final_loss", "mono_ratio"]:
        column = np.array([float(r[name]) for r in rows])
        if name in fields and len(set(column)) < 2:
            continue  # a constant axis says nothing
        dim = {"label": RESULT_LABELS.get(name, name), "values": column,
               **({} if name in fields else {"tickformat": ".3g"})}  # its ends read 0.289064, -0.30849
        if name == "mono_ratio":
            dim["range"] = [0.0, mono_top]
        dims.append(dim)
    line = {"color": mono, "colorscale": "Viridis", "cmin": 0.0, "cmax": mono_top,
            "showscale": True, "colorbar": {"title": {"text": "mono / N", "side": "right"}}}
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line))
    # the axes' labels sit above the plot area: the title goes above them, not on the first one
    # room on the right for the last axis's tick labels before the colour bar
    fig.update_layout(**{**LAYOUT_STYLE, "margin": {"l": 60, "r": 90, "t": 80, "b": 30}},
                      title={"text": "Finished runs: config against results (colour: mono neurons / N)",
                             "font": {"size": 14}, "x": 0.01, "xanchor": "left", "y": 0.97, "yanchor": "top"})
    return fig


def mono_counts(sfa: np.ndarray) -> tuple[float, float, float, float]:
    """(mono neurons / N, mono neurons / k, neurons with r > 0.9 / N, as the Train page plots it, and mono neurons on
    the positive part / N, as SfaSummary counts it) of an SFA matrix."""
    count = float(monosemantic_neurons(sfa).sum())
    summary = SfaSummary.of(sfa)
    return (count / sfa.shape[1], count / sfa.shape[0], summary.nearly_mono_neurons / sfa.shape[1],
            summary.positive_mono_ratio)


def heatmap_run(runs: list[SweepRun], value: float) -> SweepRun:
    """The run whose heatmap stands for a value: the first seed with a snapshot (another may still be queued),
    one that did not fail where there is one."""
    return min((r for r in runs if r.value == value),
               key=lambda r: (r.sfa is None, r.status not in RESULT_STATUSES, r.status == "failed"))


def heatmap_title(field: str, run: SweepRun, several_seeds: bool) -> str:
    """E.g. "lr=0.03 (seed 1) (failed)": a diverged run's heatmap must not read as a result."""
    return (f"{field}={run.value:g}" + (f" (seed {run.seed})" if several_seeds else "")
            + (f" ({LEFT_OUT_AS.get(run.status, run.status)})" if run.status not in RESULT_STATUSES
               else " (stopped early)" if run.status == "stopped" and not run.complete else ""))

