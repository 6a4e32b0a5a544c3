"""The agent placement report: the workflow's DAG with each stage coloured by the hardware class it
runs on and the critical path drawn in red, the cost against the SLA (mixed placement and the best
one-class placement), and tables of stages, classes and rejections. Takes any object with an
AgentPlan's fields (solvers.agent_plan), so planner does not import solvers."""

from __future__ import annotations

import html
import itertools
from pathlib import Path
from typing import Any

from planner.files import write_atomic

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
EXTERNAL_COLOUR = "#999999"
CRITICAL_COLOUR = "#d62728"


def agent_report(plan: Any, path: str | Path | None = None, *, force: bool = False) -> str:
    """One self-contained HTML page; written atomically to `path` when given."""
    from planner.report import _sortable_table, html_page, summary_table

    summary = {k: v for k, v in plan.summary().items() if v is not None}
    figures: list[tuple[str, Any]] = [("Workflow: stages by hardware class, critical path in red", dag_figure(plan))]
    if plan.sla_curve:
        figures.append(("Cost against the latency SLA", sla_figure(plan)))
    notes = "".join(f"<p>{html.escape(m)}</p>" for m in plan.messages)
    rejected = [{"class": k, "reason": v} for k, v in plan.rejected.items()]
    tables = (
        f"<section><h2>Stages</h2>{_sortable_table(list(plan.stages), 'stages')}</section>"
        f"<section><h2>Hardware classes</h2>{_sortable_table(list(plan.classes), 'classes')}</section>"
        f"<section><h2>One class alone</h2>{_sortable_table(list(plan.homogeneous), 'homogeneous')}</section>"
        f"<section><h2>Not used, and why</h2>{_sortable_table(rejected, 'rejections') if rejected else '<p>none</p>'}"
        "</section>"
    )
    page = html_page(f"agent placement: {plan.workflow}", summary_table(summary, tuple(summary)) + notes, figures)
    page = page.replace("<footer>", f"{tables}<footer>")
    if path is not None:
        write_atomic(path, page, force)
    return page


def layout(stages: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """A layered layout: x is the longest chain of edges into a stage (its topological depth),
    stages of one depth spread evenly on y. `stages` must be in topological order."""
    depth = {s: 0 for s in stages}
    for s in stages:
        for a, b in edges:
            if a == s:
                depth[b] = max(depth[b], depth[a] + 1)
    columns: dict[int, list[str]] = {}
    for s in stages:
        columns.setdefault(depth[s], []).append(s)
    pos = {}
    for d, names in columns.items():
        for r, s in enumerate(names):
            pos[s] = (float(d), (len(names) - 1) / 2.0 - r)
    return pos


def dag_figure(plan: Any) -> Any:
    import plotly.graph_objects as go

    stages = [row["stage"] for row in plan.stages]
    edges = [(e["from"], e["to"]) for e in plan.edges]
    pos = layout(stages, edges)
    path = list(plan.critical_path)
    on_path = set(itertools.pairwise(path))
    fig = go.Figure()
    for e in plan.edges:
        (x0, y0), (x1, y1) = pos[e["from"]], pos[e["to"]]
        hot = (e["from"], e["to"]) in on_path
        fig.add_annotation(
            x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2,
            arrowwidth=3 if hot else 1, arrowcolor=CRITICAL_COLOUR if hot else "#888", standoff=18, startstandoff=18,
            hovertext=f"{e['bytes']:.0f} B, {e['transfer_s'] * 1e3:.3g} ms",
        )  # fmt: skip
    colours = _colours(plan)
    for cls, colour in colours.items():
        rows = [r for r in plan.stages if r["class"] == cls]
        if rows:
            fig.add_scatter(
                x=[pos[r["stage"]][0] for r in rows],
                y=[pos[r["stage"]][1] for r in rows],
                mode="markers+text",
                name=cls,
                text=[r["stage"] for r in rows],
                textposition="top center",
                marker={
                    "size": 26,
                    "color": colour,
                    "line": {"width": [4 if r["critical"] else 1 for r in rows], "color": CRITICAL_COLOUR},
                },
                hovertext=[_hover(r) for r in rows],
                hoverinfo="text",
            )
    fig.update_layout(
        height=max(360, 120 * (1 + max((abs(y) for _, y in pos.values()), default=0) * 2)),
        xaxis={"visible": False},
        yaxis={"visible": False},
        legend_title_text="hardware class",
        margin={"t": 20},
    )
    return fig


def _colours(plan: Any) -> dict[str, str]:
    classes = [c["class"] for c in plan.classes]
    out = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}
    out["external"] = EXTERNAL_COLOUR
    return out


def _hover(r: dict[str, Any]) -> str:
    what = f"{r['kind']} {r['model']}" if r.get("model") else r["kind"]
    where = r["class"] + (" (host CPU)" if r.get("on_host") else "")
    if r.get("devices_per_instance", 0) > 1:
        where += f", TP {r['devices_per_instance']}"
    return (
        f"{r['stage']}: {what}<br>on {where}<br>starts {r['start_s']:.3g} s, takes {r['latency_s']:.3g} s"
        f"<br>busy {r['busy_device_s']:.3g} device-s per request ({r['bound']})"
    )


def sla_figure(plan: Any) -> Any:
    """$/h of the mixed and of the best one-class placement at each SLA the plan was solved at."""
    import plotly.graph_objects as go

    pts = list(plan.sla_curve)
    fig = go.Figure()
    for key, name in (("usd_per_hour", "mixed placement"), ("homogeneous_usd_per_hour", "best single class")):
        good = [p for p in pts if p.get(key) is not None]
        fig.add_scatter(
            x=[p["sla_s"] for p in good], y=[p[key] for p in good], mode="lines+markers", name=name, line_shape="hv"
        )
    fig.add_vline(x=plan.sla_s, line_dash="dot", annotation_text="this SLA")
    fig.update_layout(xaxis_title="end-to-end latency SLA (s)", yaxis_title="$/h", height=380, margin={"t": 20})
    return fig
