"""The sweeps page (/sweeps): start a paper batch (or its quick twin) and watch the paper's figures build."""

from __future__ import annotations

import re
from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
from dash import Input, Output, State, dcc, html, no_update

from app import figures, sweep_figures
from app.components import alert, graph, sentence, split_values
from app.draw_requests import drawn_for, new_request, tick_waits, undrawn
from app.form import training_time
from app.links import as_hash, from_hash, is_sweeps, triggered_by_url
from app.repeat_guard import RepeatGuard
from core.config import FIELDS, config_from_dict, shown
from core.jobs import InvalidConfig, Lab, QueueFull, UnknownRun
from core.metrics import dead_neurons, final_loss
from core.presets import PAPER_BATCHES, QUICK_PRESETS
from core.sweep import (
    MAX_SEEDS,
    SWEEPABLE,
    Sweep,
    capped_sweep,
    preset_sweep,
    problems_given_in,
    value_label,
    with_settings,
)

HEATMAPS = 3
EMPTY_HISTORY = {"loss_steps": np.zeros(0, dtype=np.int64), "losses": np.zeros(0, dtype=np.float32), "points": {}}
OWN_FIELD = "own"  # the field select's value for a paper batch's own swept field
# Each figure's title and message while no sweep is shown, in update_sweep's order of outputs.
SWEEP_BLANKS = ([("Training, coloured by the swept value", "Start a sweep, or choose one above"),
                 ("Results against the swept value", ""), ("Final biases, sorted", "")]
                + [("Single-feature activations", "")] * HEATMAPS + [("Runs: config against results", "")])


def sweep_layout() -> html.Div:
    options = ([{"label": f"{name} — {b.description}", "value": name} for name, b in PAPER_BATCHES.items()]
               + [{"label": f"{name} — {p.description} (choose a field)", "value": name}
                  for name, p in QUICK_PRESETS.items()])
    # named as the Train form names them, with the config's name the API and CLI take
    fields = [{"label": "the batch's own", "value": OWN_FIELD}] + [
        {"label": f"{FIELDS[n].metadata['label']} ({n})", "value": n} for n in SWEEPABLE]
    return html.Div(
        [
            html.H4("Sweeps: the paper's batches, or any preset over any field"),
            dbc.Card(
                dbc.CardBody(
                    [
                        dbc.Row(
                            [
                                labelled("Batch or preset",
                                         dbc.Select(id="sweep-preset-select", options=options, value="LR3"), md=3),
                                labelled("Field", dbc.Select(id="sweep-field-select", options=fields, value=OWN_FIELD),
                                         md=3),
                                dbc.Col(
                                    [
                                        dbc.Label("Scale", className="small mb-0"),
                                        dbc.RadioItems(
                                            id="sweep-scale",
                                            value="quick",
                                            inline=True,
                                            options=[
                                                {"label": "quick (laptop)", "value": "quick"},
                                                {"label": "paper", "value": "paper"},
                                            ],
                                        ),
                                    ],
                                    md=2,
                                ),
                                labelled("Values", dbc.Input(id="sweep-values-input", placeholder="the batch's values",
                                                                    debounce=300),
                                         md=2),
                                # text, as the run form's: a number box gives None for "abc" (as if empty), where
                                # the check can name what was typed
                                labelled("Seeds per value", dbc.Input(id="sweep-seeds-input", type="text", value=1,
                                                            autocomplete="off"), md=2),
                            ],
                            className="g-2 align-items-end",
                        ),
                        dbc.Row(
                            [
                                labelled("Also set, for every run",
                                         dbc.Input(id="sweep-settings-input", debounce=300,  # ms: checked as typed
                                                   placeholder="e.g. init_bias=0 bias_decay=0 (LR3's learning "
                                                               "rates from zero bias)"),
                                         md=6),
                                dbc.Col(
                                    dbc.Switch(
                                        id="sweep-share-seed",
                                        label="same seed for every value (paired)",
                                        value=False,
                                        className="small mb-1",
                                    ),
                                    md=4,
                                ),
                                dbc.Col(dbc.Button("Start sweep", id="sweep-start-button", color="primary", size="sm"),
                                        md=2),
                            ],
                            className="g-2 mt-1 align-items-end",
                        ),
                    ]
                )
            ),
            html.Div(id="sweep-form-problems", className="small text-danger mt-1"),  # checked while typing
            html.Div(id="sweep-values-help", className="small text-muted mt-1"),
            html.Div(id="sweep-cost", className="small text-muted"),  # the sweep as typed: runs, jobs, time
            html.Div(id="sweep-message", className="mt-2"),
            dcc.Dropdown(id="sweep-select", placeholder="Choose a sweep to view...", className="my-2"),
            dcc.Dropdown(id="sweep-overlay", multi=True, className="mb-2",
                         placeholder="Overlay other sweeps of the same field on the results (LR1 beside LR3: the "
                                     "paper's bias effect at every learning rate)..."),
            graph("sweep-panels", 340, *SWEEP_BLANKS[0]),
            graph("sweep-mono-vs-value", 340, *SWEEP_BLANKS[1]),
            dbc.Row(
                [
                    dbc.Col(graph(f"sweep-heatmap-{i}", 420, *SWEEP_BLANKS[3 + i]), md=4)
                    for i in range(HEATMAPS)
                ],
                className="g-2 mt-1",
            ),
            dbc.Row(
                [
                    dbc.Col(graph("sweep-biases", 360, *SWEEP_BLANKS[2]), md=5),
                    dbc.Col(graph("sweep-parcoords", 360, *SWEEP_BLANKS[-1]), md=7),
                ],
                className="g-2 mt-1",
            ),
        ]
    )


def labelled(label: str, control: Any, md: int) -> dbc.Col:
    return dbc.Col([dbc.Label(label, html_for=control.id, className="small mb-0"), control], md=md)


def parse_settings(text: str | None) -> tuple[dict[str, str], list[str]]:
    """The "Also set" box's `name=value` pairs (spaces or commas between them), and what is wrong with it."""
    settings: dict[str, str] = {}
    problems = []
    for part in re.sub(r"\s*=\s*", "=", (text or "").replace(",", " ")).split():  # "init_bias = 0" is one pair
        name, equals, value = part.partition("=")
        if not equals or not name or not value:
            problems.append(f"also set: {shown(part)} is not name=value, as init_bias=0")
        elif name in settings:
            problems.append(f"also set: {name} is given twice")
        else:
            settings[name] = value
    return settings, problems


def chosen_field(field: str | None) -> str | None:
    """The Field select's choice, or None for the batch's own field."""
    return None if field in (None, "", OWN_FIELD) else field


def sweep_from_form(
    name: str, scale: str, values_text: str | None, seeds: Any, share: bool, field: str | None = None,
    settings_text: str | None = None,
) -> tuple[Sweep | None, dict[str, str]]:
    """The sweep the form describes, or its problems keyed by the box to fix (`field`, `values`, `seeds`,
    `settings`) or else the part of the config they concern. OWN_FIELD (or none) is the batch's own field."""
    values, comma_problem = split_values(values_text)
    missing = {"seeds": f"seeds is required: an integer from 1 to {MAX_SEEDS}"} if seeds in (None, "") else {}
    if comma_problem:
        return None, {**missing, "values": comma_problem}
    values = values or None
    if isinstance(seeds, str) and re.fullmatch(r"\s*[0-9]{1,6}\s*", seeds):
        seeds = int(seeds)  # anything else typed is named by the check (preset_sweep), quoted
    settings, setting_problems = parse_settings(settings_text)
    try:
        sweep = preset_sweep(name, scale, values, 1 if missing else seeds, chosen_field(field),
                             shared_seed=bool(share))
    except ValueError as err:  # every problem of the boxes at once, "; "-joined
        problems: dict[str, list[str]] = {"settings": setting_problems} if setting_problems else {}
        for part in str(err).split("; "):
            box = ("seeds" if part.startswith("seeds ") else "field" if part.startswith(("field ", "preset "))
                   else "values")
            problems.setdefault(box, []).append(part)
        return None, {**missing, **{box: "; ".join(parts) for box, parts in problems.items()}}
    # fewer steps than the preset's snapshot interval lower it, as the API and CLI do
    set_sweep, errors = with_settings(capped_sweep(sweep, settings), settings)
    setting_problems += [f"also set: {message}" for message in errors.values()]
    if set_sweep is None or setting_problems:
        return None, {**missing, "settings": "; ".join(setting_problems)}
    errors = {**missing, **problems_given_in(set_sweep.validate(), settings, "settings")}
    return (None, errors) if errors else (set_sweep, {})


def sweep_cost(sweep: Sweep | None) -> str:
    """What Start sweep queues, and how long a heavy one takes: counts every value and seed as typed."""
    if sweep is None:
        return ""
    runs, jobs = len(sweep.runs()), len(sweep.jobs())
    estimate = training_time(sweep.configs())
    return (f"{runs} run{'s' if runs != 1 else ''} in {jobs} job{'s' if jobs != 1 else ''}"
            + (f": {estimate}." if estimate else "."))


def sweep_label(sweep_id: str, sweeps: dict[str, list[dict[str, Any]]]) -> str:
    """A sweep's name in an overlay's legend: its batch's, with its id when another sweep has the same name."""
    name = sweeps[sweep_id][0]["sweep"]["name"] or sweep_id
    same = [i for i, metas in sweeps.items() if metas[0]["sweep"]["name"] == name]
    return f"{name} ({sweep_id})" if len(same) > 1 else name


def sweep_runs(lab: Lab, metas: list[dict[str, Any]], histories: bool = True) -> list[sweep_figures.SweepRun]:
    """The runs as the figures need them; without histories (an overlay: its final values only) the loss and metric
    curves are left empty and the final loss is the one the run's metadata keeps (the same definition)."""
    runs = []
    for meta in metas:
        history = lab.history(meta["id"]) if histories else EMPTY_HISTORY
        points = history["points"]
        snapshot = lab.latest_snapshot(meta["id"])
        per_feature, per_neuron, nearly, positive = (sweep_figures.mono_counts(snapshot["sfa"]) if snapshot
                                                     else (None,) * 4)
        runs.append(
            sweep_figures.SweepRun(
                value=float(meta["sweep"]["value"]),
                seed=meta["config"]["seed"],
                loss_steps=history["loss_steps"],
                losses=history["losses"],
                point_steps=points.get("step", np.zeros(0)),
                mono=points.get("mono_ratio", np.zeros(0)),
                mean_bias=points.get("mean_bias", np.zeros(0)),
                final_loss=final_loss(history["losses"]) if histories else meta["loss"],
                mono_per_feature=per_feature,
                mono_per_neuron=per_neuron,
                dead=int(dead_neurons(snapshot["sfa"]).sum()) if snapshot else None,
                bias=snapshot["bias"] if snapshot else None,
                sfa=snapshot["sfa"] if snapshot else None,
                nearly_mono_per_feature=nearly,
                status=meta["status"],
                complete=meta["step"] >= meta["steps"],
                # the paper's max/sum can pass 0.999 by accident where GeLU/SoLU go negative: shown beside it
                positive_mono_per_feature=positive if meta["config"]["nonlinearity"] != "relu" else None,
            )
        )
    return runs


def register_sweep_callbacks(app: Any, lab: Lab) -> None:
    repeats = RepeatGuard()

    @app.callback(Output("sweep-scale", "options"), Input("sweep-preset-select", "value"))
    def scale_choices(name: str) -> list[dict[str, Any]]:
        """Scale is a paper batch's choice; a quick preset has its own sizes."""
        own = name in QUICK_PRESETS
        return [{"label": "quick (laptop)", "value": "quick", "disabled": own},
                {"label": "paper", "value": "paper", "disabled": own}]

    @app.callback(
        Output("sweep-values-help", "children"), Input("sweep-preset-select", "value"), Input("sweep-scale", "value"),
        Input("sweep-field-select", "value"), Input("sweep-settings-input", "value"),
    )
    def describe_batch(name: str, scale: str, field: str | None, settings_text: str | None) -> str:
        swept = chosen_field(field)
        if name in QUICK_PRESETS:
            base = QUICK_PRESETS[name].config
            what = f"{name}: one run's config; choose the field to sweep and its values (the scale is the preset's)."
        elif name in PAPER_BATCHES:
            sweep = preset_sweep(name, scale)
            base = sweep.base
            what = (f"{sweep.name}: {sweep.field} over {', '.join(value_label(v) for v in sweep.values)} (leave "
                    f"Values empty for these)." if swept in (None, sweep.field) else
                    f"{sweep.name}'s config, sweeping {swept} instead of {sweep.field}: give its values.")
            swept = swept or sweep.field
        else:
            return ""
        settings, _problems = parse_settings(settings_text)  # the sizes as set, while valid (the check names errors)
        base = config_from_dict({k: v for k, v in settings.items() if k != swept}, base)[0] or base
        # the bias init and decay too: a quick twin's decay is the paper's x QUICK_DECAY_SCALE (README, "Presets")
        knobs = [("lr", "lr"), ("init_bias", "initial bias"), ("bias_decay", "bias decay")]
        fixed = ", ".join(f"{label} {getattr(base, knob):g}" for knob, label in knobs if knob != swept)
        return (f"{what} N={base.n_features}, m={base.embed_dim}, k={base.n_neurons}, batch {base.batch_size}, "
                f"{base.steps:,} steps, {fixed}.")

    @app.callback(
        Output("sweep-field-select", "invalid"),
        Output("sweep-values-input", "invalid"),
        Output("sweep-seeds-input", "invalid"),
        Output("sweep-settings-input", "invalid"),
        Output("sweep-start-button", "disabled"),
        Output("sweep-form-problems", "children"),
        Output("sweep-cost", "children"),
        Input("sweep-preset-select", "value"),
        Input("sweep-scale", "value"),
        Input("sweep-values-input", "value"),
        Input("sweep-seeds-input", "value"),
        Input("sweep-share-seed", "value"),
        Input("sweep-field-select", "value"),
        Input("sweep-settings-input", "value"),
    )
    def check_sweep_form(name: str, scale: str, values_text: str | None, seeds: Any, share: bool,
                         field: str | None, settings_text: str | None) -> tuple[Any, ...]:
        sweep, errors = sweep_from_form(name, scale, values_text, seeds, share, field, settings_text)
        if sweep is not None and (too_many := lab.too_many_runs(len(sweep.runs()))):
            errors = {"seeds": too_many}
        problems = [html.Div(sentence(message)) for message in errors.values()]
        return ("field" in errors, "values" in errors, "seeds" in errors or "seed" in errors,
                "settings" in errors, bool(errors), problems, sweep_cost(sweep))

    @app.callback(
        Output("sweep-select", "value"),
        Output("sweep-message", "children"),
        Output("sweep-select", "options", allow_duplicate=True),  # with the value: a dropdown drops unknown values
        Input("sweep-start-button", "n_clicks"),
        State("sweep-preset-select", "value"),
        State("sweep-scale", "value"),
        State("sweep-values-input", "value"),
        State("sweep-seeds-input", "value"),
        State("sweep-share-seed", "value"),
        State("sweep-field-select", "value"),
        State("sweep-settings-input", "value"),
        prevent_initial_call=True,
    )
    def start_sweep(
        _clicks: int, name: str, scale: str, values_text: str | None, seeds: Any, share: bool, field: str | None,
        settings_text: str | None,
    ) -> tuple[Any, Any, Any]:
        sweep, errors = sweep_from_form(name, scale, values_text, seeds, share, field, settings_text)
        try:
            if sweep is None:
                raise InvalidConfig(errors)
            run_ids = repeats.once(repr(sweep), lambda: lab.submit_sweep(sweep))
        except InvalidConfig as err:
            problem = "; ".join(f"{k}: {v}" for k, v in err.errors.items())
            return no_update, alert(problem, "danger"), no_update
        except QueueFull as err:
            return no_update, alert(str(err), "danger"), no_update
        sweep_id = lab.get(run_ids[0])["sweep"]["id"]
        queued = dbc.Alert(f"Queued {len(run_ids)} runs in {len(sweep.jobs())} job(s).", color="success",
                           dismissable=True)
        return sweep_id, queued, sweep_choices()

    @app.callback(
        Output("sweep-select", "value", allow_duplicate=True),
        Output("url", "hash", allow_duplicate=True),
        Output("sweep-message", "children", allow_duplicate=True),
        Output("sweep-select", "options", allow_duplicate=True),
        Input("url", "hash"),
        Input("url", "pathname"),
        Input("sweep-select", "value"),
        prevent_initial_call="initial_duplicate",
    )
    def sync_sweep_and_hash(fragment: str | None, pathname: str | None, chosen: str | None) -> tuple[Any, ...]:
        """The URL's fragment names the sweep shown (`/sweeps#sweep=ID`); only a choice writes it (see
        sync_run_and_hash)."""
        if not is_sweeps(pathname):
            return no_update, no_update, no_update, no_update
        if not triggered_by_url():
            wanted = as_hash("sweep", chosen)
            return no_update, (wanted if wanted != (fragment or "") else no_update), no_update, no_update
        linked = from_hash(fragment, "sweep")
        if linked is None or linked == chosen:
            return no_update, no_update, no_update, no_update
        if linked in lab.sweeps():
            return linked, no_update, no_update, sweep_choices()  # with the value: a dropdown drops unknown values
        gone = alert(f"This link's sweep {linked} is not in this lab: deleted, or from another lab.", "warning",
                     dismissable=True)
        return no_update, no_update, gone, no_update

    @app.callback(Output("nav-sweeps", "href"), Input("sweep-select", "value"))
    def sweeps_link(chosen: str | None) -> str:
        return "/sweeps" + as_hash("sweep", chosen)

    @app.callback(Output("sweep-select", "options"), Input("sweep-tick", "n_intervals"), Input("url", "pathname"))
    def sweep_options(_tick: int, pathname: str | None) -> Any:
        if not is_sweeps(pathname):
            return no_update
        return sweep_choices()

    @app.callback(Output("sweep-overlay", "options"), Input("sweep-tick", "n_intervals"),
                  Input("sweep-select", "value"),
                  State("url", "pathname"), State("sweep-overlay", "options"))
    def overlay_options(_tick: int, sweep_id: str | None, pathname: str | None, shown: Any) -> Any:
        """The other sweeps of the chosen one's field: only those share its results' x axis."""
        if not is_sweeps(pathname):
            return no_update
        sweeps = lab.sweeps()
        field = sweeps[sweep_id][0]["sweep"]["field"] if sweep_id in sweeps else None
        options = [option for option in sweep_choices(sweeps)
                   if option["value"] != sweep_id and sweeps[option["value"]][0]["sweep"]["field"] == field]
        return no_update if options == shown else options

    def sweep_choices(sweeps: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, str]]:
        options = []
        for sweep_id, metas in reversed(list((lab.sweeps() if sweeps is None else sweeps).items())):
            tag = metas[0]["sweep"]
            done = sum(m["status"] == "done" for m in metas)
            options.append(
                {
                    "label": f"{tag['name']} · {tag['field']} · {len(metas)} runs · {done} done · {sweep_id}",
                    "value": sweep_id,
                }
            )
        return options

    @app.callback(
        Output("sweep-request", "data"),
        Input("sweep-tick", "n_intervals"),
        Input("sweep-select", "value"),
        Input("sweep-overlay", "value"),
        State("url", "pathname"),
        State("sweep-request", "data"),
        State("sweep-drawn", "data"),
    )
    def choose_sweep(_tick: int, sweep_id: str | None, overlay: list[str] | None, pathname: str | None,
                     requested: Any, drawn: Any) -> Any:
        """Cheap, every tick: what the sweep's figures should show; a new request only when that changed."""
        if not is_sweeps(pathname) or tick_waits(requested, drawn):
            return no_update
        sweeps = lab.sweeps()
        metas = sweeps.get(sweep_id, []) if sweep_id else []
        if not metas:  # none chosen, or its runs deleted: what it showed must not stay up
            request = new_request("blank", requested, drawn)
        else:
            field = metas[0]["sweep"]["field"]
            # overlays of another field (chosen before the main sweep changed) or deleted since are left out
            overlaid = [i for i in overlay or [] if i != sweep_id and i in sweeps
                        and sweeps[i][0]["sweep"]["field"] == field]
            # lists, not tuples: the key comes back from the browser as JSON
            request = new_request([[i, [[m["id"], m["step"], m["status"]] for m in sweeps[i]]]
                                   for i in [sweep_id, *overlaid]], requested, drawn, sweep=sweep_id,
                                  overlaid=overlaid)
        return no_update if request is None else request

    @app.callback(
        Output("sweep-panels", "figure"),
        Output("sweep-mono-vs-value", "figure"),
        Output("sweep-biases", "figure"),
        *[Output(f"sweep-heatmap-{i}", "figure") for i in range(HEATMAPS)],
        Output("sweep-parcoords", "figure"),
        Output("sweep-drawn", "data"),
        Input("sweep-request", "data"),
    )
    def draw_sweep(request: Any) -> list[Any]:
        n_out = 4 + HEATMAPS
        if not isinstance(request, dict):
            return [no_update] * (n_out + 1)
        sweeps = lab.sweeps()
        sweep_id = request.get("sweep")
        metas = sweeps.get(sweep_id, []) if sweep_id else []
        if not metas:
            return [figures.empty_figure(*blank) for blank in SWEEP_BLANKS] + [drawn_for(request)]
        field = metas[0]["sweep"]["field"]
        overlaid = {i: sweeps[i] for i in request["overlaid"] if i in sweeps}
        try:
            runs = sweep_runs(lab, metas)
            others = [(sweep_label(i, sweeps), sweep_runs(lab, group, histories=False))
                      for i, group in overlaid.items()]
        except UnknownRun:  # a run deleted between looking and reading: the next tick shows the rest
            return [no_update] * n_out + [undrawn(request)]
        values = sorted({r.value for r in runs})
        chosen = [values[0], values[len(values) // 2], values[-1]] if len(values) >= 3 else values
        heatmaps = []
        for i in range(HEATMAPS):
            if i < len(chosen):
                run = sweep_figures.heatmap_run(runs, chosen[i])
                several_seeds = len({r.seed for r in runs if r.value == chosen[i]}) > 1
                heatmaps.append(figures.sfa_heatmap(run.sfa, title=sweep_figures.heatmap_title(field, run,
                                                                                               several_seeds)))
            else:
                heatmaps.append(figures.empty_figure("", "Fewer than three values"))
        rows = [{field: r.value, "seed": r.seed, "final_loss": r.final_loss, "mono_ratio": r.mono_per_feature,
                 "mean_bias": None if r.bias is None else float(np.mean(r.bias))}
                for r in runs if r.status in sweep_figures.RESULT_STATUSES]  # results, not work in progress
        shown = [
            sweep_figures.training_panels(runs, field),
            sweep_figures.metric_vs_value(runs, field, sweep_label(sweep_id, sweeps), others),
            sweep_figures.sorted_biases(runs, field),
            *heatmaps,
            sweep_figures.parallel_coordinates(rows, [field, "seed"]),
        ]
        for fig in shown:  # zoom and hidden traces are kept while this sweep is shown, not carried to another
            fig.layout.uirevision = sweep_id
        parcoords = shown[-1]
        if parcoords.data:  # its brushes are kept by axis position: a new set of axes starts afresh
            parcoords.layout.uirevision = f"{sweep_id}:" + ",".join(d.label for d in parcoords.data[0].dimensions)
        return [*shown, drawn_for(request)]
