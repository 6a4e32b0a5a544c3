"""Placing an agent workflow on heterogeneous hardware: one class per stage and a device count per
class, at the least $/h that serves the request rate within the end-to-end latency SLA.

The question is the one of Asgar, Nguyen and Katti (arXiv 2507.19635): an agent is a DAG of
compute and IO stages; cheap parts (CPUs, older GPUs) can carry some stages while the critical
path still meets the SLA. The mixed-integer program (solvers.milp, HiGHS or CBC):

  x[o]   in {0,1}   option o runs: stage i(o) on class k(o) at a TP size (only where the engine
                    says it can); X[i,k] = sum of x[o] over stage i's options on class k
  n[k]   integer    devices of class k
  s[i], end >= 0    start times along the DAG, and the end of the request
  min  sum_k price[k] n[k]  (+ a tie-break of 1e-6 $/h per second of latency)
  sum of x[o] over stage i's options = 1
  rate sum_o busy[o] x[o] over class k's options <= utilization n[k]   (device time; host cores likewise)
  s[j] >= s[i] + sum_o t[o] x[o] + tau(a,b) (X[i,a] + X[j,b] - 1)   for each edge i->j, pair (a,b)
  end  >= s[i] + sum_o t[o] x[o];   end <= SLA

The transfer term is the standard linearisation of tau(a,b) X[i,a] X[j,b] without new variables:
it binds only when both are 1 and is slack (tau >= 0) otherwise. Latency is the unloaded
critical path at the SLA's percentile (LLM TTFT at p90 under concurrency; tool p90 latencies); the
utilisation cap is the headroom queueing needs. Instances are devices (a TP-2 LLM takes two).

Options: each (stage, class) pair may offer several TP sizes (solvers.agent_costs), none beaten on
both latency and busy time. Stages on one class share its devices by
time, as the capacity row says: each stage's model fits a device (or its TP group) alone, but
whether several models fit in one device's memory together is not checked. Each solve (the mixed
plan, each one-class plan, each point of the SLA curve) runs under the time limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError, SolverLimitError
from planner.arrays import plain
from planner.catalog import Catalog, load_catalog
from solvers.agent_costs import HardwareClass, StageCoster, hardware_class, instances_needed, transfer_s
from solvers.milp import Milp, solve
from workloads.agent import CpuStage, LlmStage, Workflow, load_workflow, topological_order

Array = npt.NDArray[np.float64]
DEFAULT_HARDWARE = ("epyc-9654", "a10g", "l40s", "a100-sxm-80gb", "h100-sxm", "b200", "gaudi3")
LATENCY_TIE_BREAK = 1e-6  # $/h per second of end-to-end latency: picks the faster of equal-cost plans
TOL = 1e-7
SLA_CURVE_FACTORS = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0)  # x the fastest critical path


@dataclass(frozen=True)
class AgentProblem:
    """Everything the program needs, computed once (the engine calls). S stages in topological
    order, K usable classes, O options: one (stage, class, TP size) each, none dominated."""

    workflow: Workflow
    stages: tuple[str, ...]
    classes: tuple[HardwareClass, ...]
    external: Array  # (S,) fixed latency of a stage outside the planned hardware, NaN if placed
    opt_stage: npt.NDArray[np.int64]  # (O,)
    opt_class: npt.NDArray[np.int64]
    latency: Array  # (O,) seconds per request
    device_s: Array  # (O,) busy device-seconds per request
    host_s: Array  # (O,) busy host-core device-seconds per request
    on_host: npt.NDArray[np.bool_]
    devices: npt.NDArray[np.int64]
    bound: tuple[str, ...]
    edges: tuple[tuple[int, int, float], ...]  # (source index, target index, bytes)
    transfer: Array  # (E, K, K) seconds
    rate: float
    sla_s: float
    percentile: str
    utilization: float
    rejected: dict[str, str]  # class -> why it is no candidate at all
    infeasible: dict[str, dict[str, str]]  # stage -> class -> why it cannot run there

    @property
    def placed(self) -> npt.NDArray[np.bool_]:
        return np.isnan(self.external)

    def options(self, i: int) -> npt.NDArray[np.int64]:
        return np.nonzero(self.opt_stage == i)[0]

    def runs_on(self, i: int, k: int) -> bool:
        return bool(np.any((self.opt_stage == i) & (self.opt_class == k)))


@dataclass(frozen=True)
class Evaluation:
    """One placement (an option per stage, -1 outside the plan) evaluated exactly."""

    placement: tuple[int, ...]
    usd_per_hour: float
    instances: tuple[int, ...]
    latency_s: float
    start_s: tuple[float, ...]
    stage_latency_s: tuple[float, ...]
    critical_path: tuple[int, ...]


@dataclass(frozen=True)
class AgentPlan:
    workflow: str
    rate_per_s: float
    sla_s: float
    percentile: str
    utilization_cap: float
    placement: dict[str, str]  # stage -> class ("external": a fixed latency outside the plan)
    instances: dict[str, int]  # class -> devices (only classes in use)
    usd_per_hour: float
    usd_per_request: float
    llm_usd_per_million_tokens: float | None  # per million LLM tokens processed (input + output)
    latency_s: float  # the critical path at the SLA's percentile
    slack_s: float
    critical_path: tuple[str, ...]
    homogeneous_class: str | None  # the cheapest one-class plan that meets the SLA
    homogeneous_usd_per_hour: float | None
    saving_usd_per_hour: float | None
    saving_fraction: float | None
    status: str
    mip_gap: float
    solve_s: float
    solver: str
    stages: tuple[dict[str, Any], ...]
    classes: tuple[dict[str, Any], ...]
    edges: tuple[dict[str, Any], ...]
    homogeneous: tuple[dict[str, Any], ...]
    rejected: dict[str, str]
    infeasible: dict[str, dict[str, str]]
    sla_curve: tuple[dict[str, Any], ...] = ()
    messages: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))

    def to_frame(self) -> Any:
        """One row per stage: where it runs, when it starts, how long it takes, what it occupies."""
        import pandas as pd

        return pd.DataFrame(list(self.stages))

    def summary(self) -> dict[str, Any]:
        keys = (
            "workflow rate_per_s sla_s percentile latency_s slack_s usd_per_hour usd_per_request "
            "llm_usd_per_million_tokens homogeneous_class homogeneous_usd_per_hour saving_usd_per_hour "
            "saving_fraction status mip_gap solve_s solver"
        ).split()
        out = {k: getattr(self, k) for k in keys}
        out["critical_path"] = " -> ".join(self.critical_path)
        out["instances"] = ", ".join(f"{n} x {c}" for c, n in self.instances.items())
        return out


def plan_agent(
    workflow: Workflow | str | Path,
    *,
    hardware: Sequence[str] | None = None,
    rate: float | None = None,
    sla_s: float | None = None,
    percentile: str | None = None,
    utilization: float | None = None,
    prices: Mapping[str, float] | None = None,
    time_limit_s: float = 30.0,
    solver: str = "highs",
    catalog: Catalog | str | None = None,
    sla_curve: bool = False,
    ownership: str = "cloud",
) -> AgentPlan:
    """The cheapest placement of `workflow` (a Workflow or a YAML path) on the candidate classes
    (`hardware`, else the workflow's, else DEFAULT_HARDWARE). Options override the file's rate, SLA,
    percentile, utilisation cap and prices. `sla_curve` also solves at a few SLAs (the report's chart).
    `ownership`: "cloud" prices a class at its cheapest cloud $/h, "owned" at its owned TCO per
    device-hour (planner.costs, energy at TDP: an upper bound); given prices win either way.
    Raises InfeasiblePlanError naming the stage or the SLA that binds."""
    if ownership not in ("cloud", "owned"):
        raise InvalidSpecError(f"unknown ownership '{ownership}' (allowed: cloud, owned)")
    wf = workflow if isinstance(workflow, Workflow) else load_workflow(workflow)
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    if ownership == "owned":
        prices = {**_owned_prices(hardware or wf.hardware or DEFAULT_HARDWARE, cat), **(prices or {})}
    problem = build_problem(wf, hardware, rate, sla_s, percentile, utilization, prices, cat)
    return solve_problem(problem, time_limit_s, solver, sla_curve)


def _owned_prices(hardware: Sequence[str], cat: Catalog) -> dict[str, float]:
    """Owned TCO per device-hour of each candidate class that has a capex and a TDP."""
    from planner.costs import owned_per_device_hour

    out = {}
    for device_id in hardware:
        usd = owned_per_device_hour(cat.device(device_id)) if device_id in cat.devices else None
        if usd is not None:
            out[device_id] = usd
    return out


def build_problem(
    workflow: Workflow | str | Path,
    hardware: Sequence[str] | None = None,
    rate: float | None = None,
    sla_s: float | None = None,
    percentile: str | None = None,
    utilization: float | None = None,
    prices: Mapping[str, float] | None = None,
    catalog: Catalog | str | None = None,
) -> AgentProblem:
    """Cost every stage on every candidate class and every edge between every pair of classes."""
    wf = workflow if isinstance(workflow, Workflow) else load_workflow(workflow)
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    rate_, sla_, pct, util = _overrides(wf, rate, sla_s, percentile, utilization)
    classes, rejected = _classes(cat, hardware or wf.hardware or DEFAULT_HARDWARE, {**wf.prices, **(prices or {})})
    order = topological_order(wf) or []
    coster = StageCoster(cat, pct, wf.llm_concurrency)
    external = np.full(len(order), np.nan)
    rows: list[tuple[int, int, Any]] = []
    infeasible: dict[str, dict[str, str]] = {}
    for i, sid in enumerate(order):
        stage = wf.stage(sid)
        if isinstance(stage, CpuStage) and stage.latency_s is not None:
            fixed = stage.latency_p90_s if pct == "p90" and stage.latency_p90_s is not None else stage.latency_s
            external[i] = fixed * stage.repeats
            continue
        before = len(rows)
        for k, cls in enumerate(classes):
            c = coster.cost(stage, cls)
            if isinstance(c, str):
                infeasible.setdefault(sid, {})[cls.id] = c
            else:
                rows.extend((i, k, x) for x in c)
        if len(rows) == before:
            _no_class(stage, infeasible.get(sid, {}))
    index = {s: i for i, s in enumerate(order)}
    edges = tuple((index[e.source], index[e.target], e.bytes) for e in wf.edges)
    host_of = {(i, k): x.on_host for i, k, x in rows}
    K = len(classes)
    transfer = np.zeros((len(edges), K, K))
    for e, (i, j, nbytes) in enumerate(edges):
        for a in range(K):
            for b in range(K):
                ha, hb = host_of.get((i, a), False), host_of.get((j, b), False)
                transfer[e, a, b] = transfer_s(nbytes, classes[a], classes[b], ha, hb)

    def col(name: str, dtype: Any = float) -> Any:
        return np.array([getattr(x, name) for _, _, x in rows], dtype=dtype)

    return AgentProblem(
        wf, tuple(order), tuple(classes), external,
        np.array([i for i, _, _ in rows], dtype=np.int64), np.array([k for _, k, _ in rows], dtype=np.int64),
        col("latency_s"), col("device_s"), col("host_s"), col("on_host", bool), col("devices", np.int64),
        tuple(x.bound for _, _, x in rows), edges, transfer, rate_, sla_, pct, util, rejected, infeasible,
    )  # fmt: skip


def _overrides(
    wf: Workflow, rate: float | None, sla_s: float | None, percentile: str | None, utilization: float | None
) -> tuple[float, float, str, float]:
    r = wf.rate if rate is None else rate
    s = wf.sla.latency_s if sla_s is None else sla_s
    p = wf.sla.percentile if percentile is None else percentile
    u = wf.utilization if utilization is None else utilization
    if not (np.isfinite(r) and r > 0):
        raise InvalidSpecError(f"--rate must be a request rate > 0 per second (got {r})")
    if not (np.isfinite(s) and s > 0):
        raise InvalidSpecError(f"--sla-s must be a latency > 0 seconds (got {s})")
    if p not in ("mean", "p90"):
        raise InvalidSpecError(f"--percentile must be mean or p90 (got '{p}')")
    if not 0 < u <= 1:
        raise InvalidSpecError(f"--utilization must be in (0, 1] (got {u})")
    return float(r), float(s), p, float(u)


def _classes(
    cat: Catalog, ids: Iterable[str], prices: Mapping[str, float]
) -> tuple[list[HardwareClass], dict[str, str]]:
    classes: list[HardwareClass] = []
    rejected: dict[str, str] = {}
    for device_id in dict.fromkeys(ids):
        c = hardware_class(cat, device_id, dict(prices))
        if isinstance(c, str):
            rejected[device_id] = c
        else:
            classes.append(c)
    if not classes:
        why = "; ".join(f"{k}: {v}" for k, v in rejected.items())
        raise InfeasiblePlanError(f"no candidate hardware class is usable ({why})")
    return classes, rejected


def _no_class(stage: Any, reasons: Mapping[str, str]) -> None:
    what = f"{stage.kind} {stage.model}" if getattr(stage, "model", None) else stage.kind
    why = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    raise InfeasiblePlanError(f"stage '{stage.id}' ({what}) runs on none of the candidate classes ({why})")


# ---------------------------------------------------------------------------------------- evaluation


def evaluate(problem: AgentProblem, placement: Sequence[int]) -> Evaluation:
    """Exact cost and critical path of one placement (an option index per stage, -1 outside):
    devices per class from the capacity rule, start times by a longest-path pass over the DAG."""
    p = problem
    S, K = len(p.stages), len(p.classes)
    dev_load, host_load = np.zeros(K), np.zeros(K)
    t = np.zeros(S)
    cls = [-1] * S
    for i, o in enumerate(placement):
        if o < 0:
            t[i] = p.external[i]
            continue
        k = cls[i] = int(p.opt_class[o])
        dev_load[k] += p.rate * p.device_s[o]
        host_load[k] += p.rate * p.host_s[o]
        t[i] = p.latency[o]
    n = tuple(instances_needed(dev_load[k], host_load[k], p.utilization) for k in range(K))
    start, pred = np.zeros(S), np.full(S, -1)
    # stages are in topological order: an edge's source start is final once every edge from an
    # earlier source has been relaxed
    for e in sorted(range(len(p.edges)), key=lambda e: p.edges[e][0]):
        i, j, _ = p.edges[e]
        tau = p.transfer[e, cls[i], cls[j]] if cls[i] >= 0 and cls[j] >= 0 else 0.0
        ready = start[i] + t[i] + tau
        if ready > start[j]:
            start[j], pred[j] = ready, i
    finish = start + t
    path = [int(np.argmax(finish))]
    while pred[path[-1]] >= 0:
        path.append(int(pred[path[-1]]))
    cost = float(sum(n[k] * p.classes[k].usd_per_hour for k in range(K)))
    return Evaluation(
        tuple(int(o) for o in placement), cost, n, float(finish.max()),
        tuple(float(v) for v in start), tuple(float(v) for v in t), tuple(reversed(path)),
    )  # fmt: skip


# -------------------------------------------------------------------------------------- the program


def _build(p: AgentProblem, sla_s: float | None, objective: str, only: int | None = None) -> tuple[Milp, Any]:
    """The program; objective 'cost' (min $/h under the SLA) or 'latency' (the fastest path);
    `only` keeps one class (the homogeneous plan). Returns it and the option columns."""
    S, K = len(p.stages), len(p.classes)
    m = Milp()
    allowed = np.ones(p.opt_stage.size) if only is None else (p.opt_class == only).astype(float)
    x = m.add(p.opt_stage.size, high=allowed, integer=True)
    prices = np.array([c.usd_per_hour for c in p.classes])
    n = m.add(K, cost=prices if objective == "cost" else 0.0, integer=True)
    s = m.add(S)
    end = m.add(1, cost=LATENCY_TIE_BREAK if objective == "cost" else 1.0, high=np.inf if sla_s is None else sla_s)[0]
    placed = np.nonzero(p.placed)[0]
    owner = np.searchsorted(placed, p.opt_stage)  # options are listed stage by stage
    m.row(owner, x, 1.0, 1.0, 1.0, len(placed))
    if objective == "cost":
        for load in (p.device_s, p.host_s):
            for k in range(K):
                o = np.nonzero((p.opt_class == k) & (load > 0))[0]
                if o.size:
                    m.row(0, [*x[o], n[k]], [*(p.rate * load[o]), -p.utilization], -np.inf, 0.0, 1)
    for e, (i, j, _) in enumerate(p.edges):
        _precedence(m, p, x, s[i], s[j], i, j, e)
    for i in range(S):
        _precedence(m, p, x, s[i], end, i, None, None)
    return m, x


def _duration(p: AgentProblem, x: Any, i: int) -> tuple[list[int], list[float], float]:
    """Columns and coefficients of -t_i for a placed stage, or the constant t_i for an outside one."""
    if p.placed[i]:
        o = p.options(i)
        return list(x[o]), list(-p.latency[o]), 0.0
    return [], [], float(p.external[i])


def _precedence(m: Milp, p: AgentProblem, x: Any, si: int, sj: int, i: int, j: int | None, e: int | None) -> None:
    """s_j >= s_i + t_i, and + tau(a,b) when i runs on a and j on b (rows only where tau > 0)."""
    cols, vals, const = _duration(p, x, i)
    m.row(0, [sj, si, *cols], [1.0, -1.0, *vals], const, np.inf, 1)
    if j is None or e is None or not (p.placed[i] and p.placed[j]):
        return
    oi, oj = p.options(i), p.options(j)
    for a in np.unique(p.opt_class[oi]):
        za = oi[p.opt_class[oi] == a]
        for b in np.unique(p.opt_class[oj]):
            tau = float(p.transfer[e, a, b])
            if tau > 0:
                zb = oj[p.opt_class[oj] == b]
                both = [sj, si, *cols, *x[za], *x[zb]]
                m.row(0, both, [1.0, -1.0, *vals, *([-tau] * (za.size + zb.size))], const - tau, np.inf, 1)


def _placement(p: AgentProblem, xv: Array, x: Any) -> list[int]:
    """The chosen option per stage (the binary closest to 1), -1 for a stage outside the plan."""
    out = []
    for i in range(len(p.stages)):
        o = p.options(i)
        out.append(int(o[np.argmax(xv[x[o]])]) if p.placed[i] else -1)
    return out


def _run(
    p: AgentProblem, sla_s: float | None, objective: str, limit: float, solver: str, only: int | None = None
) -> tuple[Evaluation | None, Any]:
    m, x = _build(p, sla_s, objective, only)
    r = solve(m, limit, solver)
    return (None if r.x is None else evaluate(p, _placement(p, r.x, x))), r


def fastest(p: AgentProblem, time_limit_s: float = 30.0, solver: str = "highs") -> Evaluation:
    """The placement with the shortest critical path (capacity is bought, so it never binds)."""
    ev, r = _run(p, None, "latency", time_limit_s, solver)
    if ev is None:
        raise SolverLimitError(f"no placement found within --time-limit-s {time_limit_s:g} ({r.status})")
    return ev


def solve_problem(p: AgentProblem, time_limit_s: float = 30.0, solver: str = "highs", curve: bool = False) -> AgentPlan:
    """Solve; on an infeasible SLA, name the fastest critical path it would need."""
    best, r = _run(p, p.sla_s, "cost", time_limit_s, solver)
    if best is None and r.status == "infeasible":
        f = fastest(p, time_limit_s, solver)
        path = " -> ".join(p.stages[i] for i in f.critical_path)
        raise InfeasiblePlanError(
            f"SLA {p.sla_s:.4g} s ({p.percentile}) is shorter than the fastest critical path "
            f"{f.latency_s:.4g} s ({path})"
        )
    homog = homogeneous(p, time_limit_s, solver)
    ok = [(k, ev) for k, ev, _ in homog if ev is not None]
    best_h = min(ok, key=lambda h: h[1].usd_per_hour) if ok else None
    messages: list[str] = []
    if best is None:
        if best_h is None:
            raise SolverLimitError(f"no placement found within --time-limit-s {time_limit_s:g} ({r.status})")
        messages.append(f"the solver found no placement in time ({r.status}); the best one-class plan is shown")
        best = best_h[1]
    elif best_h is not None and best_h[1].usd_per_hour < best.usd_per_hour - TOL:
        messages.append("the solver's incumbent was dearer than the best one-class plan, which is shown")
        best = best_h[1]
    points = sla_points(p, time_limit_s, solver) if curve else ()
    return _result(p, best, homog, best_h, r, tuple(points), tuple(messages))


def homogeneous(
    p: AgentProblem, time_limit_s: float = 30.0, solver: str = "highs", sla_s: float | None = None
) -> list[tuple[int, Evaluation | None, str]]:
    """Every class alone (the same program with one class allowed, so it is in the mixed plan's
    feasible set): its cheapest plan within the SLA, or why there is none."""
    sla = p.sla_s if sla_s is None else sla_s
    out: list[tuple[int, Evaluation | None, str]] = []
    for k in range(len(p.classes)):
        missing = [p.stages[i] for i in np.nonzero(p.placed)[0] if not p.runs_on(int(i), k)]
        if missing:
            out.append((k, None, f"cannot run {', '.join(missing)}"))
            continue
        ev, r = _run(p, sla, "cost", time_limit_s, solver, only=k)
        if ev is None:
            quickest, _ = _run(p, None, "latency", time_limit_s, solver, only=k)
            lat = f" {quickest.latency_s:.4g} s" if quickest is not None else ""
            out.append(
                (k, None, f"its fastest critical path{lat} misses the SLA" if r.status == "infeasible" else r.status)
            )
            continue
        out.append((k, ev, ""))
    return out


def sla_points(p: AgentProblem, time_limit_s: float, solver: str) -> list[dict[str, Any]]:
    """$/h, mixed and best one-class, at a few SLAs from the fastest critical path up."""
    f = fastest(p, time_limit_s, solver).latency_s
    out = []
    for sla in sorted({*(f * x for x in SLA_CURVE_FACTORS), p.sla_s}):
        ev, _ = _run(p, sla * (1 + 1e-9), "cost", time_limit_s, solver)
        homog = [h.usd_per_hour for _, h, _ in homogeneous(p, time_limit_s, solver, sla * (1 + 1e-9)) if h]
        out.append(
            {
                "sla_s": sla,
                "usd_per_hour": None if ev is None else ev.usd_per_hour,
                "homogeneous_usd_per_hour": min(homog) if homog else None,
            }
        )
    return out


# ------------------------------------------------------------------------------------------- result


def _result(
    p: AgentProblem,
    best: Evaluation,
    homog: list[tuple[int, Evaluation | None, str]],
    best_h: tuple[int, Evaluation] | None,
    r: Any,
    curve: tuple[dict[str, Any], ...],
    messages: tuple[str, ...],
) -> AgentPlan:
    llm_tokens = sum((s.input_len + s.output_len) * s.repeats for s in p.workflow.stages if isinstance(s, LlmStage))
    usd_per_request = best.usd_per_hour / 3600.0 / p.rate
    h_cost = best_h[1].usd_per_hour if best_h is not None else None
    saving = None if h_cost is None else h_cost - best.usd_per_hour
    return AgentPlan(
        workflow=p.workflow.name,
        rate_per_s=p.rate,
        sla_s=p.sla_s,
        percentile=p.percentile,
        utilization_cap=p.utilization,
        placement={row["stage"]: row["class"] for row in _stage_rows(p, best)},
        instances={c.id: n for c, n in zip(p.classes, best.instances, strict=True) if n > 0},
        usd_per_hour=best.usd_per_hour,
        usd_per_request=usd_per_request,
        llm_usd_per_million_tokens=usd_per_request / llm_tokens * 1e6 if llm_tokens else None,
        latency_s=best.latency_s,
        slack_s=p.sla_s - best.latency_s,
        critical_path=tuple(p.stages[i] for i in best.critical_path),
        homogeneous_class=p.classes[best_h[0]].id if best_h is not None else None,
        homogeneous_usd_per_hour=h_cost,
        saving_usd_per_hour=saving,
        saving_fraction=None if saving is None or not h_cost else saving / h_cost,
        status=r.status if r.x is not None else "fallback",
        mip_gap=float(r.gap) if np.isfinite(r.gap) else float("nan"),
        solve_s=float(r.seconds),
        solver=r.solver,
        stages=_stage_rows(p, best),
        classes=_class_rows(p, best),
        edges=_edge_rows(p, best),
        homogeneous=tuple(
            {
                "class": p.classes[k].id,
                "usd_per_hour": None if ev is None else ev.usd_per_hour,
                "latency_s": None if ev is None else ev.latency_s,
                "reason": why,
            }
            for k, ev, why in homog
        ),
        rejected={**p.rejected, **_unused(p, best, homog)},
        infeasible=p.infeasible,
        sla_curve=curve,
        messages=messages,
    )


def _stage_rows(p: AgentProblem, ev: Evaluation) -> tuple[dict[str, Any], ...]:
    critical = set(ev.critical_path)
    rows = []
    for i, sid in enumerate(p.stages):
        o = ev.placement[i]
        stage = p.workflow.stage(sid)
        rows.append(
            {
                "stage": sid,
                "kind": stage.kind,
                "model": getattr(stage, "model", None),
                "class": "external" if o < 0 else p.classes[p.opt_class[o]].id,
                "on_host": bool(o >= 0 and p.on_host[o]),
                "devices_per_instance": 0 if o < 0 else int(p.devices[o]),
                "start_s": ev.start_s[i],
                "latency_s": ev.stage_latency_s[i],
                "busy_device_s": 0.0 if o < 0 else float(p.device_s[o] + p.host_s[o]),
                "bound": "fixed" if o < 0 else p.bound[o],
                "critical": i in critical,
            }
        )
    return tuple(rows)


def _class_rows(p: AgentProblem, ev: Evaluation) -> tuple[dict[str, Any], ...]:
    rows = []
    for k, c in enumerate(p.classes):
        on = [o for o in ev.placement if o >= 0 and p.opt_class[o] == k]
        rows.append(
            {
                "class": c.id,
                "kind": c.kind,
                "price_usd_per_hour": c.usd_per_hour,
                "price_source": c.price_source,
                "instances": ev.instances[k],
                "usd_per_hour": ev.instances[k] * c.usd_per_hour,
                "busy_devices": float(sum(p.rate * (p.device_s[o] + p.host_s[o]) for o in on)),
                "stages": ", ".join(p.stages[p.opt_stage[o]] for o in on),
            }
        )
    return tuple(rows)


def _edge_rows(p: AgentProblem, ev: Evaluation) -> tuple[dict[str, Any], ...]:
    rows = []
    for e, (i, j, nbytes) in enumerate(p.edges):
        a, b = ev.placement[i], ev.placement[j]
        tau = float(p.transfer[e, p.opt_class[a], p.opt_class[b]]) if a >= 0 and b >= 0 else 0.0
        rows.append({"from": p.stages[i], "to": p.stages[j], "bytes": nbytes, "transfer_s": tau})
    return tuple(rows)


def _unused(p: AgentProblem, ev: Evaluation, homog: list[tuple[int, Evaluation | None, str]]) -> dict[str, str]:
    """Why each candidate that holds no stage was left out: what it cannot run, or what it costs alone."""
    out = {}
    for k, h, why in homog:
        if ev.instances[k] == 0:
            alone = f"alone ${h.usd_per_hour:,.2f}/h" if h is not None else why
            out[p.classes[k].id] = f"unused: no stage is cheaper on it within the SLA ({alone})"
    return out
