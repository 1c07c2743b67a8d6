"""Plotly figures built on the server from rollups; the browser only draws them (static/js/sla.js).

Each figure's structure (trace types, styles, layout) is built and validated by plotly.graph_objects;
the long data arrays (up to 720 hourly points per trace) are attached to the validated figure's
JSON afterwards, because plotly validating every element cost ~30 ms per chart on a dashboard
that refreshes every 5 s. The arrays hold only ISO time strings, floats, ints and None.
"""

from __future__ import annotations

import orjson
import plotly.graph_objects as go

HOUR_MS = 3_600_000  # bar width on a date axis is in milliseconds: one hour, less a gap
BAR_WIDTH = int(HOUR_MS * 0.8)
COLORS = {"p50": "#2f6fdf", "p95": "#e0912f", "p99": "#c0392b", "target": "#888888"}


def _layout(title: str, y_title: str, x_range=None) -> dict:
    layout = {"title": {"text": title, "font": {"size": 14}}, "margin": {"l": 50, "r": 10, "t": 36, "b": 36},
              "height": 260, "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
              "legend": {"orientation": "h", "y": -0.2}, "uirevision": "keep"}
    if x_range:
        # The whole selected range, so a single hour of traffic is drawn at its place in time.
        layout["xaxis"] = {"type": "date", "range": [x_range[0].isoformat(), x_range[1].isoformat()]}
    return layout


def _figure(traces: list[tuple], layout: dict) -> dict:
    """traces: (graph_objects trace without its data, {"x": [...], "y": [...]})."""
    spec = go.Figure(data=[trace for trace, _ in traces], layout=layout).to_plotly_json()
    for built, (_, arrays) in zip(spec["data"], traces, strict=True):
        built.update(arrays)
    return spec


def _hours(series: list[dict]) -> list[str]:
    return [p["hour"].isoformat() for p in series]


def _round(values, digits: int = 3) -> list:
    return [None if v is None else round(v, digits) for v in values]


def _target_trace(hours: list[str], value, name: str):
    if value is None or not hours:
        return None
    return (go.Scatter(mode="lines", name=name, line={"dash": "dash", "color": COLORS["target"], "width": 1}),
            {"x": [hours[0], hours[-1]], "y": [value, value]})


def latency_figure(series: list[dict], targets: dict, x_range=None) -> dict:
    hours = _hours(series)
    traces = [(go.Scatter(mode="lines+markers", name=point, line={"color": COLORS[point]}, marker={"size": 5}),
               {"x": hours, "y": _round([p[f"latency_{point}"] for p in series], 1)}) for point in ("p50", "p95", "p99")]
    target = _target_trace(hours, targets.get("latency_p99"), "p99 target")
    return _figure(traces + ([target] if target else []), _layout("Latency per hour", "ms", x_range))


def availability_figure(series: list[dict], targets: dict, x_range=None) -> dict:
    hours = _hours(series)
    traces = [
        (go.Scatter(name="availability %", mode="lines+markers", marker={"size": 5}, line={"color": "#1e8e3e"}),
         {"x": hours, "y": _round([p["availability"] for p in series])}),
        (go.Bar(name="error rate %", yaxis="y2", marker={"color": "#c0392b"}, opacity=0.5, width=BAR_WIDTH),
         {"x": hours, "y": _round([p["error_rate"] for p in series])}),
    ]
    target = _target_trace(hours, targets.get("availability"), "availability target")
    layout = _layout("Availability and error rate per hour", "%", x_range)
    layout["yaxis"]["rangemode"] = "normal"
    layout["yaxis2"] = {"overlaying": "y", "side": "right", "title": {"text": "error %"}, "rangemode": "tozero",
                        "showgrid": False}
    return _figure(traces + ([target] if target else []), layout)


def traffic_figure(series: list[dict], x_range=None) -> dict:
    hours = _hours(series)
    layout = _layout("Requests per hour", "requests", x_range)
    layout["barmode"] = "stack"
    return _figure([
        (go.Bar(name="other", marker={"color": "#2f6fdf"}, width=BAR_WIDTH), {"x": hours, "y": [p["requests"] - p["failures"] for p in series]}),
        (go.Bar(name="server-side failures", marker={"color": "#c0392b"}, width=BAR_WIDTH), {"x": hours, "y": [p["failures"] for p in series]}),
    ], layout)


def budget_figure(remaining_percent: float) -> dict:
    fig = go.Figure(go.Indicator(mode="gauge+number", value=max(-100.0, remaining_percent),
                                 number={"suffix": " %"},
                                 gauge={"axis": {"range": [-100, 100]},
                                        "bar": {"color": "#1e8e3e" if remaining_percent > 25 else "#c0392b"}}),
                    layout={"height": 200, "margin": {"l": 20, "r": 20, "t": 30, "b": 10},
                            "title": {"text": "Error budget left", "font": {"size": 14}}})
    return fig.to_plotly_json()


def fleet_figure(statuses: list) -> dict:
    layout = _layout("Availability by tenant (policy window)", "%")
    layout["yaxis"]["rangemode"] = "normal"
    layout["height"] = 300
    return _figure([(go.Bar(marker={"color": ["#1e8e3e" if s.compliant else "#c0392b" for s in statuses]}),
                     {"x": [s.tenant_id for s in statuses], "y": _round([s.availability for s in statuses])})], layout)


def to_json(figures: dict) -> str:
    # orjson, not PlotlyJSONEncoder: the figures hold only lists, floats and strings, and it is
    # ~40x faster. Embedded in a <script type="application/json">: "</" must not close the element.
    return orjson.dumps(figures).decode().replace("</", "<\\/")
