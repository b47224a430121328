"""What every JSON API route shares: error bodies, and reading a JSON request body safely."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Response, jsonify, request

from core.config import FIELDS, RunConfig, allowed_range, config_from_dict, shown, snapshot_cap, underflowed

MAX_BODY_BYTES = 64 * 1024
# the page's own callbacks send a value per run on the page (the run list's buttons and rows): ~350 bytes each
MAX_PAGE_BODY_BYTES = 16 * 1024 * 1024


def error(code: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), code


def field_errors(errors: dict[str, str]) -> tuple[Response, int]:
    """A 400 naming each problem by field: `errors` for a client that reads them by field, and the same messages
    joined as `error`, the key every other error body has."""
    return error(400, "; ".join(errors.values()), errors=errors)


def refused_runs(errors: dict[str, str]) -> tuple[Response, int]:
    """A submission the lab refused: a 400 naming each problem, or a 507 when all that is missing is the store's
    disk space (the server's to free, not the client's mistake)."""
    response, _ = field_errors(errors)
    return response, 507 if set(errors) == {"disk"} else 400


def too_large(_err: Exception | None = None) -> tuple[Response, int]:
    return error(413, f"request body must be under {request.max_content_length or MAX_BODY_BYTES} bytes")


def json_body(what: str) -> tuple[Any, tuple[Response, int] | None]:
    """The request's JSON body, or the response refusing it: not sent as JSON (415), too large (413), malformed
    (400). `what` names the body in the 415 message."""
    if request.mimetype != "application/json":
        return None, error(415, f"send {what} as JSON (Content-Type: application/json), not "
                                f"{shown(request.mimetype or 'no type')}")
    raw = request.get_data(cache=False)
    if len(raw) >= MAX_BODY_BYTES:  # a chunked body has no length to refuse it by: werkzeug cuts it at the limit
        return None, too_large()
    try:
        # too long an integer or too large a number is the field's to name, with its range, not a malformed body
        return json.loads(raw or b"null", parse_int=whole_number, parse_float=finite_number), None
    except (ValueError, UnicodeDecodeError) as err:
        return None, field_errors({"body": f"malformed JSON: {err}"})
    except RecursionError:
        return None, field_errors({"body": "malformed JSON: nested too deeply"})


class NumberText(str):
    """A JSON number Python cannot hold (5000 digits, 1e400), kept as written: not a number sent quoted."""

    def __repr__(self) -> str:  # messages quote it as the number it was sent as
        return str(self)


def whole_number(text: str) -> int | str:
    """An integer as JSON wrote it; past Python's digit limit, its text (config checks then name the field)."""
    try:
        return int(text)
    except ValueError:
        return NumberText(text)


def finite_number(text: str) -> float | str:
    """A JSON number; one that overflows to inf (1e400) or underflows to 0 (1e-400) is kept as its text, which the
    field then names (an underflow was refused as "got 0", a value never sent)."""
    number = float(text)
    return number if math.isfinite(number) and not underflowed(text, number) else NumberText(text)


def json_config(fields: dict[str, Any], base: RunConfig | None) -> tuple[RunConfig | None, dict[str, str]]:
    """`base` with a JSON body's config fields set, or the problems by field. Fewer steps than the snapshot
    interval `base` (or the default) has lower it too, unless it is given: `{"steps": 8}` must not be refused over a
    field the client never sent (the CLI does the same)."""
    if (cap := snapshot_cap(fields, base)) is not None:
        fields = {**fields, "snapshot_every": cap}
    quoted = quoted_numbers(fields)
    config, errors = config_from_dict({n: v for n, v in fields.items() if n not in quoted}, base)
    return (None, {**errors, **quoted}) if quoted or errors else (config, {})


def quoted_numbers(fields: dict[str, Any]) -> dict[str, str]:
    """Numeric config fields given as JSON strings, by field: "100" for steps is a client's mistake to name (the form
    and CLI take text, and parse it)."""
    return {name: f"{name} must be {allowed_range(FIELDS[name])}, as a JSON number, got {shown(value)}"
            for name, value in fields.items()
            if name in FIELDS and not FIELDS[name].metadata["choices"] and isinstance(value, str)
            and not isinstance(value, NumberText)}
