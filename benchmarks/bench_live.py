"""Bytes and server milliseconds per live-view update, at quick and paper scale.

Fills a store with a run's worth of snapshots (as a worker would), then times the live callback's
work (`app.live.live_view`) and measures what Dash would send: the figures as plotly JSON.

    .venv/bin/python -m benchmarks.bench_live
"""

from __future__ import annotations

import os
import platform
import tempfile
import time

import numpy as np
from dash import Patch
from plotly.io.json import to_json_plotly

from app.live import live_view
from core.config import RunConfig
from core.jobs import Lab
from core.store import DiskStore
from core.worker import replay_frame

SCALES = {
    "quick (k=256, N=128, 8192 steps)": RunConfig(n_features=128, embed_dim=16, n_neurons=256, steps=8192,
                                                  snapshot_every=256),
    "paper (k=1024, N=512, 2^17 steps)": RunConfig(n_features=512, embed_dim=64, n_neurons=1024, steps=2**17,
                                                   snapshot_every=1024, batch_size=8192),
}


def fill(lab: Lab, config: RunConfig, snapshots: int = 128) -> str:
    """A finished-looking run with `snapshots` chunks of history and a realistic SFA matrix."""
    run_id = lab.submit(config)
    rng = np.random.default_rng(0)
    per = config.steps // snapshots
    store = lab.store
    for n in range(snapshots):
        end = (n + 1) * per
        store.set(f"chunk/{run_id}/{n}", {
            "start": end - per, "end": end, "losses": (0.3 + 0.1 * rng.random(per)).astype(np.float32),
            "point": {"step": end, "loss": 0.3, "lr": 0.01, "mean_bias": -0.5, "mono_ratio": 0.5,
                      "positive_mono_ratio": 0.5, "nearly_mono": 10, "dead": 0, "mean_score": 0.5, "elapsed": 1.0}})
    sfa = np.where(rng.random((config.n_neurons, config.n_features)) < 0.05,
                   rng.random((config.n_neurons, config.n_features)), 0.0)
    store.set(f"sfa/{run_id}", {"step": config.steps, "sfa": sfa.astype(np.float32),
                                "bias": rng.normal(size=config.n_neurons).astype(np.float32)})
    meta = lab.get(run_id)
    meta.update(chunks=snapshots, step=config.steps, status="running", frames=[config.steps])
    store.set(f"meta/{run_id}", meta)
    store.set(f"frame/{run_id}/{config.steps}", replay_frame(sfa, rng.normal(size=config.n_neurons)))
    return run_id


def payload_bytes(view) -> dict[str, int]:
    figures = {"loss": view.loss, "mono": view.mono, "bias_history": view.bias_history, "lr": view.lr,
               "heatmap": view.heatmap, "final_bias": view.final_bias, "histogram": view.histogram}
    return {name: len(to_json_plotly(fig.to_plotly_json() if isinstance(fig, Patch) else fig))
            for name, fig in figures.items()}


def add_snapshot(lab: Lab, run_id: str, steps: int) -> None:
    """One more snapshot's worth of history, as a worker appends it."""
    meta = lab.get(run_id)
    end = meta["step"] + steps
    losses = np.full(steps, 0.3, dtype=np.float32)
    point = dict(lab.store.get(f"chunk/{run_id}/0")["point"], step=end)
    lab.store.set(f"chunk/{run_id}/{meta['chunks']}", {"start": end - steps, "end": end, "losses": losses,
                                                        "point": point})
    meta.update(chunks=meta["chunks"] + 1, step=end, steps=end + steps)
    lab.store.set(f"meta/{run_id}", meta)


def main() -> None:
    cpu = platform.processor() or platform.machine()
    print(f"machine: {platform.node()} ({cpu}, {os.cpu_count()} cores), python {platform.python_version()}")
    for name, config in SCALES.items():
        with tempfile.TemporaryDirectory() as directory:
            lab = Lab(DiskStore(directory))
            run_id = fill(lab, config)
            first = live_view(lab, run_id)
            first_bytes = sum(payload_bytes(first).values())
            times, sizes, state, metrics = [], {}, first.loss_state, first.metrics_state
            for _ in range(10):  # steady state: one new snapshot per update, the history already sent
                add_snapshot(lab, run_id, config.snapshot_every)
                started = time.perf_counter()
                view = live_view(lab, run_id, loss_state=state, metrics_state=metrics)
                times.append(time.perf_counter() - started)
                state, metrics = view.loss_state, view.metrics_state
                sizes = payload_bytes(view)
            total = sum(sizes.values())
            print(f"{name}: first view {first_bytes / 1024:.0f} KiB; each update while training "
                  f"{1000 * np.median(times):.1f} ms (median of 10), {total / 1024:.0f} KiB: heatmap "
                  f"{sizes['heatmap'] / 1024:.0f} KiB, loss and metric curves (appended) "
                  f"{sum(sizes[k] for k in ('loss', 'mono', 'bias_history', 'lr')) / 1024:.1f} KiB, other figures "
                  f"{(sizes['final_bias'] + sizes['histogram']) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
