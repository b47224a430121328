"""Sweeps over the JSON API: `POST /api/sweeps` queues a paper batch (or any preset with a field and values), as the
Sweeps page and `cli sweep` do; `GET /api/sweeps` lists them with their runs."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify

from app.api_json import NumberText, error, field_errors, json_body, quoted_numbers, refused_runs
from app.form import training_time
from core.config import FIELDS, shown, unknown_field
from core.jobs import InvalidConfig, Lab, QueueFull
from core.presets import PAPER_BATCHES, PRESETS
from core.sweep import MAX_SEEDS, MAX_VALUES, Sweep, capped_sweep, preset_sweep, problems_given_in, with_settings

SWEEP_KEYS = ("preset", "scale", "field", "values", "seeds", "shared_seed", "set")
SCALES = ("quick", "paper")


def parse_sweep(body: Any) -> tuple[Sweep | None, dict[str, str]]:
    """The sweep a JSON body describes, or its problems by key: {"preset", "scale", "field", "values", "seeds",
    "shared_seed", "set"} with only "preset" required; "set" is an object of config fields every run shares."""
    if not isinstance(body, dict):
        return None, {"body": 'expected a JSON object: {"preset": name, "scale", "field", "values", "seeds", '
                              '"shared_seed", "set"}'}
    errors = {key: f"unknown key {shown(key)}; allowed: {', '.join(SWEEP_KEYS)}" for key in body
              if key not in SWEEP_KEYS}
    preset, scale = body.get("preset"), body.get("scale", "quick")
    field, values = body.get("field"), body.get("values")
    seeds, shared, settings = body.get("seeds", 1), body.get("shared_seed", False), body.get("set", {})
    known = isinstance(preset, str) and preset in PRESETS  # a list or object is unhashable: no `in` on it
    if not known:
        errors["preset"] = (f"preset must be a paper batch ({', '.join(PAPER_BATCHES)}) or a preset with a field "
                            f"to sweep, got {shown(preset)}")
    if scale not in SCALES:
        errors["scale"] = f"scale must be one of {', '.join(SCALES)}, got {shown(scale)}"
    elif "scale" in body and known and preset not in PAPER_BATCHES:
        errors["scale"] = f"scale is for the paper batches; {preset} has its own sizes (leave scale out)"
    if field is not None and not isinstance(field, str):
        errors["field"] = f"field must be a config field's name, got {shown(field)}"
    if values is not None and not (isinstance(values, list) and 1 <= len(values) <= MAX_VALUES and all(
            isinstance(v, (int, float, NumberText)) and not isinstance(v, bool) for v in values)):
        errors["values"] = f"values must be a list of 1 to {MAX_VALUES} JSON numbers, got {shown(values)}"
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        errors["seeds"] = f"seeds must be an integer from 1 to {MAX_SEEDS}, got {shown(seeds)}"
    if not isinstance(shared, bool):
        errors["shared_seed"] = f"shared_seed must be true or false, got {shown(shared)}"
    if not isinstance(settings, dict):
        errors["set"] = f'set must be an object of config fields, as {{"init_bias": 0}}, got {shown(settings)}'
    elif quoted := quoted_numbers(settings):  # with the unknown names too: every problem of "set" at once
        errors["set"] = "; ".join([*quoted.values(), *(unknown_field(n)[1] for n in settings if n not in FIELDS)])
    if errors:
        return None, errors
    try:
        sweep = preset_sweep(preset, scale, values or None, seeds, field, shared)  # numbers named as sent: 64.5
    except ValueError as err:
        text = str(err)
        key = "field" if text.startswith(("field must", "preset ")) else "values"
        return None, {key: text}
    sweep, setting_errors = with_settings(capped_sweep(sweep, settings), settings)
    if sweep is None:
        return None, {"set": "; ".join(setting_errors.values())}
    problems = problems_given_in(sweep.validate(), settings, "set")
    return (None, problems) if problems else (sweep, {})


def register_sweep_api(server: Flask, lab: Lab) -> None:
    @server.post("/api/sweeps")
    def api_submit_sweep() -> tuple[Response, int]:
        body, refused = json_body("the sweep")
        if refused:
            return refused
        sweep, errors = parse_sweep(body)
        if errors:
            return field_errors(errors)
        try:
            run_ids = lab.submit_sweep(sweep)
        except QueueFull as err:
            return error(503, str(err))
        except InvalidConfig as err:
            return refused_runs(err.errors)
        estimate = training_time(sweep.configs())
        return jsonify({"sweep": lab.get(run_ids[0])["sweep"]["id"], "field": sweep.field, "runs": run_ids,
                        "jobs": len(sweep.jobs()), **({"note": f"A long sweep: {estimate}."} if estimate else {})}), 201

    @server.get("/api/sweeps")
    def api_list_sweeps() -> Response:
        return jsonify([{"id": sweep_id, "name": metas[0]["sweep"]["name"], "field": metas[0]["sweep"]["field"],
                         "runs": [{"id": m["id"], "value": m["sweep"]["value"], "seed": m["config"]["seed"],
                                   "status": m["status"], "step": m["step"], "loss": m["loss"],
                                   "mono_ratio": m["mono_ratio"]} for m in metas]}
                        for sweep_id, metas in lab.sweeps().items()])
