"""The run-config form, derived from the field table in core.config (one input per RunConfig field)."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl, urlencode

import dash_bootstrap_components as dbc
from dash import html

from core.config import FIELDS, RunConfig, allowed_range, config_from_dict
from core.presets import PAPER_BATCHES, PRESETS, QUICK_PRESETS

FIELD_NAMES = list(FIELDS)


def field_id(name: str) -> str:
    """Stable element ids: `task-select`, `init-bias-input`, `n-neurons-input`, ..."""
    kind = "select" if FIELDS[name].metadata["choices"] else "input"
    return f"{name.replace('_', '-')}-{kind}"


def feedback_id(name: str) -> str:
    return f"{name.replace('_', '-')}-feedback"


def preset_options() -> list[dict[str, str]]:
    quick = [{"label": f"{name} — {p.description}", "value": name} for name, p in QUICK_PRESETS.items()]
    paper = [{"label": f"{name} (paper scale) — {b.description}", "value": name} for name, b in PAPER_BATCHES.items()]
    return quick + paper


def field_control(name: str) -> html.Div:
    f = FIELDS[name]
    meta = f.metadata
    if meta["choices"]:
        control = dbc.Select(id=field_id(name), options=[{"label": c, "value": c} for c in meta["choices"]],
                             value=f.default)
    else:
        control = dbc.Input(id=field_id(name), type="number", value=f.default, step="any", debounce=True)
    return html.Div([
        dbc.Label(meta["label"] or name, html_for=field_id(name), className="mb-0 small fw-semibold"),
        control,
        dbc.FormFeedback(id=feedback_id(name), type="invalid"),
        dbc.FormText(f"{meta['help']} ({allowed_range(f)})", className="d-block small"),
    ], className="mb-2")


def config_form() -> html.Div:
    basic = [n for n in FIELD_NAMES if FIELDS[n].metadata["basic"]]
    advanced = [n for n in FIELD_NAMES if not FIELDS[n].metadata["basic"]]
    return html.Div([
        dbc.Label("Preset", html_for="preset-select", className="mb-0 small fw-semibold"),
        dbc.Select(id="preset-select", options=preset_options(), value="quick-negative-bias", className="mb-2"),
        *[field_control(n) for n in basic],
        dbc.Accordion([dbc.AccordionItem([field_control(n) for n in advanced], title="Advanced")],
                      start_collapsed=True, className="mb-2", id="advanced-accordion"),
    ])


def values_from_config(config: RunConfig) -> list[Any]:
    return [getattr(config, n) for n in FIELD_NAMES]


def form_errors(values: list[Any]) -> tuple[RunConfig | None, dict[str, str]]:
    """Validate the form's values; an empty number box counts as a missing value with its range."""
    raw = dict(zip(FIELD_NAMES, values))
    missing = {n: f"{n} is required: {allowed_range(FIELDS[n])}" for n, v in raw.items() if v is None or v == ""}
    present = {n: v for n, v in raw.items() if n not in missing}
    config, errors = config_from_dict(present)
    errors = {**missing, **errors}
    return (None if errors else config), errors


def config_to_query(config: RunConfig, preset: str | None) -> str:
    """The URL query holding the config: only fields that differ from the preset (or the defaults)."""
    base = PRESETS[preset].config if preset in PRESETS else RunConfig()
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(base, f.name)}
    # floats as their shortest exact text (repr): a link must give back the very same config, which `:g` rounds
    query = ({"preset": preset} if preset in PRESETS else {}) | {k: repr(v) if isinstance(v, float) else v
                                                                 for k, v in changed.items()}
    return "?" + urlencode(query) if query else ""


def config_from_query(search: str | None) -> tuple[str | None, RunConfig | None]:
    """(preset, config) encoded in a URL query; None where the query holds nothing usable."""
    if not search:
        return None, None
    pairs = dict(parse_qsl(search.lstrip("?")))
    preset = pairs.pop("preset", None)
    preset = preset if preset in PRESETS else None
    base = PRESETS[preset].config if preset else RunConfig()
    known = {k: v for k, v in pairs.items() if k in FIELDS}
    config, errors = config_from_dict(known, base)
    if errors:  # keep what is valid; the form shows the rest as errors once edited
        valid = {k: v for k, v in known.items() if k not in errors}
        config, errors = config_from_dict(valid, base)
    return preset, config
