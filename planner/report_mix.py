"""The GPU-mix report (Mélange, arXiv 2404.14527): instances and $/h per type of the chosen mix, its
cost against each type alone, and the cost as the request rate grows (when the plan carries a
cost-versus-rate sweep). Takes any object with a MixPlan's fields (solvers.mix_plan), so planner
does not import solvers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from planner.files import write_atomic


def mix_report(plan: Any, path: str | Path | None = None, *, force: bool = False) -> str:
    """One self-contained HTML page; written atomically to `path` when given."""
    from planner.report import html_page, summary_table

    figures = [("Instances and $/hour per type", _per_type(plan)), ("The mix against each type alone", _singles(plan))]
    if plan.cost_vs_rate:
        figures.append(("Cost against the request rate", _cost_vs_rate(plan)))
    if plan.cost_vs_slo:
        figures.append(("Cost against the SLO (both targets scaled)", _cost_vs_slo(plan)))
    summary = {k: v for k, v in plan.summary().items() if v is not None}
    notes = "".join(f"<p>{html.escape(m)}</p>" for m in plan.messages)
    rejected = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in plan.rejected.items())
    body = summary_table(summary, tuple(summary)) + notes + (f"<p>left out:</p><ul>{rejected}</ul>" if rejected else "")
    page = html_page(f"GPU mix{' for ' + plan.model if plan.model else ''}", body, figures)
    if path is not None:
        write_atomic(path, page, force)
    return page


def _per_type(plan: Any) -> Any:
    import plotly.graph_objects as go

    rows = [r for r in plan.type_rows() if r["instances"]]
    names = [r["type"] for r in rows]
    fig = go.Figure()
    fig.add_bar(x=names, y=[r["instances"] for r in rows], name="instances", yaxis="y")
    fig.add_bar(x=names, y=[r["usd_per_hour"] for r in rows], name="$ per hour", yaxis="y2")
    fig.update_layout(
        barmode="group",
        yaxis={"title": "instances"},
        yaxis2={"title": "$ per hour", "overlaying": "y", "side": "right"},
        height=400,
        margin={"t": 20},
    )
    return fig


def _singles(plan: Any) -> Any:
    import plotly.graph_objects as go

    rows = [r for r in plan.single_types if r["usd_per_hour"] is not None]
    names = ["mix"] + [f"{r['type']} only" for r in rows]
    costs = [plan.usd_per_hour] + [r["usd_per_hour"] for r in rows]
    fig = go.Figure(go.Bar(x=names, y=costs))
    fig.update_layout(yaxis_title="$ per hour", height=400, margin={"t": 20, "b": 120})
    return fig


def _mix_and_single(rows: list[dict[str, Any]], x: str) -> Any:
    """$/h of the mix and of the best single type against `x` of the rows."""
    import plotly.graph_objects as go

    fig = go.Figure()
    xs = [r[x] for r in rows]
    fig.add_scatter(x=xs, y=[r["usd_per_hour"] for r in rows], name="mix", mode="lines+markers")
    fig.add_scatter(
        x=xs, y=[r["best_single_usd_per_hour"] for r in rows], name="best single type", mode="lines+markers"
    )
    return fig


def _cost_vs_rate(plan: Any) -> Any:
    fig = _mix_and_single(list(plan.cost_vs_rate), "rate_per_s")
    fig.add_vline(x=plan.rate_per_s, line_dash="dot", annotation_text="planned rate")
    fig.update_layout(xaxis_title="requests per second", yaxis_title="$ per hour", height=380, margin={"t": 20})
    return fig


def _cost_vs_slo(plan: Any) -> Any:
    fig = _mix_and_single([r for r in plan.cost_vs_slo if r["usd_per_hour"] is not None], "tpot_s")
    if plan.tpot_s:
        fig.add_vline(x=plan.tpot_s, line_dash="dot", annotation_text="target")
    fig.update_layout(
        xaxis_title="TPOT target (s); TTFT target scaled alike", yaxis_title="$ per hour", height=380, margin={"t": 20}
    )
    return fig
