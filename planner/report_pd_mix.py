"""The cross-hardware prefill/decode report: $/M tokens of the chosen mix against every
homogeneous plan at the SLO, and the mix's $/h as the TTFT target tightens or loosens. Takes any
object with a DisaggregatedMixPlan's fields (solvers.disaggregated_mix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.files import write_atomic


def pd_mix_report(mix: Any, path: str | Path | None = None, *, force: bool = False) -> str:
    import plotly.graph_objects as go

    from planner.report import html_page, summary_table

    rows = [r for r in mix.comparison if r.get("usd_per_million_tokens") is not None]
    bars = go.Figure(go.Bar(x=[r["plan"] for r in rows], y=[r["usd_per_million_tokens"] for r in rows]))
    bars.update_layout(yaxis_title="$ per million output tokens", height=460, margin={"t": 20, "b": 160})
    points = [f for f in mix.frontier if f["usd_per_hour"] is not None]
    curve = go.Figure(
        go.Scatter(x=[f["ttft_s"] for f in points], y=[f["usd_per_hour"] for f in points], mode="lines+markers")
    )
    curve.add_vline(x=mix.slo.ttft_s, line_dash="dot", annotation_text="target")
    curve.update_layout(xaxis_title="TTFT target (s)", yaxis_title="$ per hour", height=380, margin={"t": 20})
    summary = {
        "model": mix.model,
        "rate_per_s": mix.workload.rate_per_s,
        "ttft_target_s": mix.slo.ttft_s,
        "tpot_target_s": mix.slo.tpot_s,
        "usd_per_hour": mix.usd_per_hour,
        "usd_per_million_tokens": mix.usd_per_million_tokens,
        "devices": mix.devices,
        "status": mix.status,
    }
    pools = "".join(
        f"<li>{p.replicas} x {p.hardware} tp={p.tp} ({p.side}), {p.utilization:.0%} busy</li>" for p in mix.pools
    )
    page = html_page(
        f"cross-hardware prefill/decode for {mix.model}",
        summary_table(summary, tuple(summary)) + f"<ul>{pools}</ul>",
        [("Cost at the SLO against homogeneous plans", bars), ("Cost against the TTFT target", curve)],
    )
    if path is not None:
        write_atomic(path, page, force)
    return page
