"""The run-config form, derived from the field table in core.config (one input per RunConfig field)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlencode

import dash_bootstrap_components as dbc
from dash import html

from core.config import (
    FIELDS,
    RunConfig,
    allowed_range,
    check_value,
    checked_value,
    config_from_dict,
    shown,
    snapshot_cap,
)
from core.presets import PAPER_BATCHES, PRESETS, QUICK_PRESETS
from core.train import batch_key

FIELD_NAMES = list(FIELDS)
LABELS = {n: FIELDS[n].metadata["label"] or n for n in FIELD_NAMES}
# A field's name, and the symbol some messages add after it ("embed_dim (m)"): the label already carries it.
_FIELD_NAME = re.compile(r"\b(" + "|".join(sorted(FIELD_NAMES, key=len, reverse=True)) + r")\b(?: \([A-Za-z]\))?")


def field_id(name: str) -> str:
    """Stable element ids: `task-select`, `init-bias-input`, `n-neurons-input`, ..."""
    kind = "select" if FIELDS[name].metadata["choices"] else "input"
    return f"{name.replace('_', '-')}-{kind}"


def feedback_id(name: str) -> str:
    return f"{name.replace('_', '-')}-feedback"


CUSTOM = "custom"  # no preset: the form's values stand against the defaults (a link without a preset)


def preset_options(continuing: str | None = None) -> list[dict[str, str]]:
    """The presets, and "custom": the defaults as edited, or, while the form continues a run (named by
    `continuing`), that run's config."""
    quick = [{"label": f"{name} — {p.description}", "value": name} for name, p in QUICK_PRESETS.items()]
    paper = [{"label": f"{name} — {PRESETS[name].description}", "value": name} for name in PAPER_BATCHES]
    custom = f"the config of {continuing}, continued" if continuing else "no preset: the defaults, as edited"
    return quick + paper + [{"label": f"{CUSTOM} — {custom}", "value": CUSTOM}]


def field_control(name: str) -> html.Div:
    f = FIELDS[name]
    meta = f.metadata
    if meta["choices"]:
        control = dbc.Select(id=field_id(name), options=[{"label": c, "value": c} for c in meta["choices"]],
                             value=f.default)
    else:
        # text, parsed strictly here (core.config.parse_value): a number box drops what it cannot read, so "0,01"
        # typed for the learning rate arrived as 001, a valid 1 nobody typed
        control = dbc.Input(id=field_id(name), type="text", value=f.default, debounce=True,
                            autocomplete="off")
    return html.Div([
        dbc.Label(meta["label"] or name, html_for=field_id(name), className="mb-0 small fw-semibold"),
        control,
        dbc.FormFeedback(id=feedback_id(name), type="invalid"),
        dbc.FormText(f"{meta['help'].rstrip('.')} ({allowed_range(f)}).", className="d-block small"),
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


def in_form_words(message: str) -> str:
    """A validation message as the form's user reads it: fields named by their labels, not their names
    (the names are right for the API and CLI, whose users type them)."""
    text = _FIELD_NAME.sub(lambda match: LABELS[match.group(1)], message)
    return text[:1].upper() + text[1:]


# A number box sends nothing both when blank and when its text is no number to the browser (1e400 overflows)
BLANK_NUMBER = "is empty or not a readable number"


def form_errors(values: list[Any]) -> tuple[RunConfig | None, dict[str, str]]:
    """Validate the form's values, with messages in form words; an empty number box counts as a missing
    value with its range. Keys are field names, or `memory` for a problem of the whole config."""
    raw = dict(zip(FIELD_NAMES, values))
    missing = {n: f"{n} {'is required' if FIELDS[n].metadata['choices'] else BLANK_NUMBER}: {allowed_range(FIELDS[n])}"
               for n, v in raw.items() if v is None or v == ""}
    present = {n: v for n, v in raw.items() if n not in missing}
    if missing:  # checks across fields would judge the blanks' defaults, values the user never typed
        config, errors = None, {n: problem for n, v in present.items() if (problem := checked_value(n, v)[1])}
    else:
        config, errors = config_from_dict(present)
    errors = {n: in_form_words(m) for n, m in {**errors, **missing}.items()}
    return (None if errors else config), errors


def snapshots_for_steps(values: list[Any], preset: str | None, previous_steps: int | None = None,
                        continued: RunConfig | None = None) -> int | None:
    """After Steps was typed: the snapshot interval to show instead, else None. An interval the user has not set
    (the preset's, or the `continued` run's, or what an earlier Steps of `previous_steps` made it) follows the steps:
    lowered to fewer steps (as the API and CLI do) and raised back with more."""
    raw = dict(zip(FIELD_NAMES, values))
    base = (continued or (PRESETS[preset].config if preset in PRESETS else RunConfig())).snapshot_every
    followed = {base, min(base, previous_steps)} if isinstance(previous_steps, int) and previous_steps > 0 else {base}
    steps, problem = checked_value("steps", raw["steps"])
    if raw["snapshot_every"] not in followed or problem is not None:
        return None
    wanted = min(base, steps)
    return None if wanted == raw["snapshot_every"] else wanted


# Sustained rates measured at paper shapes (benchmarks/RESULTS.md), as FLOP/s of the step's matmuls (28.45 GFLOP a
# run-step): this project's 2-core CPU; a GPU's for one run and for six stacked (a sweep's one job), from an H100 in
# fp32 (1128 and 6 x 208 steps/s) and TF32 (2352 and 6 x 570), and from an H200 in bf16 (3290 and 6 x 949: no H100
# was lent with the bf16 path).
CPU_FLOPS = 100e9
GPU_RATES = {"fp32": (32.1e12, 35.5e12, "H100"), "tf32": (66.9e12, 97.3e12, "H100"),
             "bf16": (93.6e12, 162e12, "H200")}
HEAVY_SECONDS = 600  # on the CPU: a run worth a word before Start


def training_time(configs: list[RunConfig]) -> str:
    """How long heavy training takes, before it is started (a paper-scale preset is ~10 hours on a laptop CPU),
    from the matmuls alone; "" for light work, whose time goes elsewhere (dispatch, sampling). Runs of one shape
    train stacked on a GPU (a sweep over the learning rate, say); runs of a shape of their own, alone."""
    work = sum(c.steps * c.step_flops() for c in configs)
    if work / CPU_FLOPS < HEAVY_SECONDS:
        return ""
    keys = [batch_key(c) for c in configs]
    shapes = Counter(keys)
    gpu = sum(c.steps * c.step_flops() / GPU_RATES[c.precision][1 if shapes[key] > 1 else 0]
              for c, key in zip(configs, keys))
    precisions = sorted({c.precision for c in configs})
    cards = " or ".join(sorted({GPU_RATES[p][2] for p in precisions}))
    return (f"about {format_duration(work / CPU_FLOPS)} on a 2-core CPU, {format_duration(gpu)} on an {cards} "
            f"({', '.join(precisions)})")


def run_cost(config: RunConfig) -> str:
    """What the form's config will cost, when it is long, and what its bias decay will do, when too little or fast."""
    estimate = training_time([config])
    cost = f"A long run ({config.steps:,} steps of {config.step_flops() / 1e9:.3g} GFLOP): {estimate}." \
        if estimate else ""
    return " ".join(part for part in (cost, decay_note(config)) if part)


ENOUGH_DECAY = 2.5  # decay * lr * steps / 2 below this left many neurons dead (ALGORITHM.md: e^-1.2, 106 of 256)
WORKING_DECAY = 5.0  # ... and about this much worked (ALGORITHM.md)


EARLY_SHARE = 1 / 8  # a bias decayed to exp(-WORKING_DECAY) within this share of the run is gone early


def decay_note(config: RunConfig) -> str:
    """A note when a negative initial bias decays too little over the run to revive the neurons it silenced (the
    calibration, about exp(-5) in all, is per number of steps, so fewer steps than a preset's need more decay), or so
    fast that it is gone early in the run (more steps at a preset's decay)."""
    shrink = config.bias_decay * config.lr * config.steps / 2
    if config.init_bias >= 0 or config.bias_decay <= 0:
        return ""
    gone_by = WORKING_DECAY / (config.bias_decay * config.lr)  # the step by which it is down to exp(-5)
    enough = 2 * WORKING_DECAY / (config.lr * config.steps)  # the decay that takes it there by half-way
    if gone_by < EARLY_SHARE * config.steps:
        return (f"Bias decay shrinks the biases to about exp(-5) of their size by step {gone_by:,.0f} of "
                f"{config.steps:,} (exp(-{shrink:.3g}) by half-way; decay x lr x steps / 2); exp(-5) by half-way "
                f"works: bias decay {enough:.3g} for {config.steps:,} steps at this learning rate.")
    if shrink >= ENOUGH_DECAY:
        return ""
    if enough * config.lr > 1 or check_value(FIELDS["bias_decay"], enough) is not None:
        return ""  # a run too short for any allowed decay to do it: nothing to suggest
    return (f"Bias decay shrinks the biases by about exp(-{shrink:.2g}) in all (decay x lr x steps / 2), which leaves "
            f"many neurons dead; about exp(-5) works: bias decay {enough:.3g} for {config.steps:,} steps at this "
            "learning rate.")


def format_duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def form_summary(errors: dict[str, str]) -> str:
    """Why Start is off, in one line: problems of the whole config in full, and the fields to fix by label
    (one in the collapsed Advanced section would otherwise be invisible)."""
    whole = [m if m.endswith(".") else m + "." for n, m in errors.items() if n not in FIELDS]  # one sentence each
    fields = [LABELS[n] + ("" if FIELDS[n].metadata["basic"] else " (Advanced)") for n in FIELD_NAMES
              if n in errors]
    return " ".join(whole + ([f"To start, fix: {', '.join(fields)}."] if fields else []))


def link_number(value: float) -> str:
    """A float as a link writes it: its shortest exact text (repr; a link must give back the very same config, which
    `:g` rounds), a whole number without its ".0"."""
    return repr(value).removesuffix(".0")


def config_to_query(config: RunConfig, preset: str | None) -> str:
    """The URL query holding the config: only fields that differ from the preset (or the defaults)."""
    base = PRESETS[preset].config if preset in PRESETS else RunConfig()
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(base, f.name)}
    query = {"preset": preset if preset in PRESETS else CUSTOM} | {k: link_number(v) if isinstance(v, float) else v
                                                                    for k, v in changed.items()}
    return "?" + urlencode(query)


@dataclasses.dataclass(frozen=True)
class LinkedConfig:
    """What a URL query holds: its preset, the config built from its usable values, and what it could not use."""

    preset: str | None
    config: RunConfig | None
    ignored: list[str]


def config_from_query(search: str | None) -> LinkedConfig:
    """The config encoded in a URL query; config is None where the query holds nothing for the form.

    A value of the wrong type or out of its range is left out (the rest of the link still counts) and named in
    `ignored`. Values that clash with each other stay: the form then marks them, as if they had been typed."""
    pairs = parse_qsl((search or "").lstrip("?"), keep_blank_values=True)
    if not pairs:
        return LinkedConfig(None, None, [])
    ignored = [f"{shown(k)} is given {n} times: all but the last" for k, n in Counter(k for k, _ in pairs).items()
               if n > 1]
    query = dict(pairs)  # the last of repeated keys, as a form that wrote them in order means
    preset = query.pop("preset", None)
    custom = preset == CUSTOM
    if preset is not None and preset not in PRESETS:
        if not custom:
            ignored.append(f"preset {shown(preset)} is unknown")
        preset = None
    values = {}
    for name, raw in query.items():
        if name == "token":  # the lab's token (app.security), not a field: a wrong one is told where it is needed
            continue
        if name not in FIELDS:
            ignored.append(f"{shown(name)} is not a field")
            continue
        value, problem = checked_value(name, raw)
        if problem:
            ignored.append(in_form_words(problem))
        else:
            values[name] = value
    if preset is None and not custom and not values:  # nothing of a config (a tracking parameter): keep the form
        return LinkedConfig(None, None, ignored)
    base = PRESETS[preset].config if preset else RunConfig()
    if (every := snapshot_cap(values, base)) is not None:  # `steps=100` on a preset that snapshots every 256
        values["snapshot_every"] = every
    return LinkedConfig(preset, base.replace(**values), ignored)
