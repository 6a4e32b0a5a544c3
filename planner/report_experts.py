"""The expert placement report: load per (layer, GPU) before and after as heatmaps, and the
balance (max over mean GPU load) per layer. Takes any object with an ExpertPlan's fields
(solvers.experts), so planner does not import solvers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from planner.files import write_atomic


def expert_report(plan: Any, path: str | Path | None = None, *, force: bool = False) -> str:
    """One self-contained HTML page; written atomically to `path` when given."""
    import plotly.graph_objects as go

    from planner.report import html_page, summary_table

    scale = max(float(plan.gpu_loads_before.max()), float(plan.gpu_loads.max()))
    figures: list[tuple[str, Any]] = []
    for name, loads in (("before (contiguous)", plan.gpu_loads_before), (f"after ({plan.policy})", plan.gpu_loads)):
        fig = go.Figure(go.Heatmap(z=loads, zmin=0, zmax=scale, colorscale="Viridis", colorbar={"title": "tokens"}))
        fig.update_layout(xaxis_title="GPU", yaxis_title="MoE layer", height=520, margin={"t": 20})
        figures.append((f"Tokens per GPU and layer, {name}", fig))
    bal = go.Figure()
    bal.add_scatter(y=plan.balance_before, name="contiguous", mode="lines+markers")
    bal.add_scatter(y=plan.balance, name=plan.policy, mode="lines+markers")
    bal.update_layout(xaxis_title="MoE layer", yaxis_title="busiest GPU / mean", height=380, margin={"t": 20})
    figures.append(("Balance per layer", bal))
    summary = {k: v for k, v in plan.summary().items() if v is not None}
    notes = "".join(f"<p>{html.escape(m)}</p>" for m in plan.messages)
    page = html_page(
        f"expert placement: {plan.policy} on {plan.gpus} GPUs", summary_table(summary, tuple(summary)) + notes, figures
    )
    if path is not None:
        write_atomic(path, page, force)
    return page
