"""Optional shared-secret token: when set, requests that create, stop or delete runs must carry it.

API clients send `X-Lab-Token: <token>` (or `Authorization: Bearer <token>`). A browser opens
`/?token=<token>` once; the page then keeps it in an HttpOnly cookie that Dash's callbacks carry.
Reading (the page, listing runs, watching progress) needs no token.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request

from core.config import shown

COOKIE = "lab_token"
# Dash callbacks that change the store, named by the component that triggers them.
MUTATING_TRIGGERS = ("start-button", "run-action", "delete-confirm", "compare-button", "sweep-start-button")


def presented_token() -> str:
    header = request.headers.get("X-Lab-Token") or ""
    auth = request.headers.get("Authorization", "")
    if not header and auth.startswith("Bearer "):
        header = auth[len("Bearer "):]
    return header or request.cookies.get(COOKIE, "")


def is_mutation() -> bool:
    path = request.path
    if path.startswith("/api/") and request.method in ("POST", "PUT", "PATCH", "DELETE"):
        return True
    if path.endswith("/_dash-update-component") and request.method == "POST":
        try:
            changed = json.loads(request.get_data(cache=True) or b"{}").get("changedPropIds", [])
            return any(trigger in prop for prop in changed for trigger in MUTATING_TRIGGERS)
        except (ValueError, RecursionError, AttributeError, TypeError):
            return True  # not a request Dash would send: treat it as a change
    return False


def same_token(given: str, token: str) -> bool:
    """In constant time; as bytes, since compare_digest refuses str with non-ASCII characters (a token 'clé')."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))


def origin_host(origin: str) -> str | None:
    """The host an Origin header names, or None when it is not a URL (`http://[`)."""
    try:
        return urlsplit(origin).netloc
    except ValueError:
        return None


def refuse_cross_site(server: Flask) -> None:
    """Refuse changes sent by another site's page: a browser attaches `Origin` to every cross-site POST and
    DELETE, and some (a text/plain POST, a bodyless one) it sends without asking first, so any page a user
    opens could queue or delete runs on a lab at 127.0.0.1. Scripts send no Origin and pass."""
    @server.before_request
    def check_origin() -> tuple[Response, int] | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        hosts = {request.host, request.headers.get("X-Forwarded-Host", "")}  # behind a proxy, the host it was asked
        # the page's own requests (every Dash callback carries Origin) pass before their bodies are parsed
        if origin_host(origin) not in hosts - {""} and is_mutation():
            return jsonify({"error": f"refused a change sent from another site ({shown(origin)}); open the lab's "
                                     f"own page to change runs"}), 403
        return None


def require_token(server: Flask, token: str) -> None:
    @server.before_request
    def check_token() -> tuple[Response, int] | None:
        if is_mutation() and not same_token(presented_token(), token):
            return jsonify({"error": "this lab needs its token to create, stop or delete runs: send X-Lab-Token, "
                                     "or open the page once as /?token=..."}), 401
        return None

    @server.after_request
    def remember_token(response: Response) -> Response:
        given = request.args.get("token")
        if given is not None and same_token(given, token):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response
