"""The live view appends to the loss curve instead of re-sending its history."""

import numpy as np
import pytest

from app import figures
from app.live import describe, live_key, live_view, loss_curve, loss_text, parent_of
from core.config import RunConfig
from core.jobs import Lab
from core.metrics import heatmap_order
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


def test_metric_curves_append_new_snapshots_only(lab_run):
    lab, run_id = lab_run
    rng = np.random.default_rng(2)

    def snapshot(start: int, end: int) -> None:
        add_chunk(lab, run_id, start, end, rng)
        key = f"chunk/{run_id}/{lab.get(run_id)['chunks'] - 1}"
        chunk = lab.store.get(key)
        chunk["point"].update(mono_ratio=end / 10000, mean_bias=-end / 5000, lr=0.01 * end / 4096)
        lab.store.set(key, chunk)

    for start in range(0, 3000, 500):
        snapshot(start, start + 500)
    first = live_view(lab, run_id)
    assert list(first.mono.data[0].x) == [500, 1000, 1500, 2000, 2500, 3000]
    assert list(first.lr.data[0].y) == pytest.approx([0.01 * s / 4096 for s in range(500, 3001, 500)], rel=1e-5)
    snapshot(3000, 3500)
    update = live_view(lab, run_id, loss_state=first.loss_state, metrics_state=first.metrics_state)
    for patch, value in ((update.mono, 0.35), (update.bias_history, -0.7), (update.lr, 0.01 * 3500 / 4096)):
        added = extensions(patch)
        assert added[("data", 0, "x")] == [3500]
        assert added[("data", 0, "y")] == [pytest.approx(value, rel=1e-5)]
    again = live_view(lab, run_id, loss_state=update.loss_state, metrics_state=update.metrics_state)
    assert again.mono is None and again.bias_history is None and again.lr is None  # nothing new: nothing sent


def test_lr_figure_draws_the_schedule_snapshots_every_period_would_flatten(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(RunConfig(steps=8192, snapshot_every=1024, lr=0.01))
    rng = np.random.default_rng(0)
    for start in range(0, 8192, 1024):
        add_chunk(lab, run_id, start, start + 1024, rng)
        key = f"chunk/{run_id}/{lab.get(run_id)['chunks'] - 1}"
        lab.store.set(key, {**lab.store.get(key), "point": {"step": start + 1024, "lr": 0.01}})  # all at the top
    lr = live_view(lab, run_id).lr
    snapshots, schedule = lr.data
    assert list(snapshots.y) == [pytest.approx(0.01)] * 8
    assert schedule.name == "schedule" and max(schedule.x) == 8192 and max(schedule.y) == pytest.approx(0.01)
    x, y = np.asarray(schedule.x), np.asarray(schedule.y)
    for period in range(8):  # each of the 8 periods shows its trough
        assert y[(x > 1024 * period) & (x <= 1024 * (period + 1))].min() < 1e-4, period
    # stopped at step 4096 (as it is shown, the view redrawn): no schedule past it, where the other panels end
    state = live_view(lab, run_id).metrics_state
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "status": "stopped", "step": 4096})
    redrawn = live_view(lab, run_id, metrics_state=state).lr
    assert max(redrawn.data[1].x) == 4096


def test_curves_are_sent_whole_again_after_the_history_was_cut_back(lab_run):
    """A resume from an earlier checkpoint deletes later chunks and bumps history_epoch (JobRunner._restore)."""
    lab, run_id = lab_run
    rng = np.random.default_rng(3)
    for start in range(0, 3000, 500):
        add_chunk(lab, run_id, start, start + 500, rng)
    first = live_view(lab, run_id)
    meta = lab.get(run_id)
    for chunk in range(2, meta["chunks"]):
        lab.store.delete(f"chunk/{run_id}/{chunk}")
    lab.store.set(f"meta/{run_id}", {**meta, "chunks": 2, "step": 1000, "history_epoch": 1})
    add_chunk(lab, run_id, 1000, 1500, rng)
    again = live_view(lab, run_id, loss_state=first.loss_state, metrics_state=first.metrics_state)
    assert list(again.mono.data[0].x) == [500, 1000, 1500]  # whole figures, not appended to stale ones
    assert again.loss.data[0].x[-1] == 1500 and max(again.loss.data[0].x) == 1500


def test_replaying_a_checkpoint_shows_that_step_s_biases_in_its_heatmap_s_order(lab_run):
    lab, run_id = lab_run
    k, n = 256, 128
    live = np.zeros((k, n), dtype=np.float32)
    live[np.arange(k), np.arange(k) % n] = 1.0
    early = np.zeros((k, n), dtype=np.float16)
    early[np.arange(k), (5 * np.arange(k)) % n] = np.arange(k) % 2  # odd neurons monosemantic at step 64
    early_bias = -np.arange(k, dtype=np.float32) / k
    lab.store.set(f"sfa/{run_id}", {"step": 2048, "sfa": live, "bias": np.full(k, 0.5, dtype=np.float32)})
    lab.store.set(f"frame/{run_id}/64", {"sfa": early, "bias": early_bias})
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "frames": [64], "step": 2048})
    replay = live_view(lab, run_id, frame=0)
    bias = replay.final_bias
    assert bias.layout.title.text == "First-layer biases at step 64"
    assert "ordered as in the heatmap" in bias.layout.xaxis.title.text
    mono, other = bias.data  # the frame's biases, monosemantic as the replayed heatmap has them
    assert sorted(mono.customdata) == list(range(1, k, 2)) and sorted(other.customdata) == list(range(0, k, 2))
    np.testing.assert_array_equal(mono.y, early_bias[mono.customdata])
    # the bars' neurons in the replayed heatmap's neuron order, not the live one
    neuron_at = dict(zip(list(mono.x) + list(other.x), list(mono.customdata) + list(other.customdata)))
    assert [neuron_at[x] for x in range(k)] == list(heatmap_order(early.astype(np.float32))[0])
    assert list(heatmap_order(early.astype(np.float32))[0]) != list(heatmap_order(live)[0])
    following = live_view(lab, run_id)
    assert following.final_bias.layout.title.text == "First-layer bias per neuron"
    assert set(following.final_bias.data[0].y) == {0.5}
    # a frame listed but gone (a resume cut the history back meanwhile): every panel shows the latest snapshot
    lab.store.delete(f"frame/{run_id}/64")
    gone = live_view(lab, run_id, frame=0)
    assert gone.heatmap_label == "live: step 2048" and gone.heatmap is not None
    assert gone.final_bias.layout.title.text == "First-layer bias per neuron"
    assert gone.histogram.layout.title.text.startswith(f"r = max/sum per neuron: {k} of {k} above")


def test_replaying_a_frame_written_before_frames_kept_biases_says_which_step_the_bars_show(lab_run):
    lab, run_id = lab_run
    k, n = 256, 128
    live = np.zeros((k, n), dtype=np.float16)
    live[np.arange(k), np.arange(k) % n] = 1.0  # every neuron monosemantic now
    early = np.ones((k, n), dtype=np.float16)  # none at step 64
    lab.store.set(f"sfa/{run_id}", {"step": 2048, "sfa": live, "bias": np.zeros(k, dtype=np.float32)})
    lab.store.set(f"frame/{run_id}/64", early)
    meta = lab.get(run_id)
    lab.store.set(f"meta/{run_id}", {**meta, "frames": [64], "step": 2048})
    following = live_view(lab, run_id)
    assert following.final_bias.layout.title.text == "First-layer bias per neuron"
    assert following.histogram.layout.title.text.startswith(f"r = max/sum per neuron: {k} of {k} above")
    replay = live_view(lab, run_id, frame=0)
    assert replay.heatmap_label == "checkpoint at step 64"
    assert replay.histogram.layout.title.text.startswith(f"r = max/sum per neuron: 0 of {k} above")
    assert replay.final_bias.layout.title.text == "Biases at the latest snapshot, step 2,048"
    assert replay.final_bias.layout.xaxis.title.text == "neuron (in the live heatmap's order)"


def test_a_run_with_no_snapshot_clears_the_heatmap_and_says_why(lab_run):
    """Switching to it used to leave the previous run's heatmap up (the callback sent no update)."""
    lab, run_id = lab_run
    view = live_view(lab, run_id)
    assert view.heatmap is not None and view.heatmap_label == "waiting for the first snapshot"
    assert "Waiting for the first snapshot" in str(view.heatmap.layout.annotations[0].text)
    lab.stop(run_id)  # stopped before it trained: it never gets one
    stopped = live_view(lab, run_id)
    assert stopped.heatmap_label == "no snapshot"
    assert stopped.heatmap.layout.annotations[0].text == "No snapshot: it ended before its first"


def test_the_link_to_the_run_continued_goes_when_that_run_is_deleted(lab_run):
    lab, parent = lab_run
    lab.store.set(f"meta/{parent}", {**lab.get(parent), "status": "done", "step": 4096})
    child = lab.submit(RunConfig(steps=64, snapshot_every=16))
    start = {"run": parent, "label": "first", "step": 4096}
    lab.store.set(f"meta/{child}", {**lab.get(child), "status": "done", "start": start})
    meta = lab.get(child)
    assert parent_of(meta) == parent and "compare with the run it continues" in str(live_view(lab, child).subtitle)
    before = live_key(meta, 0.6, True, None, lab.exists(parent))
    lab.delete(parent)
    # a finished run's view is redrawn only when its key changes: the parent's going must change it
    assert live_key(meta, 0.6, True, None, lab.exists(parent)) != before
    assert live_view(lab, child).subtitle == f"done · {describe(meta)}"
    assert "eps=0.015625," in describe(meta)  # as the Compare table gives it (it read 0.01562)


def test_bias_bars_follow_the_heatmap_s_order_with_paper_ordering_off(lab_run):
    lab, run_id = lab_run
    k, n = 256, 128
    sfa = np.zeros((k, n), dtype=np.float32)
    sfa[np.arange(k), (7 * np.arange(k)) % n] = 1.0
    sfa[np.arange(k), (7 * np.arange(k) + 1) % n] = 0.3 * (np.arange(k) % 3)  # the paper order is not the index order
    lab.store.set(f"sfa/{run_id}", {"step": 64, "sfa": sfa, "bias": -np.arange(k, dtype=np.float32)})
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "step": 64})
    by_index = live_view(lab, run_id, ordered=False).final_bias
    neurons = np.concatenate([np.asarray(bar.customdata) for bar in by_index.data])
    positions = np.concatenate([np.asarray(bar.x) for bar in by_index.data])
    assert np.array_equal(neurons[np.argsort(positions)], np.arange(k))  # neuron i at position i, as the heatmap
    paper = live_view(lab, run_id, ordered=True).final_bias
    neurons = np.concatenate([np.asarray(bar.customdata) for bar in paper.data])
    positions = np.concatenate([np.asarray(bar.x) for bar in paper.data])
    assert not np.array_equal(neurons[np.argsort(positions)], np.arange(k))


def test_the_status_line_carries_the_run_s_note(lab_run):
    lab, run_id = lab_run
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "note": "resumed from step 512"})
    assert "queued (resumed from step 512)" in str(live_view(lab, run_id).subtitle)


def test_a_diverging_runs_huge_loss_keeps_to_its_card():
    assert loss_text(0.123456) == "0.1235" and loss_text(None) == "–" and loss_text(float("nan")) == "–"
    assert loss_text(4.5682587e35) == "4.568e+35"  # 36 digits in decimals ran out of the card and the run's row


def test_replaying_a_checkpoint_shows_that_step_s_numbers_in_the_cards(lab_run):
    lab, run_id = lab_run
    k, n = 256, 128
    for end, mono in ((64, 0.01), (128, 0.02), (256, 0.05)):  # three snapshots, each with its metrics
        meta = lab.get(run_id)
        losses = np.linspace(1.0, 0.5, end - meta["step"], dtype=np.float32) * (64 / end)
        lab.store.set(f"chunk/{run_id}/{meta['chunks']}", {
            "start": meta["step"], "end": end, "losses": losses,
            "point": {"step": end, "loss": float(losses.mean()), "mono_ratio": mono, "mean_bias": -mono,
                      "lr": mono / 10}})
        lab.store.set(f"meta/{run_id}", {**meta, "chunks": meta["chunks"] + 1, "step": end, "mono_ratio": mono,
                                         "mean_bias": -mono, "lr": mono / 10, "loss": 0.25})
    lab.store.set(f"sfa/{run_id}", {"step": 256, "sfa": np.zeros((k, n), np.float32), "bias": np.zeros(k, np.float32)})
    lab.store.set(f"frame/{run_id}/128", {"sfa": np.zeros((k, n), np.float16), "bias": np.zeros(k, np.float32)})
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "frames": [128, 256]})
    losses = lab.history(run_id)["losses"][:128]
    replay = live_view(lab, run_id, frame=0)
    assert replay.heatmap_label == "checkpoint at step 128"
    assert replay.stats == {"step": "128 / 4,096 (replay)", "loss": loss_text(float(losses[-7:].mean())),
                            "mono": "0.020", "bias": "-0.020", "lr": "2.00e-03"}  # the last 5% of 128 steps: 7
    assert live_view(lab, run_id).stats == {"step": "256 / 4,096", "loss": "0.2500", "mono": "0.050",
                                            "bias": "-0.050", "lr": "5.00e-03"}


def test_a_value_that_rounds_to_zero_shows_no_minus_sign():
    from app.live import fmt

    assert fmt(-0.0001, ".3f") == "0.000" and fmt(-0.0006, ".3f") == "-0.001" and fmt(-1e-9, ".2e") == "-1.00e-09"
