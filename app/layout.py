"""The page: config form and run list on the left, the selected run's live view on the right."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from app.compare_page import compare_layout, comparison_starter
from app.components import graph
from app.form import config_form
from app.inspect_panel import inspect_layout
from app.live import MAX_SMOOTHING, SMOOTHING
from app.sweep_page import sweep_layout

LIVE_INTERVAL_MS = 1000
PICK = "Start a run, or pick one from the list"
NO_RUN_TITLE = "No run selected"
NO_RUN_SUBTITLE = "Start a run on the left, or pick one from the list."
# What each live graph says before a run is chosen (and again once the chosen run is deleted).
LIVE_BLANKS = {
    "loss-graph": ("Loss", PICK),
    "mono-graph": ("Mono neurons per feature", PICK),
    "bias-history-graph": ("Mean bias", PICK),
    "lr-graph": ("Learning rate", PICK),
    "sfa-heatmap": ("Single-feature activations", "Neurons x features appear here as the run trains"),
    "bias-graph": ("First-layer bias per neuron", PICK),
    "score-histogram": ("r = max/sum per neuron", PICK),
}


def live_graph(graph_id: str, height: int = 260) -> dcc.Graph:
    return graph(graph_id, height, *LIVE_BLANKS[graph_id])

TEACHING = [
    html.P(
        [
            html.B("The toy model. "),
            "Sparse features (N of them, each present with probability eps) are "
            "squeezed by a fixed random projection into m < N inputs. A two-layer network with k neurons "
            "(linear + bias, a nonlinearity, linear) learns to recover them.",
        ]
    ),
    html.P(
        [
            html.B("Monosemantic neuron. "),
            "A neuron that responds (almost) only to one feature. For each neuron we "
            "measure r = (largest activation over single features) / (sum over features); r > 0.999 counts as "
            "monosemantic, and a dead neuron (silent for every feature) never does. The headline number is "
            "monosemantic neurons / N, 'per feature': near 1 means roughly one per feature (it can pass 1 when a "
            "feature gets two). The dotted line counts nearly monosemantic neurons (r > 0.9), which show long "
            "before they pass 0.999; in the r histogram they pile up near 1.",
        ]
    ),
    html.P(
        [
            html.B("The heatmap. "),
            "Each row is a neuron, each column a feature; a cell is the neuron's "
            "activation when only that feature is present at amplitude 1. Sorted as in the paper: the most "
            "selective neurons on top, each feature placed by the neuron it excites most, so a monosemantic "
            "model shows a bright diagonal and a polysemantic one a speckled block. A neuron's faint responses to "
            "many other features hardly show on this colour scale, so the strip at the right edge gives each row's "
            "r: red above 0.999 (counted monosemantic), orange above 0.9 (nearly), grey below. A clean-looking "
            "diagonal can be mostly orange. Where a feature's strongest neuron is a polysemantic one (often in the "
            "absolute-value task, where features need two neurons each), the feature sits off the diagonal.",
        ]
    ),
    html.P(
        [
            html.B("What the paper found. "),
            "A basin is the region around one loss minimum that training settles into. With zero initial bias, "
            "higher learning rates (Learning rate, under Advanced) reach more monosemantic basins. A negative "
            "initial bias with bias decay gives much more monosemantic models, at slightly lower loss; more "
            "neurons help too (all with k > N). Bias decay pulls every bias toward 0 during the first half of "
            "training only, reviving neurons the negative start silenced; afterwards the biases are free. Runs "
            "with nearly the same loss can sit in very different basins: compare their heatmaps. At the quick "
            "presets' size the effects are real but smaller than the paper's; paper scale needs a GPU.",
        ]
    ),
    html.P(
        [
            html.B("Moving a trained model. "),
            "Continue (in the run list) trains a finished or stopped run on from its weights. A zero-bias model "
            "trained on as it was stays polysemantic; continued with its biases pushed down (change Initial bias) "
            "and bias decay, it moves to a more monosemantic basin. The push alone only kills neurons.",
        ]
    ),
]


def stat(label: str, value_id: str) -> dbc.Col:
    return dbc.Col(
        html.Div(
            [html.Div(label, className="stat-label"), html.Div("–", id=value_id, className="stat-value")],
            className="stat",
        ),
        xs=6,
        md=3,
        lg=True,
    )


FORM_SHOWN_LABEL, FORM_HIDDEN_LABEL = "Hide the form", "Show the form"


def controls_column() -> html.Div:
    return html.Div(
        [
            html.H5("New run", className="mt-2"),
            html.Div(id="link-message"),  # what a link's query held that the form could not use
            html.Div(id="link-run-message"),  # a link naming a run this lab lacks
            config_form(),
            # kept in view at the panel's bottom edge: on a 720 px projector the form is taller than the panel
            html.Div([
                # the run Start continues (Continue on a finished run), where it is seen while Start is
                html.Div(id="continue-banner"),
                html.Div(id="form-message", className="small text-danger mb-1"),  # why Start is off
                dbc.Button("Start run", id="start-button", color="primary", className="w-100 mb-1"),
                html.Div(id="form-cost", className="small text-muted mb-1"),  # how long a heavy run takes
            ], className="start-bar"),
            html.Div(id="submit-message"),
            comparison_starter(),
            html.H5("Runs", className="mt-3"),
            html.Div(id="store-problem"),  # the run store (Redis) out of reach: said here, not an empty list
            html.Div(id="run-list", className="run-list"),
            html.Div(id="store-usage", className="small text-muted mt-2"),
        ]
    )


def live_column() -> html.Div:
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(dbc.Accordion(
                        [dbc.AccordionItem(TEACHING, title="What am I looking at?")],
                        start_collapsed=True,
                        id="teaching-panel",
                    )),
                    # with the form and run list hidden, the runs are still a pick away (shown by the CSS then)
                    dbc.Col(dcc.Dropdown(id="run-picker", clearable=False, searchable=True,
                                         placeholder="Show another run...", style={"minWidth": "22rem"}),
                            width="auto", className="run-picker"),
                    # on a projector the figures want the whole width: the form and run list step aside
                    dbc.Col(dbc.Button(FORM_SHOWN_LABEL, id="form-toggle", color="secondary", outline=True,
                                       size="sm", title="Give the figures the whole width (a projector)"),
                            width="auto"),
                ],
                align="center",
                className="g-2 mb-2",
            ),
            html.Div(
                [
                    html.H4(NO_RUN_TITLE, id="live-title", className="mb-0"),
                    html.Div(
                        NO_RUN_SUBTITLE,
                        id="live-subtitle",
                        className="text-muted small",
                    ),
                ],
                className="mb-2",
            ),
            dbc.Progress(id="live-progress", value=0, className="mb-2", style={"height": "6px"}),
            dbc.Row(
                [
                    stat("Step", "stat-step"),
                    stat("Loss (last 5%)", "stat-loss"),
                    stat("Mono neurons / feature", "stat-mono"),
                    stat("Mean bias", "stat-bias"),
                    stat("Learning rate (cosine)", "stat-lr"),  # near 0 at each trough: not a bug
                ],
                className="g-2 mb-2",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            live_graph("loss-graph"),
                            html.Div(
                                [
                                    dbc.Label("Smoothing (the EMA weight, 0 to 0.99)", html_for="smoothing-slider",
                                              className="small mb-0"),
                                    dcc.Slider(
                                        id="smoothing-slider",
                                        min=0,
                                        max=MAX_SMOOTHING,
                                        step=0.01,
                                        value=SMOOTHING,
                                        marks={0: "0", 0.5: "0.5", 0.9: "0.9", 0.99: "0.99"},
                                    ),
                                ]
                            ),
                        ],
                        lg=6,
                    ),
                    dbc.Col(live_graph("mono-graph"), lg=6),
                ],
                className="g-2",
            ),
            dbc.Row(
                [
                    dbc.Col(live_graph("bias-history-graph", 220), lg=6),
                    dbc.Col(live_graph("lr-graph", 220), lg=6),
                ],
                className="g-2",
            ),
            html.Div(
                [
                    dbc.Row(
                        [
                            dbc.Col(html.H5("Single-feature activations", className="mb-0"), width="auto"),
                            dbc.Col(dbc.Switch(id="sfa-sorted", label="Paper ordering", value=True), width="auto"),
                            dbc.Col(html.Span(id="heatmap-step", className="small text-muted"), width="auto"),
                        ],
                        align="center",
                        className="g-3 mt-2",
                    ),
                    live_graph("sfa-heatmap", 520),
                    dbc.Label(
                        "Replay: stored checkpoints (right end = live)",
                        html_for="checkpoint-slider",
                        className="small mb-0",
                    ),
                    dcc.Slider(
                        id="checkpoint-slider",
                        min=0,
                        max=0,
                        step=1,
                        value=0,
                        marks=None,
                        allow_direct_input=False,  # its positions are checkpoint indices, not steps
                    ),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(live_graph("bias-graph"), lg=6),
                    dbc.Col(live_graph("score-histogram"), lg=6),
                ],
                className="g-2 mt-2",
            ),
            html.Div(id="download-area", className="mt-2"),
            inspect_layout(),
        ]
    )


def missing_page() -> html.Div:
    """What a path the lab has no page at shows (the path is filled in by the router)."""
    return html.Div(
        [
            html.H4("No page here"),
            html.P(["The lab has no page at ", html.Code(id="missing-page-path"), "."]),
            html.P(["Its pages: ", dcc.Link("Train", href="/"), " (start runs and watch them learn), ",
                    dcc.Link("Compare", href="/compare"), " (runs side by side) and ",
                    dcc.Link("Sweeps", href="/sweeps"), " (one setting over many values)."]),
        ],
        className="mt-4",
    )


def build_layout() -> html.Div:
    return html.Div(
        [
            dcc.Location(id="url", refresh=False),
            # one timer per page, each running only while its page shows (the router): the hidden pages' polls
            # were more than half of an idle tab's requests
            dcc.Interval(id="tick", interval=LIVE_INTERVAL_MS, disabled=False),
            dcc.Interval(id="compare-tick", interval=LIVE_INTERVAL_MS, disabled=True),
            dcc.Interval(id="sweep-tick", interval=LIVE_INTERVAL_MS, disabled=True),
            dcc.Store(id="selected-run", storage_type="session"),
            dcc.Store(id="live-request"),  # what the live view is to show (app.draw_requests)
            dcc.Store(id="live-state"),  # what it was drawn for, and the curves as drawn, that a draw extends
            dcc.Store(id="run-list-shown"),  # a digest of the run list as shown: a tick changing nothing sends nothing
            dcc.Store(id="sweep-request"),  # what the sweep's figures are to show (app.draw_requests)
            dcc.Store(id="sweep-drawn"),  # the request they were drawn for
            dcc.Store(id="delete-pending"),  # the run the delete dialog asks about
            # {"run", "step"}: the weights Start continues from (step None: final); kept by a reload, as the form's
            # config is (in the URL), so that Start after a reload still continues
            dcc.Store(id="continue-from", storage_type="session"),
            dcc.Store(id="form-hidden", storage_type="session"),  # "Hide the form" clicked
            dcc.ConfirmDialog(id="delete-confirm"),
            dbc.Navbar(
                dbc.Container(
                    [
                        dbc.NavbarBrand("Monosemanticity Lab", href="/", className="fw-bold"),
                        dbc.Nav(
                            [
                                dbc.NavLink("Train", href="/", id="nav-train"),
                                dbc.NavLink("Compare", href="/compare", id="nav-compare"),
                                dbc.NavLink("Sweeps", href="/sweeps", id="nav-sweeps"),
                            ],
                            navbar=True,
                        ),
                        html.Span(
                            "Engineering Monosemanticity in Toy Models — live", className="navbar-text small ms-auto"
                        ),
                    ],
                    fluid=True,
                ),
                color="dark",
                dark=True,
                className="mb-3",
            ),
            dbc.Container(
                dbc.Row(
                    [
                        dbc.Col(controls_column(), lg=3, md=4, className="controls"),
                        dbc.Col(live_column(), lg=9, md=8, className="live"),
                    ]
                ),
                fluid=True,
                id="lab-page",
            ),
            dbc.Container(compare_layout(), fluid=True, id="compare-page", style={"display": "none"}),
            dbc.Container(sweep_layout(), fluid=True, id="sweeps-page", style={"display": "none"}),
            dbc.Container(missing_page(), fluid=True, id="missing-page", style={"display": "none"}),
        ]
    )
