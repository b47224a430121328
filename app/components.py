"""Small layout pieces shared by the pages."""

from __future__ import annotations

import re

import dash_bootstrap_components as dbc
from dash import ctx, dcc

from app.figures import empty_figure
from core.config import FIELDS


def fired_by() -> set[str]:
    """The components whose change set off the running callback: a tick and a user's change can come in one
    request, and ctx.triggered_id names only the first (a move of Compare's slider that came with a tick was lost)."""
    return {prop.rsplit(".", 1)[0] for prop in ctx.triggered_prop_ids}


def triggered(component_id: str) -> bool:
    return component_id in fired_by()


def graph(graph_id: str, height: int = 260, title: str = "", message: str = "") -> dcc.Graph:
    """A responsive graph that says what it will show before it has data, with PNG export."""
    return dcc.Graph(id=graph_id, responsive=True, style={"height": f"{height}px"},
                     figure=empty_figure(title, message),
                     config={"displaylogo": False, "displayModeBar": "hover",
                             # nothing here acts on a selection, and zoom's box and the reset do what +/- do: a
                             # shorter bar covers less of the legends at the top right
                             "modeBarButtonsToRemove": ["select2d", "lasso2d", "zoomIn2d", "zoomOut2d",
                                                        "autoScale2d"],
                             "toImageButtonOptions": {"format": "png", "filename": graph_id}})


def checkpoint_marks(steps: list[int], end_label: str, max_marks: int = 8) -> dict[int, str]:
    """Marks for a slider over stored checkpoints (position i = steps[i], the end = the latest): power-of-two
    steps from 64 on, thinned so that no two labels run together (early checkpoints sit close in position)."""
    end = len(steps)
    marks = {end: end_label}
    gap = max(1.0, end / max_marks)
    last = end
    for i in range(end - 1, -1, -1):
        s = steps[i]
        if s >= 64 and s & (s - 1) == 0 and last - i >= gap:
            marks[i] = str(s)
            last = i
    return dict(sorted(marks.items()))


def run_name(label: str, run_id: str) -> str:
    """A run as messages name it: its label (or "run") and its id."""
    return f"{label or 'run'} ({run_id})"


def sentence(message: str) -> str:
    """A core message ("the queue is full ...") as a sentence; one opening with a field's name ("lr must be
    ...") keeps it as the user types it."""
    first = re.match(r"\w+", message)
    if first and first.group(0) in FIELDS:
        return message
    return message[:1].upper() + message[1:]


def alert(message: str, color: str, **props: object) -> dbc.Alert:
    return dbc.Alert(sentence(message), color=color, **props)


# one word holding a comma between digits: a decimal comma (0,01; 1,5), unless it can be a list or thousands (64,128)
DECIMAL_COMMA = re.compile(r"[+-]?(0,[0-9]+|[0-9]+,([0-9]{1,2}|[0-9]{4,}))")


def split_values(text: str | None) -> tuple[list[str], str | None]:
    """Values typed with commas or spaces between them, or why not: in a list with spaces between its values and
    no comma ending one ("0,01 0,02", not "64,128, 256"), a word like 0,01 holds a decimal comma, which would have
    read as two values (0 and 01)."""
    words = (text or "").split()
    spaced = len(words) > 1 and not any(w.endswith(",") for w in words)
    comma = next((w for w in words if DECIMAL_COMMA.fullmatch(w)), None) if spaced else None
    if comma:
        return [], (f"{comma} reads as two values (commas and spaces both separate them): write decimals with a "
                    f"point, as {comma.replace(',', '.')}")
    return (text or "").replace(",", " ").split(), None
