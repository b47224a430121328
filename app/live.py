"""What the live view shows for one run, assembled from the store (no Dash here, so it can be
benchmarked and tested directly)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import Patch

from app import figures
from core.jobs import Lab

STATUS_COLOURS = {"queued": "secondary", "running": "primary", "paused": "warning", "done": "success",
                  "failed": "danger", "stopped": "dark", "interrupted": "warning"}


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def fmt(value: float | None, spec: str = ".4f") -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, spec)


def describe(meta: dict[str, Any]) -> str:
    c = meta["config"]
    return (f"{c['task']}, {c['nonlinearity']}, N={c['n_features']}, m={c['embed_dim']}, k={c['n_neurons']}, "
            f"eps={c['eps']:.4g}, lr={c['lr']:g}, init bias {c['init_bias']:g}, decay {c['bias_decay']:g}, "
            f"seed {c['seed']}")


@dataclass
class LiveView:
    """Everything the right-hand side shows for the selected run."""

    title: str
    subtitle: str
    progress: float
    stats: dict[str, str]
    loss: go.Figure | Patch | None  # None: no new losses since loss_state
    loss_state: dict[str, Any]
    mono: go.Figure
    bias_history: go.Figure
    lr: go.Figure
    heatmap: go.Figure | None
    heatmap_label: str
    frame_steps: list[int]
    final_bias: go.Figure
    histogram: go.Figure
    has_file: bool


def loss_curve(lab: Lab, run_id: str, smoothing: float, state: dict[str, Any] | None
               ) -> tuple[go.Figure | Patch | None, dict[str, Any]]:
    """The loss figure, or only what is new since `state`: a Patch appending thinned points (and their
    EMA, continued from the saved state) so that the history is never re-sent. None: nothing new."""
    steps_total = lab.get(run_id)["steps"]
    fresh = state is None or state.get("run") != run_id or state.get("smoothing") != smoothing
    history = lab.history(run_id, 0 if fresh else state["next"])
    steps, losses = history["loss_steps"], history["losses"]
    if fresh:
        figure = figures.loss_figure(steps, losses, smoothing, extendable=True)
        _, smoothed, count = figures.ema_continue(losses, smoothing)
        last = int(steps[-1]) if len(steps) else 0
        return figure, {"run": run_id, "smoothing": smoothing, "next": history["next"], "ema": smoothed,
                        "count": count, "last": last, "empty": not len(steps)}
    if not len(steps):
        return None, state
    smooth, smoothed, count = figures.ema_continue(losses, smoothing, state["ema"], state["count"])
    if state["empty"]:  # the browser shows the "no steps yet" message figure: send the whole curve
        return loss_curve(lab, run_id, smoothing, None)
    # Keep points at least one 4000th of the log-step range apart (as the full figure does), and the newest.
    gap = math.log(max(2, steps_total)) / figures.MAX_CURVE_POINTS
    keep, last = [], state["last"]
    for i, step in enumerate(steps):
        if math.log(step) - math.log(max(1, last)) >= gap or i == len(steps) - 1:
            keep.append(i)
            last = int(step)
    patch = Patch()
    x = steps[keep].astype(int).tolist()
    patch["data"][0]["x"].extend(x)
    patch["data"][0]["y"].extend(np.round(losses[keep].astype(float), 6).tolist())
    patch["data"][1]["x"].extend(x)
    patch["data"][1]["y"].extend(np.round(smooth[keep], 6).tolist())
    return patch, {**state, "next": history["next"], "ema": smoothed, "count": count, "last": last}


def live_key(meta: dict[str, Any], smoothing: float, ordered: bool, frame: int | None) -> list[Any]:
    """Changes whenever anything shown changes; equal keys mean nothing to send."""
    return [meta["id"], meta["step"], meta["status"], len(meta["frames"]), smoothing, ordered, frame]


def heatmap_source(lab: Lab, run_id: str, frames: list[int], frame: int | None) -> tuple[np.ndarray | None, str]:
    """The SFA matrix to draw: a stored checkpoint (slider position) or the latest snapshot."""
    if frame is not None and 0 <= frame < len(frames):
        return lab.frame(run_id, frames[frame]), f"checkpoint at step {frames[frame]}"
    latest = lab.latest_snapshot(run_id)
    if latest is None:
        return None, "waiting for the first snapshot"
    return latest["sfa"], f"live: step {latest['step']}"


def live_view(lab: Lab, run_id: str, smoothing: float = 0.6, ordered: bool = True,
              frame: int | None = None, loss_state: dict[str, Any] | None = None) -> LiveView:
    meta = lab.get(run_id)
    points = lab.history(run_id)["points"]
    steps = points.get("step", np.zeros(0))
    latest = lab.latest_snapshot(run_id)
    sfa, label = heatmap_source(lab, run_id, meta["frames"], frame)
    nonlinearity = meta["config"]["nonlinearity"]
    n_features = meta["config"]["n_features"]
    extra = {"nearly mono (r > 0.9) / N": points["nearly_mono"] / n_features} if "nearly_mono" in points else {}
    if nonlinearity != "relu" and "positive_mono_ratio" in points:
        extra["mono on positive part / N"] = points["positive_mono_ratio"]
    eta = format_eta(meta["eta_seconds"]) if meta["status"] == "running" else ""
    status = meta["status"] + (f" — ETA {eta}" if eta else "") + (f": {meta['error']}" if meta["error"] else "")
    loss, loss_state = loss_curve(lab, run_id, smoothing, loss_state)
    return LiveView(
        title=f"{meta['label'] or 'run'} · {run_id}",
        subtitle=f"{status} · {describe(meta)}",
        progress=100.0 * meta["step"] / max(1, meta["steps"]),
        stats={"step": f"{meta['step']:,} / {meta['steps']:,}", "loss": fmt(meta["loss"]),
               "mono": fmt(meta["mono_ratio"], ".3f"), "bias": fmt(meta["mean_bias"], ".3f"),
               "lr": fmt(meta["lr"], ".2e")},
        loss=loss,
        loss_state=loss_state,
        mono=figures.metric_figure(steps, points.get("mono_ratio", np.zeros(0)), "Mono neurons per feature",
                                   "mono neurons / N", reference=1.0, extra=extra),
        bias_history=figures.metric_figure(steps, points.get("mean_bias", np.zeros(0)), "Mean bias",
                                           "mean first-layer bias"),
        lr=figures.metric_figure(steps, points.get("lr", np.zeros(0)), "Learning rate (cosine schedule)", "lr"),
        heatmap=figures.sfa_heatmap(sfa, ordered=ordered) if sfa is not None else None,
        heatmap_label=label,
        frame_steps=list(meta["frames"]),
        final_bias=figures.bias_figure(latest["bias"], latest["sfa"]) if latest else figures.bias_figure(None),
        histogram=figures.score_histogram_figure(latest["sfa"] if latest else None),
        has_file=meta["status"] in ("done", "stopped"),
    )
