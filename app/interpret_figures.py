"""Figures of the interpretability views (core.interpret), as pure functions."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app.figures import AUTOMARGIN, AXIS_STYLE, LAYOUT_STYLE, TITLE_PLACE
from core.interpret import FeatureView, LinearMap, MonoSummary, NeuronView

SUBTITLE_HEIGHT = 18  # px of top margin a subtitle line takes


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
        heading["subtitle"] = {"text": subtitle, "font": {"size": 12, "color": "#6c757d"}}
        heading["pad"] = {"b": heading.get("pad", {}).get("b", 0) + SUBTITLE_HEIGHT}
        margin["t"] += SUBTITLE_HEIGHT
    fig.update_layout(**{**LAYOUT_STYLE, "margin": margin, **layout}, title=heading,
                      yaxis=y_axis, xaxis={**AXIS_STYLE, "title": {"text": x_title}},
                      legend={"x": 0.01, "y": 0.99, "bgcolor": "rgba(255,255,255,0.7)"})
    return fig


def feature_curves(view: FeatureView) -> go.Figure:
    """Output for one feature against its input amplitude: total, mono part, poly part, ideal."""
    a = view.amplitudes
    fig = go.Figure([
        go.Scatter(x=a, y=view.ideal, name="ideal (target)", line={"dash": "dot", "color": "#888"}),
        # wide and pale, under the parts: with no monosemantic neuron it equals the polysemantic part
        go.Scatter(x=a, y=view.total, name="total output", line={"color": "#1f77b4", "width": 7}, opacity=0.45),
        go.Scatter(x=a, y=view.mono_part, name=f"monosemantic neurons ({len(view.neurons)})",
                   line={"color": "#2ca02c"}),
        go.Scatter(x=a, y=view.poly_part, name="polysemantic neurons", line={"color": "#d62728"}),
    ])
    return styled(fig, f"Feature {view.feature}: output as its amplitude varies (alone)", "input amplitude",
                  "output along the feature")


def neuron_profile(view: NeuronView) -> go.Figure:
    kind = "monosemantic" if view.monosemantic else "not monosemantic"
    fig = go.Figure(go.Bar(x=np.arange(len(view.activations)), y=view.activations, marker_color="#1f77b4",
                           hovertemplate="feature %{x}<br>activation %{y:.3f}<extra></extra>"))
    top = ", ".join(str(f) for f in view.top_features) or "none"
    return styled(fig, f"Neuron {view.neuron}: {kind}", "feature", "activation (feature alone)",
                  subtitle=f"r = {view.score:.3f}, bias {view.bias:.3f}; top features {top}")


def linear_map_heatmap(linear: LinearMap) -> go.Figure:
    limit = float(np.abs(linear.matrix).max()) or 1.0
    heat = go.Figure(go.Heatmap(z=linear.matrix.astype(np.float32), colorscale="RdBu", zmid=0, zmin=-limit,
                                zmax=limit, hovertemplate="to feature %{y}<br>from feature %{x}<br>%{z:.3f}"
                                                          "<extra></extra>"))
    # Feature 0 on top, as a matrix is written. Its own uirevision: the graph first shows an empty figure, whose
    # upright autorange would otherwise be kept.
    return styled(heat, "Polysemantic part's linear map (N x N)", "from feature", "to feature",
                  subtitle=f"vs {linear.ideal_scale:.2f} x {linear.ideal}{carried(linear)}: error "
                           f"{linear.ideal_error:.2f} (0 = exactly that, 1 = unrelated)",
                  yaxis={"autorange": "reversed"}, uirevision="linear-map")


def carried(linear: LinearMap) -> str:
    """How the ideal map is restricted: a map through m input dims can only be compared with the ideal's part there."""
    return "" if linear.input_dims is None else f" on the {linear.input_dims}-dim input"


def singular_values(linear: LinearMap) -> go.Figure:
    # past m they are zero but for rounding (1e-7 and less), a cliff that squeezed the m that count on a log axis
    values = linear.singular_values if linear.rank_cap is None else linear.singular_values[:linear.rank_cap]
    ranks = np.arange(1, len(values) + 1)  # the k-th value at k: the line marks the rank that reaches 90%
    fig = go.Figure(go.Scatter(x=ranks, y=values, mode="lines+markers", marker={"size": 4},
                               hovertemplate="singular value %{x}: %{y:.3f}<extra></extra>"))
    fig.add_vline(x=linear.rank90, line_dash="dot", line_color="#d62728",
                  annotation_text=f"90% of the map by rank {linear.rank90}", annotation_position="top left")
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
    subtitle = ("bar label: those features' part of the loss (the parts add up to it)" if losses else
                "random_proj: the loss does not split by feature (its outputs mix them)")
    # headroom for the labels above the bars, which would otherwise run into the subtitle
    return styled(fig, "Features by number of monosemantic neurons", "monosemantic neurons for the feature",
                  "features", subtitle=subtitle, yaxis={"range": [0, 1.2 * max(counts + [1])]})


def mono_by_feature(counts: np.ndarray, power_law: bool) -> go.Figure:
    """Monosemantic neurons of each feature, in feature order: for power-law features that is the frequency order
    (feature 0 the most frequent), where the paper sees the frequent features get neurons first when k < N."""
    n = len(counts)
    fig = go.Figure(go.Bar(x=np.arange(n), y=counts, marker_color="#2ca02c",
                           hovertemplate="feature %{x}: %{y} mono neurons<extra></extra>"))
    covered = int((counts > 0).sum())
    subtitle = f"{covered} of {n} features have a monosemantic neuron"
    if power_law and n >= 2:
        half = n // 2
        subtitle += (f": {int((counts[:half] > 0).sum())} of the {half} most frequent, "
                     f"{int((counts[half:] > 0).sum())} of the {n - half} rarest")
    x_title = "feature (most frequent first)" if power_law else "feature"
    return styled(fig, "Monosemantic neurons per feature", x_title, "mono neurons", subtitle=subtitle,
                  yaxis={"rangemode": "tozero", "dtick": 1 if counts.max(initial=0) <= 5 else None})


def pair_grid(amplitudes: np.ndarray, grid: np.ndarray, f1: int, f2: int) -> go.Figure:
    fig = go.Figure(go.Heatmap(x=amplitudes, y=amplitudes, z=grid.astype(np.float32), colorscale="Viridis",
                               colorbar={"title": {"text": f"out {f1}"}},
                               hovertemplate=f"feature {f1}: %{{x:.2f}}<br>feature {f2}: %{{y:.2f}}<br>output "
                                             f"for {f1}: %{{z:.3f}}<extra></extra>"))
    return styled(fig, f"Interference: output for feature {f1} with feature {f2} also present",
                  f"amplitude of feature {f1}", f"amplitude of feature {f2}")
