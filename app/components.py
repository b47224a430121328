"""Small layout pieces shared by the pages."""

from __future__ import annotations

from dash import dcc

from app.figures import empty_figure


def graph(graph_id: str, height: int = 260, title: str = "", message: str = "") -> dcc.Graph:
    """A responsive graph that says what it will show before it has data, with PNG export."""
    return dcc.Graph(id=graph_id, responsive=True, style={"height": f"{height}px"},
                     figure=empty_figure(title, message),
                     config={"displaylogo": False, "displayModeBar": "hover",
                             "toImageButtonOptions": {"format": "png", "filename": graph_id}})
