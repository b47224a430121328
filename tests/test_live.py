"""The live view appends to the loss curve instead of re-sending its history."""

import numpy as np
import pytest

from app import figures
from app.live import live_view, loss_curve
from core.config import RunConfig
from core.jobs import Lab
from core.store import DiskStore


def add_chunk(lab: Lab, run_id: str, start: int, end: int, rng: np.random.Generator) -> None:
    meta = lab.get(run_id)
    losses = (0.5 + 0.1 * rng.random(end - start)).astype(np.float32)
    lab.store.set(f"chunk/{run_id}/{meta['chunks']}", {"start": start, "end": end, "losses": losses,
                                                        "point": {"step": end, "loss": float(losses.mean())}})
    meta.update(chunks=meta["chunks"] + 1, step=end)
    lab.store.set(f"meta/{run_id}", meta)


def extensions(patch) -> dict[tuple, list]:
    ops = patch.to_plotly_json()["operations"]
    return {tuple(op["location"]): op["params"]["value"] for op in ops if op["operation"] == "Extend"}


@pytest.fixture
def lab_run(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"))
    return lab, lab.submit(RunConfig(steps=4096))


def test_loss_curve_appends_only_new_points_with_the_same_ema(lab_run):
    lab, run_id = lab_run
    rng = np.random.default_rng(0)
    add_chunk(lab, run_id, 0, 1000, rng)
    figure, state = loss_curve(lab, run_id, 0.9, None)
    assert isinstance(figure.data[0].x, tuple) and figure.data[0].x[-1] == 1000  # plain values: extendable
    add_chunk(lab, run_id, 1000, 1500, rng)
    patch, state = loss_curve(lab, run_id, 0.9, state)
    added = extensions(patch)
    xs = added[("data", 0, "x")]
    assert xs[0] > 1000 and xs[-1] == 1500 and len(xs) < 500  # thinned in log-step, newest kept
    full = figures.ema(lab.history(run_id)["losses"], 0.9)
    assert np.allclose(added[("data", 1, "y")], full[np.array(xs) - 1], atol=1e-5)
    assert loss_curve(lab, run_id, 0.9, state)[0] is None  # nothing new: nothing sent
    assert loss_curve(lab, run_id, 0.5, state)[0].data[1].name == "smoothed (0.5)"  # new smoothing: redraw


def test_live_update_is_small_once_the_history_was_sent(lab_run):
    from plotly.io.json import to_json_plotly

    lab, run_id = lab_run
    rng = np.random.default_rng(1)
    add_chunk(lab, run_id, 0, 3000, rng)
    first = live_view(lab, run_id)
    add_chunk(lab, run_id, 3000, 3256, rng)
    update = live_view(lab, run_id, loss_state=first.loss_state)
    assert len(to_json_plotly(update.loss.to_plotly_json())) < 0.1 * len(to_json_plotly(first.loss))
