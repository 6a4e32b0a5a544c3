"""The fleet plan report: cost per year stacked by component, the fleet's composition over the
years, and provisioned power per site against its budget. Takes any object with a FleetPlan's
fields (solvers.fleet_plan), so planner does not import solvers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from planner.files import write_atomic


def fleet_report(plan: Any, path: str | Path | None = None, *, force: bool = False) -> str:
    """One self-contained HTML page; written atomically to `path` when given."""
    from planner.report import html_page, summary_table

    figures = [
        ("Cost per year by component (undiscounted)", _cost_figure(plan)),
        ("Devices installed per year by type", _fleet_figure(plan)),
        ("Provisioned IT power per site against its budget", _power_figure(plan)),
    ]
    summary = plan.summary()
    notes = "".join(f"<p>{html.escape(m)}</p>" for m in plan.messages)
    table = _table(plan.workloads, ("year", "workload", "devices_in_use", "usd_per_million_tokens"))
    page = html_page(
        f"fleet plan: {plan.name}",
        summary_table(summary, tuple(summary)) + notes + "<h2>$ per M tokens</h2>" + table,
        figures,
    )
    if path is not None:
        write_atomic(path, page, force)
    return page


def _cost_figure(plan: Any) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for comp in dict.fromkeys(r["component"] for r in plan.costs):
        rows = [r for r in plan.costs if r["component"] == comp]
        fig.add_bar(x=[r["year"] for r in rows], y=[r["usd"] / 1e6 for r in rows], name=comp)
    fig.update_layout(barmode="stack", xaxis_title="year", yaxis_title="M$", height=420, margin={"t": 20})
    return fig


def _fleet_figure(plan: Any) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for hw in dict.fromkeys(r["hardware"] for r in plan.fleet):
        rows = [r for r in plan.fleet if r["hardware"] == hw]
        if any(r["installed"] for r in rows):
            fig.add_bar(x=[r["year"] for r in rows], y=[r["installed"] for r in rows], name=hw)
    fig.update_layout(barmode="stack", xaxis_title="year", yaxis_title="devices", height=420, margin={"t": 20})
    return fig


def _power_figure(plan: Any) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for site in dict.fromkeys(r["site"] for r in plan.sites):
        rows = [r for r in plan.sites if r["site"] == site]
        years = [r["year"] for r in rows]
        fig.add_bar(x=years, y=[r["power_provisioned_w"] / 1e6 for r in rows], name=f"{site} used")
        fig.add_scatter(
            x=years, y=[r["power_budget_w"] / 1e6 for r in rows], name=f"{site} budget", mode="lines+markers"
        )
    fig.update_layout(barmode="group", xaxis_title="year", yaxis_title="MW (IT)", height=420, margin={"t": 20})
    return fig


def _table(rows: Any, keys: tuple[str, ...]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return "-" if v is None else str(v)

    pad = " style='padding: 2px 16px 2px 0'"
    head = "".join(f"<th{pad}>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td{pad}>{html.escape(cell(r.get(k)))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return f"<table class='summary'><tr>{head}</tr>{body}</table>"
