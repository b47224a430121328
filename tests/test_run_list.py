"""The run list's updates: whole when its rows change, else a patch of the changing text alone."""

import json

from dash import Patch, no_update
from plotly.utils import PlotlyJSONEncoder

from app.callbacks import run_list_update


def meta(run_id: str, step: int, status: str = "running") -> dict:
    return {"id": run_id, "label": "quick-zero-bias", "status": status, "step": step, "steps": 8192, "loss": 0.25,
            "eta_seconds": 30.0, "device": "CPU, 1 thread"}


def as_json(component) -> dict:  # noqa: ANN001
    return json.loads(json.dumps(component, cls=PlotlyJSONEncoder))


def apply(patch: Patch, tree: dict) -> dict:
    for op in patch.to_plotly_json()["operations"]:
        assert op["operation"] == "Assign"
        *path, last = op["location"]
        node = tree
        for key in path:
            node = node[key]
        node[last] = op["params"]["value"]
    return tree


def test_progress_is_patched_in_place_and_equals_a_rebuild():
    first, shown = run_list_update([meta("a", 100), meta("b", 8192, "done")], "a", None)
    later = [meta("a", 900), meta("b", 8192, "done")]
    patch, now = run_list_update(later, "a", shown)
    assert isinstance(patch, Patch)  # the rows stay the same elements: a click on them is not lost
    rebuilt, _ = run_list_update(later, "a", None)
    assert apply(patch, as_json(first)) == as_json(rebuilt)
    assert run_list_update(later, "a", now)[0] is no_update  # nothing changed: nothing sent


def test_a_new_status_or_selection_rebuilds_the_list():
    _, shown = run_list_update([meta("a", 100)], "a", None)
    for runs, selected in (([meta("a", 100, "paused")], "a"), ([meta("a", 100)], None),
                           ([meta("a", 100), meta("c", 0, "queued")], "a")):
        update, _ = run_list_update(runs, selected, shown)
        assert not isinstance(update, Patch) and update is not no_update
