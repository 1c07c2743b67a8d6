"""Plotly figures of a cost allocation, built on the server; the browser only draws them."""

from __future__ import annotations

import json

import plotly.graph_objects as go
from plotly.utils import PlotlyJSONEncoder


def _layout(title: str) -> dict:
    return {"title": {"text": title, "font": {"size": 14}}, "margin": {"l": 50, "r": 10, "t": 36, "b": 80},
            "height": 300, "showlegend": False}


def cost_bar(rows, title: str, currency: str, limit: int = 15) -> dict:
    rows = rows[:limit]
    fig = go.Figure(go.Bar(
        x=[r.label for r in rows], y=[float(r.cost) for r in rows],
        marker={"color": ["#9aa6b5" if r.unattributed else "#2f6fdf" for r in rows]},
        hovertemplate="%{x}: %{y:.2f} " + currency + "<extra></extra>"), layout=_layout(title))
    fig.update_layout(yaxis={"title": {"text": currency}, "rangemode": "tozero"})
    return fig.to_plotly_json()


def cost_pie(rows, title: str) -> dict:
    fig = go.Figure(go.Pie(labels=[r.label for r in rows], values=[float(r.cost) for r in rows], hole=0.4,
                           sort=False), layout=_layout(title))
    fig.update_layout(showlegend=True, margin={"l": 10, "r": 10, "t": 36, "b": 10})
    return fig.to_plotly_json()


def allocation_figures(alloc) -> dict:
    return {
        "chart-department": cost_pie(alloc.by["department"], "Cost by department"),
        "chart-project": cost_bar(alloc.by["project"], "Cost by project", alloc.currency),
        "chart-model": cost_bar(alloc.by["model"], "Cost by model", alloc.currency),
        "chart-user": cost_bar(alloc.by["user"], "Top users by cost", alloc.currency, limit=10),
    }


def to_json(figures: dict) -> str:
    return json.dumps(figures, cls=PlotlyJSONEncoder)
