"""The Dash app: `create_app(lab)` builds the page, its callbacks and the JSON API on one server."""

from __future__ import annotations

import logging
from pathlib import Path

import dash
import dash_bootstrap_components as dbc  # noqa: F401  (registers the components)

from app.api import register_api
from app.callbacks import register_callbacks
from app.compare_page import register_compare_callbacks
from app.inspect_panel import register_inspect_callbacks
from app.layout import build_layout
from app.security import refuse_cross_site, require_token
from app.sweep_page import register_sweep_callbacks
from core.jobs import Lab

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
BOOTSTRAP_CSS = "vendor/bootstrap.min.css"

log = logging.getLogger(__name__)


def create_app(lab: Lab, token: str | None = None) -> dash.Dash:
    """The app on `lab`'s store; with a token, changes to runs require it (see app.security)."""
    if not (ASSETS / BOOTSTRAP_CSS).exists():
        log.warning("assets/%s is missing: run scripts/setup (the page will be unstyled)", BOOTSTRAP_CSS)
    app = dash.Dash(
        __name__,
        title="Monosemanticity Lab",
        assets_folder=str(ASSETS),
        # Bootstrap first, from our own server (never a CDN: the lab must work offline), then our CSS.
        external_stylesheets=[f"/assets/{BOOTSTRAP_CSS}"],
        assets_path_ignore=["^vendor$"],  # served, but linked once, by external_stylesheets above
        suppress_callback_exceptions=True,
        update_title=None,
    )
    app.layout = build_layout()
    register_callbacks(app, lab)
    register_compare_callbacks(app, lab)
    register_sweep_callbacks(app, lab)
    register_inspect_callbacks(app, lab)
    register_api(app.server, lab)
    refuse_cross_site(app)
    if token:
        require_token(app, token)
    return app
