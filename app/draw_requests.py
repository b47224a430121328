"""A page's live figures in two steps: a cheap callback on the 1 s tick asks for a draw (a request store) only
when what the figures show changed, and a draw callback draws it and says so (a "drawn" store, a plain output).

The browser drops the reply of a callback asked for again before it answered: a draw slower than the tick (a
loaded machine) lost every reply and the page stayed blank or frozen. So a tick asks nothing while the last
request is on its way, as told by the drawn store (dropped replies set nothing, unlike `running` flags, which the
dropped request clears while the one replacing it still runs). A request neither drawn nor answered in
STALE_DRAW_SECONDS (a reply lost on the network, a draw that raised) is asked for again."""

from __future__ import annotations

from time import time as now
from typing import Any

from app.components import fired_by

STALE_DRAW_SECONDS = 20.0


def in_flight(requested: Any, drawn: Any) -> bool:
    """Whether the draw last asked for is still on its way."""
    if not isinstance(requested, dict) or "seq" not in requested:
        return False
    drawn_seq = drawn.get("seq") if isinstance(drawn, dict) else None
    return requested["seq"] != drawn_seq and now() - requested.get("at", 0.0) < STALE_DRAW_SECONDS


PAGE_TIMERS = frozenset({"tick", "compare-tick", "sweep-tick"})  # each page's (app.layout)


def by_the_tick_alone() -> bool:
    """Whether the running callback was set off by its page's timer, not by anything the user did."""
    fired = fired_by()
    return bool(fired) and fired <= PAGE_TIMERS


def tick_waits(requested: Any, drawn: Any) -> bool:
    """Whether this call, fired by the tick alone, asks nothing: a draw is on its way (the next tick asks)."""
    return by_the_tick_alone() and in_flight(requested, drawn)


def new_request(key: Any, requested: Any, drawn: Any, **what: Any) -> dict[str, Any] | None:
    """The request for a draw of `key` (with `what` the draw needs), or None where it is asked for already or
    drawn: the key of the request on its way, else of the figures drawn."""
    flying = in_flight(requested, drawn)
    current = requested if flying else drawn
    if isinstance(current, dict) and current.get("key") == key:
        return None
    seq = requested.get("seq", 0) if isinstance(requested, dict) else 0
    return {"seq": seq + 1, "at": now(), "key": key, **what}


def drawn_for(request: dict[str, Any], **what: Any) -> dict[str, Any]:
    """What the draw callback writes to its drawn store once it has drawn `request`."""
    return {"seq": request["seq"], "key": request["key"], **what}


def undrawn(request: dict[str, Any], **what: Any) -> dict[str, Any]:
    """What a draw that could not draw `request` (a run deleted meanwhile) writes: answered, so the next tick asks
    again at once, its figures as they were."""
    return {**what, **drawn_for(request), "key": None}
