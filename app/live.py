"""What the live view shows for one run, assembled from the store (no Dash here, so it can be
benchmarked and tested directly)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import Patch, html

from app import figures
from app.components import run_name
from core.config import shown_value
from core.continuation import push_text
from core.jobs import FINISHED, Lab, failed_with_its_job, has_run_file
from core.metrics import final_loss
from core.train import schedule_steps, scheduled_lr

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
    if value is None or not np.isfinite(value):
        return "–"
    text = format(value, spec)
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # -0.0001 is 0.000, not "-0.000"


def step_card(text: str) -> list[Any]:
    """The step card's "S / TOTAL (replay)", its total smaller: on one line in a fifth of a laptop screen."""
    done, _, rest = text.partition(" / ")
    return [done, html.Span(f" / {rest}", className="stat-of")] if rest else [text]


def loss_text(loss: float | None) -> str:
    """A loss as the cards, rows and tables show it: 4 decimals, or 4 digits of a diverging run's huge one (which
    in decimals ran out of its card)."""
    return fmt(loss, ".4f" if loss is None or abs(loss) < 1e4 else ".3e")


def bias_text(meta: dict[str, Any]) -> str:
    """A fresh run's initial bias; what a continued run's start added to its biases, if anything."""
    start = meta.get("start")
    if not start:
        return f", init bias {meta['config']['init_bias']:g}"
    return f", {push_text(start['bias_push'])}" if start.get("bias_push") else ""


def describe(meta: dict[str, Any]) -> str:
    c, start = meta["config"], meta.get("start")
    # a continued run's weights are its parent's at that step, not a fresh init
    began = f"continued from {run_name(start['label'], start['run'])} at step {start['step']:,} · " if start else ""
    return (f"{began}{c['task']}, {c['nonlinearity']}, N={c['n_features']}, m={c['embed_dim']}, k={c['n_neurons']}, "
            f"eps={shown_value(c['eps'])}, lr={c['lr']:g}{bias_text(meta)}"
            + f", decay {c['bias_decay']:g}" + (f", L1 {c['l1_reg']:g}" if c["l1_reg"] else "") + f", seed {c['seed']}")


def subtitle(lab: Lab, meta: dict[str, Any], status: str) -> Any:
    """Status and config; a continued run links to the comparison with the run it started from, while that exists."""
    text = f"{status} · {describe(meta)}"
    parent = parent_of(meta)
    if not parent or not lab.exists(parent):
        return text
    return [text, " · ", html.A("compare with the run it continues", href=f"/compare?runs={parent},{meta['id']}")]


@dataclass
class LiveView:
    """Everything the right-hand side shows for the selected run."""

    title: str
    subtitle: Any  # text, or text and a link
    progress: float
    stats: dict[str, str]
    loss: go.Figure | Patch | None  # None: no new losses since loss_state
    loss_state: dict[str, Any]
    mono: go.Figure | Patch | None  # the metric curves, like the loss: None when nothing is new
    bias_history: go.Figure | Patch | None
    lr: go.Figure | Patch | None
    metrics_state: dict[str, Any]
    heatmap: go.Figure | None
    heatmap_label: str
    frame_steps: list[int]
    final_bias: go.Figure
    histogram: go.Figure
    has_file: bool


def history_epoch(meta: dict[str, Any]) -> int:
    """Counts the times a run's stored history was cut back (a resume from an earlier checkpoint): what a
    browser has appended since is then stale, and its curves must be sent whole again."""
    return int(meta.get("history_epoch", 0))


def thin_new_points(steps: np.ndarray, last: int, steps_total: int) -> tuple[list[int], int]:
    """Indices of new points at least one 4000th of the log-step range apart (as a full figure is thinned),
    and always the newest; with the last step kept."""
    gap = math.log(max(2, steps_total)) / figures.MAX_CURVE_POINTS
    keep = []
    for i, step in enumerate(steps):
        if math.log(max(1, step)) - math.log(max(1, last)) >= gap or i == len(steps) - 1:
            keep.append(i)
            last = int(step)
    return keep, last


def loss_curve(lab: Lab, run_id: str, smoothing: float, state: dict[str, Any] | None,
               meta: dict[str, Any] | None = None) -> tuple[go.Figure | Patch | None, dict[str, Any]]:
    """The loss figure, or only what is new since `state`: a Patch appending thinned points (and their
    EMA, continued from the saved state) so that the history is never re-sent. None: nothing new."""
    meta = meta or lab.get(run_id)
    steps_total, epoch = meta["steps"], history_epoch(meta)
    fresh = (state is None or state.get("run") != run_id or state.get("smoothing") != smoothing
             or state.get("epoch") != epoch)
    history = lab.history(run_id, 0 if fresh else state["next"])
    steps, losses = history["loss_steps"], history["losses"]
    if fresh:
        figure = figures.loss_figure(steps, losses, smoothing, extendable=True)
        _, smoothed, count = figures.ema_continue(losses, smoothing)
        last = int(steps[-1]) if len(steps) else 0
        return figure, {"run": run_id, "smoothing": smoothing, "next": history["next"], "ema": smoothed,
                        "count": count, "last": last, "empty": not len(steps), "epoch": epoch}
    if not len(steps):
        return None, state
    smooth, smoothed, count = figures.ema_continue(losses, smoothing, state["ema"], state["count"])
    if state["empty"]:  # the browser shows the "no steps yet" message figure: send the whole curve
        return loss_curve(lab, run_id, smoothing, None, meta)
    keep, last = thin_new_points(steps, state["last"], steps_total)
    patch = Patch()
    x = steps[keep].astype(int).tolist()
    patch["data"][0]["x"].extend(x)
    patch["data"][0]["y"].extend(figures.plain_floats(losses[keep]))
    patch["data"][1]["x"].extend(x)
    patch["data"][1]["y"].extend(figures.plain_floats(smooth[keep]))
    return patch, {**state, "next": history["next"], "ema": smoothed, "count": count, "last": last}


METRIC_FIGURES = ("mono", "bias_history", "lr")


def metric_series(meta: dict[str, Any], points: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """What each metric figure plots: its title, axis, main series, extras (dotted, dash-dotted) and reference line."""
    n_features = meta["config"]["n_features"]
    extra = {figures.NEARLY_MONO_NAME: points["nearly_mono"] / n_features} if "nearly_mono" in points else {}
    if meta["config"]["nonlinearity"] != "relu" and "positive_mono_ratio" in points:
        extra[figures.POSITIVE_MONO_NAME] = points["positive_mono_ratio"]

    def series(key: str) -> np.ndarray:  # a metric missing from the history plots as gaps
        return points[key] if key in points else np.full(len(points.get("step", ())), np.nan)

    return {
        "mono": {"title": "Mono neurons per feature", "y_title": "mono neurons / N",
                 "values": series("mono_ratio"), "extra": extra, "reference": 1.0},
        "bias_history": {"title": "Mean first-layer bias", "y_title": "mean bias",
                         "values": series("mean_bias"), "extra": {}, "reference": None},
        "lr": {"title": "Learning rate: cosine schedule (line), at each snapshot (dots)", "y_title": "lr",
               "values": series("lr"), "extra": {}, "reference": None},
    }


def lr_schedule(config: dict[str, Any], total_steps: int) -> tuple[str, np.ndarray, np.ndarray]:
    """The run's schedule to `total_steps`: snapshots every 1024 steps (the cosine's period) all land on its top, so
    the snapshots' points alone would draw a flat line."""
    steps = schedule_steps(total_steps)
    return "schedule", steps, scheduled_lr(config["lr"], steps)


def metric_curves(lab: Lab, meta: dict[str, Any], state: dict[str, Any] | None
                  ) -> tuple[dict[str, go.Figure | Patch | None], dict[str, Any]]:
    """The mono, mean-bias and lr figures, or Patches appending the snapshots new since `state` (None:
    nothing new). Like the loss curve, a figure's history is read and sent once; later updates read
    only the chunks written since (one metric point per chunk)."""
    # a run that ended early (stopped, diverged) has no schedule past its last step: the panels' axes then agree
    cut = max(1, meta["step"]) if meta["status"] in ("stopped", "failed") else None
    stale = (state is None or state.get("run") != meta["id"] or state.get("epoch") != history_epoch(meta)
             or state.get("schedule_cut") != cut)
    redraw = stale or state["empty"]  # the figures show their "no snapshots yet" message
    history = lab.history(meta["id"], 0 if redraw else state["sent"])
    steps = history["points"].get("step", np.zeros(0))
    if not stale and not len(steps):
        return dict.fromkeys(METRIC_FIGURES), state
    series = metric_series(meta, history["points"])
    if redraw:  # the schedule is drawn with the figure, once; appends carry snapshots only
        backdrops = {"lr": lr_schedule(meta["config"], cut or meta["steps"])}
        shown = {name: figures.metric_figure(steps, s["values"], s["title"], s["y_title"], s["reference"],
                                             s["extra"], extendable=True, backdrop=backdrops.get(name))
                 for name, s in series.items()}
        return shown, {"run": meta["id"], "sent": history["next"], "last": int(steps[-1]) if len(steps) else 0,
                       "empty": not len(steps), "epoch": history_epoch(meta), "schedule_cut": cut}
    keep, last = thin_new_points(steps, state["last"], meta["steps"])
    x = steps[keep].astype(int).tolist()
    patches = {}
    for name, s in series.items():
        patch = Patch()
        for trace, values in enumerate([s["values"], *s["extra"].values()]):
            patch["data"][trace]["x"].extend(x)
            patch["data"][trace]["y"].extend(figures.plain_floats(np.asarray(values)[keep]))
        patches[name] = patch
    return patches, {**state, "sent": history["next"], "last": last}


SMOOTHING = 0.6  # the loss curve's EMA weight until the user moves its slider
MAX_SMOOTHING = 0.99


def smoothing_weight(value: Any) -> float | None:
    """The EMA weight the smoothing slider's box gives, held to the slider's range; None for no number (a cleared
    box)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), MAX_SMOOTHING)


def live_key(meta: dict[str, Any], smoothing: float, ordered: bool, frame: int | None,
             parent_exists: bool = False) -> list[Any]:
    """Changes whenever anything shown changes; equal keys mean nothing to send. `parent_exists`: the run it
    continues is still here (the subtitle links to it)."""
    return [meta["id"], meta["step"], meta["status"], len(meta["frames"]), smoothing, ordered, frame,
            history_epoch(meta), parent_exists]


def parent_of(meta: dict[str, Any]) -> str | None:
    """The run a continued run started from."""
    start = meta.get("start")
    return start["run"] if start else None


def shown_snapshot(lab: Lab, run_id: str, frames: list[int], frame: int | None, latest: dict[str, Any] | None,
                   status: str = "running") -> tuple[dict[str, Any] | None, str]:
    """The snapshot to draw ({"step", "sfa", "bias"}): a stored checkpoint (slider position) or the latest one (read
    once by the caller, so that the heatmap and the bias bars share one snapshot and its ordering)."""
    replayed = lab.frame(run_id, frames[frame]) if frame is not None and 0 <= frame < len(frames) else None
    if replayed is not None:  # (a frame listed but gone, cut back by a resume meanwhile: the latest instead)
        return replayed, f"checkpoint at step {frames[frame]}"
    if latest is None:
        return None, "no snapshot" if status in FINISHED else "waiting for the first snapshot"
    return latest, f"live: step {latest['step']}"


def bias_panel(shown: dict[str, Any] | None, latest: dict[str, Any] | None, ordered: bool,
               order: tuple[np.ndarray, np.ndarray] | None) -> go.Figure:
    """The bias bars of the snapshot the heatmap shows, in its drawn order (`order`, None when nothing is shown).
    A replay frame written before frames kept biases gets the latest snapshot's biases, in the live order."""
    if shown is not None and shown.get("bias") is not None:
        step = shown["step"] if latest is None or shown["step"] != latest["step"] else None
        return figures.bias_figure(shown["bias"], shown["sfa"], order, step=step)
    if latest is None:
        return figures.bias_figure(None)
    return figures.bias_figure(latest["bias"], latest["sfa"], figures.drawn_order(latest["sfa"], ordered, None),
                               replaying=latest["step"])


def stats_now(meta: dict[str, Any]) -> dict[str, str]:
    """The cards' texts: the run as it is."""
    return {"step": f"{meta['step']:,} / {meta['steps']:,}", "loss": loss_text(meta["loss"]),
            "mono": fmt(meta["mono_ratio"], ".3f"), "bias": fmt(meta["mean_bias"], ".3f"), "lr": fmt(meta["lr"], ".2e")}


def stats_at(lab: Lab, meta: dict[str, Any], step: int) -> dict[str, str]:
    """The cards' texts at a replayed step, beside its heatmap: the loss as every view defines it (core.metrics) over
    the steps up to it, the rest from the snapshot at that step (or the last before it)."""
    return _stats_at(lab, meta["id"], history_epoch(meta), step, meta["steps"])


@lru_cache(maxsize=32)
def _stats_at(lab: Lab, run_id: str, epoch: int, step: int, steps: int) -> dict[str, str]:
    # a run replayed while it trains is drawn each second: its past, the same until a resume cuts it back (`epoch`),
    # is read once (its whole history: thousands of chunks in a long run)
    history = lab.history(run_id)
    points = history["points"]
    at = int(np.searchsorted(points.get("step", np.zeros(0)), step, side="right")) - 1

    def value(key: str) -> float | None:
        return float(points[key][at]) if at >= 0 and key in points else None

    return {"step": f"{step:,} / {steps:,} (replay)",
            "loss": loss_text(final_loss(history["losses"][history["loss_steps"] <= step])),
            "mono": fmt(value("mono_ratio"), ".3f"), "bias": fmt(value("mean_bias"), ".3f"),
            "lr": fmt(value("lr"), ".2e")}


def live_view(lab: Lab, run_id: str, smoothing: float = SMOOTHING, ordered: bool = True,
              frame: int | None = None, loss_state: dict[str, Any] | None = None,
              metrics_state: dict[str, Any] | None = None) -> LiveView:
    meta = lab.get(run_id)
    latest = lab.latest_snapshot(run_id)
    shown, label = shown_snapshot(lab, run_id, meta["frames"], frame, latest, meta["status"])
    sfa = shown and shown["sfa"]
    order = figures.drawn_order(sfa, ordered, None) if sfa is not None else None  # the heatmap's and the bias bars'
    eta = format_eta(meta["eta_seconds"]) if meta["status"] == "running" else ""
    status = (meta["status"] + (f" — ETA {eta}" if eta else "") + (f": {meta['error']}" if meta["error"] else "")
              + (f" ({meta['note']})" if meta.get("note") else ""))
    if failed_with_its_job(meta):
        status += (" (Retry, in the run list, trains it on from its last checkpoint, or from its start if none "
                   "was written)")
    loss, loss_state = loss_curve(lab, run_id, smoothing, loss_state, meta)
    metrics, metrics_state = metric_curves(lab, meta, metrics_state)
    replayed = shown["step"] if shown is not None and shown is not latest else None
    return LiveView(
        title=f"{meta['label'] or 'run'} · {run_id}",
        subtitle=subtitle(lab, meta, status),
        progress=100.0 * meta["step"] / max(1, meta["steps"]),
        stats=stats_now(meta) if replayed is None else stats_at(lab, meta, replayed),
        loss=loss,
        loss_state=loss_state,
        mono=metrics["mono"],
        bias_history=metrics["bias_history"],
        lr=metrics["lr"],
        metrics_state=metrics_state,
        # a run with no snapshot yet gets the empty figure: no_update would leave the previous run's picture up
        heatmap=(figures.sfa_heatmap(sfa, ordered=ordered, order=order,
                                     empty=("No snapshot: it ended before its first" if meta["status"] in FINISHED
                                            else "Waiting for the first snapshot"))
                 if sfa is not None or latest is None else None),
        heatmap_label=label,
        frame_steps=list(meta["frames"]),
        final_bias=bias_panel(shown, latest, ordered, order),
        # r needs the SFA alone: the replayed checkpoint's when replaying
        histogram=figures.score_histogram_figure(sfa, task=meta["config"]["task"]),
        has_file=has_run_file(meta),
    )
