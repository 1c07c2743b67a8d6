"""Plotly figures built on the server from rollups; the browser only draws them (static/js/sla.js)."""

from __future__ import annotations

import json

import plotly.graph_objects as go
from plotly.utils import PlotlyJSONEncoder

COLORS = {"p50": "#2f6fdf", "p95": "#e0912f", "p99": "#c0392b", "target": "#888888"}


def _layout(title: str, y_title: str) -> dict:
    return {"title": {"text": title, "font": {"size": 14}}, "margin": {"l": 50, "r": 10, "t": 36, "b": 36},
            "height": 260, "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
            "legend": {"orientation": "h", "y": -0.2}, "uirevision": "keep"}


def _target_line(fig, hours, value, name):
    if value is not None and hours:
        fig.add_trace(go.Scatter(x=[hours[0], hours[-1]], y=[value, value], mode="lines", name=name,
                                 line={"dash": "dash", "color": COLORS["target"], "width": 1}))


def latency_figure(series: list[dict], targets: dict) -> dict:
    hours = [p["hour"] for p in series]
    fig = go.Figure(layout=_layout("Latency per hour", "ms"))
    for point in ("p50", "p95", "p99"):
        fig.add_trace(go.Scatter(x=hours, y=[p[f"latency_{point}"] for p in series], mode="lines+markers",
                                 name=point, line={"color": COLORS[point]}, marker={"size": 3}))
    _target_line(fig, hours, targets.get("latency_p99"), "p99 target")
    return fig.to_plotly_json()


def availability_figure(series: list[dict], targets: dict) -> dict:
    hours = [p["hour"] for p in series]
    fig = go.Figure(layout=_layout("Availability and error rate per hour", "%"))
    fig.add_trace(go.Scatter(x=hours, y=[p["availability"] for p in series], name="availability %",
                             mode="lines+markers", marker={"size": 3}, line={"color": "#1e8e3e"}))
    fig.add_trace(go.Bar(x=hours, y=[p["error_rate"] for p in series], name="error rate %", yaxis="y2",
                         marker={"color": "#c0392b"}, opacity=0.5))
    _target_line(fig, hours, targets.get("availability"), "availability target")
    fig.update_layout(yaxis={"rangemode": "normal"}, yaxis2={"overlaying": "y", "side": "right", "title": {"text": "error %"},
                                                             "rangemode": "tozero", "showgrid": False})
    return fig.to_plotly_json()


def traffic_figure(series: list[dict]) -> dict:
    hours = [p["hour"] for p in series]
    fig = go.Figure(layout=_layout("Requests per hour", "requests"))
    fig.add_trace(go.Bar(x=hours, y=[p["requests"] - p["failures"] for p in series], name="other",
                         marker={"color": "#2f6fdf"}))
    fig.add_trace(go.Bar(x=hours, y=[p["failures"] for p in series], name="server-side failures",
                         marker={"color": "#c0392b"}))
    fig.update_layout(barmode="stack")
    return fig.to_plotly_json()


def budget_figure(remaining_percent: float) -> dict:
    fig = go.Figure(go.Indicator(mode="gauge+number", value=max(-100.0, remaining_percent),
                                 number={"suffix": " %"},
                                 gauge={"axis": {"range": [-100, 100]},
                                        "bar": {"color": "#1e8e3e" if remaining_percent > 25 else "#c0392b"}}),
                    layout={"height": 200, "margin": {"l": 20, "r": 20, "t": 30, "b": 10},
                            "title": {"text": "Error budget left", "font": {"size": 14}}})
    return fig.to_plotly_json()


def fleet_figure(statuses: list) -> dict:
    names = [s.tenant_id for s in statuses]
    fig = go.Figure(layout=_layout("Availability by tenant (policy window)", "%"))
    fig.add_trace(go.Bar(x=names, y=[s.availability for s in statuses],
                         marker={"color": ["#1e8e3e" if s.compliant else "#c0392b" for s in statuses]}))
    fig.update_layout(yaxis={"rangemode": "normal"}, height=300)
    return fig.to_plotly_json()


def to_json(figures: dict) -> str:
    # Embedded in a <script type="application/json">: "</" must not close the element.
    return json.dumps(figures, cls=PlotlyJSONEncoder).replace("</", "<\\/")
