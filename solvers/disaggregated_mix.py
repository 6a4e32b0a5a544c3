"""Prefill on one hardware type, decode on another (`plan_disaggregated_mix`, `planner plan pd-mix`).

Every (type, TP) option of each side comes from solvers.pools: a prefill replica's service time
and a decode replica's rate within TPOT. A pair (prefill option p, decode option d) is usable when
p's prompt prefill plus the KV transfer to d fits the TTFT target; the transfer crosses the
scale-out network between the two types' nodes, with the rewrite of the KV cache where the two
store it differently (solvers.pools.kv_transfer_s).

The MILP (solvers.milp) routes the request rate over usable pairs, f[p, d] >= 0 with sum f = rate,
and buys whole replicas: sum_d f[p, d] / rate_p(p, d) <= n_p for each prefill option (a replica's
TTFT-feasible rate depends on where its KV goes), sum_p f[p, d] / rate_d <= n_d for each decode
option, minimising the $/h of the replicas bought. One pair with rate-matched counts (today's
disaggregated planner) is one feasible point; so is every homogeneous pair, so the answer is never
worse than the best homogeneous disaggregated plan over the same options.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError, PlannerError
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import resolve_cluster
from planner.queueing import md1_wait_percentile_s, md1_wait_s
from solvers.inference_plan import Slo, Workload, plan_inference
from solvers.milp import Milp, solve
from solvers.pools import PoolSide, kv_transfer_s, pool_sides, prefill_rate

TPS = (1, 2, 4, 8)
FRONTIER_TTFT_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)  # the report's cost-vs-TTFT curve, around the target


@dataclass(frozen=True)
class PoolUse:
    side: str  # prefill or decode
    hardware: str
    tp: int
    replicas: int
    devices: int
    usd_per_hour: float
    utilization: float


@dataclass(frozen=True)
class DisaggregatedMixPlan:
    model: str
    workload: Workload
    slo: Slo
    pools: tuple[PoolUse, ...]
    routes: tuple[dict[str, Any], ...]  # rate per (prefill option, decode option), with TTFT and KV transfer
    usd_per_hour: float
    usd_per_million_tokens: float
    devices: int
    status: str
    mip_gap: float
    solve_s: float
    comparison: tuple[dict[str, Any], ...] = ()  # homogeneous aggregated and disaggregated, and this plan
    frontier: tuple[dict[str, Any], ...] = ()  # $/h of the cheapest mix at other TTFT targets
    rejected: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "workload": self.workload.__dict__,
            "slo": self.slo.__dict__,
            "pools": [p.__dict__ for p in self.pools],
            "routes": list(self.routes),
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "devices": self.devices,
            "status": self.status,
            "mip_gap": self.mip_gap,
            "solve_s": self.solve_s,
            "comparison": list(self.comparison),
            "frontier": list(self.frontier),
            "rejected": self.rejected,
        }

    def to_frame(self) -> Any:
        """The comparison table: one row per plan, $/M tokens at the SLO."""
        import pandas as pd

        return pd.DataFrame(list(self.comparison))


def plan_disaggregated_mix(
    model: Any,
    hardware: list[str] | tuple[str, ...],
    workload: Workload,
    slo: Slo,
    *,
    prefill_hardware: list[str] | None = None,
    decode_hardware: list[str] | None = None,
    weight_precision: str = "bf16",
    kv_precisions: dict[str, str] | None = None,
    time_limit_s: float = 30.0,
    solver: str = "highs",
    compare: bool = True,
    catalog: Catalog | str | None = None,
) -> DisaggregatedMixPlan:
    """The cheapest prefill and decode pools, each of any candidate type, serving `workload` within
    `slo`. prefill_hardware / decode_hardware restrict a side (both sides take `hardware` by
    default); kv_precisions: KV-cache precision per hardware type (bf16 unless named).
    compare: also plan each type homogeneously (aggregated and disaggregated) for the table."""
    start = time.perf_counter()
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    spec = resolve_model(model, cat)
    kinds = list(dict.fromkeys([*hardware, *(prefill_hardware or []), *(decode_hardware or [])]))
    if not kinds:
        raise InvalidSpecError("give at least one hardware type")
    sides: dict[str, tuple[list[PoolSide], list[PoolSide]]] = {}
    rejected: dict[str, str] = {}
    for hw in kinds:
        found = _sides(spec, hw, workload, slo, weight_precision, (kv_precisions or {}).get(hw), cat, rejected)
        if found is not None:
            sides[hw] = found
    pre = [p for hw in (prefill_hardware or hardware) if hw in sides for p in sides[hw][0]]
    dec = [d for hw in (decode_hardware or hardware) if hw in sides for d in sides[hw][1]]
    rates = np.array([[prefill_rate(p, d, slo.ttft_s, slo.percentile) for d in dec] for p in pre]).reshape(
        len(pre), len(dec)
    )
    if not pre or not dec or not np.any(rates > 0):
        raise InfeasiblePlanError(_why_none(pre, dec, slo, rejected))
    flows, n_p, n_d, res = _solve(rates, pre, dec, workload.rate_per_s, time_limit_s, solver)
    plan = _plan(spec.id, workload, slo, pre, dec, rates, flows, n_p, n_d, res, rejected)
    comparison = _compare(spec, kinds, workload, slo, weight_precision, cat, plan) if compare else ()
    frontier = _frontier(pre, dec, workload, slo, time_limit_s, solver)
    fields = {"comparison": comparison, "frontier": frontier, "solve_s": time.perf_counter() - start}
    return DisaggregatedMixPlan(**{**plan.__dict__, **fields})


def _frontier(
    pre: list[PoolSide], dec: list[PoolSide], w: Workload, slo: Slo, limit: float, solver: str
) -> tuple[dict[str, Any], ...]:
    """$/h of the cheapest mix at tighter and looser TTFT targets (the pools' options do not change)."""
    out = []
    for scale in FRONTIER_TTFT_SCALES:
        ttft = slo.ttft_s * scale
        rates = np.array([[prefill_rate(p, d, ttft, slo.percentile) for d in dec] for p in pre])
        cost = None
        if np.any(rates > 0):
            try:
                _, n_p, n_d, _ = _solve(rates, pre, dec, w.rate_per_s, limit, solver)
                cost = float(n_p @ [p.usd_per_hour for p in pre] + n_d @ [d.usd_per_hour for d in dec])
            except InfeasiblePlanError:
                cost = None
        out.append({"ttft_s": ttft, "usd_per_hour": cost})
    return tuple(out)


def _sides(
    spec: Any, hw: str, w: Workload, slo: Slo, wp: str, kv: str | None, cat: Catalog, rejected: dict[str, str]
) -> tuple[list[PoolSide], list[PoolSide]] | None:
    from solvers.inference_plan import _price

    try:
        cluster = resolve_cluster(hw, None, cat)
    except PlannerError as e:
        rejected[hw] = str(e)
        return None
    price = _price(cluster.device)
    if price is None:
        rejected[hw] = "no cloud price in the catalogue"
        return None
    domain = cluster.scale_up.group
    tps = [t for t in TPS if t <= max(domain, 1) and spec.attention.heads % t == 0]
    pre, dec, reasons = pool_sides(spec, hw, tps, wp, kv, w.input_len, w.output_len, slo.tpot_s, cat, price)
    for r in reasons:
        rejected[r.split(":")[0]] = r.split(":", 1)[1].strip()
    return pre, dec


def _why_none(pre: list[PoolSide], dec: list[PoolSide], slo: Slo, rejected: dict[str, str]) -> str:
    if not dec:
        return f"no decode option keeps TPOT <= {slo.tpot_s * 1e3:.1f} ms ({'; '.join(list(rejected.values())[:2])})"
    if not pre:
        return f"no prefill option fits ({'; '.join(list(rejected.values())[:2])})"
    offline = sorted({s.hardware for s in (*pre, *dec) if s.nic_bytes_per_s <= 0})
    crossing = [(p, d) for p in pre for d in dec]
    if offline and all(p.hardware != d.hardware and kv_transfer_s(p, d) == np.inf for p, d in crossing):
        return f"no scale-out network in the catalogue for {', '.join(offline)}: the KV cache cannot cross pools"
    fastest = min(pre, key=lambda p: p.service_s)
    return (
        f"TTFT {slo.ttft_s * 1e3:.0f} ms: the fastest prefill ({fastest.hardware} tp={fastest.tp}) takes "
        f"{fastest.service_s * 1e3:.0f} ms before its KV transfer"
    )


def _solve(
    rates: Any, pre: list[PoolSide], dec: list[PoolSide], rate: float, limit: float, solver: str
) -> tuple[Any, Any, Any, Any]:
    P, D = rates.shape
    usable = np.argwhere(rates > 0)
    m = Milp()
    f = m.add(len(usable))  # req/s routed over each usable pair
    n_p = m.add(P, cost=[p.usd_per_hour for p in pre], integer=True)
    n_d = m.add(D, cost=[d.usd_per_hour for d in dec], integer=True)
    m.row(np.zeros(len(usable), dtype=int), f, 1.0, rate, rate, 1)
    # prefill option i: sum_j f_ij / rate_ij - n_i <= 0
    pi, dj = usable[:, 0], usable[:, 1]
    m.row(
        np.concatenate([pi, np.arange(P)]),
        np.concatenate([f, n_p]),
        np.concatenate([1.0 / rates[pi, dj], -np.ones(P)]),
        -np.inf,
        0.0,
        P,
    )
    m.row(
        np.concatenate([dj, np.arange(D)]),
        np.concatenate([f, n_d]),
        np.concatenate([1.0 / np.array([dec[j].rate_per_s for j in dj]), -np.ones(D)]),
        -np.inf,
        0.0,
        D,
    )
    res = solve(m, limit, solver)
    if res.x is None:
        raise InfeasiblePlanError(f"the MILP found no plan in {limit:g} s ({res.status})")
    flows = np.zeros((P, D))
    flows[pi, dj] = res.x[f]
    return flows, np.round(res.x[n_p]).astype(int), np.round(res.x[n_d]).astype(int), res


def _plan(
    model: str,
    w: Workload,
    slo: Slo,
    pre: list[PoolSide],
    dec: list[PoolSide],
    rates: Any,
    flows: Any,
    n_p: Any,
    n_d: Any,
    res: Any,
    rejected: dict[str, str],
) -> DisaggregatedMixPlan:
    pools, routes = [], []
    for side, options, counts, load in (
        (
            "prefill",
            pre,
            n_p,
            [float((flows[i] / np.where(rates[i] > 0, rates[i], np.inf)).sum()) for i in range(len(pre))],
        ),
        ("decode", dec, n_d, [float(flows[:, j].sum() / dec[j].rate_per_s) for j in range(len(dec))]),
    ):
        for o, n, used in zip(options, counts, load, strict=True):
            if n > 0:
                pools.append(
                    PoolUse(side, o.hardware, o.tp, int(n), int(n) * o.tp, float(n * o.usd_per_hour), float(used / n))
                )
    for i, j in np.argwhere(flows > 1e-9):
        p, d = pre[i], dec[j]
        per_replica = flows[i].sum() / max(n_p[i], 1)
        wait = (
            md1_wait_s(per_replica, p.service_s)
            if slo.percentile is None
            else md1_wait_percentile_s(per_replica, p.service_s, slo.percentile)
        )
        transfer = kv_transfer_s(p, d)
        routes.append(
            {
                "prefill": f"{p.hardware} tp={p.tp}",
                "decode": f"{d.hardware} tp={d.tp}",
                "rate_per_s": float(flows[i, j]),
                "kv_transfer_s": transfer,
                "ttft_s": p.service_s + transfer + wait,
                "tpot_s": d.tpot_s,
            }
        )
    hourly = float(sum(p.usd_per_hour for p in pools))
    tokens_per_hour = w.rate_per_s * w.output_len * 3600.0
    return DisaggregatedMixPlan(
        model=model,
        workload=w,
        slo=slo,
        pools=tuple(pools),
        routes=tuple(routes),
        usd_per_hour=hourly,
        usd_per_million_tokens=hourly / tokens_per_hour * 1e6,
        devices=sum(p.devices for p in pools),
        status=res.status,
        mip_gap=float(res.gap),
        solve_s=0.0,
        rejected=rejected,
    )


def _compare(
    spec: Any, kinds: list[str], w: Workload, slo: Slo, wp: str, cat: Catalog, plan: DisaggregatedMixPlan
) -> tuple[dict[str, Any], ...]:
    """Homogeneous aggregated and disaggregated plans of each type, and this one, on $/M tokens."""
    rows: list[dict[str, Any]] = []
    for hw in kinds:
        for mode in ("aggregated", "disaggregated"):
            try:
                best = plan_inference(
                    spec, hw, w, slo, weight_precisions=(wp,), disaggregated=mode == "disaggregated", top=1, catalog=cat
                ).best
            except PlannerError as e:
                rows.append(
                    {
                        "plan": f"{hw} {mode}",
                        "usd_per_hour": None,
                        "usd_per_million_tokens": None,
                        "devices": None,
                        "note": str(e)[:120],
                    }
                )
                continue
            rows.append(
                {
                    "plan": f"{hw} {mode}",
                    "usd_per_hour": best.usd_per_hour,
                    "usd_per_million_tokens": best.usd_per_million_tokens,
                    "devices": best.devices,
                    "note": "",
                }
            )
    mix = " + ".join(f"{p.replicas} x {p.hardware} tp={p.tp} {p.side}" for p in plan.pools)
    rows.append(
        {
            "plan": f"cross-hardware: {mix}",
            "usd_per_hour": plan.usd_per_hour,
            "usd_per_million_tokens": plan.usd_per_million_tokens,
            "devices": plan.devices,
            "note": plan.status,
        }
    )
    return tuple(sorted(rows, key=lambda r: (r["usd_per_hour"] is None, r["usd_per_hour"] or math.inf)))
