"""`POST /api/runs/<id>/continue`: a run that starts from a finished run's final weights, or those it saved after
`from_step`, with the body's config fields changed (core.continuation)."""

from __future__ import annotations

from flask import Flask, Response, jsonify

from app.api_json import error, field_errors, json_body, json_config, refused_runs
from core.config import shown
from core.continuation import CannotContinue, total_bias_hint
from core.jobs import InvalidConfig, Lab, QueueFull, UnknownRun


def register_continue_api(server: Flask, lab: Lab) -> None:
    @server.post("/api/runs/<run_id>/continue")
    def api_continue(run_id: str) -> tuple[Response, int]:
        body, refused = json_body("the config fields to change")
        if refused:
            return refused
        if not isinstance(body, dict):
            return field_errors({"body": 'expected a JSON object of the config fields to change, as '
                                         f'{{"l1_reg": 0.01}} ({{}} for none), got {shown(body)}'})
        fields = {k: v for k, v in body.items() if k != "from_step"}
        try:
            parent = lab.config(run_id)
            config, errors = json_config(fields, parent)
            if config is None:
                unknown = " (or from_step, the saved step to start from)"  # the one key that is not a config field
                hints = {"init_bias": total_bias_hint(run_id, parent)}
                return field_errors({k: v + unknown if v.startswith("unknown field") else v + hints.get(k, "")
                                     for k, v in errors.items()})
            step = body.get("from_step")
            if isinstance(step, float) and step.is_integer():  # 8.0 is step 8, as 8.0 is for steps
                step = int(step)
            new_id = lab.continue_run(run_id, config, step=step)
        except UnknownRun:
            return error(404, f"no run with id {shown(run_id)}")
        except CannotContinue as err:
            return error(409, str(err))
        except InvalidConfig as err:
            return refused_runs(err.errors)
        except QueueFull as err:
            return error(503, str(err))
        return jsonify({"id": new_id}), 201
