"""A small JSON API on the app's own server, for scripts and notebooks (`/api/...`)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from app.api_continue import register_continue_api
from app.api_json import (
    MAX_BODY_BYTES,
    MAX_PAGE_BODY_BYTES,
    error,
    field_errors,
    json_body,
    json_config,
    refused_runs,
    too_large,
)
from app.api_sweeps import register_sweep_api
from app.form import run_cost
from core.config import FIELDS, RunConfig, allowed_range, shown
from core.jobs import (
    CONTROLS,
    POINT_FIELDS,
    STOPPING_NOTE,
    InvalidConfig,
    Lab,
    QueueFull,
    UnknownRun,
    can_continue,
    controls_of,
    failed_with_its_job,
    waiting_to_stop,
)
from core.presets import PRESETS
from core.redis_store import UNREACHABLE, unreachable_message

log = logging.getLogger(__name__)

MAX_SINCE_DIGITS = 12
API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
SUMMARY_KEYS = ("id", "label", "status", "step", "steps", "loss", "mono_ratio", "mean_bias", "lr", "eta_seconds",
                "device", "error", "note", "created", "job", "start")


def run_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """A run as the API gives it; `retryable`: it failed with its job, and resume tries it again; `continuable`:
    /continue can start from its weights (a diverged run's, those at `weights_step`)."""
    return {**{k: meta.get(k) for k in SUMMARY_KEYS}, "retryable": failed_with_its_job(meta),
            "continuable": can_continue(meta), "weights_step": meta.get("weights_step"), "config": meta["config"]}


MISSING = object()  # a key not sent, apart from one sent as null


def parse_submission(body: Any) -> tuple[RunConfig | None, dict[str, str], str]:
    """A run config from a JSON body: its fields by RunConfig name, or {"preset": name, ...overrides}."""
    if not isinstance(body, dict):
        return None, {"body": "expected a JSON object of run config fields or {\"preset\": name}"}, ""
    fields = dict(body)
    preset = fields.pop("preset", MISSING)  # sent as null is a mistake to name, not "no preset"
    base = None
    if preset is not MISSING:
        if not isinstance(preset, str) or preset not in PRESETS:
            return None, {"preset": f"unknown preset {shown(preset)}; allowed: {', '.join(PRESETS)}"}, ""
        base = PRESETS[preset].config
    config, errors = json_config(fields, base)
    if config is None:
        return None, errors, ""
    if preset is MISSING:
        return config, errors, "api"
    return config, errors, preset if config == PRESETS[preset].config else f"{preset} (edited)"


CREATED_RUN = "{id, note: how long a heavy run takes}"
FIELD_ERRORS = "{error: the messages joined, errors: {field: message naming the allowed range}}"


def openapi_spec() -> dict[str, Any]:
    properties = {}
    for name, f in FIELDS.items():
        meta = f.metadata
        schema: dict[str, Any] = {"description": f"{meta['help']} Allowed: {allowed_range(f)}.", "default": f.default}
        if meta["choices"]:
            schema.update(type="string", enum=list(meta["choices"]))
        else:
            schema["type"] = "integer" if f.type in ("int", int) else "number"
            schema["minimum"] = meta["lo"]
            schema["maximum"] = meta["hi"]
            if meta["lo_open"]:
                schema["exclusiveMinimum"] = True  # OpenAPI 3.0's form (3.1 gives the bound itself)
        properties[name] = schema
    properties["preset"] = {"type": "string", "enum": list(PRESETS), "description": "start from a preset"}
    run_path = {"parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]}
    ok = {"200": {"description": "OK"}, "404": {"description": "unknown run id"}}
    control = {"200": {"description": "the run as it is now, with job_runs: the runs of its job (the control acts "
                                      "on those not yet finished)"},
               "404": {"description": "unknown run id"}, "409": {"description": "the run's status does not allow it"}}
    body_errors = {"413": {"description": "body too large"},
                   "415": {"description": "body not sent as application/json"},
                   "507": {"description": "{error, errors: {disk}}: the run store's disk cannot hold the runs"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Monosemanticity Lab API", "version": "1",
                 "description": "Every error body has `error`, a message; a 400 also has `errors`, the same problems "
                                "by field (or `body`)."},
        "components": {"schemas": {
            "RunConfig": {"type": "object", "properties": properties, "additionalProperties": False},
            "Continuation": {"type": "object", "additionalProperties": False, "properties": {
                **{name: schema for name, schema in properties.items() if name != "preset"},
                "from_step": {"type": "integer", "description": "start from the weights saved after this step (1, 2, "
                                                               "4, ...); left out: the final weights"}}},
        }},
        "paths": {
            "/api/runs": {
                "get": {"summary": "list runs", "responses": {"200": {"description": "runs, oldest first"}}},
                "post": {"summary": "queue a run",
                         "requestBody": {"content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/RunConfig"}}}},
                         "responses": {"201": {"description": CREATED_RUN},
                                       "400": {"description": FIELD_ERRORS},
                                       **body_errors, "503": {"description": "queue full"}}},
            },
            "/api/runs/{id}": {**run_path, "get": {"summary": "a run's status and metrics", "responses": ok},
                               "delete": {"summary": "delete a run", "responses": ok}},
            "/api/runs/{id}/stop": {**run_path, "post": {"summary": "stop a run", "responses": control}},
            "/api/runs/{id}/pause": {**run_path, "post": {"summary": "pause a run", "responses": control}},
            "/api/runs/{id}/resume": {**run_path, "post": {
                "summary": "resume a paused or interrupted run, or retry one that failed with its job",
                "responses": {**control, "503": {"description": "queue full"}}}},
            "/api/runs/{id}/history": {**run_path, "get": {"summary": "losses per step and metrics per snapshot; "
                                                                      "?since=N returns only newer chunks",
                                                           "responses": ok}},
            "/api/sweeps": {
                "get": {"summary": "list sweeps with their runs", "responses": {"200": {"description": "sweeps"}}},
                "post": {"summary": "queue a sweep: {preset, scale (quick|paper), field, values, seeds, shared_seed, "
                                    "set: {field: value} for every run}",
                         "responses": {"201": {"description": "{sweep, field, runs, jobs, note: how long it takes}"},
                                       "400": {"description": FIELD_ERRORS},
                                       **body_errors, "503": {"description": "queue full"}}},
            },
            "/api/runs/{id}/continue": {**run_path, "post": {
                "summary": "queue a run that starts from this done, stopped or diverged run's final weights (a "
                           "diverged run's: the last saved before it diverged; or those saved after the body's "
                           "from_step: 1, 2, 4, ...), with the body's config fields changed (task, sizes, seed and the "
                           "init stay)",
                "requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Continuation"}}}},
                "responses": {"201": {"description": "{id}"}, "400": {"description": FIELD_ERRORS},
                              "404": {"description": "unknown run id"},
                              "409": {"description": "the run has no weights to continue from (yet)"},
                              **body_errors, "503": {"description": "queue full"}}}},
            "/api/runs/{id}/file": {**run_path, "get": {
                "summary": "the run file (torch.save; load with weights_only=True)",
                "responses": {**ok, "409": {"description": "no run file yet"}}}},
        },
    }


def register_api(server: Flask, lab: Lab) -> None:
    server.config["MAX_CONTENT_LENGTH"] = MAX_PAGE_BODY_BYTES

    @server.before_request
    def limit_api_bodies() -> None:
        if request.path.startswith("/api/"):
            request.max_content_length = MAX_BODY_BYTES

    server.register_error_handler(413, too_large)

    def json_http_error(err: HTTPException) -> Any:
        """API clients get errors as JSON (a body shorter than its Content-Length got werkzeug's HTML page)."""
        if not request.path.startswith("/api/"):
            return err
        return error(err.code or 500, err.description or err.name)

    server.register_error_handler(HTTPException, json_http_error)

    def store_unreachable(err: Exception) -> tuple[Response, int]:
        """Redis away: a clear 503 for API clients and the page's callbacks, not an internal error with a traceback."""
        log.warning("run store unreachable: %s", err)
        return error(503, unreachable_message(getattr(lab.store, "url", "?"), err))

    for unreachable in UNREACHABLE:
        server.register_error_handler(unreachable, store_unreachable)

    register_sweep_api(server, lab)
    register_continue_api(server, lab)

    @server.get("/api/openapi.json")
    def api_openapi() -> Response:
        return jsonify(openapi_spec())

    @server.get("/api/runs")
    def api_list() -> Response:
        return jsonify([run_summary(m) for m in lab.list()])

    @server.post("/api/runs")
    def api_submit() -> tuple[Response, int]:
        body, refused = json_body("the run config")
        if refused:
            return refused
        config, errors, label = parse_submission(body)
        if errors:
            return field_errors(errors)
        try:
            run_id = lab.submit(config, label=label)
        except QueueFull as err:
            return error(503, str(err))
        except InvalidConfig as err:
            return refused_runs(err.errors)
        # what the form says under Start: how long a heavy run takes, too little bias decay for its steps
        return jsonify({"id": run_id, **({"note": note} if (note := run_cost(config)) else {})}), 201

    def with_run(run_id: str, action: Any) -> tuple[Response, int]:
        try:
            return action()
        except UnknownRun:
            return error(404, f"no run with id {shown(run_id)}")
        except QueueFull as err:
            return error(503, str(err))

    @server.get("/api/runs/<run_id>")
    def api_get(run_id: str) -> tuple[Response, int]:
        return with_run(run_id, lambda: (jsonify(run_summary(lab.get(run_id))), 200))

    def control(run_id: str, action: str) -> tuple[Response, int]:
        def act() -> tuple[Response, int]:
            meta = lab.get(run_id)
            status = meta["status"]
            if action not in controls_of(meta):  # a 200 for a control that did nothing would read as done
                if action == "stop" and waiting_to_stop(meta):
                    return error(409, f"run {run_id} is already stopping: {meta['note'].removeprefix(STOPPING_NOTE)}",
                                 status=status)
                if action == "resume" and status == "failed":
                    return error(409, f"cannot resume run {run_id}: it failed on its own ({meta['error']}), not with "
                                      "its job: a retry would fail the same way", status=status)
                return error(409, f"cannot {action} run {run_id}: it is {status} ({action} acts on "
                                  f"{' or '.join(CONTROLS[action])} runs)", status=status)
            together = lab.job_runs(run_id)  # read first: a stop may end the job
            getattr(lab, action)(run_id)
            return jsonify({**run_summary(lab.get(run_id)), "job_runs": together}), 200
        return with_run(run_id, act)

    @server.post("/api/runs/<run_id>/stop")
    def api_stop(run_id: str) -> tuple[Response, int]:
        return control(run_id, "stop")

    @server.post("/api/runs/<run_id>/pause")
    def api_pause(run_id: str) -> tuple[Response, int]:
        return control(run_id, "pause")

    @server.post("/api/runs/<run_id>/resume")
    def api_resume(run_id: str) -> tuple[Response, int]:
        return control(run_id, "resume")

    @server.delete("/api/runs/<run_id>")
    def api_delete(run_id: str) -> tuple[Response, int]:
        def act() -> tuple[Response, int]:
            lab.delete(run_id)
            return jsonify({"deleted": run_id}), 200
        return with_run(run_id, act)

    @server.get("/api/runs/<run_id>/history")
    def api_history(run_id: str) -> tuple[Response, int]:
        """Per-step losses and per-snapshot metrics from chunk `since` on (poll with the returned `next`)."""
        def act() -> tuple[Response, int]:
            since = request.args.get("since", "0")
            if not (since.isascii() and since.isdigit() and len(since) <= MAX_SINCE_DIGITS):
                return error(400, f"since must be an integer from 0 to {10 ** MAX_SINCE_DIGITS - 1}, "
                                  f"got {shown(since)}")
            history = lab.history(run_id, int(since))
            return jsonify({"next": history["next"], "steps": history["loss_steps"].tolist(),
                            "losses": history["losses"].tolist(),
                            # no new point: every field with an empty list, so that a client's h["points"]["step"]
                            # reads as nothing new, not as a KeyError
                            "points": {k: v.tolist() for k, v in history["points"].items()}
                            or {k: [] for k in POINT_FIELDS}}), 200
        return with_run(run_id, act)

    @server.route("/api/", methods=API_METHODS, defaults={"rest": ""}, strict_slashes=False)
    @server.route("/api/<path:rest>", methods=API_METHODS)
    def api_unknown(rest: str) -> tuple[Response, int]:
        # This catch-all also matches a known path asked with the wrong method: say which methods it takes.
        routes = server.url_map.bind("")
        allowed = []
        for method in API_METHODS:
            try:
                endpoint, _args = routes.match(f"/api/{rest}", method=method)
            except HTTPException:
                continue
            if endpoint != "api_unknown":
                allowed.append(method)
        if allowed:
            response, status = error(405, f"/api/{rest} takes {', '.join(allowed)}, not {request.method}")
            response.headers["Allow"] = ", ".join(allowed)
            return response, status
        return error(404, f"no such API endpoint: /api/{rest}")

    @server.get("/api/runs/<run_id>/file")
    def api_file(run_id: str) -> tuple[Response, int]:
        def act() -> tuple[Response, int]:
            blob = lab.run_file(run_id)
            if blob is None:
                status = lab.get(run_id)["status"]
                later = "" if status in ("failed", "stopped") else " yet"  # stopped untrained: it never gets one
                return error(409, f"run {run_id} has no run file{later} (status {status})")
            headers = {"Content-Disposition": f"attachment; filename=run-{run_id}.pt"}
            return Response(blob, mimetype="application/octet-stream", headers=headers), 200
        return with_run(run_id, act)
