"""Expert placement: which GPU holds which expert, which hot experts get replicas, and what an
imbalanced router costs (`plan_experts`, `planner plan experts`).

Policies, each compared with the contiguous layout (expert e on GPU e // (experts / GPUs)):
- eplb: DeepSeek's EPLB (solvers.experts.eplb), hierarchical or global;
- llep: least-loaded EP (solvers.experts.llep): no replicas, per-batch spills with weight copies;
- ilp: exact min-max placement with replication (solvers.experts.ilp), an optional second stage
  that maps consecutive layers' GPU groups to cut cross-GPU traffic, and MoETuner's balanced
  clusters (objective="deviation");
- contiguous: the baseline itself.
With a model and hardware, the MoE time and the pass time of the batch the loads describe, before
and after, come from planner.estimate_inference with the busiest rank's load (planner.expert_loads).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.expert_loads import (
    balance,
    check_loads,
    contiguous,
    contiguous_gpu_loads,
    gpu_loads,
    max_over_mean,
    read_loads,
    replica_counts,
)
from solvers.experts.eplb import check_layout, eplb
from solvers.experts.ilp import balanced_clusters, cross_traffic, map_layers, min_max_layer
from solvers.experts.llep import ALPHA, MIN_CHUNK, TRIGGER, Spill, llep
from solvers.milp import SOLVERS

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
POLICIES = ("eplb", "llep", "ilp", "contiguous")
OBJECTIVES = ("max", "deviation")


@dataclass(frozen=True)
class ExpertPlan:
    policy: str
    layers: int
    experts: int
    gpus: int
    nodes: int
    slots: int  # physical expert slots per layer (experts + redundant)
    phy2log: IntArray  # layers x slots: the logical expert in each slot (slot j on GPU j // (slots / gpus))
    replicas: IntArray  # layers x experts
    shares: Array  # layers x slots: share of its expert's tokens each slot serves
    gpu_loads_before: Array  # layers x gpus, contiguous layout
    gpu_loads: Array  # layers x gpus, after
    balance_before: Array  # per layer, max over mean GPU load
    balance: Array
    max_over_mean_before: float  # sum over layers of the busiest GPU's tokens over the mean
    max_over_mean: float
    status: str  # optimal, time_limit (incumbent returned), heuristic
    mip_gap: float | None  # ilp: the worst layer's gap to the proved bound
    solve_s: float
    time_limit_s: float | None
    messages: tuple[str, ...] = ()
    spills: tuple[Spill, ...] = ()  # llep
    cross_traffic_before: float | None = None  # ilp stage 2: worst GPU's cross-GPU traffic cost, summed over layers
    cross_traffic: float | None = None
    estimate: dict[str, Any] = field(default_factory=dict)  # with a model and hardware: times before/after

    @property
    def node_loads_before(self) -> Array:
        return self.gpu_loads_before.reshape(self.layers, self.nodes, -1).sum(axis=2)

    @property
    def node_loads(self) -> Array:
        return self.gpu_loads.reshape(self.layers, self.nodes, -1).sum(axis=2)

    def summary(self) -> dict[str, Any]:
        """The plan's figures without its maps (a table row)."""
        out = {
            "policy": self.policy,
            "layers": self.layers,
            "experts": self.experts,
            "gpus": self.gpus,
            "nodes": self.nodes,
            "slots": self.slots,
            "max_over_mean_before": self.max_over_mean_before,
            "max_over_mean": self.max_over_mean,
            "worst_layer_balance_before": float(self.balance_before.max()),
            "worst_layer_balance": float(self.balance.max()),
            "status": self.status,
            "mip_gap": self.mip_gap,
            "solve_s": self.solve_s,
            "time_limit_s": self.time_limit_s,
            "spills": len(self.spills),
            "cross_traffic_before": self.cross_traffic_before,
            "cross_traffic": self.cross_traffic,
        }
        return {**out, **self.estimate}

    def to_dict(self) -> dict[str, Any]:
        """Everything, maps included (what --format json writes; an engine's EPLB config reads
        phy2log)."""
        return {
            **self.summary(),
            "messages": list(self.messages),
            "phy2log": self.phy2log.tolist(),
            "replicas": self.replicas.tolist(),
            "shares": np.round(self.shares, 6).tolist(),
            "gpu_loads_before": self.gpu_loads_before.tolist(),
            "gpu_loads": self.gpu_loads.tolist(),
            "node_loads_before": self.node_loads_before.tolist(),
            "node_loads": self.node_loads.tolist(),
            "balance_before": self.balance_before.tolist(),
            "balance": self.balance.tolist(),
            "spills": [s.__dict__ for s in self.spills],
        }

    def map_rows(self) -> list[dict[str, Any]]:
        """One row per (layer, slot): what --format csv writes."""
        per_gpu = self.slots // self.gpus
        return [
            {
                "layer": layer,
                "slot": slot,
                "gpu": slot // per_gpu,
                "node": slot // per_gpu // (self.gpus // self.nodes),
                "expert": int(self.phy2log[layer, slot]),
                "share": round(float(self.shares[layer, slot]), 6),
            }
            for layer in range(self.layers)
            for slot in range(self.slots)
        ]

    def to_frame(self) -> Any:
        """One row per layer: balance and busiest GPU before and after."""
        import pandas as pd

        return pd.DataFrame(
            {
                "layer": np.arange(self.layers),
                "balance_before": self.balance_before,
                "balance": self.balance,
                "busiest_gpu_tokens_before": self.gpu_loads_before.max(axis=1),
                "busiest_gpu_tokens": self.gpu_loads.max(axis=1),
            }
        )


def plan_experts(
    loads: Any,
    *,
    policy: str = "eplb",
    gpus: int,
    nodes: int = 1,
    slots: int | None = None,
    groups: int = 1,
    model: Any = None,
    hardware: str | None = None,
    time_limit_s: float = 30.0,
    mip_gap: float = 1e-4,
    solver: str = "highs",
    objective: str = "max",
    transitions: Any = None,
    internode_cost: float | None = None,
    memory_per_gpu_bytes: float | None = None,
    alpha: float = ALPHA,
    min_chunk: float = MIN_CHUNK,
    trigger: float = TRIGGER,
    weight_precision: str = "bf16",
    top_k: int | None = None,
    catalog: Catalog | str | None = None,
) -> ExpertPlan:
    """Place one MoE model's experts over `gpus` GPUs on `nodes` nodes. `loads`: tokens per (layer,
    expert), an array or a file (planner.expert_loads.read_loads). `slots`: physical slots per layer
    (experts + redundant; experts by default). `groups`: expert groups of group-limited routing
    (EPLB's hierarchical policy keeps a group on one node). `transitions` (layers - 1 x experts x
    experts, tokens to e in layer l then e' in l + 1) turns on the ILP's second stage.
    `memory_per_gpu_bytes` bounds the routed-expert weights a GPU holds (needs a model)."""
    start = time.perf_counter()
    table = read_loads(loads) if isinstance(loads, (str, Path)) else check_loads(loads)
    layers, experts = table.shape
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    spec = resolve_model(model, cat) if model is not None else None
    _check_options(policy, objective, solver, gpus, nodes, groups, time_limit_s, mip_gap, alpha, min_chunk, trigger)
    if spec is not None and (spec.moe is None or spec.moe.experts != experts):
        have = "is dense" if spec.moe is None else f"has {spec.moe.experts} experts"
        raise InvalidSpecError(f"expert loads have {experts} experts per layer; {spec.id} {have}")
    n_slots = experts if slots is None else _whole("--slots", slots)
    check_layout(experts, n_slots, groups, nodes, gpus)
    if policy == "llep" and experts % gpus:
        raise InvalidSpecError(f"llep keeps the contiguous layout: GPUs ({gpus}) must divide experts ({experts})")
    messages: list[str] = []
    n_slots = _slots_in_memory(spec, n_slots, gpus, experts, memory_per_gpu_bytes, weight_precision, messages)
    before = contiguous_gpu_loads(table, gpus)
    placed = _place(
        policy,
        table,
        gpus,
        nodes,
        n_slots,
        groups,
        time_limit_s,
        mip_gap,
        solver,
        objective,
        alpha,
        min_chunk,
        trigger,
        messages,
    )
    phy2log, shares, after, status, gap, spills = placed
    crossed = None
    if transitions is not None:
        if policy != "ilp":
            raise InvalidSpecError("transition counts drive the ILP's second stage: use --policy ilp")
        phy2log, shares, crossed = _second_stage(
            table, transitions, phy2log, shares, gpus, nodes, internode_cost, spec, hardware, cat, time_limit_s, solver
        )
        after = gpu_loads(table, phy2log, gpus, shares)
    plan = ExpertPlan(
        policy=policy,
        layers=layers,
        experts=experts,
        gpus=gpus,
        nodes=nodes,
        slots=phy2log.shape[1],
        phy2log=phy2log,
        replicas=replica_counts(phy2log, experts),
        shares=shares,
        gpu_loads_before=before,
        gpu_loads=after,
        balance_before=balance(before),
        balance=balance(after),
        max_over_mean_before=max_over_mean(before),
        max_over_mean=max_over_mean(after),
        status=status,
        mip_gap=gap,
        solve_s=time.perf_counter() - start,
        time_limit_s=time_limit_s if policy == "ilp" else None,
        messages=tuple(messages),
        spills=tuple(spills),
        cross_traffic_before=None if crossed is None else crossed[0],
        cross_traffic=None if crossed is None else crossed[1],
    )
    if spec is not None and hardware is not None:
        from solvers.experts.timing import moe_times

        est = moe_times(plan, spec, hardware, cat, weight_precision, top_k)
        plan = ExpertPlan(**{**plan.__dict__, "estimate": est})
    return plan


def _whole(option: str, value: Any, low: int = 1) -> int:
    from planner.arrays import count

    return count(option, value, low)


def _check_options(
    policy: str,
    objective: str,
    solver: str,
    gpus: Any,
    nodes: Any,
    groups: Any,
    limit: Any,
    gap: Any,
    alpha: Any,
    min_chunk: Any,
    trigger: Any,
) -> None:
    if policy not in POLICIES:
        raise InvalidSpecError(f"unknown policy '{policy}' (allowed: {', '.join(POLICIES)})")
    if objective not in OBJECTIVES:
        raise InvalidSpecError(f"unknown objective '{objective}' (allowed: {', '.join(OBJECTIVES)})")
    if objective == "deviation" and policy != "ilp":
        raise InvalidSpecError("--objective deviation is the ILP's (MoETuner's balanced clusters): use --policy ilp")
    if solver not in SOLVERS:
        raise InvalidSpecError(f"unknown MIP solver '{solver}' (allowed: {', '.join(SOLVERS)})")
    for option, value in (("--gpus", gpus), ("--nodes", nodes), ("--groups", groups)):
        _whole(option, value)
    for option, value, low in (
        ("--time-limit-s", limit, 0.0),
        ("--mip-gap", gap, 0.0),
        ("--alpha", alpha, 0.0),
        ("--trigger", trigger, 0.0),
    ):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > low
        if not ok:
            raise InvalidSpecError(f"{option} must be a number > {low:g} (got {value!r})")
    if not (isinstance(min_chunk, (int, float)) and np.isfinite(min_chunk) and min_chunk >= 0):
        raise InvalidSpecError(f"--min-chunk must be a number of tokens >= 0 (got {min_chunk!r})")


def expert_weight_bytes(spec: Any, weight_precision: str) -> float:
    """One routed expert's weights in one layer."""
    from workloads.derived import bytes_per_element, moe_layer_params

    m = moe_layer_params(spec)
    assert m is not None
    return float(m.routed_expert.total) * bytes_per_element(weight_precision)


def _slots_in_memory(
    spec: Any, slots: int, gpus: int, experts: int, memory: float | None, precision: str, messages: list[str]
) -> int:
    """Slots per layer that the per-GPU memory allows (every MoE layer holds as many)."""
    if memory is None:
        return slots
    if spec is None:
        raise InvalidSpecError("--memory-per-gpu needs --model (to know an expert's bytes)")
    if not (np.isfinite(memory) and memory > 0):
        raise InvalidSpecError(f"--memory-per-gpu must be bytes > 0 (got {memory})")
    from workloads.derived import moe_layer_count

    per_slot = expert_weight_bytes(spec, precision) * moe_layer_count(spec)
    fit = int(memory // per_slot)
    need = -(-experts // gpus)
    if fit < need:
        raise InvalidSpecError(
            f"memory per GPU ({memory / 1e9:.1f} GB) holds {fit} expert slots of {per_slot / 1e9:.2f} GB "
            f"(all {moe_layer_count(spec)} MoE layers); the {experts} experts need {need} per GPU"
        )
    if fit * gpus < slots:
        messages.append(f"memory per GPU holds {fit} slots per GPU: slots cut from {slots} to {fit * gpus}")
        return fit * gpus
    return slots


def _place(
    policy: str,
    table: Array,
    gpus: int,
    nodes: int,
    slots: int,
    groups: int,
    limit: float,
    gap: float,
    solver: str,
    objective: str,
    alpha: float,
    min_chunk: float,
    trigger: float,
    messages: list[str],
) -> tuple[IntArray, Array, Array, str, float | None, list[Spill]]:
    layers, experts = table.shape
    if policy == "contiguous":
        if slots != experts:
            messages.append(f"contiguous uses {experts} slots: the {slots - experts} redundant ones stay empty")
        if experts % gpus:
            raise InvalidSpecError(f"contiguous needs the GPUs ({gpus}) to divide the experts ({experts})")
        phy = contiguous(layers, experts)
        return phy, np.ones(phy.shape), gpu_loads(table, phy, gpus), "heuristic", None, []
    if policy == "llep":
        if slots != experts:
            messages.append("llep keeps the contiguous layout and no replicas; it spills per batch instead")
        after, spills = llep(table, gpus, alpha, min_chunk, trigger)
        phy = contiguous(layers, experts)
        return phy, np.ones(phy.shape), after, "heuristic", None, spills
    phy, _ = eplb(table, slots, groups, nodes, gpus)
    even = 1.0 / np.take_along_axis(replica_counts(phy, experts), phy, axis=1)
    if policy == "eplb":
        return phy, even, gpu_loads(table, phy, gpus), "heuristic", None, []
    if objective == "deviation":
        return _clusters(table, gpus, limit, solver, messages)
    per_gpu = slots // gpus
    flat, _ = eplb(table, slots, 1, 1, gpus)  # EPLB's global policy: a second incumbent
    out_phy, out_share, statuses, gaps = [], [], [], []
    deadline = time.perf_counter() + 0.85 * limit  # each HiGHS call overruns its limit a little
    for layer in range(layers):
        # the layer's share of what is left; none left: the incumbents only (no LP, no MIP)
        left = (deadline - time.perf_counter()) / (layers - layer)
        left = left if left > 0.02 else 0.0
        r = min_max_layer(table[layer], gpus, per_gpu, [phy[layer], flat[layer]], left, solver, gap)
        out_phy.append(r.phy2log)
        out_share.append(r.shares)
        statuses.append(r.status)
        gaps.append(r.gap)
    phy2log, shares = np.array(out_phy), np.array(out_share)
    status = "optimal" if all(s == "optimal" for s in statuses) else "time_limit"
    if status == "time_limit":
        n = sum(s != "optimal" for s in statuses)
        messages.append(
            f"time limit: {n} of {layers} layers return the best placement found (EPLB's or better), "
            f"worst gap {max(gaps):.2%} to the proved bound"
        )
    return phy2log, shares, gpu_loads(table, phy2log, gpus, shares), status, float(max(gaps)), []


def _clusters(
    table: Array, gpus: int, limit: float, solver: str, messages: list[str]
) -> tuple[IntArray, Array, Array, str, float | None, list[Spill]]:
    """MoETuner stage 1: no replicas, uneven expert counts per GPU allowed; phy2log pads each GPU
    to the most experts any GPU holds with copies that serve nothing."""
    layers, experts = table.shape
    cluster = np.empty((layers, experts), dtype=np.int64)
    statuses = []
    deviation = 0.0
    for layer in range(layers):
        cluster[layer], res = balanced_clusters(table[layer], gpus, limit / layers, solver)
        statuses.append(res.status)
        deviation += res.objective if np.isfinite(res.objective) else np.nan
    width = max(int(np.bincount(c, minlength=gpus).max()) for c in cluster)
    phy = np.empty((layers, gpus * width), dtype=np.int64)
    share = np.zeros((layers, gpus * width))
    for layer in range(layers):
        for g in range(gpus):
            own = np.nonzero(cluster[layer] == g)[0]
            filler = own[0] if len(own) else int(np.argmin(table[layer]))
            phy[layer, g * width : (g + 1) * width] = np.concatenate([own, np.full(width - len(own), filler)])
            share[layer, g * width : g * width + len(own)] = 1.0
    messages.append(f"total deviation from the mean GPU load, summed over layers: {deviation:g} tokens")
    status = "optimal" if all(s == "optimal" for s in statuses) else "time_limit"
    return phy, share, gpu_loads(table, phy, gpus, share), status, None, []


def _second_stage(
    table: Array,
    transitions: Any,
    phy2log: IntArray,
    shares: Array,
    gpus: int,
    nodes: int,
    internode_cost: float | None,
    spec: Any,
    hardware: str | None,
    cat: Catalog,
    limit: float,
    solver: str,
) -> tuple[IntArray, Array, tuple[float, float]]:
    """Permute each layer's GPU groups (after the first) to cut the worst GPU's cross-GPU traffic."""
    layers, experts = table.shape
    t = np.asarray(transitions, dtype=np.float64)
    if t.shape != (layers - 1, experts, experts) or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InvalidSpecError(
            f"transitions must be ({layers - 1} x {experts} x {experts}) token counts >= 0 (got shape {t.shape})"
        )
    cost = internode_cost if internode_cost is not None else _internode_cost(hardware, gpus, cat)
    per_gpu = phy2log.shape[1] // gpus
    phy, share = phy2log.copy(), shares.copy()
    worst_before = worst_after = 0.0
    for layer in range(layers - 1):
        src = _expert_gpu_share(phy[layer], share[layer], experts, gpus, per_gpu)  # experts x gpus
        dst = _expert_gpu_share(phy[layer + 1], share[layer + 1], experts, gpus, per_gpu)
        groups = src.T @ t[layer] @ dst  # gpu g (layer l) -> group c (layer l + 1)
        identity = np.arange(gpus)
        worst_before += float(cross_traffic(groups, identity, gpus, nodes, cost).max())
        where, _ = map_layers(groups, gpus, nodes, cost, limit / (layers - 1), solver)
        if (
            cross_traffic(groups, where, gpus, nodes, cost).max()
            > cross_traffic(groups, identity, gpus, nodes, cost).max()
        ):
            where = identity
        order = np.argsort(where)  # the group that lands on each GPU
        idx = (order[:, None] * per_gpu + np.arange(per_gpu)).ravel()
        phy[layer + 1], share[layer + 1] = phy[layer + 1][idx], share[layer + 1][idx]
        worst_after += float(cross_traffic(groups, where, gpus, nodes, cost).max())
    return phy, share, (worst_before, worst_after)


def _expert_gpu_share(phy: IntArray, share: Array, experts: int, gpus: int, per_gpu: int) -> Array:
    out = np.zeros((experts, gpus))
    np.add.at(out, (phy, np.arange(len(phy)) // per_gpu), share)
    return out


def _internode_cost(hardware: str | None, gpus: int, cat: Catalog) -> float:
    """A token crossing nodes costs the scale-up over scale-out bandwidth ratio (one hop inside)."""
    if hardware is None:
        return 1.0
    from planner.cluster import resolve_cluster
    from planner.collectives import achieved_bandwidth

    c = resolve_cluster(hardware, gpus, cat)
    inter = c.tier_spanning(gpus)
    return float(achieved_bandwidth(c.scale_up) / achieved_bandwidth(inter)) if inter is not c.scale_up else 1.0
