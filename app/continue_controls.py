"""The Train page's Continue: the run (and saved step) the form continues from, what it says about it, and the
inspector's "Continue from these weights" (core.continuation)."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx, html, no_update

from app.components import run_name
from app.form import config_from_query, config_to_query, preset_options
from app.links import is_train_page
from core.config import shown_value
from core.continuation import continuation_errors
from core.jobs import Lab, diverged
from core.presets import PRESETS


def continued_run(data: Any) -> tuple[str | None, int | None]:
    """The continue-from store's run and step (None: its final weights), or (None, None) for a fresh run."""
    if not isinstance(data, dict) or not isinstance(data.get("run"), str):
        return None, None
    step = data.get("step")
    return data["run"], step if isinstance(step, int) else None


def continue_from(run_id: str, step: int | None) -> dict[str, Any]:
    return {"run": run_id, "step": step}


def continue_button(run_id: str, step: int | None) -> dbc.Button:
    """Under the inspector's heading: continue from the weights it shows (0 in the id: the final ones)."""
    label = "Continue from these weights" if step is None else f"Continue from step {step:,}"
    return dbc.Button(label, id={"type": "continue-at", "run": run_id, "step": step or 0},
                      size="sm", color="primary", outline=True, className="ms-2 py-0")


def continue_banner(meta: dict[str, Any], step: int | None) -> dbc.Alert:
    """Says what Start will do while the form continues a run, with the way back to a fresh start."""
    at = meta.get("weights_step", meta["step"]) if step is None else step  # a diverged run's last saved weights
    # short, the rest folded: it sits in the start bar, which on a 720 px projector covered the form's fields
    return dbc.Alert([
        html.B("Continues "), f"{run_name(meta['label'], meta['id'])} from step {at:,}, with a fresh schedule "
        "and optimiser. ",
        # its settings are the form's: the learning rate it diverged at is there until changed
        html.B(f"It diverged at learning rate {shown_value(meta['config']['lr'])}: lower it (Advanced). ")
        if diverged(meta) else "",
        dbc.Button("Start fresh instead", id="continue-cancel", color="link", size="sm",
                   className="p-0 align-baseline"),
        html.Details([
            html.Summary("What the form's fields do now"),
            f"L1 reg is under Advanced. A change to Initial bias pushes its trained biases by the difference (its "
            f"init bias is {meta['config']['init_bias']:g}).",
        ]),
    ], color="info", className="small py-1 px-2 mb-1")


def register_continue_callbacks(app: Any, lab: Lab) -> None:
    @app.callback(Output("continue-banner", "children"), Output("start-button", "children"),
                  Output("preset-select", "options"), Input("continue-from", "data"))
    def show_continuing(data: Any) -> tuple[Any, str, list[dict[str, str]]]:
        run_id, step = continued_run(data)
        if not run_id or not lab.exists(run_id):
            return None, "Start run", preset_options()
        meta = lab.get(run_id)
        return continue_banner(meta, step), "Continue run", preset_options(run_name(meta["label"], run_id))

    # Continue is clicked down in the run list: bring the banner and the button it changed into view
    app.clientside_callback(
        """function (data) {
            const start = document.getElementById("start-button");
            if (data && start) { start.scrollIntoView({block: "nearest"}); }
            return window.dash_clientside.no_update;
        }""",
        Output("continue-banner", "title"), Input("continue-from", "data"), prevent_initial_call=True,
    )

    @app.callback(Output("continue-from", "data", allow_duplicate=True), Input("continue-cancel", "n_clicks"),
                  prevent_initial_call=True)
    def start_fresh(clicks: int | None) -> Any:
        return None if clicks else no_update

    @app.callback(Output("continue-from", "data", allow_duplicate=True), Input("preset-select", "value"),
                  State("continue-from", "data"), prevent_initial_call=True)
    def preset_of_another_world(preset: str | None, data: Any) -> Any:
        """A preset picked whose task, sizes, seed or init variant the run's weights cannot keep: the user has moved
        on to a fresh run (Continue itself sets the form through the URL, as preset "custom"). One they can keep
        goes on continuing, with the preset's training: its initial bias pushes the trained biases."""
        run_id, _step = continued_run(data)
        if not run_id or preset not in PRESETS or not lab.exists(run_id):
            return no_update
        return None if continuation_errors(run_id, lab.config(run_id), PRESETS[preset].config) else no_update

    # on the pathname, not the query: the form's edits rewrite the query, and one the weights cannot keep is flagged
    @app.callback(Output("continue-from", "data", allow_duplicate=True), Input("url", "pathname"),
                  State("url", "search"), State("preset-select", "value"), State("continue-from", "data"),
                  prevent_initial_call="initial_duplicate")
    def link_of_another_world(pathname: str | None, search: str | None, preset: str | None, data: Any) -> Any:
        """The Train page opened (a bare "/", a link) with a config the run's weights cannot keep: a fresh run, not a
        form of fields flagged "must stay" (the session remembers the run Start continues)."""
        run_id, _step = continued_run(data)
        if not run_id or not is_train_page(pathname):
            return no_update
        if not lab.exists(run_id):
            return None
        config = config_from_query(search).config or (PRESETS[preset].config if preset in PRESETS else None)
        if config is None:
            return no_update
        return None if continuation_errors(run_id, lab.config(run_id), config) else no_update

    @app.callback(Output("continue-from", "data", allow_duplicate=True),
                  Output("url", "search", allow_duplicate=True),
                  Input({"type": "continue-at", "run": ALL, "step": ALL}, "n_clicks"), prevent_initial_call=True)
    def continue_at_checkpoint(clicks: list[int | None]) -> tuple[Any, Any]:
        """The form takes the run's config (through the URL, as a link would) and Start continues from the weights
        the inspector shows."""
        trigger = ctx.triggered_id
        if not trigger or not any(clicks) or not lab.exists(trigger["run"]):
            return no_update, no_update
        return (continue_from(trigger["run"], trigger["step"] or None),
                config_to_query(lab.config(trigger["run"]), None))
