"""Optional shared-secret token: when set, requests that create, stop or delete runs must carry it.

API clients send `X-Lab-Token: <token>` (or `Authorization: Bearer <token>`). A browser opens
`/?token=<token>` once; the page then keeps it in an HttpOnly cookie that Dash's callbacks carry.
Reading (the page, listing runs, watching progress) needs no token.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from dash import Dash
from flask import Response, jsonify, redirect, request

from core.config import shown

COOKIE = "lab_token"
# Dash callbacks that change the store, named by the component that triggers them.
MUTATING_TRIGGERS = ("start-button", "run-action", "delete-confirm", "compare-button", "sweep-start-button")


def header_bytes(text: str) -> bytes:
    """A header's bytes as the client sent them: WSGI servers hand headers on decoded as latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # a test client hands the str on as given
        return text.encode("utf-8")


def presented_token() -> bytes:
    header = request.headers.get("X-Lab-Token") or ""
    auth = request.headers.get("Authorization", "")
    if not header and auth.startswith("Bearer "):
        header = auth[len("Bearer "):]
    return header_bytes(header) if header else request.cookies.get(COOKIE, "").encode("utf-8")


def mutating_outputs(app: Dash) -> Callable[[], frozenset[str]]:
    """The outputs (Dash's name for a callback) of the callbacks that change the store: those a mutating trigger
    fires. Dash runs the callback a request's `output` names, whatever its `changedPropIds` claim."""
    found: list[frozenset[str]] = []

    def outputs() -> frozenset[str]:
        if not found:  # the callbacks are all registered by the first request
            found.append(frozenset(output for output, callback in app.callback_map.items()
                                   if any(trigger in str(i["id"]) for i in callback["inputs"]
                                          for trigger in MUTATING_TRIGGERS)))
        return found[0]
    return outputs


def is_mutation(mutating: Callable[[], frozenset[str]]) -> bool:
    path = request.path
    if path.startswith("/api/") and request.method in ("POST", "PUT", "PATCH", "DELETE"):
        return True
    if path.endswith("/_dash-update-component") and request.method == "POST":
        try:
            body = json.loads(request.get_data(cache=True) or b"{}")
            changed = body.get("changedPropIds", [])
            return (body.get("output") in mutating()
                    or any(trigger in prop for prop in changed for trigger in MUTATING_TRIGGERS))
        except (ValueError, RecursionError, AttributeError, TypeError):
            return True  # not a request Dash would send: treat it as a change
    return False


def same_token(given: bytes, token: str) -> bool:
    """In constant time, as bytes (compare_digest refuses a str with non-ASCII characters: a token 'clé')."""
    return hmac.compare_digest(given, token.encode("utf-8"))


def origin_host(origin: str) -> str | None:
    """The host an Origin header names, or None when it is not a URL (`http://[`)."""
    try:
        return urlsplit(origin).netloc
    except ValueError:
        return None


def refuse_cross_site(app: Dash) -> None:
    """Refuse changes sent by another site's page: a browser attaches `Origin` to every cross-site POST and
    DELETE, and some (a text/plain POST, a bodyless one) it sends without asking first, so any page a user
    opens could queue or delete runs on a lab at 127.0.0.1. Scripts send no Origin and pass."""
    server, mutating = app.server, mutating_outputs(app)

    @server.before_request
    def check_origin() -> tuple[Response, int] | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        hosts = {request.host, request.headers.get("X-Forwarded-Host", "")}  # behind a proxy, the host it was asked
        # the page's own requests (every Dash callback carries Origin) pass before their bodies are parsed
        if origin_host(origin) not in hosts - {""} and is_mutation(mutating):
            return jsonify({"error": f"refused a change sent from another site ({shown(origin)}); open the lab's "
                                     f"own page to change runs"}), 403
        return None


def require_token(app: Dash, token: str) -> None:
    server, mutating = app.server, mutating_outputs(app)

    @server.before_request
    def check_token() -> tuple[Response, int] | None:
        if is_mutation(mutating) and not same_token(presented_token(), token):
            return jsonify({"error": "this lab needs its token to create, stop or delete runs: send X-Lab-Token, "
                                     "or open the page once as /?token=..."}), 401
        return None

    @server.before_request
    def take_token_from_link() -> Response | None:
        """A page opened as /?token=...: the token goes into the cookie and out of the address bar, where a projector
        shows it, the browser's history keeps it and the page's own links would carry it on."""
        given = request.args.get("token")
        if request.method != "GET" or given is None or request.path.startswith("/api/"):
            return None
        if not same_token(given.encode("utf-8"), token):
            return None
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        # one leading slash: "//host/..." would send the browser to another site
        path = request.script_root + "/" + request.path.lstrip("/")
        response = redirect(path + ("?" + urlencode(rest) if rest else ""))
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response
