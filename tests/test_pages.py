"""The Compare and Sweeps pages' callbacks and the sweeps API, through Dash's and Flask's endpoints (no browser, no
worker: runs are written into the store as a worker would leave them)."""

import base64
from typing import Any

import numpy as np
import pytest
from dash import no_update

from app import create_app
from app.compare_page import connectivity_shown, mono_overlay, parse_comparison, selected_runs, shown_step
from core.config import RunConfig
from core.jobs import Lab, UnknownRun
from core.store import DiskStore
from core.sweep import preset_sweep
from tests.helpers import dash_call

TINY = RunConfig(n_features=4, embed_dim=2, n_neurons=3, eps=1 / 8, batch_size=32, steps=64, snapshot_every=16,
                 lr=0.01, device="cpu")


@pytest.fixture
def lab(tmp_path):
    return Lab(DiskStore(tmp_path / "data"))


@pytest.fixture
def app(lab):
    return create_app(lab)


def trained(lab: Lab, run_id: str, frames: list[int], status: str = "done") -> str:
    """Give a run the checkpoints `frames` and a latest snapshot, as a worker leaves them."""
    for step in frames:
        lab.store.set(f"frame/{run_id}/{step}", np.eye(3, 4, dtype=np.float32))
    lab.store.set(f"sfa/{run_id}", {"step": frames[-1], "sfa": np.eye(3, 4, dtype=np.float32),
                                    "bias": np.zeros(3, dtype=np.float32)})
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "status": status, "frames": frames, "step": frames[-1]})
    return run_id


def numbers(sent: Any) -> list[float]:
    """A figure's array as the browser gets it (a typed array: base64 of its bytes)."""
    if isinstance(sent, dict):
        return np.frombuffer(base64.b64decode(sent["bdata"]), dtype=sent["dtype"]).tolist()
    return list(sent)


def titles(sent: dict[str, Any], prefix: str, count: int) -> list[str]:
    return [sent[f"{prefix}-{i}"]["figure"]["layout"]["title"]["text"] for i in range(count)]


# --- Compare ---------------------------------------------------------------------------------------------------


class Page:
    """A page's live callbacks as the browser runs them: the cheap choice (its output the store `request`), then
    the draw (among its outputs `drawn_output`) where the choice asked for one; what they set (stores, sliders) is
    kept for the next call."""

    def __init__(self, app: Any, request: str, drawn_output: str, values: dict[str, Any]) -> None:
        self.app, self.request, self.drawn_output, self.values = app, request, drawn_output, values

    def act(self, trigger: str | list[str], changes: dict[str, Any] | None = None) -> dict[str, Any]:
        """The user's (or the tick's) `changes`, fired by `trigger` (several: as one request); returns everything
        sent."""
        self.values.update(changes or {})
        triggers = [trigger] if isinstance(trigger, str) else trigger
        status, sent = dash_call(self.app, f"{self.request}.data", self.values, triggers)
        assert status == 200
        self.keep(sent)
        if self.request in sent:
            status, drawn = dash_call(self.app, self.drawn_output, self.values, [f"{self.request}.data"])
            assert status == 200
            self.keep(drawn)
            sent = {**sent, **drawn}
        return sent

    def keep(self, sent: dict[str, Any]) -> None:
        for component, props in sent.items():
            for prop, value in props.items():
                self.values[f"{component}.{prop}"] = value


def test_the_chosen_checkpoint_step_is_kept_when_runs_are_added_and_a_tick_changing_nothing_sends_nothing(lab, app):
    a, b = (trained(lab, lab.submit(TINY.replace(init_bias=v)), [16, 32, 48, 64]) for v in (0.0, -1.0))
    c = trained(lab, lab.submit(TINY.replace(init_bias=-2.0)), [16, 32])
    page = Page(app, "compare-view", "compare-loss.figure",
                {"url.pathname": "/compare", "compare-runs.value": [a, b], "compare-tick.n_intervals": 1})
    sent = page.act("compare-runs.value")
    assert sent["compare-slider"] == {"max": 4, "marks": sent["compare-slider"]["marks"], "value": 4}  # latest
    # the user picks step 48 (position 2)
    sent = page.act("compare-slider.value", {"compare-slider.value": 2})
    assert all(t.endswith("step 48") for t in titles(sent, "compare-heatmap", 2))
    assert "value" not in sent["compare-slider"]  # where the user put it: set again, it would ask for another draw
    # nothing changed: nothing is sent (the figures were ~900 KB a second for four long runs)
    assert page.act("compare-tick.n_intervals") == {}
    # a run with checkpoints up to 32 joins: position 2 would now be beyond its steps; 32 is the nearest below 48
    sent = page.act("compare-runs.value", {"compare-runs.value": [a, b, c]})
    assert sent["compare-slider"]["value"] == 1 and sent["compare-slider"]["max"] == 2
    assert all(t.endswith("step 32") for t in titles(sent, "compare-heatmap", 3))
    # and it leaves: back to the step chosen
    sent = page.act("compare-runs.value", {"compare-runs.value": [a, b]})
    assert sent["compare-slider"]["value"] == 2
    assert all(t.endswith("step 48") for t in titles(sent, "compare-heatmap", 2))
    # a run that trains on is redrawn
    lab.store.set(f"meta/{a}", {**lab.get(a), "step": 65})
    assert "compare-loss" in page.act("compare-tick.n_intervals")
    # a move of the slider that comes in one request with a tick is taken (every other move was lost)
    sent = page.act(["compare-tick.n_intervals", "compare-slider.value"], {"compare-slider.value": 0})
    assert all(t.endswith("step 16") for t in titles(sent, "compare-heatmap", 2))


def test_a_queued_run_beside_trained_ones_leaves_their_checkpoints_to_replay(lab, app):
    a, b = (trained(lab, lab.submit(TINY.replace(init_bias=v)), [16, 32, 48, 64]) for v in (0.0, -1.0))
    queued = lab.submit(TINY.replace(init_bias=-2.0))
    page = Page(app, "compare-view", "compare-loss.figure",
                {"url.pathname": "/compare", "compare-runs.value": [a, b, queued], "compare-tick.n_intervals": 1})
    assert page.act("compare-runs.value")["compare-slider"]["max"] == 4  # it had none: nothing to scrub
    sent = page.act("compare-slider.value", {"compare-slider.value": 1})
    assert [t.split("<br>")[-1] for t in titles(sent, "compare-heatmap", 3)] == ["step 32", "step 32", "step 0"]


def test_the_table_gives_gelu_runs_mono_ratio_on_the_positive_part_beside_the_paper_s(lab, app):
    """A GeLU run's paper ratio (max/sum over all activations) was 0.000 in the table while its dashed curve, the
    ratio on the positive part, stood at 0.39."""
    runs = [trained(lab, lab.submit(TINY.replace(nonlinearity=nl)), [16]) for nl in ("relu", "gelu")]
    for run_id, positive in zip(runs, (None, 0.39)):
        point = {"step": 16, "loss": 0.5, "lr": 0.01, "mean_bias": -0.2, "mono_ratio": 0.0,
                 "positive_mono_ratio": positive, "nearly_mono": 0, "dead": 0, "mean_score": 0.3, "elapsed": 1.0}
        lab.store.set(f"chunk/{run_id}/0", {"start": 0, "end": 16, "losses": np.full(16, 0.5, dtype=np.float32),
                                            "point": point})
        lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "chunks": 1})
    page = Page(app, "compare-view", "compare-loss.figure",
                {"url.pathname": "/compare", "compare-runs.value": runs, "compare-tick.n_intervals": 1})
    sent = page.act("compare-runs.value")
    table = str(sent["compare-table"]["children"])
    assert "mono neurons / feature (positive part, not the paper's)" in table
    assert "'–'" in table and "'0.390'" in table


def test_a_draw_on_its_way_is_not_asked_for_again_by_the_tick_and_one_lost_is_asked_for_again(lab, app, monkeypatch):
    """A draw slower than the 1 s tick: asked for again, the browser drops the reply on its way (the page stayed
    blank); a reply lost for good (the network, a draw that raised) is asked for again after a while."""
    import app.draw_requests as draw_requests

    a, b = (trained(lab, lab.submit(TINY.replace(init_bias=v)), [16, 32]) for v in (0.0, -1.0))
    page = Page(app, "compare-view", "compare-loss.figure",
                {"url.pathname": "/compare", "compare-runs.value": [a, b], "compare-tick.n_intervals": 1})
    sent = dash_call(app, "compare-view.data", page.values, ["compare-runs.value"])[1]
    page.keep(sent)  # asked for; its draw not back yet
    lab.store.set(f"meta/{a}", {**lab.get(a), "step": 33})  # the run trains on meanwhile
    assert dash_call(app, "compare-view.data", page.values, ["compare-tick.n_intervals"])[1] == {}
    # the user's own choice is asked for at once (the draw on its way is dropped, as it should be)
    assert "compare-view" in dash_call(app, "compare-view.data", {**page.values, "compare-runs.value": [b, a]},
                                       ["compare-runs.value"])[1]
    # lost for good: asked for again once it is overdue
    later = draw_requests.now() + draw_requests.STALE_DRAW_SECONDS + 1
    monkeypatch.setattr(draw_requests, "now", lambda: later)
    assert "compare-view" in dash_call(app, "compare-view.data", page.values, ["compare-tick.n_intervals"])[1]


def test_nearest_common_step_at_or_below_the_chosen_one():
    assert shown_step([16, 32], 48) == 32 and shown_step([16, 32, 48], 48) == 48
    assert shown_step([64, 128], 48) == 64  # none below: the first
    assert shown_step([16, 32], None) is None and shown_step([], 48) is None  # the latest snapshots


def test_a_link_names_each_run_once_and_says_when_it_names_more_than_four(lab, app):
    ids = [lab.submit(TINY.replace(seed=s)) for s in range(6)]
    assert selected_runs(f"?runs={ids[0]},{ids[0]},{ids[1]}") == [ids[0], ids[1]]
    page = {"url.pathname": "/compare"}
    _, sent = dash_call(app, "compare-link-message.children", {**page, "url.search": f"?runs={ids[0]},{ids[0]}"},
                   ["url.search"])
    assert sent["compare-runs"]["value"] == [ids[0]]
    _, sent = dash_call(app, "compare-link-message.children", {**page, "url.search": "?runs=" + ",".join(ids)},
                   ["url.search"])
    assert sent["compare-runs"]["value"] == ids[:4]
    assert "up to 4 runs" in str(sent["compare-link-message"]["children"])
    assert "the first 4 are shown" in str(sent["compare-link-message"]["children"])


def test_a_connectivity_result_for_another_pair_is_not_shown():
    result = {"pair": ["a", "b"], "figure": {"data": []}, "text": "Barrier: 0.0100 above the worse end.",
              "level": None}
    figure, message = connectivity_shown(result, "a", "b")
    assert figure == {"data": []} and "Barrier" in str(message)
    for a, b in (("a", "c"), ("b", "a")):  # A or B changed while it ran: what the page shows stays
        assert connectivity_shown(result, a, b) == (no_update, no_update)


def test_a_gelu_run_s_mono_curve_has_its_positive_part_beside_it():
    points = {"step": np.array([16, 32]), "mono_ratio": np.array([0.5, 0.6]),
              "positive_mono_ratio": np.array([0.25, 0.3])}
    fig = mono_overlay(["gelu run", "relu run"], [{"points": points}] * 2, [0, 0], ["gelu", "relu"], "step")
    assert [t.name for t in fig.data] == ["gelu run", "relu run", "gelu run (positive part, not the paper's)",
                                          "dash-dotted: the positive part, not the paper's"]
    assert list(fig.data[2].y) == pytest.approx([0.25, 0.3]) and fig.data[2].line.color == fig.data[0].line.color


def test_connectivity_of_a_run_deleted_meanwhile_names_it(lab, app, monkeypatch):
    a, b = (trained(lab, lab.submit(TINY.replace(init_bias=v)), [16]) for v in (0.0, -1.0))

    def deleted(run_id: str) -> bytes:
        raise UnknownRun(b)

    monkeypatch.setattr(lab, "run_file", deleted)
    status, sent = dash_call(app, "interp-result.data", {"interp-a.value": a, "interp-b.value": b,
                                                    "interp-button.n_clicks": 1}, ["interp-button.n_clicks"])
    result = sent["interp-result"]["data"]
    assert status == 200 and result["pair"] == [a, b] and result["text"] == f"Run {b} no longer exists."
    _, shown = dash_call(app, "interp-message.children", {"interp-result.data": result, "interp-a.value": a,
                                                     "interp-b.value": b}, ["interp-result.data"])
    assert f"Run {b} no longer exists." in str(shown["interp-message"]["children"])
    assert dash_call(app, "interp-message.children", {"interp-result.data": result, "interp-a.value": a,
                                                 "interp-b.value": "other"}, ["interp-result.data"])[1] == {}


# --- Sweeps ----------------------------------------------------------------------------------------------------


def test_sweep_figures_leave_out_a_failed_run_name_it_on_its_heatmap_and_keep_zoom_per_sweep(lab, app):
    sweep = preset_sweep("quick-zero-bias", "quick", ["0.003", "0.01", "0.03"], 2, "lr")
    ids = lab.submit_sweep(sweep)
    seeds: dict[float, list[tuple[int, str]]] = {}  # each value's (seed, run), first seed first
    for meta in sorted(map(lab.get, ids), key=lambda m: m["config"]["seed"]):
        seeds.setdefault(meta["sweep"]["value"], []).append((meta["config"]["seed"], meta["id"]))
    for value, runs in seeds.items():
        for n, (_seed, run_id) in enumerate(runs):
            # 0.003's first seed still queued: the second's heatmap stands for it; both of 0.01's failed; 0.03's
            # second failed and its first is still training
            status = {(0.003, 0): None, (0.01, 0): "failed", (0.01, 1): "failed", (0.03, 0): "running",
                      (0.03, 1): "failed"}.get((value, n), "done")
            if status:
                trained(lab, run_id, [256], status)
    sweep_id = lab.get(ids[0])["sweep"]["id"]
    sent = Page(app, "sweep-request", "sweep-panels.figure",
                {"url.pathname": "/sweeps", "sweep-select.value": sweep_id}).act("sweep-select.value")
    heatmaps = titles(sent, "sweep-heatmap", 3)
    assert heatmaps[0] == f"lr=0.003 (seed {seeds[0.003][1][0]})"
    assert heatmaps[1] == f"lr=0.01 (seed {seeds[0.01][0][0]}) (failed)"
    # a run training rather than a failed one, and said to be
    assert heatmaps[2] == f"lr=0.03 (seed {seeds[0.03][0][0]}) (still training)"
    results = sent["sweep-mono-vs-value"]["figure"]
    assert results["layout"]["title"]["subtitle"]["text"] == "not shown: 3 failed, 1 still training, 1 queued"
    mono = next(t for t in results["data"] if t.get("name") == "mono neurons / N (per feature)")
    assert numbers(mono["x"]) == [0.003]  # the only value with a finished seed
    # the parallel coordinates' brushes are kept per set of axes too
    assert {sent[graph]["figure"]["layout"]["uirevision"].split(":")[0] for graph in sent
            if graph not in ("sweep-request", "sweep-drawn")} == {sweep_id}


# --- API -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", [["LR1"], {"name": "LR1"}])
def test_a_sweep_preset_that_is_not_a_name_is_refused_naming_it(app, preset):
    answer = app.server.test_client().post("/api/sweeps", json={"preset": preset, "scale": "quick"})
    assert answer.status_code == 400 and "preset must be a paper batch" in answer.get_json()["errors"]["preset"]


def test_comparison_values_are_checked_as_typed_with_commas_or_spaces():
    assert parse_comparison("init_bias", "0 -1,-2") == ([0.0, -1.0, -2.0], None)
    assert parse_comparison("n_neurons", "64, 128") == ([64, 128], None)
    assert parse_comparison("n_neurons", "64,128 256") == ([64, 128, 256], None)  # a list, not a decimal comma
    assert parse_comparison("n_neurons", "64 1e40")[1] == "n_neurons must be an integer from 1 to 16384, got 1e40"
    for text, problem in (("0", "give 2 to 4 values separated by commas or spaces"),
                          ("0 -1 -2 -3 -4", "give 2 to 4 values"),
                          ("0, 20", "init_bias must be a number in [-10, 10], got 20"),
                          ("0, a", "init_bias must be a number in [-10, 10], got 'a'"),
                          ("0, 0.0", "0 is given more than once"),
                          ("0,5 0,7", "0,5 reads as two values (commas and spaces both separate them): write "
                                      "decimals with a point, as 0.5")):
        values, message = parse_comparison("init_bias", text)
        assert values == [] and problem in message, (text, message)


@pytest.mark.parametrize("path, page", [("/", "tick"), ("/compare", "compare-tick"), ("/sweeps/", "sweep-tick"),
                                        ("/comapre", None)])
def test_only_the_page_on_show_polls_the_server(app, path, page):
    timers = ("tick", "compare-tick", "sweep-tick")
    as_loaded = {"url.pathname": path, "tick.disabled": False, "compare-tick.disabled": True,
                 "sweep-tick.disabled": True}
    status, sent = dash_call(app, "tick.disabled", as_loaded, ["url.pathname"])
    assert status == 200
    running = {timer for timer in timers if not sent.get(timer, {}).get("disabled", as_loaded[f"{timer}.disabled"])}
    assert running == ({page} if page else set())
    assert all(as_loaded[f"{timer}.disabled"] != sent[timer]["disabled"] for timer in timers if timer in sent)
