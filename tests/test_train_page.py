"""The Train page's run actions through Dash's endpoint (no browser, no worker), and the guard against repeats."""

import json
from typing import Any

import pytest

from app import create_app
from app.form import FIELD_NAMES, field_id, values_from_config
from app.repeat_guard import RepeatGuard
from core.config import RunConfig
from core.jobs import Lab
from core.presets import preset_config
from core.store import DiskStore
from tests.helpers import dash_call

TINY = RunConfig(n_features=4, embed_dim=2, n_neurons=3, eps=1 / 8, batch_size=32, steps=64, snapshot_every=16,
                 lr=0.01, device="cpu")


@pytest.fixture
def lab(tmp_path):
    return Lab(DiskStore(tmp_path / "data"))


def click_run_action(app: Any, action: str, run_id: str) -> int:
    """A click on a run row's button as the browser sends it (a pattern-matching id); returns the HTTP status."""
    output = next(o for o in app.callback_map if "delete-confirm.displayed" in o)
    spec = app.callback_map[output]
    button = {"action": action, "run": run_id}
    outputs = [{"id": part.rsplit(".", 1)[0], "property": part.rsplit(".", 1)[1].split("@")[0]}
               for part in output.strip(".").split("...")]
    answer = app.server.test_client().post("/_dash-update-component", json={
        "output": output, "outputs": outputs, "state": [],
        "inputs": [[{"id": button, "property": "n_clicks", "value": 1}] for _ in spec["inputs"]],
        "changedPropIds": [json.dumps(button, sort_keys=True, separators=(",", ":")) + ".n_clicks"]})
    return answer.status_code


def test_a_double_click_on_duplicate_queues_one_copy(lab):
    app = create_app(lab)
    original = lab.submit(TINY, label="demo")
    assert click_run_action(app, "duplicate", original) == 200
    assert click_run_action(app, "duplicate", original) == 200  # the second click of a double click
    assert len(lab.list()) == 2


def test_a_run_button_runs_only_the_controls_by_name(lab):
    """The browser names the action: a crafted one must not call any other method of the lab."""
    app = create_app(lab)
    run_id = lab.submit(TINY)
    job_id = lab.get(run_id)["job"]
    lab.store.set(f"ckpt/{job_id}", b"weights")
    for action in ("forget_checkpoint", "claim", "store", "delete_everything"):
        assert click_run_action(app, action, job_id if action == "forget_checkpoint" else run_id) == 200
    assert lab.store.get(f"ckpt/{job_id}") == b"weights" and lab.get(run_id)["status"] == "queued"
    assert click_run_action(app, "pause", run_id) == 200
    assert lab.get(run_id)["status"] == "paused"


def test_a_repeat_within_the_window_gets_the_first_result_and_a_later_one_runs_again():
    clock = [0.0]
    guard = RepeatGuard(window=1.0, clock=lambda: clock[0])
    queued = []

    def submit(name: str) -> str:
        queued.append(name)
        return f"run{len(queued)}"

    assert guard.once("a", lambda: submit("a")) == "run1"
    clock[0] = 0.4
    assert guard.once("a", lambda: submit("a")) == "run1"  # a double click
    assert guard.once("b", lambda: submit("b")) == "run2"  # another request is not a repeat
    clock[0] = 1.5
    assert guard.once("a", lambda: submit("a")) == "run3"  # asked again, later: a new run
    assert queued == ["a", "b", "a"]


def test_a_request_that_failed_is_not_taken_as_done():
    guard = RepeatGuard()
    with pytest.raises(RuntimeError):
        guard.once("a", lambda: (_ for _ in ()).throw(RuntimeError("queue full")))
    assert guard.once("a", lambda: "run1") == "run1"


def test_typing_fewer_steps_than_the_preset_snapshots_lowers_the_interval_in_the_form_and_link(lab):
    app = create_app(lab)
    typed = preset_config("quick-negative-bias").replace(steps=100)
    values = {f"{field_id(n)}.value": v for n, v in zip(FIELD_NAMES, values_from_config(typed))}
    status, sent = dash_call(app, "url.search", {**values, "preset-select.value": "quick-negative-bias",
                                                 "url.pathname": "/"}, ["steps-input.value"])
    assert status == 200
    assert sent["snapshot-every-input"]["value"] == 100
    assert sent["url"]["search"] == "?preset=quick-negative-bias&steps=100&snapshot_every=100"
    # typed again: the interval the form set follows (it was not the user's)
    values = {f"{field_id(n)}.value": v for n, v in zip(FIELD_NAMES, values_from_config(
        typed.replace(steps=50, snapshot_every=100)))}
    _, sent = dash_call(app, "url.search", {**values, "preset-select.value": "quick-negative-bias",
                                            "url.pathname": "/", "url.search": sent["url"]["search"]},
                        ["steps-input.value"])
    assert sent["snapshot-every-input"]["value"] == 50


def test_start_after_the_run_continued_was_deleted_starts_fresh_as_its_button_says(lab):
    """The store of the run Start continues outlives a reload now: once that run is deleted, the banner goes and
    the button reads Start run, and Start refused with "no longer exists" at every click."""
    parent = lab.submit(TINY)
    continuing = {"run": parent, "step": None}
    lab.delete(parent)
    values = {"start-button.n_clicks": 1, "preset-select.value": "custom", "continue-from.data": continuing,
              **{f"{field_id(n)}.value": v for n, v in zip(FIELD_NAMES, values_from_config(TINY))}}
    status, sent = dash_call(create_app(lab), "submit-message.children", values, ["start-button.n_clicks"])
    assert status == 200 and "Queued run" in str(sent["submit-message"]["children"])
    (fresh,) = lab.list()
    assert fresh["id"] == sent["selected-run"]["data"] and fresh.get("start") is None
    assert sent["continue-from"]["data"] is None  # and the form stops continuing it
