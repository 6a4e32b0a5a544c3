"""Self-contained HTML reports (plotly.js embedded: the file works offline, no CDN).

`report(result, "out.html")` for an inference or training estimate writes:
- a summary of the scenario and the key results, with units;
- a roofline: the device's ceilings per precision and every op at its arithmetic intensity and
  achieved FLOP/s, coloured by what bounds it;
- the time breakdown (compute by op class, exposed communication per parallel dimension, pipeline
  bubble, overheads) and the memory per device against the first tier's capacity;
- for training, one step's timeline: the 1F1B pipeline schedule per stage, then the exposed
  data-parallel communication and the optimizer.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from planner.breakdown import by_phase_and_class
from planner.catalog import Catalog, load_catalog
from planner.files import write_atomic
from planner.formatting import human_value

BOUND_COLOURS = {"compute": "#1f77b4", "memory": "#ff7f0e", "communication": "#2ca02c", "overhead": "#7f7f7f"}
# The timeline draws the whole step up to this many bars (one per stage, micro-batch and pass);
# past it, the first micro-batches that fit, and never fewer than TIMELINE_MICROBATCHES (enough to
# see the warm-up, steady state and cool-down of 1F1B). A truncated timeline says so in its title.
TIMELINE_BARS = 4096
TIMELINE_MICROBATCHES = 12
# Candidates drawn in a plan's Pareto chart at most (SVG; WebGL would need a GPU in a headless browser).
PARETO_POINTS = 3000


def report(
    result: Any,
    path: str | Path | None = None,
    *,
    title: str | None = None,
    catalog: Catalog | None = None,
    force: bool = False,
) -> str:
    """The report as one HTML string; written atomically to `path` when given (never over an
    existing file unless force)."""
    import plotly.graph_objects as go

    cat = catalog or load_catalog()
    if hasattr(result, "plans"):
        page = _plans_page(result, title)
        if path is not None:
            write_atomic(path, page, force)
        return page
    data = result.to_dict()
    figures: list[tuple[str, go.Figure]] = []
    ops = [r.to_dict() for r in getattr(result, "ops", ())]
    device = cat.device(data["hardware"]) if "hardware" in data and data["hardware"] in cat.devices else None
    if ops and device is not None:
        figures.append(("Roofline", roofline_figure(ops, device)))
    if "step_time_s" in data:
        figures.append(("Time per step", training_time_figure(data)))
        usable = [("usable hbm", data["capacity_bytes"])]
        figures.append(_memory_chart(data, cat, device, lambda: memory_figure(_training_memory(data), usable)))
        figures.append((timeline_heading(data), timeline_figure(data)))
    elif ops:
        figures.append(("Time per op class", inference_time_figure(ops)))
        if device is not None:
            figures.append(_memory_chart(data, cat, device, None))
    heading = title or _title(data)
    page = html_page(heading, summary_table(data), figures)
    if path is not None:
        write_atomic(path, page, force)
    return page


def _memory_chart(d: dict[str, Any], cat: Catalog, device: Any, fallback: Any) -> tuple[str, Any]:
    """Memory per device: each tier with the tensors the placement put there (planner.tiers), or
    the needs against the stacked tier capacities where a result has no placement."""
    from planner.cluster import resolve_cluster
    from planner.memory import device_tiers

    tiers = device_tiers(resolve_cluster(d["hardware"], d["devices"], cat), cat) if device is not None else []
    if d.get("memory_pool"):
        from planner.inference import MemoryPool

        tiers = [tiers[0], MemoryPool(d["memory_pool"]).tier(cat, d["devices"]), *tiers[1:]]
    if d.get("tier_placement_bytes") and tiers:
        return ("Memory per device, by tier (where each tensor lives)", tier_figure(d, tiers))
    if fallback is not None:
        return ("Memory per device", fallback())
    return ("Memory per device", memory_figure(_inference_memory(d), _cumulative(tiers)))


def _title(d: dict[str, Any]) -> str:
    kind = "training" if "step_time_s" in d else "inference" if "tpot_s" in d else d.get("kind", "estimate")
    who = f"{d['model']} " if "model" in d else ""
    return f"{who}{kind} on {d.get('devices', 1)} x {d.get('hardware', '')}"


_SUMMARY_KEYS = (
    "model",
    "hardware",
    "devices",
    "mode",
    "tp",
    "pp",
    "dp",
    "ep",
    "cp",
    "zero",
    "batch",
    "concurrency",
    "input_len",
    "output_len",
    "micro_batch",
    "global_batch",
    "seq_len",
    "recompute",
    "precision",
    "weight_precision",
    "kv_precision",
    "ttft_s",
    "tpot_s",
    "e2e_latency_s",
    "throughput_tokens_per_s",
    "max_batch",
    "max_concurrency",
    "step_time_s",
    "tokens_per_s",
    "mfu",
    "hfu",
    "memory_per_device_bytes",
    "fits",
    "fit_reason",
    "bound",
    "time_s",
    "achieved_flops_per_s",
    "busbw_bytes_per_s",
    "algorithm",
)


def summary_table(d: dict[str, Any], keys: tuple[str, ...] | None = None) -> str:
    rows = []
    for k in keys or _SUMMARY_KEYS:
        v = d.get(k)
        if v is None or isinstance(v, list):
            continue
        rows.append(f"<tr><th>{html.escape(k)}</th><td>{html.escape(human_value(k, v))}</td></tr>")
    return f"<table class='summary'>{''.join(rows)}</table>"


def roofline_figure(ops: list[dict[str, Any]], device: Any) -> Any:
    """Ceilings (dense peak per precision, memory bandwidth slope) and each op where it ran."""
    import plotly.graph_objects as go

    fig = go.Figure()
    bw = device.main_memory.bandwidth_bytes_per_s
    points = [o for o in ops if o["op_class"] != "comm" and o["flops"] > 0 and o["bytes"] > 0 and o["time_s"] > 0]
    lo = min([o["arithmetic_intensity"] for o in points] + [0.1]) / 2
    hi = max([o["arithmetic_intensity"] for o in points] + [1e4]) * 2
    for precision, peak in device.compute.peak_dense.items() if device.compute else ():
        ridge = peak / bw
        fig.add_trace(
            go.Scatter(
                x=[lo, ridge, hi],
                y=[bw * lo, peak, peak],
                mode="lines",
                name=f"{precision} ceiling",
                line={"width": 1, "dash": "dot"},
                hovertemplate=f"{precision}: %{{y:.3s}}FLOP/s<extra></extra>",
            )
        )
    for bound, colour in BOUND_COLOURS.items():
        mine = [o for o in points if o["bound"] == bound]
        if not mine:
            continue
        fig.add_trace(
            go.Scatter(
                x=[o["arithmetic_intensity"] for o in mine],
                y=[o["achieved_flops_per_s"] for o in mine],
                mode="markers",
                name=f"{bound}-bound ops",
                marker={"color": colour, "size": 9},
                text=[f"{o['phase']} / {o['op']}<br>{human_value('time_s', o['time_s'])}" for o in mine],
                hovertemplate="%{text}<br>%{x:.3g} FLOP/B, %{y:.3s}FLOP/s<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis={"type": "log", "title": "arithmetic intensity (FLOP/byte of main memory)"},
        yaxis={"type": "log", "title": "achieved FLOP/s"},
        height=520,
    )
    return fig


def inference_time_figure(ops: list[dict[str, Any]]) -> Any:
    """Stacked time per op class for each phase (communication by parallel dimension)."""
    import plotly.graph_objects as go

    rows = by_phase_and_class(ops)
    fig = go.Figure()
    for cls in sorted({r["op_class"] for r in rows}):
        mine = [r for r in rows if r["op_class"] == cls]
        fig.add_trace(go.Bar(x=[r["phase"] for r in mine], y=[r["time_s"] * 1e3 for r in mine], name=cls))
    fig.update_layout(barmode="stack", yaxis={"title": "time per pass (ms)"}, height=420)
    return fig


_TRAINING_PARTS = (
    ("compute_s", "compute"),
    ("recompute_s", "recompute"),
    ("tp_comm_s", "TP communication"),
    ("ep_comm_s", "EP all-to-all"),
    ("cp_comm_exposed_s", "CP exchange (exposed)"),
    ("pp_bubble_s", "pipeline bubble"),
    ("pp_comm_s", "pipeline sends"),
    ("dp_comm_exposed_s", "DP communication (exposed)"),
    ("optimizer_s", "optimizer"),
)


def training_time_figure(d: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, label in _TRAINING_PARTS:
        fig.add_trace(go.Bar(x=["step"], y=[_first(d[key])], name=label, hovertemplate="%{y:.3f} s"))
    fig.update_layout(barmode="stack", yaxis={"title": "seconds per step"}, height=420)
    return fig


def _first(v: Any) -> float:
    return float(v[0] if isinstance(v, list) else v)


def _inference_memory(d: dict[str, Any]) -> dict[str, float]:
    weights, kv, total = (
        _first(d[k]) for k in ("weight_bytes_per_device", "kv_bytes_per_device", "memory_per_device_bytes")
    )
    return {"weights": weights, "KV cache": kv, "activations": max(total - weights - kv, 0.0)}


def _training_memory(d: dict[str, Any]) -> dict[str, float]:
    return {
        "weights": d["weights_bytes"],
        "gradients": d["gradients_bytes"],
        "optimizer": d["optimizer_bytes"],
        "activations": _first(d["activations_bytes"]),
    }


def _cumulative(tiers: list[tuple[str, float, float]]) -> list[tuple[str, float]]:
    """Each tier's capacity stacked on the faster ones: what fits before spilling past it."""
    out, total = [], 0.0
    for i, (name, capacity, _) in enumerate(tiers):
        total += capacity
        out.append((f"usable {name}" if i == 0 else f"+ {name}", total))
    return out


def memory_figure(parts: dict[str, float], tiers: list[tuple[str, float]]) -> Any:
    """Stacked memory needs per device against each tier's (cumulative) capacity."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, size in parts.items():
        fig.add_trace(go.Bar(x=["per device"], y=[size / 1e9], name=name, hovertemplate="%{y:.2f} GB"))
    need = sum(parts.values())
    for i, (label, capacity) in enumerate(tiers):
        if i == 0 or capacity < 4 * max(need, tiers[0][1]):  # far-off tiers (TBs of SSD) would flatten the bars
            fig.add_hline(y=capacity / 1e9, line_dash="dash" if i == 0 else "dot", annotation_text=label)
    fig.update_layout(barmode="stack", yaxis={"title": "GB"}, height=420)
    return fig


def tier_figure(d: dict[str, Any], tiers: list[tuple[str, float, float]]) -> Any:
    """Per tier, the bytes of each tensor class the placement put there (planner.tiers), against
    the tier's capacity, with its bandwidth in the axis label."""
    import plotly.graph_objects as go

    placed: dict[str, dict[str, float]] = d["tier_placement_bytes"]
    known = {t[0] for t in tiers}
    shown = [t for t in tiers if t[0] in placed] + [(n, 0.0, 0.0) for n in placed if n not in known]
    labels = [f"{n} ({b / 1e9:,.0f} GB/s)" if b else n for n, _, b in shown]
    classes = list(dict.fromkeys(c for held in placed.values() for c in held))
    fig = go.Figure()
    for c in classes:
        y = [placed.get(n, {}).get(c, 0.0) / 1e9 for n, _, _ in shown]
        fig.add_trace(go.Bar(x=labels, y=y, name=c, hovertemplate="%{y:.2f} GB"))
    for i, (name, cap, _) in enumerate(shown):  # each tier's capacity across its own bar
        if cap and cap < 4 * max(sum(placed.get(name, {}).values()), shown[0][1]):  # far-off tiers (TBs of SSD)
            fig.add_shape(type="line", x0=i - 0.45, x1=i + 0.45, y0=cap / 1e9, y1=cap / 1e9, line={"dash": "dash"})
            fig.add_annotation(x=i, y=cap / 1e9, text=f"{name} holds {cap / 1e9:,.0f} GB", showarrow=False, yshift=10)
    fig.update_layout(barmode="stack", yaxis={"title": "GB per device"}, height=420)
    return fig


def one_f_one_b(
    stages: int, microbatches: int, forward_s: float, backward_s: float, send_s: float = 0.0
) -> list[tuple[int, str, int, float, float]]:
    """The 1F1B schedule (Narayanan et al. 2021): (stage, 'F' or 'B', micro-batch, start, end).
    Stage s warms up with (stages - s - 1) forwards, then alternates one forward and one backward;
    a forward waits for the previous stage's, a backward for the next stage's."""
    order: list[list[tuple[str, int]]] = []
    for s in range(stages):
        warm = min(stages - s - 1, microbatches)
        seq = [("F", i) for i in range(warm)]
        f, b = warm, 0
        while b < microbatches:
            if f < microbatches:
                seq.append(("F", f))
                f += 1
            seq.append(("B", b))
            b += 1
        order.append(seq)
    done: dict[tuple[int, str, int], float] = {}
    free = [0.0] * stages
    position = [0] * stages
    events = []
    while any(position[s] < len(order[s]) for s in range(stages)):
        progressed = False
        for s in range(stages):
            if position[s] >= len(order[s]):
                continue
            kind, i = order[s][position[s]]
            dep = (s - 1, "F", i) if kind == "F" else (s + 1, "B", i) if s + 1 < stages else (s, "F", i)
            if kind == "F" and s == 0:
                ready = 0.0
            elif dep not in done:
                continue
            else:
                ready = done[dep] + (send_s if dep[0] != s else 0.0)
            start = max(free[s], ready)
            end = start + (forward_s if kind == "F" else backward_s)
            done[(s, kind, i)] = end
            free[s] = end
            position[s] += 1
            events.append((s, kind, i, start, end))
            progressed = True
        if not progressed:  # cannot happen for a valid schedule; guards against an endless loop
            raise RuntimeError("1F1B schedule deadlocked")
    return events


def timeline_microbatches(d: dict[str, Any]) -> tuple[int, int]:
    """(micro-batches drawn, micro-batches in the step): the whole step unless it exceeds TIMELINE_BARS."""
    pp, total = int(d["pp"]), int(_first(d["micro_batches"]))
    fitting = max(TIMELINE_MICROBATCHES, TIMELINE_BARS // (2 * pp))
    return min(total, fitting), total


def timeline_heading(d: dict[str, Any]) -> str:
    """The timeline's section title; a truncated one states what share of the step it shows."""
    drawn, total = timeline_microbatches(d)
    if drawn == total:
        return f"One step's timeline (all {total} micro-batches)"
    fwd, bwd = _first(d["forward_per_microbatch_s"]), _first(d["backward_per_microbatch_s"])
    shown_s = max(e[4] for e in one_f_one_b(int(d["pp"]), drawn, fwd, bwd))
    return (
        f"One step's timeline: the first {drawn} of {total} micro-batches "
        f"({shown_s:.3g} s of the {_first(d['step_time_s']):.3g} s step; the rest repeat the steady state)"
    )


def timeline_figure(d: dict[str, Any]) -> Any:
    """Per-stage Gantt of one step (its first micro-batches when the whole step is too many bars)."""
    import plotly.graph_objects as go

    pp = int(d["pp"])
    m = timeline_microbatches(d)[0]
    fwd, bwd = _first(d["forward_per_microbatch_s"]), _first(d["backward_per_microbatch_s"])
    events = one_f_one_b(pp, m, fwd, bwd)
    fig = go.Figure()
    for kind, colour, label in (("F", "#1f77b4", "forward"), ("B", "#ff7f0e", "backward")):
        mine = [e for e in events if e[1] == kind]
        fig.add_trace(
            go.Bar(
                y=[f"stage {e[0]}" for e in mine],
                x=[(e[4] - e[3]) * 1e3 for e in mine],
                base=[e[3] * 1e3 for e in mine],
                orientation="h",
                name=label,
                marker={"color": colour},
                text=[str(e[2]) for e in mine],
                textposition="auto" if m <= TIMELINE_MICROBATCHES else "none",  # hundreds of labels: noise
                hovertemplate="micro-batch %{text}: %{base:.1f} ms + %{x:.1f} ms",
            )
        )
    end = max(e[4] for e in events) if events else 0.0
    drawn, total = timeline_microbatches(d)
    if drawn < total:  # the DP and optimizer bars below would otherwise seem to follow the last drawn one
        fig.add_vline(x=end * 1e3, line_dash="dash", annotation_text=f"{total - drawn} more micro-batches not drawn")
    tail = [
        ("DP communication (exposed)", _first(d["dp_comm_exposed_s"]), "#2ca02c"),
        ("optimizer", _first(d["optimizer_s"]), "#9467bd"),
    ]
    for label, seconds, colour in tail:
        fig.add_trace(
            go.Bar(
                y=[f"stage {s}" for s in range(pp)],
                x=[seconds * 1e3] * pp,
                base=[end * 1e3] * pp,
                orientation="h",
                name=label,
                marker={"color": colour},
            )
        )
        end += seconds
    fig.update_layout(
        barmode="overlay", xaxis={"title": "time (ms)"}, yaxis={"autorange": "reversed"}, height=200 + 40 * pp
    )
    return fig


def is_serving_plan(plans: Any) -> bool:
    """Serving plans (solvers.plan_inference) carry the SLO they were asked for; training plans do not."""
    return hasattr(plans, "slo")


def plan_question(plans: Any) -> dict[str, str]:
    """The question a plan search answered, in human units: what a reader checks first."""
    data = plans.to_dict()
    if is_serving_plan(plans):
        slo, w = plans.slo, plans.workload
        which = "mean" if slo.percentile is None else f"p{slo.percentile * 100:g}"
        return {
            "model": data["model"],
            "request rate": f"{w.rate_per_s:g} requests/s (Poisson arrivals)",
            "TTFT target": f"<= {slo.ttft_s * 1e3:g} ms ({which})",
            # the solver holds TPOT to its mean whatever the percentile (the TTFT's queueing is what varies)
            "TPOT target": f"<= {slo.tpot_s * 1e3:g} ms (mean time per output token)",
            "prompt length": f"{w.input_len:g} tokens mean, {w.max_input_len:g} max",
            "output length": f"{w.output_len:g} tokens mean, {w.max_output_len:g} max",
            "objective": data["objective"],
        }
    best = data["plans"][0] if data["plans"] else {}  # the batch and lengths are the plans' own
    return {
        "model": data["model"],
        "hardware": f"{data['devices']} x {data['hardware']}",
        "global batch": f"{best['global_batch']:g} sequences" if best else "-",
        "sequence length": f"{best['seq_len']:g} tokens" if best else "-",
        "precision": str(best.get("precision", "-")),
        "objective": data["objective"],
    }


def _rejected_after_evaluation(plans: Any) -> dict[str, int]:
    """Training: the rejections the engine made (candidates evaluated that do not fit), by reason;
    every other rejection was made by a layout rule before any evaluation."""
    frame = plans.candidates
    if frame is None or "reject" not in frame:
        return {}
    return {str(k): int(v) for k, v in frame[~frame["fits"].astype(bool)]["reject"].value_counts().items()}


def plan_counts(plans: Any) -> dict[str, int]:
    """What a plan search counted, split so that the parts add up (what each count counts is in its name).
    Training: searched = fitting + rejected after evaluation + rejected before evaluation.
    Serving: options evaluated = meeting the SLO + rejected; hardware skipped are not evaluated."""
    if is_serving_plan(plans):
        meeting = len(plans.candidates)
        failed = plans.evaluated - meeting
        return {
            "options_evaluated": plans.evaluated,
            "options_meeting_slo": meeting,
            "options_rejected": failed,
            "hardware_skipped": len(plans.rejected) - failed,
        }
    after = sum(_rejected_after_evaluation(plans).values())
    before = sum(plans.rejected.values()) - after
    return {
        "candidates_searched": plans.evaluated + before,
        "candidates_evaluated": plans.evaluated,
        "candidates_fitting": plans.evaluated - after,
        "rejected_after_evaluation": after,
        "rejected_before_evaluation": before,
    }


def plan_counts_sentence(plans: Any) -> str:
    """plan_counts in one line of prose, for the CLI and the report."""
    c = plan_counts(plans)
    if is_serving_plan(plans):
        skipped = f"; {c['hardware_skipped']} hardware option(s) skipped unevaluated" if c["hardware_skipped"] else ""
        return (
            f"{c['options_evaluated']:,} options evaluated (one per hardware, weight precision and TP for aggregated "
            f"replicas; one per hardware and weight precision for disaggregated pools): "
            f"{c['options_meeting_slo']:,} meet the SLO, {c['options_rejected']:,} do not{skipped}."
        )
    return (
        f"{c['candidates_searched']:,} candidates searched: {c['candidates_fitting']:,} fit and are ranked; "
        f"{c['rejected_after_evaluation']:,} evaluated by the engine do not fit in memory "
        f"({c['candidates_evaluated']:,} evaluated in all); {c['rejected_before_evaluation']:,} rejected "
        f"by a layout rule before evaluation."
    )


def rejection_rows(plans: Any) -> list[dict[str, Any]]:
    """Every rejection with the constraint that bound it (training: how many candidates, and whether
    the engine evaluated them), largest first."""
    if is_serving_plan(plans):
        return [{"option": k, "binding constraint": v} for k, v in plans.rejected.items()]
    after = _rejected_after_evaluation(plans)
    rows = [
        {
            "binding constraint": reason,
            "stage": "after evaluation" if reason in after else "before evaluation",
            "candidates": count,
        }
        for reason, count in plans.rejected.items()
    ]
    return sorted(rows, key=lambda r: -r["candidates"])


def serving_pareto_figure(candidates: list[dict[str, Any]], best: dict[str, Any]) -> Any:
    """Cost (or devices) against TPOT, one colour per hardware type, one symbol per mode. The cost axis
    is logarithmic (one expensive outlier would squash a linear one); a button switches it to linear."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    priced = bool(candidates) and all(c.get("usd_per_hour") for c in candidates)
    xkey, xname, xhover = (
        ("usd_per_hour", "cost ($/h)", "%{x:$,.2f}/h") if priced else ("devices", "devices", "%{x} devices")
    )
    symbols = {"aggregated": "circle", "disaggregated": "diamond"}
    fig = go.Figure()
    for i, hw in enumerate(sorted({c["hardware"] for c in candidates})):
        for mode in sorted({c["mode"] for c in candidates if c["hardware"] == hw}):
            mine = [c for c in candidates if c["hardware"] == hw and c["mode"] == mode]
            fig.add_trace(
                go.Scatter(
                    x=[c[xkey] for c in mine],
                    y=[c["tpot_s"] * 1e3 for c in mine],
                    customdata=[[c["ttft_s"] * 1e3, c["devices"]] for c in mine],
                    mode="markers",
                    name=f"{hw} ({mode})",
                    legendgroup=hw,
                    marker={"color": qualitative.Plotly[i % len(qualitative.Plotly)], "symbol": symbols.get(mode)},
                    text=[f"{hw} {mode} {c['weight_precision']} tp={c['tp']} x{c['replicas']}" for c in mine],
                    hovertemplate=f"%{{text}}<br>{xhover}, %{{customdata[1]}} devices<br>"
                    "TPOT %{y:.1f} ms, TTFT %{customdata[0]:.0f} ms<extra></extra>",
                )
            )
    fig.add_trace(
        go.Scatter(
            x=[best.get(xkey) or best["devices"]],
            y=[best["tpot_s"] * 1e3],
            mode="markers",
            name="chosen",
            marker={"symbol": "star", "size": 18, "color": "#d62728"},
            hovertemplate=f"chosen<br>{xhover}<br>TPOT %{{y:.1f}} ms<extra></extra>",
        )
    )
    axis = [
        {"label": f"{scale} {xname.split(' ')[0]} axis", "method": "relayout", "args": [{"xaxis.type": scale}]}
        for scale in ("log", "linear")
    ]
    fig.update_layout(
        xaxis={"type": "log", "title": f"{xname}, log scale"},
        yaxis={"title": "TPOT (ms)"},
        height=480,
        updatemenus=[{"type": "buttons", "direction": "left", "buttons": axis, "x": 1, "xanchor": "right", "y": 1.12}],
    )
    return fig


def training_pareto_figure(frame: Any, best: dict[str, Any]) -> Any:
    """Memory per device against tokens/s for every evaluated candidate (fitting or not)."""
    import pandas as pd
    import plotly.graph_objects as go

    fig = go.Figure()
    for ok, colour, label in ((True, "#1f77b4", "fits"), (False, "#bbbbbb", "does not fit")):
        mine = frame[frame["fits"] == ok]
        if len(mine) > PARETO_POINTS:  # SVG stays light: the fastest half, and an even sample of the rest
            ranked = mine.sort_values("tokens_per_s", ascending=False)
            rest = ranked.iloc[PARETO_POINTS // 2 :]
            mine = pd.concat([ranked.head(PARETO_POINTS // 2), rest.iloc[:: max(1, len(rest) // (PARETO_POINTS // 2))]])
        fig.add_trace(
            go.Scatter(
                x=mine["memory_per_device_bytes"] / 1e9,
                y=mine["tokens_per_s"],
                mode="markers",
                name=label,
                marker={"color": colour, "size": 5},
                text=[
                    f"tp={r.tp} pp={r.pp} dp={r.dp} cp={r.cp} zero={r.zero} mb={r.micro_batch} {r.recompute}"
                    for r in mine.itertuples()
                ],
                hovertemplate="%{text}<br>%{x:.1f} GB per device, %{y:.4s} tokens/s<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[best["memory_per_device_bytes"] / 1e9],
            y=[best["tokens_per_s"]],
            mode="markers",
            name="chosen",
            marker={"symbol": "star", "size": 18, "color": "#d62728"},
        )
    )
    fig.update_layout(xaxis={"title": "memory per device (GB)"}, yaxis={"title": "tokens/s"}, height=460)
    return fig


def _plans_page(plans: Any, title: str | None) -> str:
    """A plan search: the question, the chosen plan, a Pareto chart of the candidates, a sortable
    table of candidates and one of the rejections with the constraint that bound each."""
    data = plans.to_dict()
    best = data["plans"][0]
    if is_serving_plan(plans):
        fig = serving_pareto_figure(list(plans.candidates), best)
        rows = [{k: v for k, v in c.items() if k != "price"} for c in plans.candidates]
        heading = title or f"serving plans for {data['model']}"
    else:
        frame = plans.candidates
        fig = training_pareto_figure(frame, best)
        shown = frame.sort_values("tokens_per_s", ascending=False)
        rows = shown[shown["fits"]].head(300).to_dict(orient="records")
        rows += shown[~shown["fits"]].head(100).to_dict(orient="records")
        heading = title or f"training plans for {data['model']} on {data['devices']} x {data['hardware']}"
    question = plan_question(plans)
    chosen = {k: v for k, v in best.items() if not isinstance(v, (list, dict)) and v is not None}
    top = (
        "<h2>The question</h2>"
        + _rows_table(question)
        + f"<p class='counts'>{html.escape(plan_counts_sentence(plans))}</p>"
        + "<h2>Chosen plan</h2>"
        + summary_table(chosen, tuple(chosen))
    )
    page = html_page(heading, top, [("Candidates (Pareto view)", fig)])
    rejections = rejection_rows(plans)
    tables = (
        f"<section><h2>Candidates</h2>{_sortable_table(rows)}</section>"
        f"<section><h2>Rejections and the constraint that bound each ({len(rejections)})</h2>"
        f"{_sortable_table(rejections, 'rejections') if rejections else '<p>none</p>'}</section>"
    )
    return page.replace("<footer>", f"{tables}<footer>")


def _rows_table(rows: dict[str, str]) -> str:
    """Already human-readable label/value pairs as a summary table."""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows.items())
    return f"<table class='summary question'>{body}</table>"


def _sortable_table(rows: list[dict[str, Any]], css_class: str = "candidates") -> str:
    """An HTML table whose columns sort on a click (inline script, no dependency)."""
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    head = "".join(f"<th onclick='sortTable(this)'>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td data-v='{html.escape(str(r.get(c, '')))}'>"
            f"{html.escape(human_value(c, r[c]) if c in r and r[c] is not None else '')}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    script = """<script>
function sortTable(th) {
  const table = th.closest('table'), i = [...th.parentNode.children].indexOf(th);
  const asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
  const rows = [...table.tBodies[0].rows];
  const key = r => { const v = r.cells[i].dataset.v; const n = parseFloat(v); return isNaN(n) ? v : n; };
  rows.sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); });
  rows.forEach(r => table.tBodies[0].appendChild(r));
}
</script>"""
    return f"<table class='sortable {css_class}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{script}"


def html_page(title: str, summary: str, figures: list[tuple[str, Any]]) -> str:
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    blocks = []
    for i, (name, fig) in enumerate(figures):
        div = pio.to_html(
            fig, full_html=False, include_plotlyjs=False, div_id=f"chart-{i}", config={"displaylogo": False}
        )
        blocks.append(f"<section><h2>{html.escape(name)}</h2>{div}</section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table.summary {{ border-collapse: collapse; }}
table.summary th {{ text-align: left; padding: 2px 16px 2px 0; font-weight: 500; color: #555; }}
table.summary td {{ padding: 2px 0; }}
section {{ margin-top: 2em; }}
table.sortable {{ border-collapse: collapse; font-size: 0.8em; display: block; overflow: auto; max-height: 600px; }}
table.sortable th {{ cursor: pointer; position: sticky; top: 0; background: #eee; padding: 2px 6px; }}
table.sortable td {{ padding: 1px 6px; border-bottom: 1px solid #eee; }}
footer {{ margin-top: 3em; color: #777; font-size: 0.85em; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
{summary}
{"".join(blocks)}
<footer>planner: analytical estimate; figures per device; ceilings are dense datasheet peaks.</footer>
</body></html>
"""
