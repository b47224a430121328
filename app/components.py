"""Small layout pieces shared by the pages."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc

from app.figures import empty_figure


def graph(graph_id: str, height: int = 260, title: str = "", message: str = "") -> dcc.Graph:
    """A responsive graph that says what it will show before it has data, with PNG export."""
    return dcc.Graph(id=graph_id, responsive=True, style={"height": f"{height}px"},
                     figure=empty_figure(title, message),
                     config={"displaylogo": False, "displayModeBar": "hover",
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


def alert(message: str, color: str, **props: object) -> dbc.Alert:
    """An alert whose message, often a core error ("the queue is full ..."), reads as a sentence."""
    return dbc.Alert(message[:1].upper() + message[1:], color=color, **props)
