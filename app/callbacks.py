"""Dash callbacks: thin glue between the page, the job API (core.jobs) and the figures."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, ctx, html, no_update

from app.components import alert, checkpoint_marks, run_name, triggered
from app.continue_controls import continue_from, continued_run, register_continue_callbacks
from app.draw_requests import drawn_for, new_request, tick_waits, undrawn
from app.figures import empty_figure
from app.form import (
    CUSTOM,
    FIELD_NAMES,
    LinkedConfig,
    config_from_query,
    config_to_query,
    feedback_id,
    field_id,
    form_errors,
    form_summary,
    in_form_words,
    run_cost,
    snapshots_for_steps,
    values_from_config,
)
from app.layout import FORM_HIDDEN_LABEL, FORM_SHOWN_LABEL, LIVE_BLANKS, NO_RUN_SUBTITLE, NO_RUN_TITLE
from app.links import as_hash, from_hash, is_train_page, triggered_by_url
from app.live import (
    SMOOTHING,
    STATUS_COLOURS,
    format_eta,
    live_key,
    live_view,
    loss_text,
    parent_of,
    smoothing_weight,
    step_card,
)
from app.repeat_guard import RepeatGuard
from core.config import MAX_SEED, RunConfig
from core.continuation import CannotContinue, continuation_errors, total_bias_hint
from core.jobs import (
    CONTROLS,
    FINISHED,
    InvalidConfig,
    Lab,
    QueueFull,
    UnknownRun,
    can_continue,
    controls_of,
    diverged,
)
from core.presets import PRESETS
from core.redis_store import UNREACHABLE, unreachable_message
from core.store import low_space_message

FIELD_VALUES = [Input(field_id(n), "value") for n in FIELD_NAMES]
ACTIONS = {"pause": "Pause", "resume": "Resume", "stop": "Stop", "continue": "Continue", "duplicate": "Duplicate",
           "delete": "Delete"}


def available_actions(meta: dict[str, Any]) -> list[str]:
    """The row's buttons. Resume also retries a run that failed with its job; Continue needs saved weights (a run
    stopped while queued or paused has none); a continued run has no Duplicate, whose new seed would be another
    world than its start's; a diverged run can be continued from the weights saved before it diverged."""
    return (controls_of(meta) + (["continue"] if can_continue(meta) else [])
            + ([] if meta.get("start") else ["duplicate"]) + ["delete"])


def next_free_seed(config: RunConfig, configs: list[dict[str, Any]]) -> int:
    """The first seed after `config`'s that no run of the same settings in `configs` has: a run's duplicates are
    seeds 1, 2, 3, ... (a short, reproducible seed), none drawing a world twice; one past the last seed wraps to 0."""
    settings = {**config.to_dict(), "seed": None}
    taken = {c["seed"] for c in configs if {**c, "seed": None} == settings}
    return next(s % (MAX_SEED + 1) for s in range(config.seed + 1, config.seed + len(taken) + 2)
                if s % (MAX_SEED + 1) not in taken)


def duplicate_label(label: str | None, seed: int) -> str:
    """A duplicate's name: its original's with the new seed, told apart in the list (a sweep run's ", seed 0" or a
    duplicate's " (seed 7)" replaced, not followed by a second seed)."""
    base = re.sub(r"(, seed \d+| \(seed \d+\))$", "", label or "run")
    return f"{base} (seed {seed})"


def action_label(action: str, status: str) -> str:
    """A button's text: resuming a failed run is a retry."""
    return "Retry" if action == "resume" and status == "failed" else ACTIONS[action]


def link_message(linked: LinkedConfig) -> Any:
    """What a loaded link held that the form could not use (left out; the rest of the link counts)."""
    if not linked.ignored:
        return ""
    instead = ("the form keeps its values" if linked.config is None else
               f"the form has {linked.preset}'s values there instead" if linked.preset else
               "the form has the default values there instead")
    return dbc.Alert([html.Div(f"Not used from this link ({instead}):"),
                      html.Ul([html.Li(problem) for problem in linked.ignored], className="mb-0")],
                     color="warning", dismissable=True, className="small py-2")


def blank_live_view(subtitle: str) -> list[Any]:
    """update_live's outputs with no run chosen: what the page shows before one is."""
    blank = {graph_id: empty_figure(*text) for graph_id, text in LIVE_BLANKS.items()}
    return [NO_RUN_TITLE, subtitle, 0, *["–"] * 5, blank["loss-graph"], blank["mono-graph"],
            blank["bias-history-graph"], blank["lr-graph"], blank["sfa-heatmap"], "", 0, None, 0,
            blank["bias-graph"], blank["score-histogram"], "", None]


def run_progress(meta: dict[str, Any]) -> float:
    return 100.0 * meta["step"] / max(1, meta["steps"])


def run_facts(meta: dict[str, Any]) -> str:
    """The row's progress line; a note says why its step went back or it waits again (worker lost, shut down)."""
    eta = format_eta(meta["eta_seconds"]) if meta["status"] == "running" else ""
    return (f"step {meta['step']:,} / {meta['steps']:,}" + (f" · ETA {eta}" if eta else "")
            + (f" · loss {loss_text(meta['loss'])}" if meta["loss"] is not None else "")
            + (f" · {meta['device']}" if meta.get("device") else "")
            + (f" · {meta['note']}" if meta.get("note") else ""))


def run_list_update(runs: list[dict[str, Any]], selected: str | None, shown: list | None) -> tuple[Any, list]:
    """The run list's new children (or no_update), and what it then shows: rebuilt only when its rows, their
    labels, statuses (hence buttons) or the selection change. Progress and facts change in place
    (`row_updates`): a rebuilt list is new elements, and a click landing on one being replaced is lost."""
    newest_first = list(reversed(runs))
    # Stop, Pause and Resume act on the whole job: its buttons say so when it trains several runs (a sweep's)
    together = Counter(m.get("job") for m in runs if m["status"] not in FINISHED)
    structure = [selected] + [[m["id"], m["label"], m["status"], together[m.get("job")]] for m in newest_first]
    if structure == shown:
        return no_update, structure
    if not runs:
        return html.Div("No runs yet.", className="text-muted small"), structure
    return dbc.ListGroup([run_row(m, m["id"] == selected, together[m.get("job")]) for m in newest_first]), structure


def row_updates(run_ids: list[str], metas: dict[str, dict[str, Any]], progress_now: list[Any],
                facts_now: list[Any]) -> tuple[list[Any], list[Any]]:
    """New progress values and facts lines for the rows shown (in their order), no_update where unchanged."""
    progress, facts = [], []
    for run_id, shown_progress, shown_facts in zip(run_ids, progress_now, facts_now):
        meta = metas.get(run_id)
        value, text = (run_progress(meta), run_facts(meta)) if meta else (shown_progress, shown_facts)
        progress.append(no_update if value == shown_progress else value)
        facts.append(no_update if text == shown_facts else text)
    return progress, facts


def run_row(meta: dict[str, Any], selected: bool, together: int = 1) -> dbc.ListGroupItem:
    """A run's row; `together`: the unfinished runs of its job, which Stop, Pause and Resume act on as one."""
    status = meta["status"]
    whole_job = together > 1 and status not in FINISHED

    def label(action: str) -> str:
        text = action_label(action, status)
        return f"{text} all {together}" if whole_job and action in CONTROLS else text

    buttons = [dbc.Button(label(a), id={"type": "run-action", "action": a, "run": meta["id"]},
                          size="sm", color="danger" if a == "delete" else "secondary", outline=True,
                          className="me-1 mt-1",
                          title=(f"Acts on the {together} runs trained together in this job" if whole_job
                                 and a in CONTROLS else None))
               for a in available_actions(meta)]
    # Only the upper part selects: a click on a button inside it would have selected its run too (Delete on
    # another run swapped the run on show for the one being deleted).
    select_area = html.Div([
        html.Div([
            html.Span(meta["label"] or "run", className="fw-semibold me-2"),
            dbc.Badge(status, color=STATUS_COLOURS.get(status, "secondary"), className="me-2"),
            html.Span(meta["id"], className="text-muted small font-monospace"),
        ]),
        dbc.Progress(value=run_progress(meta), className="my-1", style={"height": "5px"},
                     color=STATUS_COLOURS.get(status, "secondary"), id={"type": "run-progress", "run": meta["id"]}),
        html.Div(run_facts(meta), className="small run-facts", id={"type": "run-facts", "run": meta["id"]}),
    ], id={"type": "run-select", "run": meta["id"]}, n_clicks=0, className="run-select", role="button",
        tabIndex="0", title="Show this run")  # assets/keyboard.js: Enter or Space on it clicks it
    return dbc.ListGroupItem([select_area, html.Div(buttons)],
                             className="run-row selected" if selected else "run-row", key=meta["id"])


def register_callbacks(app: Any, lab: Lab) -> None:
    repeats = RepeatGuard()

    # in the browser: nothing to ask the server, and the figures must not wait on a busy one to widen
    # "Hide the form" is kept in the tab's session, as the run on show and the run Start continues: a reload
    # (or a page the app reloads) keeps the figures at full width on a projector
    app.clientside_callback(
        """function (_clicks, hidden) { return !hidden; }""",
        Output("form-hidden", "data"), Input("form-toggle", "n_clicks"), State("form-hidden", "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        f"""function (hidden, classes) {{
            const others = (classes || "").split(" ").filter((c) => c && c !== "form-hidden");
            return [others.concat(hidden ? ["form-hidden"] : []).join(" "),
                    hidden ? "{FORM_HIDDEN_LABEL}" : "{FORM_SHOWN_LABEL}"];
        }}""",
        Output("lab-page", "className"), Output("form-toggle", "children"),
        Input("form-hidden", "data"), State("lab-page", "className"),
    )

    @app.callback(Output("run-picker", "options"), Input("tick", "n_intervals"), Input("form-hidden", "data"),
                  State("run-picker", "options"))
    def run_picker_options(_tick: int, hidden: bool | None, shown: list[dict[str, str]] | None) -> Any:
        """The runs, newest first, as the run list names them: read only while the picker is what shows them, and
        sent only when they changed."""
        if not hidden:
            return no_update
        try:
            runs = lab.list()
        except UNREACHABLE:  # the picker keeps what it had until the store answers again
            return no_update
        options = [{"label": f"{run_name(m['label'], m['id'])} · {m['status']}", "value": m["id"]}
                   for m in reversed(runs)]
        return no_update if options == shown else options

    @app.callback(Output("selected-run", "data", allow_duplicate=True), Output("run-picker", "value"),
                  Input("run-picker", "value"), Input("selected-run", "data"), prevent_initial_call="initial_duplicate")
    def pick_run(picked: str | None, selected: str | None) -> tuple[Any, Any]:
        """The picker shows the run on show, and a run picked there is shown."""
        if ctx.triggered_id == "run-picker" and picked and picked != selected:
            return picked, no_update
        return no_update, selected

    def duplicate(run_id: str) -> tuple[str, int]:
        """Queue a copy of the run with a new seed, named so that the two can be told apart: (its id, the seed)."""
        original = lab.config(run_id)
        config = original.replace(seed=next_free_seed(original, [m["config"] for m in lab.list()]))
        return lab.submit(config, label=duplicate_label(lab.get(run_id)["label"], config.seed)), config.seed

    def lab_form_errors(values: list[Any], parent_id: str | None = None) -> tuple[RunConfig | None, dict[str, str]]:
        """`form_errors`, plus what this lab cannot train (a device its workers lack) and what a run continued
        from `parent_id` must keep."""
        config, errors = form_errors(values)
        continuing = bool(parent_id) and lab.exists(parent_id)
        if config is not None:
            errors = lab.config_errors(config)
            if continuing:
                errors = {**continuation_errors(parent_id, lab.config(parent_id), config), **errors}
            errors = {n: in_form_words(m) for n, m in errors.items()}
        elif continuing and "init_bias" in errors and values[FIELD_NAMES.index("init_bias")] not in (None, ""):
            errors["init_bias"] += total_bias_hint(parent_id, lab.config(parent_id))
        return (None if errors else config), errors

    @app.callback(
        [Output(field_id(n), "value") for n in FIELD_NAMES] + [Output("preset-select", "value"),
                                                               Output("url", "search"), Output("link-message",
                                                                                                "children")],
        Input("url", "search"), Input("preset-select", "value"), *FIELD_VALUES, State("url", "pathname"),
        State("continue-from", "data"),
    )
    def sync_form_and_url(search: str | None, preset: str | None, *values: Any) -> list[Any]:
        """The URL holds the config: loading a link fills the form (and says what of it was unusable);
        editing the form rewrites the link."""
        *values, pathname, continuing = values
        keep = [no_update] * len(FIELD_NAMES)
        if not is_train_page(pathname):
            return keep + [no_update] * 3
        trigger = ctx.triggered_id
        if trigger == "url" or trigger is None:
            linked = config_from_query(search)
            message = link_message(linked)
            if linked.config is None:  # a bare "/": the preset's values, and the URL left as it is (a write
                # would be a history entry that Back returns to, and from which it is written again)
                config = PRESETS[preset].config if preset in PRESETS else None
                if config is None:
                    return keep + [no_update, no_update, message]
                return values_from_config(config) + [no_update, no_update, message]
            return values_from_config(linked.config) + [linked.preset or CUSTOM, no_update, message]
        # the form changed by hand: a link's list of what it could not use is about a form no longer shown
        if trigger == "preset-select" and preset in PRESETS:
            config = PRESETS[preset].config
            return values_from_config(config) + [no_update, config_to_query(config, preset), None]
        if trigger == field_id("steps"):
            previous = config_from_query(search).config  # the form as it last was: the URL follows it
            parent_id = continued_run(continuing)[0]
            continued = lab.config(parent_id) if parent_id and lab.exists(parent_id) else None
            every = snapshots_for_steps(values, preset, previous.steps if previous else None, continued)
            if every is not None:
                at = FIELD_NAMES.index("snapshot_every")
                keep[at] = values[at] = every
        config, _ = form_errors(list(values))
        if config is None:
            return keep + [no_update, no_update, None]
        return keep + [no_update, config_to_query(config, preset), None]

    @app.callback(
        [Output(field_id(n), "invalid") for n in FIELD_NAMES]
        + [Output(feedback_id(n), "children") for n in FIELD_NAMES] + [Output("start-button", "disabled"),
                                                                     Output("form-message", "children"),
                                                                     Output("form-cost", "children")],
        *FIELD_VALUES, Input("continue-from", "data"),
    )
    def validate_form(*values: Any) -> list[Any]:
        *values, continuing = values
        config, errors = lab_form_errors(list(values), continued_run(continuing)[0])
        return ([n in errors for n in FIELD_NAMES] + [errors.get(n, "") for n in FIELD_NAMES]
                + [bool(errors), form_summary(errors), run_cost(config) if config else ""])

    @app.callback(
        Output("selected-run", "data", allow_duplicate=True), Output("url", "hash"),
        Output("link-run-message", "children"), Output("live-subtitle", "children", allow_duplicate=True),
        Input("url", "hash"), Input("url", "pathname"), Input("selected-run", "data"),
        prevent_initial_call="initial_duplicate",
    )
    def sync_run_and_hash(fragment: str | None, pathname: str | None, selected: str | None) -> tuple[Any, ...]:
        """The URL's fragment names the run on show: a link (or a new tab, or Back) opens it; choosing a run
        rewrites it. Only a choice writes it: each write is a history entry, and one written on arrival at a
        page would be one that Back returns to, and from which it is written again."""
        if not is_train_page(pathname):
            return no_update, no_update, no_update, no_update
        if not triggered_by_url():  # a run chosen, or deleted
            wanted = as_hash("run", selected)
            return no_update, (wanted if wanted != (fragment or "") else no_update), no_update, no_update
        linked = from_hash(fragment, "run")  # on a page load the URL and the stored selection come in together
        if linked is None:
            return no_update, no_update, "", no_update
        if not lab.exists(linked):
            return no_update, no_update, alert(f"This link's run {linked} is not in this lab: deleted, or from "
                                               "another lab.", "warning", dismissable=True, className="small py-2"), \
                no_update
        if linked == selected:  # on show already, or about to be (a reload): nothing new to say
            return no_update, no_update, "", no_update
        # the draw follows this choice by seconds on a busy server: meanwhile not "Start a run on the left"
        return linked, no_update, "", f"Opening run {linked}\u2026"

    @app.callback(Output("nav-train", "href"), Input("url", "search"), Input("selected-run", "data"),
                  State("url", "pathname"))
    def train_link(search: str | None, selected: str | None, pathname: str | None) -> Any:
        """Back to the Train page from another: the form's config (its query, which sync_form_and_url keeps)
        and the run on show come along."""
        if not is_train_page(pathname):  # another page's query (the compare page's runs)
            return no_update
        return "/" + (search or "") + as_hash("run", selected)

    @app.callback(
        Output("selected-run", "data", allow_duplicate=True), Output("submit-message", "children"),
        Output("continue-from", "data", allow_duplicate=True),
        Input("start-button", "n_clicks"), State("preset-select", "value"), State("continue-from", "data"),
        *[State(field_id(n), "value") for n in FIELD_NAMES],
        prevent_initial_call=True,
        running=[(Output("start-button", "disabled"), True, False)],  # a second click would queue a second run
    )
    def start_run(_clicks: int, preset: str | None, continuing: Any, *values: Any) -> tuple[Any, Any, Any]:
        parent_id, step = continued_run(continuing)
        forget = no_update
        if parent_id and not lab.exists(parent_id):  # deleted since: the banner went and the button reads Start run
            parent_id, step, forget = None, None, None
        config, errors = lab_form_errors(list(values), parent_id)
        if errors:
            return no_update, dbc.Alert("Fix the highlighted fields first: " + "; ".join(errors.values()),
                                        color="danger", dismissable=True), no_update
        try:
            if parent_id:
                run_id = repeats.once(repr(("continue", parent_id, step, config)),
                                      lambda: lab.continue_run(parent_id, config, step=step))
            else:
                label = (CUSTOM if preset not in PRESETS else
                         preset if PRESETS[preset].config == config else f"{preset} (edited)")
                run_id = repeats.once(repr(("start", label, config)), lambda: lab.submit(config, label=label))
        except UnknownRun:
            return no_update, alert(f"Run {parent_id} no longer exists: nothing to continue from. Start fresh "
                                    "instead, or continue another run.", "warning", dismissable=True), None
        except (QueueFull, InvalidConfig, CannotContinue) as err:
            return no_update, alert(str(err), "danger", dismissable=True), no_update
        # continuing stays on: the next Start continues the same run with other settings, until Start fresh instead
        return run_id, dbc.Alert(f"Queued run {run_id}.", color="success", dismissable=True, duration=4000), forget

    register_continue_callbacks(app, lab)

    @app.callback(Output("run-list", "children"), Output("run-list-shown", "data"),
                  Input("tick", "n_intervals"), Input("selected-run", "data"), State("run-list-shown", "data"))
    def refresh_run_list(_tick: int, selected: str | None, shown: list | None) -> tuple[Any, Any]:
        listing, now = run_list_update(lab.list(), selected, shown)
        return (no_update, no_update) if listing is no_update else (listing, now)

    @app.callback(Output({"type": "run-progress", "run": ALL}, "value"),
                  Output({"type": "run-facts", "run": ALL}, "children"), Output("store-usage", "children"),
                  Output("store-problem", "children"),
                  Input("tick", "n_intervals"), State({"type": "run-progress", "run": ALL}, "value"),
                  State({"type": "run-facts", "run": ALL}, "children"), State("store-usage", "children"),
                  State("store-problem", "children"))
    def refresh_run_rows(_tick: int, progress_now: list[Any], facts_now: list[Any], usage_now: str | None,
                         problem_now: Any) -> tuple[Any, Any, Any, Any]:
        run_ids = [output["id"]["run"] for output in ctx.outputs_list[0]]
        try:
            metas = {m["id"]: m for m in lab.list()}
            volume = lab.store.volume_bytes()
        except UNREACHABLE as err:  # the rows keep what they last showed
            unchanged = [no_update] * len(run_ids)
            message = unreachable_message(getattr(lab.store, "url", "?"), err)
            return unchanged, unchanged, no_update, alert(message, "danger")
        progress, facts = row_updates(run_ids, metas, progress_now, facts_now)
        runs = f"{len(metas)} run" + ("" if len(metas) == 1 else "s")
        usage = f"{runs} · store {volume / 2**20:.1f} MiB" if metas else ""
        low = low_space_message(lab.store)
        if low is None:
            problem = None if problem_now else no_update
        else:
            problem = no_update if low in str(problem_now) else alert(low, "warning")
        return progress, facts, (no_update if usage == usage_now else usage), problem

    @app.callback(Output("selected-run", "data", allow_duplicate=True),
                  Input({"type": "run-select", "run": ALL}, "n_clicks"), prevent_initial_call=True)
    def select_run(clicks: list[int | None]) -> Any:
        if not ctx.triggered_id or not any(clicks):
            return no_update
        triggered = ctx.triggered[0]["value"] if ctx.triggered else None
        return ctx.triggered_id["run"] if triggered else no_update

    @app.callback(Output("submit-message", "children", allow_duplicate=True),
                  Output("selected-run", "data", allow_duplicate=True),
                  Output("delete-confirm", "displayed"), Output("delete-confirm", "message"),
                  Output("delete-pending", "data"), Output("continue-from", "data", allow_duplicate=True),
                  Output("url", "search", allow_duplicate=True),
                  Input({"type": "run-action", "action": ALL, "run": ALL}, "n_clicks"), prevent_initial_call=True)
    def run_action(clicks: list[int | None]) -> tuple[Any, ...]:
        trigger = ctx.triggered_id
        nothing = (no_update,) * 5
        if not trigger or not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update, no_update, *nothing
        run_id, action = trigger["run"], trigger["action"]
        try:
            if action == "continue":  # the form takes the run's config (through the URL, as a link would)
                query = config_to_query(lab.config(run_id), None)
                # a diverged run's last saved weights had mostly run away already: from its first, before they did
                step = 1 if diverged(lab.get(run_id)) else None
                return no_update, run_id, no_update, no_update, no_update, continue_from(run_id, step), query
            if action == "duplicate":
                new_id, seed = repeats.once(f"duplicate {run_id}", lambda: duplicate(run_id))
                return dbc.Alert(f"Queued {new_id}: same config, seed {seed}.", color="success",
                                 dismissable=True, duration=4000), new_id, *nothing
            if action == "delete":  # nothing to undo it with: ask first
                meta = lab.get(run_id)
                question = (f"Delete run {meta['label'] or 'run'} ({run_id}, {meta['status']})? Its history, "
                            "checkpoints and run file go with it; this cannot be undone.")
                return no_update, no_update, True, question, run_id, no_update, no_update
            if action not in CONTROLS:  # the browser names it: only a control is run by name
                return no_update, no_update, *nothing
            getattr(lab, action)(run_id)
        except UnknownRun:
            return dbc.Alert(f"Run {run_id} no longer exists.", color="warning", dismissable=True), no_update, \
                *nothing
        except (QueueFull, InvalidConfig) as err:  # a duplicate asks for what the original did (a device gone since)
            return alert(str(err), "danger", dismissable=True), no_update, *nothing
        return no_update, no_update, *nothing

    @app.callback(Output("submit-message", "children", allow_duplicate=True),
                  Output("selected-run", "data", allow_duplicate=True),
                  Output("continue-from", "data", allow_duplicate=True),
                  Input("delete-confirm", "submit_n_clicks"), State("delete-pending", "data"),
                  State("selected-run", "data"), State("continue-from", "data"), prevent_initial_call=True)
    def delete_confirmed(_clicks: int | None, run_id: str | None, selected: str | None,
                         continuing: Any) -> tuple[Any, Any, Any]:
        if not run_id:
            return no_update, no_update, no_update
        deselect = None if run_id == selected else no_update  # the live view must not go on showing it
        # the form must not go on offering to continue it
        forget = None if continued_run(continuing)[0] == run_id else no_update
        try:
            lab.delete(run_id)
        except UnknownRun:
            return dbc.Alert(f"Run {run_id} no longer exists.", color="warning", dismissable=True), deselect, forget
        return (dbc.Alert(f"Deleted run {run_id}.", color="secondary", dismissable=True, duration=4000), deselect,
                forget)

    @app.callback(Output("smoothing-slider", "value"), Input("smoothing-slider", "value"),
                  State("live-request", "data"), prevent_initial_call=True)
    def keep_smoothing(value: Any, requested: dict[str, Any] | None) -> Any:
        """The slider's box cleared or typed past its range: back to a weight it can take (the last one drawn)."""
        weight = smoothing_weight(value)
        if weight is not None and weight == value:
            return no_update
        return weight if weight is not None else (requested or {}).get("smoothing", SMOOTHING)

    @app.callback(
        Output("live-request", "data"),
        Input("tick", "n_intervals"), Input("selected-run", "data"), Input("smoothing-slider", "value"),
        Input("sfa-sorted", "value"), Input("checkpoint-slider", "value"),
        State("checkpoint-slider", "max"), State("live-request", "data"), State("live-state", "data"),
    )
    def choose_live(_tick: int, run_id: str | None, smoothing: float, ordered: bool, slider: int | None,
                    slider_max: int | None, requested: dict[str, Any] | None, drawn: dict[str, Any] | None) -> Any:
        """Cheap, every tick: what the live view should show; a new request only when that changed."""
        weight = smoothing_weight(smoothing)
        if tick_waits(requested, drawn) or weight is None or weight != smoothing:
            return no_update  # a weight the slider cannot take is put right first (keep_smoothing)
        if not run_id or not lab.exists(run_id):
            if requested is None:  # the blank view is already on the page
                return no_update
            request = new_request(["no run", run_id], requested, drawn, run=None, gone=run_id)
        else:
            meta = lab.get(run_id)
            following = (slider is None or slider_max is None or slider >= slider_max
                         or triggered("selected-run"))
            frame = None if following else int(slider)
            parent = parent_of(meta)
            request = new_request(live_key(meta, smoothing, bool(ordered), frame, bool(parent) and lab.exists(parent)),
                                  requested, drawn, run=run_id, smoothing=smoothing, ordered=bool(ordered),
                                  frame=frame, slider=[slider, slider == slider_max], status=meta["status"])
        return no_update if request is None else request

    @app.callback(
        Output("live-title", "children"), Output("live-subtitle", "children"), Output("live-progress", "value"),
        Output("stat-step", "children"), Output("stat-loss", "children"), Output("stat-mono", "children"),
        Output("stat-bias", "children"), Output("stat-lr", "children"),
        Output("loss-graph", "figure"), Output("mono-graph", "figure"), Output("bias-history-graph", "figure"),
        Output("lr-graph", "figure"), Output("sfa-heatmap", "figure"), Output("heatmap-step", "children"),
        Output("checkpoint-slider", "max"), Output("checkpoint-slider", "marks"),
        Output("checkpoint-slider", "value"), Output("bias-graph", "figure"), Output("score-histogram", "figure"),
        Output("download-area", "children"), Output("live-state", "data"),
        Input("live-request", "data"), State("live-state", "data"),
    )
    def draw_live(request: dict[str, Any] | None, last: dict[str, Any] | None) -> list[Any]:
        outputs = 21
        if not isinstance(request, dict):
            return [no_update] * outputs
        run_id = request["run"]
        if run_id is None:
            gone = f"Run {request['gone']} was deleted. " if request["gone"] else ""
            return blank_live_view(gone + NO_RUN_SUBTITLE)[:-1] + [drawn_for(request)]
        last = last if isinstance(last, dict) else {}
        frame = request["frame"]
        try:
            view = live_view(lab, run_id, request["smoothing"], request["ordered"], frame, last.get("loss"),
                             last.get("metrics"))
        except UnknownRun:  # deleted between looking and reading: the next tick blanks the view
            return [no_update] * (outputs - 1) + [undrawn(request, **last)]
        n_frames = len(view.frame_steps)
        marks = checkpoint_marks(view.frame_steps, "live")
        # the slider and the download link stay untouched where the inspector read them as they are: setting either
        # redraws it, and a click on its Continue button while it redrew was lost
        slider = [n_frames if frame is None else frame, frame is None]  # a position, and whether it is the end
        download = [run_id, view.has_file, request["status"]]  # the inspector's message follows the status
        link = no_update if download == last.get("download") else (
            html.A("Download run file (.pt)", href=f"/api/runs/{run_id}/file",
                   className="btn btn-outline-primary btn-sm") if view.has_file else "")
        heatmap = view.heatmap if view.heatmap is not None else no_update
        curves = [no_update if figure is None else figure
                  for figure in (view.loss, view.mono, view.bias_history, view.lr)]
        for figure in (heatmap, *curves, view.final_bias, view.histogram):
            if isinstance(figure, go.Figure):  # zoom and legend clicks hold while a run trains, not onto the next
                figure.update_layout(uirevision=run_id)
        return [view.title, view.subtitle, view.progress, step_card(view.stats["step"]), view.stats["loss"],
                view.stats["mono"], view.stats["bias"], view.stats["lr"], *curves, heatmap, view.heatmap_label,
                n_frames, marks, no_update if slider == request["slider"] else slider[0], view.final_bias,
                view.histogram, link, drawn_for(request, loss=view.loss_state, metrics=view.metrics_state,
                                                download=download)]
