"""Figures of the interpretability views (core.interpret), as pure functions."""

from __future__ import annotations

import textwrap

import numpy as np
import plotly.graph_objects as go

from app.figures import AUTOMARGIN, AXIS_STYLE, LAYOUT_STYLE, TITLE_PLACE, block_max, empty_figure
from core.interpret import FeatureView, LinearMap, MonoSummary, NeuronView
from core.metrics import DEAD_TOLERANCE, MONO_THRESHOLD

SUBTITLE_HEIGHT = 18  # px of top margin a subtitle line takes
SUBTITLE_CHARS = 64  # a subtitle line's length that fits a graph half a laptop screen wide (plotly does not wrap)


def styled(fig: go.Figure, title: str, x_title: str, y_title: str, log_y: bool = False,
           yaxis: dict | None = None, subtitle: str | None = None, **layout: object) -> go.Figure:
    """The lab's look; details go in a smaller second title line, so that the first stays short enough to read
    in half a screen's width."""
    y_axis = {**AXIS_STYLE, **AUTOMARGIN, "title": {"text": y_title}, **({"type": "log"} if log_y else {}),
              **(yaxis or {})}
    heading: dict = {"text": title, "font": {"size": 14}, **TITLE_PLACE}
    margin = dict(LAYOUT_STYLE["margin"])
    if subtitle:
        # plotly anchors the title line at the plot's top and draws the subtitle under it, into the plot: the
        # pad lifts both by the subtitle's height
        lines = textwrap.wrap(subtitle, SUBTITLE_CHARS)
        heading["subtitle"] = {"text": "<br>".join(lines), "font": {"size": 12, "color": "#6c757d"}}
        heading["pad"] = {"b": heading.get("pad", {}).get("b", 0) + SUBTITLE_HEIGHT * len(lines)}
        margin["t"] += SUBTITLE_HEIGHT * len(lines)
    fig.update_layout(**{**LAYOUT_STYLE, "margin": margin, **layout}, title=heading,
                      yaxis=y_axis, xaxis={**AXIS_STYLE, "title": {"text": x_title}},
                      legend={"x": 0.01, "y": 0.99, "bgcolor": "rgba(255,255,255,0.7)"})
    return fig


MAP_CELLS = 256 * 256  # the linear map at full resolution up to N = 256; above, max |value| over blocks


def mono_label(positive_part: bool) -> str:
    return " on the positive part" if positive_part else ""


def format_r(r: float, threshold: float = MONO_THRESHOLD) -> str:
    """r with enough decimals (3 at least) to read on its side of the threshold and of 1: 0.99904 as 0.99904, not
    0.999 (which is not above 0.999) beside "monosemantic", and 0.9996 not as 1.000 (exactly one feature)."""
    if not np.isfinite(r):
        return str(r)
    for decimals in range(3, 10):
        text = f"{r:.{decimals}f}"
        if all(np.sign(float(text) - bound) == np.sign(r - bound) for bound in (threshold, 1.0)):
            break
    return text


def feature_curves(view: FeatureView) -> go.Figure:
    """Output for one feature against its input amplitude: total, this feature's mono neurons, the rest, ideal."""
    a = view.amplitudes
    fig = go.Figure([
        go.Scatter(x=a, y=view.ideal, name="ideal (target)", line={"dash": "dot", "color": "#888"}),
        # wide and pale, under the parts: with no monosemantic neuron it equals the rest
        go.Scatter(x=a, y=view.total, name="total output", line={"color": "#1f77b4", "width": 7}, opacity=0.45),
        go.Scatter(x=a, y=view.mono_part, name=f"this feature's mono neurons ({len(view.neurons)})",
                   line={"color": "#2ca02c"}),
        # other features' mono neurons can fire for this one too (below zero amplitude for abs, or through a
        # positive bias): with the rest, so that the two parts add up to the total
        go.Scatter(x=a, y=view.rest_part, name="the rest: polysemantic + other features' mono",
                   line={"color": "#d62728"}),
    ])
    notes = []
    other = float(np.abs(view.other_mono_part).max(initial=0.0))
    if other > 1e-3:
        notes.append(f"other features' mono neurons: up to {other:.3f} of the rest")
    if view.positive_part:
        notes.append("mono on the positive part (GeLU/SoLU go negative)")
    return styled(fig, f"Feature {view.feature}: output as its amplitude varies (alone)", "input amplitude",
                  "output along the feature", subtitle="; ".join(notes) or None)


def neuron_kind(view: NeuronView) -> str:
    if view.dead:
        if view.negative_activations is None:
            return "dead"
        if np.abs(view.negative_activations).max(initial=0.0) <= DEAD_TOLERANCE:
            return "dead (silent at +1 and -1)"
        return "silent at +1 (the SFA's amplitude), fires at -1"
    return ("monosemantic" if view.monosemantic else "not monosemantic") + mono_label(view.positive_score is not None)


def neuron_profile(view: NeuronView) -> go.Figure:
    features = np.arange(len(view.activations))
    bars = [go.Bar(x=features, y=view.activations, marker_color="#1f77b4", name="at amplitude +1",
                   hovertemplate="feature %{x}<br>activation %{y:.3f}<extra></extra>")]
    if view.negative_activations is not None:  # abs: a neuron may serve negative amplitudes, which the SFA misses
        bars.append(go.Bar(x=features, y=view.negative_activations, marker_color="#ff7f0e", name="at amplitude -1",
                           hovertemplate="feature %{x} at -1<br>activation %{y:.3f}<extra></extra>"))
    top = ", ".join(str(f) for f in view.top_features) or "none"
    if view.dead:
        scores = "no activation at +1" if view.negative_activations is not None else "no activation"
    elif view.positive_score is None:
        scores = f"r = {format_r(view.score)}"
    else:  # the paper's r passes 0.999 by accident when negatives shrink the sum: the split uses the second
        scores = f"r = {format_r(view.score)} (paper's max/sum), {format_r(view.positive_score)} on the positive part"
    fig = go.Figure(bars)
    return styled(fig, f"Neuron {view.neuron}: {neuron_kind(view)}", "feature", "activation (feature alone)",
                  subtitle=f"{scores}; bias {view.bias:.3f}; top features {top}", showlegend=len(bars) > 1)


NO_POLY = "No live polysemantic neurons: every neuron is monosemantic or dead"


def signed_block_extreme(matrix: np.ndarray, max_cells: int) -> tuple[np.ndarray, int, int]:
    """Pool a signed matrix in blocks (as the SFA heatmap is), keeping each block's entry of largest magnitude with
    its sign: a max alone would hide the negative entries that a diverging colour scale shows."""
    high, br, bc = block_max(matrix, max_cells)
    if br == 1 and bc == 1:
        return matrix, 1, 1
    low = -block_max(-matrix, max_cells)[0]
    return np.where(high >= -low, high, low), br, bc


def linear_map_heatmap(linear: LinearMap) -> go.Figure:
    title = "Polysemantic part's linear map (N x N)"
    if linear.poly_neurons == 0:
        return empty_figure(title, NO_POLY)
    matrix, br, bc = signed_block_extreme(np.asarray(linear.matrix, dtype=np.float32), MAP_CELLS)
    limit = float(np.abs(matrix).max()) or 1.0
    if br == 1 and bc == 1:
        heat = go.Heatmap(z=matrix, colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit,
                          hovertemplate="to feature %{y}<br>from feature %{x}<br>%{z:.3f}<extra></extra>")
    else:  # cells centred on their blocks, so that the axes still count features
        title = f"Polysemantic part's linear map (max |value| of {br}x{bc} blocks)"
        heat = go.Heatmap(z=matrix, x0=(bc - 1) / 2, dx=bc, y0=(br - 1) / 2, dy=br, colorscale="RdBu", zmid=0,
                          zmin=-limit, zmax=limit,
                          hovertemplate=f"to features ≈ %{{y:.0f}}<br>from features ≈ %{{x:.0f}}<br>largest |value| "
                                        f"in the {br}x{bc} block: %{{z:.3f}}<extra></extra>")
    if linear.ideal is None:
        subtitle = "abs: |v| is not linear, so no linear map is its ideal (linearised at +1: not vs the identity)"
    elif linear.ideal_error is None:
        subtitle = "the map is zero"
    else:
        subtitle = (f"vs {linear.ideal_scale:.2f} x {linear.ideal}{carried(linear)}: error {linear.ideal_error:.2f} "
                    "(0 = exactly that, 1 = unrelated)")
    subtitle = "through its live neurons; " + subtitle
    if linear.positive_part:
        subtitle += "; poly = not mono on the positive part"
    # Feature 0 on top, as a matrix is written. Its own uirevision: the graph first shows an empty figure, whose
    # upright autorange would otherwise be kept.
    return styled(go.Figure(heat), title, "from feature", "to feature", subtitle=subtitle,
                  yaxis={"autorange": "reversed"}, uirevision="linear-map")


def carried(linear: LinearMap) -> str:
    """How the ideal map is restricted: a map through m input dims can only be compared with the ideal's part there."""
    return "" if linear.input_dims is None else f" on the {linear.input_dims}-dim input"


def singular_values(linear: LinearMap) -> go.Figure:
    if linear.poly_neurons == 0:
        return empty_figure("Its singular values", NO_POLY)
    # past m they are zero but for rounding (1e-7 and less), a cliff that squeezed the m that count on a log axis
    values = linear.singular_values if linear.rank_cap is None else linear.singular_values[:linear.rank_cap]
    ranks = np.arange(1, len(values) + 1)  # the k-th value at k: the line marks the rank that reaches 90%
    fig = go.Figure(go.Scatter(x=ranks, y=values, mode="lines+markers", marker={"size": 4},
                               hovertemplate="singular value %{x}: %{y:.3f}<extra></extra>"))
    fig.add_vline(x=linear.rank90, line_dash="dot", line_color="#d62728",
                  annotation_text=f"90% of the energy (σ²) by rank {linear.rank90}",
                  # under the falling curve, on the side of the line with room
                  annotation_position="bottom left" if linear.rank90 > (len(values) + 1) / 2 else "bottom right")
    cap = None if linear.rank_cap is None else (f"rank at most min(m = {linear.input_dims}, live polysemantic neurons) "
                                                 f"= {linear.rank_cap}; the rest are 0")
    return styled(fig, "Its singular values", "rank", "singular value (log)", log_y=True,
                  subtitle=cap).update_xaxes(range=[0.5, max(len(values), 1) + 0.5])


def mono_histogram(summary: MonoSummary) -> go.Figure:
    names = list(summary.counts)
    losses = summary.group_losses
    counts = [summary.counts[n] for n in names]
    fig = go.Figure(go.Bar(x=names, y=counts, marker_color="#2ca02c",
                           text=[f"loss {losses[n]:.4f}" if losses and summary.counts[n] else "" for n in names],
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{x} mono neurons: %{y} features<extra></extra>"))
    subtitle = ("bar labels: those features' part of the loss (summing to it)" if losses else
                "random_proj: the loss does not split by feature (its outputs mix them)")
    if summary.positive_part:
        subtitle = "mono on the positive part; " + subtitle
    # headroom for the labels above the bars, which would otherwise run into the subtitle
    return styled(fig, "Features by number of monosemantic neurons", "monosemantic neurons for the feature",
                  "features", subtitle=subtitle, yaxis={"range": [0, 1.2 * max(counts + [1])]})


def mono_by_feature(counts: np.ndarray, power_law: bool, positive_part: bool = False) -> go.Figure:
    """Monosemantic neurons of each feature, in feature order: for power-law features that is the frequency order
    (feature 0 the most frequent): which features get monosemantic neurons, which the paper leaves open for k < N."""
    n = len(counts)
    fig = go.Figure(go.Bar(x=np.arange(n), y=counts, marker_color="#2ca02c",
                           hovertemplate="feature %{x}: %{y} mono neurons<extra></extra>"))
    covered = int((counts > 0).sum())
    subtitle = f"{covered} of {n} features have a monosemantic neuron{mono_label(positive_part)}"
    if power_law and n >= 2:
        half = n // 2
        subtitle += (f": {int((counts[:half] > 0).sum())} of the {half} most frequent, "
                     f"{int((counts[half:] > 0).sum())} of the {n - half} rarest")
    x_title = "feature (most frequent first)" if power_law else "feature"
    return styled(fig, "Monosemantic neurons serving each feature", x_title, "mono neurons", subtitle=subtitle,
                  yaxis={"rangemode": "tozero", "dtick": 1 if counts.max(initial=0) <= 5 else None})


def pair_grid(amplitudes: np.ndarray, grid: np.ndarray, f1: int, f2: int) -> go.Figure:
    fig = go.Figure(go.Heatmap(x=amplitudes, y=amplitudes, z=grid.astype(np.float32), colorscale="Viridis",
                               colorbar={"title": {"text": f"out {f1}"}},
                               hovertemplate=f"feature {f1}: %{{x:.2f}}<br>feature {f2}: %{{y:.2f}}<br>output "
                                             f"for {f1}: %{{z:.3f}}<extra></extra>"))
    return styled(fig, f"Interference: feature {f1}'s output with {f2} present",
                  f"amplitude of feature {f1}", f"amplitude of feature {f2}")
