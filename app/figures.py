"""Pure functions from run data (numpy arrays) to plotly figures; no Dash, no I/O."""

from __future__ import annotations

import math
import re

import numpy as np
import plotly.graph_objects as go

from core.metrics import (
    MONO_THRESHOLD,
    NEARLY_MONO_THRESHOLD,
    dead_neurons,
    heatmap_order,
    mono_scores,
    monosemantic_neurons,
    score_histogram,
)

MAX_CURVE_POINTS = 4000
MAX_HEATMAP_CELLS = 32768  # full resolution up to here: each neuron and feature its own cell (quick scale)
# Once cells cover blocks (paper scale) hover cannot name a neuron anyway; 5x5 blocks of a 1024 x 512 matrix
# (205 x 103 cells, ~2 px each on screen) keep a live update under 200 KB.
MAX_POOLED_HEATMAP_CELLS = 24576
MARGIN = {"l": 55, "r": 15, "t": 54, "b": 45}
TITLE_LINE = 18  # px: a title's second line
# Curves recorded at snapshots start their log-step axis at step 1, as the loss curve beside them does: panels side
# by side then line up step for step (each began at its own first snapshot). An axis kept autoranged: a graph that
# first showed an empty figure keeps its autorange through a partial one ("max").
FROM_STEP_ONE = {"autorangeoptions": {"include": [1]}}
HEATMAP_TICKS_BOTTOM = 72  # room for upright feature ticks ("f63") above the axis title
# A light look set directly: assigning a named plotly template costs time in every figure.
AXIS_STYLE = {"gridcolor": "#e9ecef", "zerolinecolor": "#dee2e6", "linecolor": "#adb5bd", "showline": True}
# A wide tick label ("-0.25") pushes the margin out instead of running into the axis title. Only on figures drawn
# once (curves, inspector): plotly validates every key, and the figures redrawn each live tick are hot.
AUTOMARGIN = {"automargin": True}
RUNAWAY_LOSS_RATIO = 1e4  # a loss curve spanning more than this is drawn on a log axis
# Without a template of its own, every figure carries plotly's default one (~7 KB of trace defaults for
# 3D, maps and polar plots): a third of a paper-scale live update. This one keeps its colours only.
SLIM_TEMPLATE = {"layout": {"colorway": ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3",
                                         "#FF6692", "#B6E880", "#FF97FF", "#FECB52"]}}
# Just above the plot, below the band of the modebar's buttons (shown all the time on touch screens, where a long
# title ran under them), starting at the left.
TITLE_PLACE = {"x": 0.01, "xanchor": "left", "yref": "paper", "y": 1.0, "yanchor": "bottom", "pad": {"b": 8}}
LEGEND_TOP_RIGHT = {"x": 0.99, "y": 0.98, "xanchor": "right", "yanchor": "top", "bgcolor": "rgba(255,255,255,0.7)"}
# Between the title and the plot, a row per long label (the plot makes room): in a corner of the plot four runs'
# legend covered some run's curve. The title then sits at the figure's top, clear of it.
# traceorder "normal": a horizontal legend with legend groups (a run's line and its dash-dotted positive part) put
# each group on a row of its own, four rows for four short labels
LEGEND_ABOVE = {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom",
                "bgcolor": "rgba(0,0,0,0)", "traceorder": "normal"}
TITLE_OVER_LEGEND = {"x": 0.01, "xanchor": "left", "yref": "container", "y": 0.98, "yanchor": "top"}
LEGEND_OVER_PLOT = {"legend": LEGEND_ABOVE, "title_place": TITLE_OVER_LEGEND, "margin": {**MARGIN, "t": 34}}
LAYOUT_STYLE = {"plot_bgcolor": "white", "paper_bgcolor": "white", "font": {"size": 12, "color": "#2a3f5f"},
                "margin": MARGIN, "uirevision": "keep", "hovermode": "closest", "template": SLIM_TEMPLATE}


def styled(traces: list | go.BaseTraceType, title: str, x_title: str, y_title: str, log_x: bool = False,
           shapes: list[dict] | None = None, xaxis: dict | None = None, yaxis: dict | None = None,
           title_place: dict = TITLE_PLACE, **layout: object) -> go.Figure:
    """A figure with the lab's look, built in one constructor call: plotly validates a layout given
    to the constructor several times faster than through update_layout."""
    x_axis = {**AXIS_STYLE, "title": {"text": x_title}, **({"type": "log"} if log_x else {}), **(xaxis or {})}
    y_axis = {**AXIS_STYLE, "title": {"text": y_title}, **(yaxis or {})}
    return go.Figure(traces, layout={
        **LAYOUT_STYLE, "title": {"text": title, "font": {"size": 14}, **title_place}, "xaxis": x_axis,
        "yaxis": y_axis,
        "legend": LEGEND_TOP_RIGHT, "shapes": shapes or [], **layout})


def hline(y: float, colour: str = "#888") -> dict:
    """A dotted horizontal reference line across the plot (a layout shape: cheaper than add_hline)."""
    return {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
            "line": {"dash": "dot", "color": colour, "width": 1.5}}


def vline(x: float, colour: str = "#888") -> dict:
    return {"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": x, "x1": x,
            "line": {"dash": "dot", "color": colour, "width": 1.5}}


def empty_figure(title: str, message: str) -> go.Figure:
    return go.Figure(layout={
        **LAYOUT_STYLE, "title": {"text": title, "font": {"size": 14}, **TITLE_PLACE}, "xaxis": {"visible": False},
        "yaxis": {"visible": False},
        "annotations": [{"text": message, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
                         "font": {"size": 14, "color": "#6c757d"}}]})


def ema_continue(values: np.ndarray, weight: float, smoothed: float = 0.0,
                 count: int = 0) -> tuple[np.ndarray, float, int]:
    """TensorBoard's debiased EMA from a saved (smoothed, count) state; returns (values, smoothed, count)."""
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0:
        return values.copy(), smoothed, count
    out = np.empty_like(values)
    last = smoothed / (1 - weight**count) if count else math.nan
    for i, v in enumerate(values):
        if np.isfinite(v):
            smoothed = smoothed * weight + (1 - weight) * v
            count += 1
            last = smoothed / (1 - weight**count)
        out[i] = last
    return out, smoothed, count


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average; NaNs carry the previous value."""
    return ema_continue(values, weight)[0]


def log_thin(steps: np.ndarray, limit: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ~limit points spread evenly in log(step), first and last always kept."""
    n = len(steps)
    if n <= limit:
        return np.arange(n)
    targets = np.geomspace(max(1, steps[0]), steps[-1], limit)
    idx = np.unique(np.clip(np.searchsorted(steps, targets), 0, n - 1))
    return np.unique(np.concatenate([[0], idx, [n - 1]]))


def plain_floats(values: np.ndarray) -> list[float]:
    """Plain JSON numbers (so live updates can append to them) at 6 significant digits: short, and exact
    enough for a learning rate near zero as for a loss."""
    return [float(f"{v:.6g}") for v in np.asarray(values, dtype=float)]


def loss_figure(steps: np.ndarray, losses: np.ndarray, smoothing: float = 0.6, title: str = "Loss",
                extendable: bool = False) -> go.Figure:
    """Raw loss (faint) and its EMA against log-scale steps, like the paper's training plots.

    `extendable` sends plain lists rather than typed arrays, so that live updates can append to them."""
    if len(steps) == 0:
        return empty_figure(title, "No steps trained yet")
    steps = np.asarray(steps)
    smoothed = ema(losses, smoothing)
    keep = log_thin(steps)
    x, raw, smooth = (steps[keep].astype(np.int32), np.asarray(losses)[keep].astype(np.float32),
                      smoothed[keep].astype(np.float32))
    if extendable:
        x, raw, smooth = x.tolist(), plain_floats(raw), plain_floats(smooth)
    traces = [
        go.Scattergl(x=x, y=raw, mode="lines", name="raw", line={"width": 1, "color": "#1f77b4"}, opacity=0.3),
        go.Scattergl(x=x, y=smooth, mode="lines", name=f"smoothed ({smoothing:g})",
                     line={"width": 2, "color": "#1f77b4"}),
    ]
    # a loss that ran away (a diverging run: 1 to 1e35) is a flat line and a spike on a linear axis
    positive = np.asarray(losses, dtype=np.float64)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    runaway = len(positive) > 0 and positive.max() > RUNAWAY_LOSS_RATIO * positive.min()
    return styled(traces, title, "Training step (log scale)",
                  "Loss (log scale)" if runaway else "Loss (squared error)", log_x=True,
                  yaxis={"type": "log", "exponentformat": "power", **AUTOMARGIN} if runaway else None)


def metric_figure(steps: np.ndarray, values: np.ndarray, title: str, y_title: str,
                  reference: float | None = None, extra: dict[str, np.ndarray] | None = None,
                  extendable: bool = False, backdrop: tuple[str, np.ndarray, np.ndarray] | None = None
                  ) -> go.Figure:
    """A metric recorded at each snapshot, against log-scale steps (thinned like the loss curve).

    `extendable` sends plain lists rather than typed arrays, so that live updates can append to them.
    `backdrop` (name, x, y) is a known curve drawn faint behind, last in the data (appends keep their index)."""
    if len(steps) == 0:
        return empty_figure(title, "No snapshots yet")
    keep = log_thin(np.asarray(steps))
    columns = [np.asarray(steps)[keep].astype(np.int32), np.asarray(values, dtype=np.float32)[keep],
               *(np.asarray(series, dtype=np.float32)[keep] for series in (extra or {}).values())]
    if extendable:
        columns = [columns[0].tolist(), *(plain_floats(c) for c in columns[1:])]
    x, y, *extra_y = columns
    # With a backdrop the points are samples of a known curve: lines between them would cut across it.
    traces = [go.Scatter(x=x, y=y, mode="markers" if backdrop else "lines+markers", name=y_title,
                         marker={"size": 5 if backdrop else 4})]
    traces += [go.Scatter(x=x, y=series, mode="lines", name=name, line={"dash": EXTRA_DASHES.get(name, "dash")})
               for name, series in zip(extra or {}, extra_y)]
    if backdrop is not None:
        name, bx, by = backdrop
        traces.append(go.Scatter(x=np.asarray(bx, dtype=np.int32), y=np.asarray(by, dtype=np.float32), mode="lines",
                                 name=name, line={"color": "#adb5bd", "width": 1}, hoverinfo="skip"))
    shapes = [hline(reference)] if reference is not None else []
    return styled(traces, title, "Training step (log scale)", y_title, log_x=True, shapes=shapes,
                  showlegend=bool(extra), yaxis=AUTOMARGIN, xaxis=FROM_STEP_ONE)


def block_max(matrix: np.ndarray, max_cells: int) -> tuple[np.ndarray, int, int]:
    """Max-pool a matrix in integer blocks so it has at most max_cells cells; returns (pooled, br, bc)."""
    rows, cols = matrix.shape
    if rows * cols <= max_cells:
        return matrix, 1, 1
    scale = math.sqrt(rows * cols / max_cells)
    br, bc = max(1, math.ceil(scale)), max(1, math.ceil(scale))
    while math.ceil(rows / br) * math.ceil(cols / bc) > max_cells:
        br, bc = br + 1, bc + 1
    padded = np.full((math.ceil(rows / br) * br, math.ceil(cols / bc) * bc), -np.inf, dtype=np.float32)
    padded[:rows, :cols] = matrix
    pooled = padded.reshape(padded.shape[0] // br, br, padded.shape[1] // bc, bc).max(axis=(1, 3))
    return pooled, br, bc


def sfa_heatmap(sfa: np.ndarray | None, ordered: bool = True, max_cells: int = MAX_HEATMAP_CELLS,
                title: str = "Single-feature activations",
                order: tuple[np.ndarray, np.ndarray] | None = None,
                empty: str = "Waiting for the first snapshot", second_line: str = "") -> go.Figure:
    """Neuron x feature activations for single features at amplitude 1, in the paper's order; `empty` says why
    there are none; `second_line`, under the title (the plot makes room for it).

    Hover shows the original neuron and feature indices. Large matrices are max-pooled in blocks
    (a cell then covers a range of neurons and features) to keep the update small."""
    if second_line:
        title = f"{title}<br>{second_line}"
    if sfa is None or sfa.size == 0:
        return empty_figure(title, empty)
    sfa = np.asarray(sfa, dtype=np.float32)
    neurons, features = drawn_order(sfa, ordered, order)
    matrix = sfa[neurons][:, features]
    pooled, br, bc = block_max(matrix, max_cells if matrix.size <= max_cells
                               else min(max_cells, MAX_POOLED_HEATMAP_CELLS))
    rows, cols = pooled.shape
    # Category labels carry the original indices, so hover names the real neuron and feature
    # without a per-cell payload.
    if br == 1 and bc == 1:
        y_labels, x_labels = [f"n{i}" for i in neurons], [f"f{j}" for j in features]
        hover = "neuron %{y}<br>feature %{x}<br>activation %{z:.3f}<extra></extra>"
    else:
        y_labels = [f"#{i * br}-{min((i + 1) * br, sfa.shape[0]) - 1}" for i in range(rows)]
        x_labels = [f"#{j * bc}-{min((j + 1) * bc, sfa.shape[1]) - 1}" for j in range(cols)]
        hover = "neurons %{y}<br>features %{x} (positions)<br>max activation %{z:.3f}<extra></extra>"
    # A category axis puts its first row at the bottom: rows go in reversed, so that the first neuron (the most
    # selective, in the paper's order) is drawn on top. (An axis set to autorange "reversed" is not: a graph
    # that first showed an empty figure keeps its earlier, upright autorange.)
    heat = go.Heatmap(z=pooled[::-1], x=x_labels, y=y_labels[::-1], hovertemplate=hover, colorscale="Viridis",
                      zmin=0, zmax=1, colorbar={"title": {"text": "activation"}})
    strip = score_strip(row_scores(sfa)[neurons], br, y_labels)
    what = "ordered" if ordered else "index"
    scale = f" (max over {br}x{bc} blocks)" if br > 1 or bc > 1 else ""
    x_ticks = cols <= 64 and bc == 1  # a pooled block's label ("#54-56") is for the hover: on the axis, it crowds
    # Feature ticks turn upright once crowded and then ran into the axis title: room is made for them up front
    # (automargin would, at ~5 ms a live tick).
    return styled([heat, strip], title + scale, f"feature ({what})", f"neuron ({what}, first on top)",
                  xaxis={"type": "category", "showticklabels": x_ticks, "domain": [0, 1 - STRIP_WIDTH - 0.01]},
                  yaxis={"type": "category", "showticklabels": rows <= 64 and br == 1},
                  xaxis2={"type": "category", "domain": [1 - STRIP_WIDTH, 1], "anchor": "y", "fixedrange": True,
                          "tickangle": 0, "showgrid": False},
                  margin={**MARGIN, "t": MARGIN["t"] + (TITLE_LINE if second_line else 0),
                          **({"b": HEATMAP_TICKS_BOTTOM} if x_ticks else {})},
                  # plotly stands a title's first line on the plot: the second ran into the heatmap
                  title_place={**TITLE_PLACE, "pad": {"b": TITLE_PLACE["pad"]["b"] + TITLE_LINE}} if second_line
                  else TITLE_PLACE)


STRIP_WIDTH = 0.03  # of the plot's width
SCORE_COLUMN = "r"
# r as the metrics count it: grey below NEARLY_MONO_THRESHOLD, orange nearly mono, red monosemantic (mono neurons / N)
SCORE_COLOURS = [[0.0, "#d9d9d9"], [NEARLY_MONO_THRESHOLD, "#d9d9d9"], [NEARLY_MONO_THRESHOLD, "#fdae61"],
                 [MONO_THRESHOLD, "#fdae61"], [MONO_THRESHOLD, "#d7191c"], [1.0, "#d7191c"]]


def row_scores(sfa: np.ndarray) -> np.ndarray:
    """Each neuron's r as the strip draws it: in [0, 1], a dead neuron's 0."""
    return np.where(dead_neurons(sfa), 0.0, np.clip(mono_scores(sfa), 0.0, 1.0))


def score_strip(scores: np.ndarray, rows_per_cell: int, y_labels: list[str]) -> go.Heatmap:
    """Each drawn row's r (`scores`, in the rows' order) beside the heatmap, the best of a pooled block's: a
    clean-looking diagonal can be made of neurons far from the 0.999 that counts as monosemantic, their other
    features too faint for the colour scale."""
    padded = np.full(-(-len(scores) // rows_per_cell) * rows_per_cell, -np.inf, dtype=np.float32)
    padded[:len(scores)] = scores
    blocks = padded.reshape(-1, rows_per_cell)  # the heatmap's row blocks (block_max)
    mono, nearly = (blocks > MONO_THRESHOLD).sum(axis=1), (blocks > NEARLY_MONO_THRESHOLD).sum(axis=1)
    if rows_per_cell > 1:  # a block's colour is its best neuron's: say how many it holds of each
        verdicts = [f"{m} monosemantic, {n - m} nearly, of {np.isfinite(block).sum()}"
                    for m, n, block in zip(mono, nearly, blocks)]
        hover = "neurons %{y}<br>best r = %{z:.4f}<br>%{text}<extra></extra>"
    else:
        verdicts = ["monosemantic" if m else "nearly monosemantic" if n else "not monosemantic"
                    for m, n in zip(mono, nearly)]
        hover = "neuron %{y}<br>r = %{z:.4f}: %{text}<extra></extra>"
    return go.Heatmap(z=blocks.max(axis=1)[::-1, None].astype(np.float32), x=[SCORE_COLUMN], y=y_labels[::-1],
                      text=[[verdict] for verdict in verdicts[::-1]], xaxis="x2", colorscale=SCORE_COLOURS, zmin=0,
                      zmax=1, showscale=False, hovertemplate=hover)


def drawn_order(sfa: np.ndarray, ordered: bool, order: tuple[np.ndarray, np.ndarray] | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The neurons and features in the order `sfa_heatmap` draws them."""
    if ordered:
        return order if order is not None else heatmap_order(sfa)
    return np.arange(sfa.shape[0]), np.arange(sfa.shape[1])


SNAP_ROWS = 2  # rows are ~2 px high at quick scale: a click aimed at a bright cell often lands a row or two off


def nearest_bright_neuron(sfa: np.ndarray, neurons: np.ndarray, neuron: int, feature: int) -> int:
    """The neuron clicked, or, when its cell for `feature` is dark beside a bright one within SNAP_ROWS rows (in the
    drawn order `neurons`), that bright one's: the cell the click was aimed at."""
    found = np.flatnonzero(neurons == neuron)
    if not len(found):
        return neuron
    at = int(found[0])
    near = neurons[max(0, at - SNAP_ROWS):at + SNAP_ROWS + 1]
    best = int(near[np.argmax(sfa[near, feature])])
    return best if sfa[best, feature] > max(0.1, 2 * sfa[neuron, feature]) else neuron


def pooled_strip_neuron(sfa: np.ndarray, ordered: bool, order: tuple[np.ndarray, np.ndarray] | None,
                        row_label: str) -> int | None:
    """The neuron whose r gives a pooled row of the r strip its colour (the block's best), from the row's label
    ("#a-b": positions in the drawn order); None for a label that names no block."""
    rows = re.fullmatch(r"#(\d+)-(\d+)", row_label)
    if not rows:
        return None
    sfa = np.asarray(sfa, dtype=np.float32)
    block = drawn_order(sfa, ordered, order)[0][int(rows[1]):int(rows[2]) + 1]
    return int(block[np.argmax(row_scores(sfa[block]))]) if len(block) else None


def pooled_block_cell(sfa: np.ndarray, ordered: bool, order: tuple[np.ndarray, np.ndarray] | None, row_label: str,
                      col_label: str) -> tuple[int, int] | None:
    """(neuron, feature) of the cell that gives a max-pooled block of `sfa_heatmap` its colour, from the block's
    labels ("#a-b": positions in the drawn order); None for labels that name no block."""
    rows, cols = re.fullmatch(r"#(\d+)-(\d+)", row_label), re.fullmatch(r"#(\d+)-(\d+)", col_label)
    if not (rows and cols):
        return None
    sfa = np.asarray(sfa, dtype=np.float32)
    neurons, features = drawn_order(sfa, ordered, order)
    block_neurons = neurons[int(rows[1]):int(rows[2]) + 1]
    block_features = features[int(cols[1]):int(cols[2]) + 1]
    if not (len(block_neurons) and len(block_features)):
        return None
    i, j = np.unravel_index(np.argmax(sfa[np.ix_(block_neurons, block_features)]),
                            (len(block_neurons), len(block_features)))
    return int(block_neurons[i]), int(block_features[j])


def bias_figure(biases: np.ndarray | None, sfa: np.ndarray | None = None,
                order: tuple[np.ndarray, np.ndarray] | None = None, replaying: int | None = None,
                step: int | None = None) -> go.Figure:
    """Per-neuron first-layer biases, in the heatmap's neuron order, monosemantic neurons highlighted; `step`:
    the replayed checkpoint's step they are from.

    `replaying`: the step of the latest snapshot, while the heatmap replays an older checkpoint whose frame
    kept no biases (written before frames did): the bars then say which step they show, in the live heatmap's
    order."""
    # short, clear of the modebar at the right
    title = (f"First-layer biases at step {step:,}" if step is not None and not replaying
             else f"Biases at the latest snapshot, step {replaying:,}" if replaying else "First-layer bias per neuron")
    if biases is None or len(biases) == 0:
        return empty_figure(title, "Available after the first snapshot")
    biases = np.asarray(biases, dtype=np.float32)
    if sfa is None:
        order = np.argsort(biases, kind="stable").astype(np.int32)
        bar = go.Bar(x=np.arange(len(biases), dtype=np.int32), y=biases[order], customdata=order,
                     hovertemplate="neuron %{customdata}<br>bias %{y:.3f}<extra></extra>")
        return styled(bar, title, "neuron (sorted by bias)", "bias")
    order = (order if order is not None else heatmap_order(sfa))[0].astype(np.int32)  # int32: half of int64's bytes
    mono = monosemantic_neurons(sfa)[order]
    bars = []
    for flag, name, colour in ((True, "monosemantic", "#2ca02c"), (False, "not monosemantic", "#7f7f7f")):
        pos = np.flatnonzero(mono == flag).astype(np.int32)
        bars.append(go.Bar(x=pos, y=biases[order][pos], name=name, marker_color=colour, customdata=order[pos],
                           hovertemplate="neuron %{customdata}<br>bias %{y:.3f}<extra></extra>"))
    # Overlay, not the default grouping: each position has one bar, so grouping would halve and shift them.
    x_title = "neuron (in the live heatmap's order)" if replaying else "neuron (ordered as in the heatmap)"
    # the key shown with no neuron monosemantic too (plotly hides it for a lone trace with bars)
    return styled(bars, title, x_title, "bias", bargap=0, barmode="overlay", showlegend=True,
                  **LEGEND_OVER_PLOT)  # clear of the bars


def score_histogram_figure(sfa: np.ndarray | None, threshold: float = MONO_THRESHOLD, task: str = "") -> go.Figure:
    """Distribution of r = max/sum over alive neurons: near-monosemantic neurons show before they pass 0.999.
    On the abs task "dead" is judged at amplitude +1 only (ALGORITHM.md), and the title says so.

    GeLU and SoLU go negative, which puts r above 1 or below 0: those neurons get bars of their own, labelled, past
    the ends of the axis (in the end bins they read as monosemantic, or as dead)."""
    if sfa is None or sfa.size == 0:
        return empty_figure("r = max/sum per neuron", "Available after the first snapshot")
    dead = dead_neurons(sfa)
    above = int((monosemantic_neurons(sfa, threshold)).sum())
    dead_at = " at +1" if task == "abs" else ""  # an abs neuron silent at +1 may fire at -1
    title = f"r = max/sum per neuron: {above} of {len(dead)} above {threshold:g} ({int(dead.sum())} dead{dead_at})"
    # Binned here (20 bins, r = 1 in the last one): in float32, r of a perfectly monosemantic neuron is exactly 1.
    hist = score_histogram(mono_scores(sfa)[~dead])
    edges = hist.edges
    bars = [go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=hist.counts, width=edges[1] - edges[0], showlegend=False,
                   customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                   marker={"color": "#1f77b4", "line": {"color": "white", "width": 1}},
                   hovertemplate="r %{customdata[0]:.2f}–%{customdata[1]:.2f}<br>%{y} neurons<extra></extra>")]
    outside = [(x, label, n) for x, label, n in ((-0.1, "r < 0", hist.below), (1.1, "r > 1", hist.above)) if n]
    if outside:
        xs, labels, counts = zip(*outside)
        bars.append(go.Bar(x=list(xs), y=list(counts), width=0.08, text=list(labels), textposition="outside",
                           cliponaxis=False, marker_color="#ff7f0e", showlegend=False,
                           hovertemplate="%{text}: %{y} neurons (negative activations)<extra></extra>"))
    x_range = [-0.15 if hist.below else 0, 1.15 if hist.above else 1]
    return styled(bars, title, "r", "neurons", shapes=[vline(threshold, "#d62728")], xaxis={"range": x_range})


RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
# One line style for each extra mono count on every page (Train had both dashed, Compare's positive part too)
NEARLY_MONO_DASH, POSITIVE_PART_DASH = "dot", "dashdot"
NEARLY_MONO_NAME = f"nearly mono (r > {NEARLY_MONO_THRESHOLD:g}) / N"
POSITIVE_MONO_NAME = "mono on positive part / N"
EXTRA_DASHES = {NEARLY_MONO_NAME: NEARLY_MONO_DASH, POSITIVE_MONO_NAME: POSITIVE_PART_DASH}


def run_colour(index: int) -> str:
    """The colour of the index-th run compared: its curves, its table column and its end of the connectivity line."""
    return RUN_COLOURS[index % len(RUN_COLOURS)]


def overlay_figure(series: list[tuple[str, np.ndarray, np.ndarray]], title: str, y_title: str,
                   reference: float | None = None, smoothing: float = 0.0,
                   x_title: str = "Training step (log scale)") -> go.Figure:
    """One line per run (label, steps, values) against log-scale steps, a colour per run (`run_colour`, in order:
    the Compare table names each in full beside its colour)."""
    if not any(len(steps) for _, steps, _ in series):
        return empty_figure(title, "No data yet")
    traces = []
    for i, (label, steps, values) in enumerate(series):
        steps = np.asarray(steps)
        values = ema(values, smoothing) if smoothing else np.asarray(values, dtype=np.float64)
        keep = log_thin(steps, 2000)
        traces.append(go.Scattergl(x=steps[keep].astype(np.int32), y=values[keep].astype(np.float32), mode="lines",
                                   name=label, legendgroup=label,
                                   line={"color": run_colour(i), "width": 2}))
    shapes = [hline(reference)] if reference is not None else []
    return styled(traces, title, x_title, y_title, log_x=True, shapes=shapes, xaxis=FROM_STEP_ONE,
                  **LEGEND_OVER_PLOT)


def interpolation_figure(alphas: np.ndarray, losses: np.ndarray, label_a: str, label_b: str,
                         aligned: bool, colours: tuple[str, str] = RUN_COLOURS[:2]) -> go.Figure:
    """Loss along the straight line between two models' weights; a barrier shows as a bump. The ends are marked
    in A's and B's `colours` (their curves' on the Compare page)."""
    traces = [go.Scatter(x=alphas, y=losses, mode="lines+markers", name="loss", line={"color": "#555"},
                         hovertemplate="t = %{x:.2f}<br>loss %{y:.4f}<extra></extra>")]
    traces += [go.Scatter(x=[x], y=[losses[0] if x == 0 else losses[-1]], mode="markers", name=label,
                          marker={"size": 12, "color": colour})
               for x, label, colour in ((0.0, label_a, colours[0]), (1.0, label_b, colours[1]))]
    how = "after aligning neurons by SFA" if aligned else "without neuron alignment"
    return styled(traces, f"Loss along the line from run A (t=0) to run B (t=1), {how}", "t", "loss")
