"""The compare page (/compare?runs=a,b): 2-4 runs side by side, overlaid curves, a config table and the
loss along the line between two runs' weights."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import parse_qs, urlencode

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, ctx, dcc, html, no_update

from app import figures
from app.components import alert, checkpoint_marks, graph, run_name, split_values, triggered
from app.continue_controls import continued_run
from app.draw_requests import by_the_tick_alone, drawn_for, new_request, tick_waits, undrawn
from app.form import FIELD_NAMES, field_id, form_errors, in_form_words
from app.links import is_compare, page_of
from app.live import fmt, history_epoch, loss_text
from core.compare import IncompatibleRuns, Model, differing_fields, interpolate, run_labels
from core.config import FIELDS, RunConfig, checked_value, shown_value
from core.continuation import CannotContinue, continuation_errors, push_text, steps_before, total_bias_hint
from core.jobs import FINISHED, InvalidConfig, Lab, QueueFull, UnknownRun
from core.metrics import dead_neurons, final_loss
from core.presets import PRESETS
from core.runfile import RunFileError, load_run_file
from core.sweep import repeated_labels, value_label

MAX_COMPARED = 4
COMPARABLE_FIELDS = [n for n in FIELD_NAMES if n not in ("device", "snapshot_every", "steps")]


LEGEND_WIDTH = 52  # characters of a run's label in an overlay's legend: one row at a third of the page's width
# characters of a heatmap's title by heatmaps in the row (at 1280 px, four a row clipped a title of 47)
TITLE_WIDTH = {2: 90, 3: 60, 4: 44}

OVERLAY_TITLES = ("Loss", "Mono neurons per feature", "Mean bias")
INTERP_PROMPT = "Press the button above"
POSITIVE_PART = "positive part, not the paper's"  # GeLU/SoLU: max/sum of the activations' positive part


def heatmap_slot(i: int) -> dbc.Col:
    return dbc.Col(graph(f"compare-heatmap-{i}", 460), id=f"compare-slot-{i}", md=6, style={"display": "none"})


def compare_layout() -> html.Div:
    return html.Div([
        html.H4("Compare basins"),
        html.P("Pick 2 to 4 runs (finished or still training).", className="text-muted small"),
        html.Div(id="compare-link-message"),
        dcc.Dropdown(id="compare-runs", multi=True, placeholder="Choose runs to compare...", className="mb-2"),
        html.Div(id="compare-message"),
        dbc.Row([heatmap_slot(i) for i in range(MAX_COMPARED)], className="g-2"),
        dbc.Label("Checkpoint step shared by all heatmaps (right end = latest)", html_for="compare-slider",
                  className="small mb-0"),
        dcc.Slider(id="compare-slider", min=0, max=0, step=1, value=0, marks=None, allow_direct_input=False),
        # {"wanted": the step chosen (None: latest), "ids": the runs compared, "gone": those deleted since chosen}
        dcc.Store(id="compare-state"),
        dcc.Store(id="compare-view"),  # what the figures are to show (app.draw_requests)
        dcc.Store(id="compare-drawn"),  # the request they were drawn for, and the slider's steps as drawn
        dbc.Row([
            *[dbc.Col(graph(graph_id, 380, title, "Choose two or more runs"), md=4)
              for graph_id, title in zip(("compare-loss", "compare-mono", "compare-bias"), OVERLAY_TITLES)],
        ], className="g-2 mt-2"),
        html.H5("Configs and results", className="mt-3"),
        html.Div(id="compare-table"),
        html.H5("Basin connectivity", className="mt-3"),
        html.P("Loss on fresh samples along the straight line between two of the runs' weights, A and B (21 "
               "points). A bump above both ends is a barrier between their basins. Needs two finished (or stopped) "
               "runs of the same shapes and the same embedder: the same seed (vary Init variant for two starts of "
               "one task). The ends are the loss of the final weights on fresh samples, near the table's final "
               "loss (the mean of the last 5% of training steps) but not equal to it.", className="text-muted small"),
        dbc.Row([
            dbc.Col(dbc.InputGroup([dbc.InputGroupText("A"), dbc.Select(id="interp-a", options=[])], size="sm"),
                    md=4),
            dbc.Col(dbc.InputGroup([dbc.InputGroupText("B"), dbc.Select(id="interp-b", options=[])], size="sm"),
                    md=4),
            dbc.Col(dbc.Switch(id="interp-align", label="Align B's neurons to A's first (by SFA)", value=True),
                    width="auto"),
            dbc.Col(dbc.Button("Compute the loss along the line", id="interp-button", size="sm",
                               color="primary"), width="auto"),
        ], align="center", className="g-2"),
        # the result comes through a store tagged with its pair: shown only if A and B are still that pair
        dcc.Loading(html.Div([dcc.Store(id="interp-result"), html.Div(id="interp-message", className="mt-2"),
                              graph("interp-graph", 320, "Basin connectivity", INTERP_PROMPT)])),
    ])


def comparison_starter() -> html.Div:
    """On the lab page: queue the current config at several values of one knob, then watch them side by side."""
    return dbc.Card(dbc.CardBody([
        html.Div("Start a comparison", className="fw-semibold small mb-1"),
        dbc.Select(id="compare-field-select", value="init_bias",
                   options=[{"label": FIELDS[n].metadata["label"] or n, "value": n} for n in COMPARABLE_FIELDS]),
        dbc.Input(id="compare-values-input", value="0, -1", placeholder="values, comma separated",
                  className="mt-1"),
        dbc.FormFeedback(id="compare-values-feedback", type="invalid"),
        dbc.FormText("2 to 4 values; the rest of the config is the form's.", className="d-block"),
        dbc.Button("Queue and compare", id="compare-button", size="sm", color="secondary", className="mt-1 w-100"),
    ]), className="mb-2")


def parse_comparison(field: str, text: str | None) -> tuple[list[Any], str | None]:
    """The values to compare (commas or spaces between them, as the Sweeps page takes them), or why not: each in
    the field's range, none twice."""
    if field not in COMPARABLE_FIELDS:
        return [], f"the field must be one of {', '.join(COMPARABLE_FIELDS)}"
    parts, problem = split_values(text)
    if problem:
        return [], problem
    if not 2 <= len(parts) <= MAX_COMPARED:
        return [], f"give 2 to {MAX_COMPARED} values separated by commas or spaces"
    checked = [checked_value(field, p) for p in parts]  # quoted as typed: 1e40, not its 41 digits
    if out := next((problem for _, problem in checked if problem), None):
        return [], out
    values = [value for value, _ in checked]
    repeated = repeated_labels(values)
    if repeated:
        return [], f"give {len(parts)} different values: {', '.join(repeated)} is given more than once"
    return values, None


def comparison_problem(field: str, message: str) -> str:
    """A comparison's problem in the form's words, naming its field."""
    return in_form_words(message if message.startswith(field) else f"{field}: {message}")


def results_table(lab: Lab, metas: list[dict[str, Any]], labels: list[str],
                  histories: list[dict[str, Any]] | None = None) -> dbc.Table:
    """Every config field side by side, differences marked, then the results; `histories` as the caller read
    them (read here otherwise)."""
    configs = [m["config"] for m in metas]
    differing = set(differing_fields(configs))
    # each run's colour in the overlays beside its name in full: their legends may leave fields out
    header = html.Thead(html.Tr([html.Th("")] + [
        html.Th([html.Span(className="run-colour", style={"background": figures.run_colour(i)}), label])
        for i, label in enumerate(labels)]))
    rows = []
    for name in FIELD_NAMES:
        cells = [html.Td(shown_value(c[name])) for c in configs]
        rows.append(html.Tr([html.Th(name, className="fw-normal")] + cells,
                            className="table-warning" if name in differing else ""))
    if any(m.get("start") for m in metas):  # a continued run's curves begin at its start, not at a fresh init
        starts = [f"{run_name(m['start']['label'], m['start']['run'])}, step {m['start']['step']:,}"
                  + (f", {push_text(m['start']['bias_push'])}" if m["start"].get("bias_push") else "")
                  if m.get("start") else "a fresh init" for m in metas]
        rows.append(html.Tr([html.Th("started from", className="fw-normal")] + [html.Td(s) for s in starts],
                            className="table-warning"))
    results: list[list[str]] = [[], [], [], []]
    histories = histories or [lab.history(meta["id"]) for meta in metas]
    for meta, history in zip(metas, histories):
        loss = final_loss(history["losses"])
        snapshot = lab.latest_snapshot(meta["id"])
        results[0].append(loss_text(loss))
        results[1].append(fmt(meta["mono_ratio"], ".3f"))
        results[2].append("–" if snapshot is None else str(int(dead_neurons(snapshot["sfa"]).sum())))
        results[3].append(fmt(meta["mean_bias"], ".3f"))
    names = result_names([m["status"] for m in metas])
    if any(m["config"]["nonlinearity"] != "relu" for m in metas):  # the dash-dotted curves' numbers, beside the paper's
        names += (f"mono neurons / feature ({POSITIVE_PART})",)
        positive = [h["points"].get("positive_mono_ratio", []) for h in histories]
        results.append(["–" if m["config"]["nonlinearity"] == "relu" or len(p) == 0 else fmt(p[-1], ".3f")
                        for m, p in zip(metas, positive)])
    for name, values in zip(names, results):
        rows.append(html.Tr([html.Th(name)] + [html.Td(v, className="fw-semibold") for v in values]))
    rows.append(html.Tr([html.Th("status")] + [html.Td(m["status"]) for m in metas]))
    return dbc.Table([header, html.Tbody(rows)], bordered=True, size="sm", hover=True, responsive=True,
                     className="bg-white small")


def result_names(statuses: list[str]) -> tuple[str, ...]:
    """The results' row names: a run still training has no final loss yet, only the one it stands at so far."""
    loss = "final loss (last 5%)" if all(s in FINISHED for s in statuses) else "loss (last 5% so far)"
    return loss, "mono neurons / feature", "dead neurons", "mean bias"


def deleted_since(last: dict[str, Any], chosen: list[str], ids: list[str], exists: Any) -> list[str]:
    """Runs shown or chosen that were deleted since (another tab, the API): said on the page, not silently left out
    (the run picker drops them). Said until the user adds a run to the comparison."""
    shown_before = last.get("ids", [])
    newly = [r for r in dict.fromkeys(shown_before + chosen) if r not in ids and not exists(r)]
    kept = [] if any(r not in shown_before for r in ids) else last.get("gone", [])
    return list(dict.fromkeys(kept + newly))[:MAX_COMPARED]


def comparison_base(preset: str | None, config: RunConfig, field: str) -> str:
    """The preset a comparison varies `field` of, "(edited)" when other fields differ from it; "" for none."""
    if preset not in PRESETS:
        return ""
    same = PRESETS[preset].config.replace(**{field: getattr(config, field)}) == config
    return preset if same else f"{preset} (edited)"


def legend_labels(metas: list[dict[str, Any]], unique: bool = True) -> list[str]:
    """The runs as the figures' legends name them (the table names them in full)."""
    return run_labels(metas, unique, width=LEGEND_WIDTH)


def pair_options(metas: list[dict[str, Any]]) -> list[dict[str, str]]:
    """A and B's choices: the runs compared, named as the figures name them, with their id and status."""
    return [{"label": f"{'run' if label == m['id'] else label} · {m['id']} · {m['status']}", "value": m["id"]}
            for label, m in zip(legend_labels(metas, unique=False), metas)]


def heatmap_titles(metas: list[dict[str, Any]], steps: list[int], offsets: list[int]) -> list[tuple[str, str]]:
    """Each run's heatmap title, as wide as a row of them has room for, and under it the step it shows (and where
    its curves show that step, for a continued run): on one line, a long label had cut off either."""
    labels = run_labels(metas, width=TITLE_WIDTH[min(len(metas), MAX_COMPARED)])
    return [(label, f"step {step:,}" + (f" ({step + offset:,} counted on)" if offset else ""))
            for label, step, offset in zip(labels, steps, offsets)]


def pair_choice(chosen: list[str], a: str | None, b: str | None, b_picked: bool) -> tuple[str | None, str | None]:
    """A and B among the runs `chosen`: kept while they stay chosen, else the first two; B picked (`b_picked`) as
    A's run moves A to another run."""
    if b_picked and b in chosen and b == a:
        a = next((r for r in chosen if r != b), None)
    a = a if a in chosen else (chosen[0] if chosen else None)
    b = b if b in chosen and b != a else next((r for r in chosen if r != a), None)
    return a, b


def selected_runs(search: str | None) -> list[str]:
    """The runs a link names, each once, all of them (the caller keeps MAX_COMPARED and says so)."""
    runs = parse_qs((search or "").lstrip("?")).get("runs", [""])[0]
    return list(dict.fromkeys(r for r in runs.split(",") if r))


def too_many_note(why: str) -> dbc.Alert:
    return alert(f"Compare shows up to {MAX_COMPARED} runs side by side: {why}", "info", dismissable=True,
                 className="small py-2")


def common_steps(metas: list[dict[str, Any]]) -> list[int]:
    """The checkpoint steps every run with frames has a frame at: the shared slider's positions (a run still
    queued, with none, left the others nothing to replay)."""
    framed = [set(m["frames"]) for m in metas if m["frames"]]
    return sorted(set.intersection(*framed)) if framed else []


def shown_step(common: list[int], wanted: int | None) -> int | None:
    """The checkpoint to show for the step chosen: that step, else the nearest common one below it (another run
    set has other common steps), else the first; None (the latest snapshots) when none is chosen or shared."""
    if wanted is None or not common:
        return None
    below = [step for step in common if step <= wanted]
    return below[-1] if below else common[0]


def comparison_key(metas: list[dict[str, Any]], step: int | None) -> list[Any]:
    """What the comparison shows depends on, as JSON (the browser keeps it): an unchanged key needs no redraw."""
    return [[[m["id"], m["label"], m["step"], m["status"], len(m["frames"]), history_epoch(m)] for m in metas],
            step]


def mono_overlay(labels: list[str], histories: list[dict[str, Any]], offsets: list[int],
                 nonlinearities: list[str], x_title: str) -> go.Figure:
    """Mono neurons per feature, one line per run; a GeLU or SoLU run's ratio on the positive part dash-dotted beside
    it in its colour (ALGORITHM.md: negatives shrink the paper's sum, which can pass 0.999 by accident)."""
    def curve(history: dict[str, Any], key: str, offset: int) -> tuple[np.ndarray, np.ndarray]:
        points = history["points"]
        return np.asarray(points.get("step", []), dtype=np.int64) + offset, np.asarray(points.get(key, []))

    fig = figures.overlay_figure([(label, *curve(h, "mono_ratio", offset))
                                  for label, h, offset in zip(labels, histories, offsets)],
                                 "Mono neurons per feature", "mono neurons / N", reference=1.0, x_title=x_title)
    if not fig.data:  # the "no data yet" figure
        return fig
    for i, (label, history, offset, nonlinearity) in enumerate(zip(labels, histories, offsets, nonlinearities)):
        steps, values = curve(history, "positive_mono_ratio", offset)
        if nonlinearity == "relu" or not len(values) or len(values) != len(steps):
            continue
        keep = figures.log_thin(steps, 2000)
        # under its run's legend entry (one click hides both): eight entries below the plot squeezed it away
        fig.add_trace(go.Scattergl(x=steps[keep].astype(np.int32), y=values[keep].astype(np.float32), mode="lines",
                                   name=f"{label} ({POSITIVE_PART})", legendgroup=label, showlegend=False,
                                   line={"color": figures.run_colour(i), "width": 2,
                                         "dash": figures.POSITIVE_PART_DASH}))
    if len(fig.data) > len(labels):
        # a key to the line style, as a legend entry of its own: as the legend's title it ran into the figure's
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"dash-dotted: the {POSITIVE_PART}",
                                 line={"color": "#555", "width": 2, "dash": figures.POSITIVE_PART_DASH},
                                 hoverinfo="skip"))
    return fig


def connectivity_shown(result: dict[str, Any] | None, a_id: str | None, b_id: str | None) -> tuple[Any, Any]:
    """The figure and message of a connectivity result, or no_update for one computed for another pair (the user
    changed A or B while it ran: it must not show as theirs)."""
    if not result or result["pair"] != [a_id, b_id]:
        return no_update, no_update
    message = (alert(result["text"], result["level"]) if result["level"]
               else html.Div(result["text"], className="small"))
    return (no_update if result["figure"] is None else result["figure"]), message


def register_compare_callbacks(app: Any, lab: Lab) -> None:
    @app.callback(Output("lab-page", "style"), Output("compare-page", "style"), Output("sweeps-page", "style"),
                  Output("missing-page", "style"), Output("missing-page-path", "children"), Output("tick", "disabled"),
                  Output("compare-tick", "disabled"), Output("sweep-tick", "disabled"), Input("url", "pathname"),
                  State("tick", "disabled"), State("compare-tick", "disabled"), State("sweep-tick", "disabled"))
    def route(pathname: str | None, *timers_off: bool) -> tuple[Any, ...]:
        page = page_of(pathname)
        shown = [{} if page == name else {"display": "none"} for name in ("train", "compare", "sweeps", None)]
        # a timer is only set when it changes: each prop set re-renders it, for nothing
        off = [page != name for name in ("train", "compare", "sweeps")]
        return (*shown, pathname or "/", *[no_update if now == was else now for now, was in zip(off, timers_off)])

    def run_choices() -> list[dict[str, str]]:
        return [{"label": f"{m['label'] or 'run'} · {m['id']} · {m['status']}", "value": m["id"]}
                for m in reversed(lab.list())]

    # The options come with the value: a dropdown given ids it has no options for yet drops them, and that
    # change would have written an empty selection back into a shared link.
    @app.callback(Output("compare-runs", "value"), Output("url", "search", allow_duplicate=True),
                  Output("compare-runs", "options", allow_duplicate=True), Output("compare-link-message", "children"),
                  Input("url", "search"), Input("compare-runs", "value"), State("url", "pathname"),
                  prevent_initial_call="initial_duplicate")
    def sync_selection(search: str | None, chosen: list[str] | None, pathname: str | None) -> tuple[Any, ...]:
        if not is_compare(pathname):
            return no_update, no_update, no_update, no_update
        if ctx.triggered_id == "compare-runs":
            kept = (chosen or [])[:MAX_COMPARED]
            wanted = "?" + urlencode({"runs": ",".join(kept)})
            too_many = len(chosen or []) > MAX_COMPARED
            note = too_many_note("remove one to add another.") if too_many else no_update
            return (kept if too_many else no_update, (wanted if wanted != (search or "?runs=") else no_update),
                    no_update, note)
        linked = selected_runs(search)
        missing = [r for r in linked if not lab.exists(r)]  # the dropdown would drop them without a word
        present = [r for r in linked if r not in missing]
        notes = [alert(f"Not in this lab (deleted, or from another lab): {', '.join(missing)}.", "warning",
                       dismissable=True, className="small py-2")] if missing else []
        if len(present) > MAX_COMPARED:
            notes.append(too_many_note(f"this link names {len(present)}; the first {MAX_COMPARED} are shown."))
        return present[:MAX_COMPARED], no_update, run_choices(), notes or ""

    @app.callback(Output("nav-compare", "href"), Input("compare-runs", "value"))
    def compare_link(chosen: list[str] | None) -> str:
        """Back to the Compare page from another: the runs compared come along."""
        return "/compare" + ("?" + urlencode({"runs": ",".join(chosen[:MAX_COMPARED])}) if chosen else "")

    @app.callback(Output("compare-runs", "options"), Input("compare-tick", "n_intervals"), Input("url", "pathname"))
    def run_options(_tick: int, pathname: str | None) -> Any:
        if not is_compare(pathname):
            return no_update
        return run_choices()

    @app.callback(Output("compare-state", "data"), Output("compare-view", "data"),
                  Input("compare-tick", "n_intervals"), Input("compare-runs", "value"),
                  Input("compare-slider", "value"),
                  State("url", "pathname"), State("compare-state", "data"), State("compare-view", "data"),
                  State("compare-drawn", "data"))
    def choose_comparison(_tick: int, chosen: list[str] | None, slider: int | None, pathname: str | None,
                          last: dict[str, Any] | None, requested: Any, drawn: Any) -> tuple[Any, Any]:
        """Cheap, every tick: what the figures should show; a new request only when that changed."""
        if not is_compare(pathname) or tick_waits(requested, drawn):
            return no_update, no_update
        last = last or {}
        metas = metas_of(chosen)[:MAX_COMPARED]
        ids = [m["id"] for m in metas]
        gone = deleted_since(last, chosen or [], ids, lab.exists)
        common = common_steps(metas)
        wanted = last.get("wanted")
        if triggered("compare-slider") and slider is not None:
            # a position on the slider as drawn: its steps, not the ones a tick may have added since
            positions = drawn.get("common", common) if isinstance(drawn, dict) else common
            wanted = positions[int(slider)] if 0 <= int(slider) < len(positions) else None
        step = shown_step(common, wanted)
        key = [comparison_key(metas, step) if len(metas) >= 2 else ["fewer than two", [m["id"] for m in metas]],
               gone]
        state = {"wanted": wanted, "ids": ids, "gone": gone}
        # every second, 1-4 runs' figures: drawn only when something changed
        request = new_request(key, requested, drawn, ids=ids, step=step, common=common, gone=gone, slider=slider)
        return no_update if state == last else state, no_update if request is None else request

    @app.callback(
        [Output(f"compare-heatmap-{i}", "figure") for i in range(MAX_COMPARED)]
        + [Output(f"compare-slot-{i}", "style") for i in range(MAX_COMPARED)]
        + [Output(f"compare-slot-{i}", "xl") for i in range(MAX_COMPARED)]
        + [Output("compare-loss", "figure"), Output("compare-mono", "figure"), Output("compare-bias", "figure"),
           Output("compare-table", "children"), Output("compare-message", "children"),
           Output("compare-slider", "max"), Output("compare-slider", "marks"), Output("compare-slider", "value"),
           Output("compare-drawn", "data")],
        Input("compare-view", "data"),
    )
    def draw_comparison(request: dict[str, Any] | None) -> list[Any]:
        figures_etc = 3 * MAX_COMPARED + 8
        if not request:
            return [no_update] * (figures_etc + 1)
        try:
            view = comparison_view(metas_of(request["ids"]), request["common"], request["step"], request["gone"])
        except UnknownRun:  # a run deleted between looking and reading: the next tick shows the rest
            return [no_update] * figures_etc + [undrawn(request, common=request["common"])]
        if view[-1] == request["slider"]:  # set, the slider would ask again and drop a later choice on its way
            view[-1] = no_update
        return view + [drawn_for(request, common=request["common"])]

    def metas_of(run_ids: list[str] | None) -> list[dict[str, Any]]:
        """The runs named that still exist, each once (one deleted meanwhile is left out: the link message names
        it)."""
        metas = []
        for run_id in dict.fromkeys(run_ids or []):
            try:
                metas.append(lab.get(run_id))
            except UnknownRun:
                continue
        return metas

    def comparison_view(metas: list[dict[str, Any]], common: list[int], step: int | None,
                        gone: list[str]) -> list[Any]:
        """Every output but the state, showing the checkpoint `step` of `common` (None: the latest snapshots);
        `gone`: runs chosen that were deleted since."""
        hidden = [{"display": "none"}] * MAX_COMPARED
        deleted = (f"Run{'s' if len(gone) > 1 else ''} {', '.join(gone)} {'were' if len(gone) > 1 else 'was'} "
                   "deleted since chosen. ") if gone else ""
        # no runs to compare: the overlays go blank (runs no longer chosen, or deleted, must not stay drawn)
        blanks = [figures.empty_figure(title, "Choose two or more runs") for title in OVERLAY_TITLES]
        if len(metas) < 2:
            message = dbc.Alert(deleted + "Choose at least two runs.", color="info", className="py-2")
            return [no_update] * MAX_COMPARED + hidden + [no_update] * MAX_COMPARED + blanks + ["", message, 0, None,
                                                                                                0]
        sizes = sorted({m["config"]["n_features"] for m in metas})
        # their curves and results compare; the heatmaps each show their own features, not the same ones
        different = (f"These runs learn different numbers of features N ({', '.join(map(str, sizes))}): each heatmap "
                     "shows its own run's features, and mono neurons per feature divides by each run's N."
                     if len(sizes) > 1 else "")
        message = dbc.Alert(deleted + different, color="info", className="py-2 small") if deleted or different \
            else ""
        # a continued run's curves go on from the step it started at: beside its parent, where the parent left off
        offsets = [steps_before(m.get("start")) for m in metas]
        # a run with no frame at that step (none yet, or one cut back meanwhile): as it stands
        snapshots = [(step in m["frames"] and lab.frame(m["id"], step)) or lab.latest_snapshot(m["id"])
                     for m in metas]
        titles = heatmap_titles(metas, [s["step"] if s else 0 for s in snapshots], offsets)
        heatmaps = [figures.sfa_heatmap(s and s["sfa"], title=title, second_line=when)
                    for s, (title, when) in zip(snapshots, titles)]
        histories = [lab.history(m["id"]) for m in metas]
        x_title = ("Step (log scale), continued runs counted on from their start" if any(offsets)
                   else "Training step (log scale)")
        short_labels = legend_labels(metas)

        def curves(steps_of: Any, values_of: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
            return [(lb, np.asarray(steps_of(h), dtype=np.int64) + offset, np.asarray(values_of(h)))
                    for lb, h, offset in zip(short_labels, histories, offsets)]

        loss = figures.overlay_figure(curves(lambda h: h["loss_steps"], lambda h: h["losses"]),
                                      "Loss (smoothed 0.9)", "loss", smoothing=0.9, x_title=x_title)
        mono = mono_overlay(short_labels, histories, offsets, [m["config"]["nonlinearity"] for m in metas], x_title)
        bias = figures.overlay_figure(curves(lambda h: h["points"].get("step", []),
                                             lambda h: h["points"].get("mean_bias", [])),
                                      "Mean bias", "mean bias", x_title=x_title)
        marks = checkpoint_marks(common, "latest")
        shown = [{} if i < len(metas) else {"display": "none"} for i in range(MAX_COMPARED)]
        padded = heatmaps + [no_update] * (MAX_COMPARED - len(heatmaps))
        widths = [12 // len(metas)] * MAX_COMPARED
        table = results_table(lab, metas, run_labels(metas), histories)  # in full: the legends may leave some out
        return padded + shown + widths + [loss, mono, bias, table, message, len(common), marks,
                                          len(common) if step is None else common.index(step)]

    @app.callback(Output("interp-graph", "figure", allow_duplicate=True),
                  Output("interp-message", "children", allow_duplicate=True),
                  Input("compare-runs", "value"), Input("interp-a", "value"), Input("interp-b", "value"),
                  prevent_initial_call=True)
    def forget_connectivity(*_chosen: Any) -> tuple[Any, Any]:
        """Other runs chosen: the line computed for the former ones must not stay up as if it were theirs."""
        return figures.empty_figure("Basin connectivity", INTERP_PROMPT), ""

    # At each tick too: the options name each run's status ("running" turns "done" as the top picker's does)
    @app.callback(Output("interp-a", "options"), Output("interp-a", "value"), Output("interp-b", "options"),
                  Output("interp-b", "value"), Input("compare-runs", "value"), Input("interp-a", "value"),
                  Input("interp-b", "value"), Input("compare-tick", "n_intervals"), State("interp-a", "options"),
                  State("url", "pathname"))
    def connectivity_pair(chosen: list[str] | None, a: str | None, b: str | None, _tick: int,
                          shown: list[dict[str, str]] | None, pathname: str | None) -> tuple[Any, ...]:
        """A and B's options and values (pair_choice), each sent only when it changed."""
        if by_the_tick_alone() and not is_compare(pathname):
            return no_update, no_update, no_update, no_update
        metas = metas_of(chosen)
        options = pair_options(metas)
        new_a, new_b = pair_choice([m["id"] for m in metas], a, b, triggered("interp-b"))
        # only what changed: a value sent, even the same one, runs forget_connectivity, which would wipe the
        # computed line at every tick
        return (no_update if options == shown else options, no_update if new_a == a else new_a,
                no_update if options == shown else options, no_update if new_b == b else new_b)

    @app.callback(Output("interp-result", "data"), Input("interp-button", "n_clicks"), State("interp-a", "value"),
                  State("interp-b", "value"), State("interp-align", "value"), State("compare-runs", "value"),
                  prevent_initial_call=True)
    def basin_connectivity(_clicks: int, a_id: str | None, b_id: str | None, align: bool,
                           compared: list[str] | None) -> dict[str, Any]:
        """The loss along the line, tagged with the pair it is for: A or B may change while it runs."""
        def result(text: str, level: str | None = "info", figure: go.Figure | None = None) -> dict[str, Any]:
            return {"pair": [a_id, b_id], "figure": figure, "text": text, "level": level}

        try:
            return connectivity(a_id, b_id, bool(align), metas_of(compared), result)
        except UnknownRun as err:  # deleted between the choice and the reading
            return result(f"Run {err.args[0] if err.args else a_id} no longer exists.", "warning",
                          figures.empty_figure("Basin connectivity", "Not computed"))

    def connectivity(a_id: str | None, b_id: str | None, align: bool, compared: list[dict[str, Any]],
                     result: Any) -> dict[str, Any]:
        chosen = [r for r in (a_id, b_id) if r and lab.exists(r)]
        if len(chosen) < 2:
            return result("Choose two runs first.")
        if a_id == b_id:
            return result("A and B are the same run: choose two different runs.")
        blobs = [lab.run_file(r) for r in chosen[:2]]
        if any(b is None for b in blobs):
            return result("Both runs must be finished (or stopped) to have final weights.")
        try:
            a, b = (Model.from_record(load_run_file(io.BytesIO(blob))) for blob in blobs)
            line = interpolate(a, b, points=21, align=align)
        except (IncompatibleRuns, RunFileError) as err:
            return result(str(err), "warning", figures.empty_figure("Basin connectivity", "Not computed"))
        # named and coloured as the curves above name and colour them
        ids = [m["id"] for m in compared]
        if not {a_id, b_id} <= set(ids):  # the choice of runs changed meanwhile: the pair alone
            compared, ids = [lab.get(a_id), lab.get(b_id)], [a_id, b_id]
        labels = dict(zip(ids, legend_labels(compared)))
        text = (f"Barrier: {line.barrier:.4f} above the worse end (ends {line.losses[0]:.4f} and "
                f"{line.losses[-1]:.4f}).")
        return result(text, None, figures.interpolation_figure(
            line.alphas, line.losses, "A: " + labels[a_id], "B: " + labels[b_id], line.aligned,
            (figures.run_colour(ids.index(a_id)), figures.run_colour(ids.index(b_id)))))

    @app.callback(Output("interp-graph", "figure"), Output("interp-message", "children"),
                  Input("interp-result", "data"), State("interp-a", "value"), State("interp-b", "value"),
                  prevent_initial_call=True)
    def show_connectivity(result: dict[str, Any] | None, a_id: str | None, b_id: str | None) -> tuple[Any, Any]:
        return connectivity_shown(result, a_id, b_id)

    @app.callback(Output("compare-values-input", "invalid"), Output("compare-values-feedback", "children"),
                  Output("compare-button", "disabled"), Input("compare-field-select", "value"),
                  Input("compare-values-input", "value"))
    def check_comparison_values(field: str, text: str | None) -> tuple[bool, str, bool]:
        """Flagged as the form's fields are, as they are typed; the rest is checked on the click (with the form)."""
        _, problem = parse_comparison(field, text)
        return (True, comparison_problem(field, problem), True) if problem else (False, "", False)

    @app.callback(Output("url", "pathname"), Output("url", "search", allow_duplicate=True),
                  Output("submit-message", "children", allow_duplicate=True),
                  Input("compare-button", "n_clicks"), State("compare-field-select", "value"),
                  State("compare-values-input", "value"), State("continue-from", "data"),
                  State("preset-select", "value"),
                  *[State(field_id(n), "value") for n in FIELD_NAMES], prevent_initial_call=True)
    def start_comparison(_clicks: int, field: str, text: str, continuing: Any, preset: str | None,
                         *values: Any) -> tuple[Any, Any, Any]:
        config, errors = form_errors(list(values))
        if errors:
            return no_update, no_update, dbc.Alert("Fix the form first: " + "; ".join(errors.values()),
                                                   color="danger", dismissable=True)
        chosen, problem = parse_comparison(field, text)
        configs = [config.replace(**{field: v}) for v in chosen]
        parent_id, step = continued_run(continuing)
        parent = lab.config(parent_id) if parent_id and lab.exists(parent_id) else None
        # a device this lab lacks, too; continuing, the init_bias range bounds the total (the push and the parent's)
        problems = {e + (total_bias_hint(parent_id, parent) if name == "init_bias" and parent else "")
                    for c in configs for name, e in lab.config_errors(c).items()}
        if parent is not None:  # each value continues the run the form continues
            problems |= {e for c in configs for e in continuation_errors(parent_id, parent, c).values()}
        if problem or problems:
            message = comparison_problem(field, problem or "; ".join(sorted(problems)))
            return no_update, no_update, alert(message, "danger", dismissable=True)
        try:
            if parent_id:
                run_ids = lab.continue_runs(parent_id, configs, step)
                # beside the run they start from, where the page has room
                run_ids = [parent_id, *run_ids] if len(run_ids) < MAX_COMPARED else run_ids
            else:
                # named for what they vary, as a sweep's runs are: "init_bias=-1" alone said little in the run list
                base = comparison_base(preset, config, field)
                run_ids = lab.submit_batched(configs, [f"{base}: {field}={value_label(v)}" if base
                                                       else f"{field}={value_label(v)}" for v in chosen])
        except (QueueFull, InvalidConfig, CannotContinue) as err:
            return no_update, no_update, alert(in_form_words(str(err)), "danger", dismissable=True)
        except UnknownRun:
            return no_update, no_update, alert(f"Run {parent_id} no longer exists: nothing to continue from.",
                                               "warning", dismissable=True)
        return "/compare", "?" + urlencode({"runs": ",".join(run_ids)}), ""
