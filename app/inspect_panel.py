"""The interpretability panel on the Train page: click a heatmap cell (or type indices) to inspect a
feature, a neuron, the polysemantic part's linear map and two-feature interference."""

from __future__ import annotations

import io
import math
import re
import threading
from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, html, no_update

from app import interpret_figures as figs
from app.components import alert, graph, triggered
from app.continue_controls import continue_button
from app.figures import (
    SCORE_COLUMN,
    drawn_order,
    empty_figure,
    nearest_bright_neuron,
    pooled_block_cell,
    pooled_strip_neuron,
)
from app.live import shown_snapshot
from core.compare import Model
from core.interpret import (
    feature_view,
    mono_neurons_per_feature,
    mono_summary,
    neuron_view,
    pair_interference,
    poly_linear_map,
    uses_positive_part,
)
from core.jobs import Lab, UnknownRun, can_continue, diverged
from core.runfile import RunFileError, load_run_file

DONE = "For a finished, paused, stopped or diverged run"


def index_input(input_id: str, label: str, value: int) -> dbc.Col:
    return dbc.Col(
        [
            dbc.Label(label, html_for=input_id, className="small mb-0"),
            dbc.Input(id=input_id, type="number", min=0, step=1, value=value, debounce=True, size="sm"),
        ],
        width="auto",
    )


HIDDEN, SHOWN = {"display": "none"}, {}
INDEX_INPUTS = ("inspect-feature-input", "inspect-neuron-input", "inspect-pair-input")


def inspect_layout() -> html.Div:
    return html.Div(
        [
            html.H5("Inside the model", className="mt-3 mb-0"),
            html.P(
                "For a finished, paused, stopped or diverged run, at the replayed step (or the latest weights saved "
                "at or before it: runs keep them at powers of 2). Click a cell of the heatmap to pick its feature and "
                "neuron.",
                className="text-muted small",
            ),
            dbc.Row(
                [
                    index_input("inspect-feature-input", "Feature", 0),
                    index_input("inspect-neuron-input", "Neuron", 0),
                    index_input("inspect-pair-input", "Second feature (interference)", 1),
                ],
                className="g-2 mb-2",
            ),
            html.Div(id="inspect-message"),
            # shown once there are weights to inspect: while a run trains, seven empty graphs were ~2000 px of
            # toolbars under the live views
            html.Div(id="inspect-views", style=HIDDEN, children=[
            dbc.Row(
                [
                    dbc.Col(graph("feature-curves", 300, "Feature inspector", DONE), xl=6),
                    dbc.Col(graph("neuron-profile", 300, "Neuron inspector", DONE), xl=6),
                ],
                className="g-2",
            ),
            html.Div(id="feature-neurons", className="small"),
            dbc.Row(
                [
                    dbc.Col(graph("poly-map", 380, "Polysemantic part's linear map", DONE), xl=6),
                    dbc.Col(graph("poly-singular", 380, "Its singular values", DONE), xl=6),
                ],
                className="g-2",
            ),
            dbc.Row(
                [
                    dbc.Col(graph("mono-histogram", 300, "Features by number of monosemantic neurons", DONE), xl=6),
                    dbc.Col(graph("pair-grid", 300, "Two-feature interference", DONE), xl=6),
                ],
                className="g-2",
            ),
            graph("mono-by-feature", 260, "Monosemantic neurons serving each feature", DONE),
            ]),
        ],
        id="inspect-panel",
    )


def saved_step(record: dict[str, Any], step: int | None) -> int | None:
    """The step whose saved weights stand for a replayed `step`: the latest power of 2 by then (the run file keeps
    the weights there only; the heatmap's other frames keep its SFA and biases, no weights); None for the final
    weights."""
    models = record["log2_spaced_models"]
    trained = record.get("metrics", {}).get("steps_trained")
    if step is None or step <= 0 or not models or (trained is not None and step >= trained):
        return None
    return 2 ** min(int(math.log2(step)), len(models) - 1)


def weights_label(saved: int | None, step: int | None, status: str = "done", trained: int | None = None) -> str:
    """Which weights are inspected; the run file's last are final only for a run trained to its end (`status`: the
    run's, or "diverged"; `trained`: the steps its file holds)."""
    if saved is None:
        if status == "done" or trained is None:
            return "final weights"
        if status == "diverged":
            return f"weights at step {trained:,} (the last saved before it diverged)"
        return f"weights at step {trained:,} (where it was {'stopped' if status == 'stopped' else 'paused'})"
    at = f"checkpoint after {saved} step" + ("" if saved == 1 else "s")
    if saved != step:
        at += f" (the replayed step {step} has no saved weights; the latest saved before it)"
    return at


def model_at(record: dict[str, Any], step: int | None) -> tuple[Model, str, int | None]:
    """The final model, or, for a replayed step, the latest weights saved by then; also says which, and the saved
    step (None: the final weights)."""
    saved = saved_step(record, step)
    if saved is not None:
        record = {**record, "final_model": record["log2_spaced_models"][saved.bit_length() - 1]}
    return Model.from_record(record), weights_label(saved, step), saved


def neurons_table(view: Any) -> Any:
    if not len(view.neurons):
        return html.Div(
            f"No monosemantic neuron serves feature {view.feature}: the polysemantic part carries it.",
            className="text-muted",
        )
    header = html.Thead(
        html.Tr([html.Th(h) for h in ("neuron", "activation alone", "input weight", "bias", "output weight")])
    )
    rows = [
        html.Tr([html.Td(str(n)), html.Td(f"{a:.3f}"), html.Td(f"{w:.3f}"), html.Td(f"{b:.3f}"), html.Td(f"{o:.3f}")])
        for n, a, w, b, o in zip(view.neurons, view.activations, view.input_weights, view.biases, view.output_weights)
    ]
    return dbc.Table([header, html.Tbody(rows)], size="sm", bordered=True, className="bg-white w-auto")


def replayed_step(frames: list[int], slider: Any, slider_max: Any, run_changed: bool) -> int | None:
    """The step the checkpoint slider replays; None at its live end (the final weights). Bounded by the run's own
    frames: the slider's max can still be the last run's (a run just picked is shown at its final weights until
    the live view moves the slider)."""
    if run_changed or not isinstance(slider, int) or isinstance(slider, bool):
        return None
    live_end = len(frames) if not isinstance(slider_max, int) else min(slider_max, len(frames))
    return frames[slider] if 0 <= slider < live_end else None


def model_views(model: Model, sfa: np.ndarray) -> list[go.Figure]:
    """The views of the whole model, for the (run, step) callback: the N x N map with its SVD and the loss split
    cost seconds at N = 2048, too slow to redo on every feature or neuron picked."""
    linear = poly_linear_map(model, sfa)
    positive = uses_positive_part(model.config.nonlinearity)
    return [figs.linear_map_heatmap(linear), figs.singular_values(linear),
            figs.mono_histogram(mono_summary(model, sfa)),
            figs.mono_by_feature(mono_neurons_per_feature(sfa, positive), model.config.sample_kind == "power_law",
                                 positive)]


def pair_figure(model: Model, feature: int, pair: int) -> go.Figure:
    if pair == feature:  # a feature "with itself" is the feature at the summed amplitude: no interference to see
        return empty_figure("Two-feature interference",
                            f"Pick a second feature other than feature {feature}")
    return figs.pair_grid(*pair_interference(model, feature, pair), feature, pair)


ABS_NOTE = ("abs task: the single-feature activations are taken at amplitude +1, as in the paper, so here \"dead\" "
            "means silent at +1 and \"monosemantic\" is judged at +1: a neuron silent there may serve negative "
            "amplitudes (the neuron inspector shows -1 too). The linear map is not compared with the identity.")


def register_inspect_callbacks(app: Any, lab: Lab) -> None:
    # one run at a time: run files of paper-scale runs are large. Keys: (run, size of its file, saved step)
    cache: dict[str, tuple[int, dict[str, Any]]] = {}
    models: dict[tuple[str, int, int | None], tuple[Model, np.ndarray]] = {}
    views: dict[tuple[str, int, int | None], list[go.Figure]] = {}
    loading = threading.Lock()

    def record_of(run_id: str) -> tuple[int, dict[str, Any]] | None:
        """(its size, which tells a rewritten file apart, and the run file's record); None before it exists."""
        blob = lab.run_file(run_id)
        if blob is None:
            return None
        with loading:  # the two inspector callbacks ask at once: one loads (a paper-scale file is large), one waits
            entry = cache.get(run_id)
            if entry is None or entry[0] != len(blob):
                entry = (len(blob), load_run_file(io.BytesIO(blob)))
                cache.clear()
                cache[run_id] = entry
        return entry

    def model_of(run_id: str, size: int, record: dict[str, Any], saved: int | None) -> tuple[Model, np.ndarray]:
        """The model and its SFA at the saved step, built once for both callbacks and every index change."""
        key = (run_id, size, saved)
        with loading:
            if key not in models:
                model = model_at(record, saved)[0]
                models.clear()
                models[key] = (model, model.sfa())
            return models[key]

    @app.callback(
        Output("inspect-feature-input", "value"),
        Output("inspect-neuron-input", "value"),
        Input("sfa-heatmap", "clickData"),
        State("selected-run", "data"),
        State("sfa-sorted", "value"),
        State("checkpoint-slider", "value"),
        State("checkpoint-slider", "max"),
        prevent_initial_call=True,
    )
    def pick_from_heatmap(click: dict[str, Any] | None, run_id: str | None, ordered: bool, slider: Any,
                          slider_max: Any) -> tuple[Any, Any]:
        point = (click or {}).get("points", [{}])[0]
        x, y = str(point.get("x", "")), str(point.get("y", ""))
        cell = (int(x[1:]), int(y[1:])) if re.fullmatch(r"f[0-9]{1,6}", x) and re.fullmatch(r"n[0-9]{1,6}", y) \
            else None
        if x == SCORE_COLUMN and re.fullmatch(r"n[0-9]{1,6}", y):  # the r strip: the neuron, and the same feature
            return no_update, int(y[1:])
        # A cell: the one clicked, or a bright one in the rows beside it; a max-pooled block (paper scale): the cell
        # that gives it its colour. Both in the matrix drawn.
        if not run_id or not lab.exists(run_id):
            return cell or (no_update, no_update)
        following = slider is None or slider_max is None or slider >= slider_max
        try:
            frames = lab.get(run_id)["frames"]
            shown, _ = shown_snapshot(lab, run_id, frames, None if following else int(slider),
                                      lab.latest_snapshot(run_id))
        except UnknownRun:
            return cell or (no_update, no_update)
        if shown is None:
            return cell or (no_update, no_update)
        sfa = shown["sfa"]
        if cell is not None:
            feature, neuron = cell
            if neuron < sfa.shape[0] and feature < sfa.shape[1]:
                neuron = nearest_bright_neuron(np.asarray(sfa, dtype=np.float32),
                                               drawn_order(sfa, bool(ordered), None)[0], neuron, feature)
            return feature, neuron
        if x == SCORE_COLUMN:
            neuron = pooled_strip_neuron(sfa, bool(ordered), None, y)
            return no_update, no_update if neuron is None else neuron
        cell = pooled_block_cell(sfa, bool(ordered), None, y, x)
        return (cell[1], cell[0]) if cell else (no_update, no_update)

    def load(run_id: str, slider: Any, slider_max: Any) -> tuple[Any, tuple | None]:
        """(None, (meta, run file size, model, its SFA, which, saved)), or (why there is nothing to inspect, None)."""
        try:
            meta = lab.get(run_id)
            file = record_of(run_id)
        except UnknownRun:  # deleted elsewhere (another tab, the API): a KeyError's text is only the quoted id
            return alert(f"Run {run_id} was deleted.", "info"), None
        except RunFileError as err:
            return alert(str(err), "warning"), None
        if file is None:
            why = ("This run diverged before any weights were saved: there are none to inspect." if diverged(meta)
                   else "The inspector opens when the run is finished, paused or stopped."
                   if meta["status"] != "stopped"
                   else "This run was stopped before it trained a step: there are no weights to inspect."
                   if meta["step"] == 0 else "This run was stopped before its first checkpoint: no weights were saved.")
            return dbc.Alert(why, color="info", className="py-2"), None
        step = replayed_step(meta["frames"], slider, slider_max, triggered("selected-run"))
        size, record = file
        saved = saved_step(record, step)
        which = weights_label(saved, step, "diverged" if diverged(meta) else meta["status"],
                              record.get("metrics", {}).get("steps_trained"))
        return None, (meta, size, *model_of(run_id, size, record, saved), which, saved)

    @app.callback(
        Output("poly-map", "figure"),
        Output("poly-singular", "figure"),
        Output("mono-histogram", "figure"),
        Output("mono-by-feature", "figure"),
        Input("selected-run", "data"),
        Input("checkpoint-slider", "value"),
        Input("download-area", "children"),
        State("checkpoint-slider", "max"),
    )
    def inspect_model(run_id: str | None, slider: Any, _download: Any, slider_max: Any) -> list[Any]:
        blank = [empty_figure("", "")] * 4
        if not run_id:
            return blank
        _, loaded = load(run_id, slider, slider_max)
        if loaded is None:  # the index callback says why
            return blank
        _, size, model, sfa, _, saved = loaded
        # the slider's reset after a run is picked, or the download link's arrival, fire this again for the same
        # weights: drawn once
        key = (run_id, size, saved)
        figures = views.get(key)
        if figures is None:
            figures = model_views(model, sfa)
            views.clear()
            views[key] = figures
        return figures

    @app.callback(
        Output("inspect-message", "children"),
        Output("feature-curves", "figure"),
        Output("neuron-profile", "figure"),
        Output("feature-neurons", "children"),
        Output("pair-grid", "figure"),
        Output("inspect-views", "style"),
        *[Output(input_id, prop) for prop in ("invalid", "max") for input_id in INDEX_INPUTS],
        Input("selected-run", "data"),
        Input("inspect-feature-input", "value"),
        Input("inspect-neuron-input", "value"),
        Input("inspect-pair-input", "value"),
        Input("checkpoint-slider", "value"),
        Input("download-area", "children"),
        State("checkpoint-slider", "max"),
    )
    def inspect(
        run_id: str | None, feature: Any, neuron: Any, pair: Any, slider: Any, _download: Any, slider_max: Any
    ) -> list[Any]:
        blank = [empty_figure("", "Nothing to inspect yet")] * 2 + ["", empty_figure("", ""), HIDDEN,
                                                                     *[False] * 3, *[no_update] * 3]
        if not run_id:
            return [""] + blank
        why, loaded = load(run_id, slider, slider_max)
        if loaded is None:
            return [why] + blank
        meta, _, model, sfa, which, saved = loaded
        n, k = model.config.n_features, model.config.n_neurons
        problems = {}
        for name, value, limit in (("Feature", feature, n), ("Neuron", neuron, k), ("Second feature", pair, n)):
            if not isinstance(value, int) or not 0 <= value < limit:
                problems[name] = f"{name} must be an integer from 0 to {limit - 1}"

        def unless(*names: str) -> str | None:  # why a view cannot be drawn: the inputs it needs that are bad
            return "; ".join(problems[name] for name in names if name in problems) or None

        # each view waits only for its own inputs: a bad feature index leaves the neuron and the maps drawn
        fview = None if unless("Feature") else feature_view(model, sfa, feature)
        # the weights shown, continued with settings changed: from a checkpoint, before the run chose its basin
        message = [html.Div([f"Inspecting {which} of run {run_id}.",
                             continue_button(run_id, saved) if can_continue(meta) else ""],
                            className="small text-muted")]
        if model.config.task == "abs":
            message.append(html.Div(ABS_NOTE, className="small text-muted"))
        if problems:
            message.append(alert("; ".join(problems.values()), "danger", className="py-2"))
        return [
            message,
            empty_figure("Feature inspector", unless("Feature")) if fview is None else figs.feature_curves(fview),
            empty_figure("Neuron inspector", unless("Neuron")) if unless("Neuron")
            else figs.neuron_profile(neuron_view(model, sfa, neuron)),
            "" if fview is None else neurons_table(fview),
            empty_figure("Two-feature interference", unless("Feature", "Second feature"))
            if unless("Feature", "Second feature") else pair_figure(model, feature, pair),
            SHOWN,
            *[name in problems for name in ("Feature", "Neuron", "Second feature")],  # outlined as the form's are
            n - 1, k - 1, n - 1,
        ]
