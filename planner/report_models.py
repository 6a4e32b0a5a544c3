"""The multi-model residency report (issue 15 point 2; SN40L CoE, arXiv:2405.07518): latency against
the number of models on one node of each type, with a marker where each starts spilling past its
fast tier, and the node counts per type. Takes any object with a ModelsPlan's fields
(solvers.models_plan), so planner does not import solvers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from planner.files import write_atomic


def models_report(plan: Any, path: str | Path | None = None, *, force: bool = False) -> str:
    """One self-contained HTML page; written atomically to `path` when given."""
    from planner.report import html_page, summary_table

    figures = [
        ("Mean latency against the number of models (one node)", _curve(plan, "mean_latency_s")),
        ("p99 latency against the number of models (one node)", _curve(plan, "p99_latency_s")),
        ("Nodes per type", _nodes(plan)),
    ]
    summary = {k: v for k, v in plan.summary().items() if v is not None}
    rejected = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in plan.rejected.items())
    body = summary_table(summary, tuple(summary)) + (f"<p>left out:</p><ul>{rejected}</ul>" if rejected else "")
    page = html_page(f"Model residency: {plan.models} models", body, figures)
    if path is not None:
        write_atomic(path, page, force)
    return page


def _curve(plan: Any, key: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for hw in dict.fromkeys(r["hardware"] for r in plan.curve):
        rows = [r for r in plan.curve if r["hardware"] == hw and r[key] is not None]
        fig.add_scatter(x=[r["models"] for r in rows], y=[r[key] for r in rows], name=hw, mode="lines+markers")
        first = next((r for r in rows if r["spills"]), None)
        if first is not None:
            fig.add_scatter(
                x=[first["models"]],
                y=[first[key]],
                name=f"{hw}: spills at {first['models']}",
                mode="markers",
                marker={"symbol": "x", "size": 14},
            )
    fig.update_layout(
        xaxis={"title": "models", "type": "log"}, yaxis_title="seconds per request", height=420, margin={"t": 20}
    )
    return fig


def _nodes(plan: Any) -> Any:
    import plotly.graph_objects as go

    names = [r["hardware"] for r in plan.node_types]
    fig = go.Figure()
    for key, label in (("nodes_to_hold_in_fast", "all in the fast tier"), ("nodes_to_hold_at_all", "held at all")):
        fig.add_bar(x=names, y=[r[key] for r in plan.node_types], name=label)
    if plan.latency_target_s is not None:
        fig.add_bar(x=names, y=[r["nodes_for_target"] for r in plan.node_types], name="meeting the target")
    fig.update_layout(barmode="group", yaxis_title="nodes", height=380, margin={"t": 20})
    return fig
