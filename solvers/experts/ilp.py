"""Exact expert placement as integer programs (solvers.milp), one MoE layer at a time.

Stage 1, min-max (default): choose which GPUs hold a replica of each expert (x[e, g] binary) and
the share of its tokens each replica serves (y[e, g] in [0, 1], y <= x, sum_g y = 1), so that the
busiest GPU's tokens T are least, under per-GPU slots (memory), and a replication budget (sum x <=
slots). The split over replicas is part of the answer (`shares`): a router that weights replicas
can follow it; with an even split the same placement can only be worse. No placement carries
less than the floor (the mean GPU load, and the hottest expert split over the most replicas the
slots allow), so one that reaches it is optimal without a search. Incumbents come first: EPLB's
hierarchical and global placements, each with an even split and with the best split over its
replicas (an LP), and the wrap-around rule (McNaughton, 1959: fill GPU after GPU to the mean, an
expert that overflows continues on the next GPU as a replica) when the slots allow it. Only when
none reaches the floor does the MIP run, under the layer's share of the time limit; the answer is
the best of its incumbent and the others, so it never loses to EPLB, and the gap is measured to
the better of the floor and the bound the solver proved.

Stage 1, total deviation (MoETuner, arXiv 2502.06643, stage 1): experts into balanced clusters
without replication, minimising sum_g |load_g - mean|.

Stage 2 (MoETuner's second stage, with its objective made min-max): given each layer's GPU groups,
permute the groups of layer l + 1 over the GPUs so that the worst GPU's cross-GPU traffic into
the next layer (tokens routed to e in layer l and to e' in layer l + 1, from transition counts) is
least; traffic crossing nodes costs `internode_cost` times an intra-node hop. Permuting whole
groups leaves every layer's balance as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from solvers.milp import Milp, MilpResult, solve

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LayerPlacement:
    phy2log: IntArray  # slots, GPU-major
    shares: Array  # share of its expert's tokens each slot serves
    peak: float  # the busiest GPU's tokens
    status: str  # optimal, time_limit, or the rule that proved it (bound)
    gap: float


def gpu_peak(load: Array, phy2log: IntArray, shares: Array, gpus: int) -> float:
    return float((load[phy2log] * shares).reshape(gpus, -1).sum(axis=1).max())


def wrap_around(load: Array, gpus: int, per_gpu: int) -> tuple[IntArray, Array] | None:
    """McNaughton's rule at the mean with at most per_gpu slots per GPU: a placement whose busiest
    GPU carries exactly the mean, or None when the slots do not allow it. Experts go in an order
    that alternates heavy and light ones, so each GPU gets a mix."""
    total = float(load.sum())
    cap = total / gpus
    order = np.argsort(-load, kind="stable")
    mixed = np.empty_like(order)
    mixed[0::2], mixed[1::2] = order[: (len(order) + 1) // 2], order[(len(order) + 1) // 2 :][::-1]
    slots: list[list[tuple[int, float]]] = [[] for _ in range(gpus)]
    g, room = 0, cap
    for e in mixed:
        left = float(load[e])
        if left == 0.0:  # its one replica serves all of its (no) tokens
            slots[min(g, gpus - 1)].append((int(e), 1.0))
            continue
        while left > 1e-9 * cap:
            if g >= gpus:
                return None
            take = min(left, room)
            slots[g].append((int(e), take / float(load[e])))
            left -= take
            room -= take
            if room <= 1e-9 * cap:
                g, room = g + 1, cap
    if any(len(s) > per_gpu for s in slots):
        return None
    return _fill(slots, per_gpu, load)


def _fill(slots: list[list[tuple[int, float]]], per_gpu: int, load: Array) -> tuple[IntArray, Array]:
    """GPU-major phy2log and shares; spare slots hold a second copy of the GPU's heaviest expert
    that serves nothing (a slot must name an expert)."""
    phy, share = [], []
    for s in slots:
        s = s or [(int(np.argmax(load)), 0.0)]
        spare = max(s, key=lambda t: load[t[0]])[0]
        s = s + [(spare, 0.0)] * (per_gpu - len(s))
        phy += [e for e, _ in s]
        share += [f for _, f in s]
    return np.array(phy, dtype=np.int64), np.array(share)


def min_max_layer(
    load: Array,
    gpus: int,
    per_gpu: int,
    fallback: IntArray | list[IntArray],
    time_limit_s: float,
    solver: str = "highs",
    gap: float = 1e-4,
) -> LayerPlacement:
    """The least peak GPU load for one layer. Incumbents before any search: each `fallback`
    placement (EPLB's hierarchical and global phy2log) with an even split and with the best split
    over its replicas (an LP), and the wrap-around; the MIP runs only when none of them reaches
    the mean. With no time left (time_limit_s <= 0) only the even splits are compared."""
    mean = float(load.sum()) / gpus
    budget = gpus * per_gpu - len(load)
    # no GPU carries less than the mean, nor less than the hottest expert split over every replica it can get
    floor = max(mean, float(load.max()) / min(gpus, 1 + budget))
    tried = []
    for phy in fallback if isinstance(fallback, list) else [fallback]:
        counts = np.bincount(phy, minlength=len(load))
        tried.append((phy, 1.0 / counts[phy]))
        if time_limit_s > 0:
            tried.append(best_shares(load, phy, gpus))
    wrapped = wrap_around(load, gpus, per_gpu)
    if wrapped is not None:
        tried.append(wrapped)
    peaks = [gpu_peak(load, phy, share, gpus) for phy, share in tried]
    k = int(np.argmin(peaks))
    phy, share, peak = tried[k][0], tried[k][1], peaks[k]
    if peak <= floor * (1 + gap):
        return LayerPlacement(phy, share, peak, "optimal", max(0.0, (peak - floor) / peak))
    if time_limit_s <= 0:
        return LayerPlacement(phy, share, peak, "time_limit", max(0.0, (peak - floor) / peak))
    res = _solve_min_max(load / mean, gpus, per_gpu, budget, time_limit_s, solver, gap)
    if res.x is not None:
        n = len(load) * gpus
        x = res.x[:n].reshape(len(load), gpus) > 0.5
        y = np.where(x, res.x[n : 2 * n].reshape(len(load), gpus), 0.0)
        slots = [[(int(e), float(y[e, g])) for e in np.nonzero(x[:, g])[0]] for g in range(gpus)]
        found = _fill(slots, per_gpu, load)
        if gpu_peak(load, *found, gpus) < peak:
            phy, share = found
            peak = gpu_peak(load, phy, share, gpus)
    bound = max(floor, res.bound * mean if np.isfinite(res.bound) else floor)
    proved = res.status == "optimal" and peak <= bound * (1 + gap) + 1e-9 * mean
    return LayerPlacement(phy, share, peak, "optimal" if proved else "time_limit", max(0.0, (peak - bound) / peak))


def best_shares(load: Array, phy2log: IntArray, gpus: int) -> tuple[IntArray, Array]:
    """The split of each expert's tokens over its replicas that makes the busiest GPU least, for a
    fixed placement (an LP over the slots)."""
    slots = len(phy2log)
    per_gpu = slots // gpus
    p = Milp()
    s = p.add(slots, high=1.0)
    t = p.add(1, cost=1.0)[0]
    gpu = np.arange(slots) // per_gpu
    p.row(
        np.concatenate([gpu, np.arange(gpus)]),
        np.concatenate([s, np.full(gpus, t)]),
        np.concatenate([load[phy2log], -np.ones(gpus)]),
        -np.inf,
        0.0,
        gpus,
    )
    p.row(phy2log, s, 1.0, 1.0, 1.0, len(load))
    res = solve(p, 10.0)
    if res.x is None:  # cannot happen for a placement that holds every expert
        counts = np.bincount(phy2log, minlength=len(load))
        return phy2log, 1.0 / counts[phy2log]
    return phy2log, np.clip(res.x[:slots], 0.0, 1.0)


def _solve_min_max(
    load: Array, gpus: int, per_gpu: int, budget: int, limit: float, solver: str, gap: float
) -> MilpResult:
    E, G = len(load), gpus
    p = Milp()
    x = p.add(E * G, high=1.0, integer=True).reshape(E, G)
    y = p.add(E * G, high=1.0).reshape(E, G)
    t = p.add(1, cost=1.0)[0]
    gi = np.broadcast_to(np.arange(G), (E, G))
    ei = np.broadcast_to(np.arange(E)[:, None], (E, G))
    # busiest GPU: sum_e load_e y[e, g] - T <= 0
    p.row(
        np.concatenate([gi.ravel(), np.arange(G)]),
        np.concatenate([y.ravel(), np.full(G, t)]),
        np.concatenate([np.broadcast_to(load[:, None], (E, G)).ravel(), -np.ones(G)]),
        -np.inf,
        0.0,
        G,
    )
    p.row(gi.ravel(), x.ravel(), 1.0, -np.inf, per_gpu, G)  # slots per GPU
    p.row(ei.ravel(), y.ravel(), 1.0, 1.0, 1.0, E)  # every token served once
    k = np.arange(E * G)
    p.row(
        np.concatenate([k, k]),
        np.concatenate([y.ravel(), x.ravel()]),
        np.concatenate([np.ones(E * G), -np.ones(E * G)]),
        -np.inf,
        0.0,
        E * G,
    )  # y <= x
    p.row(np.zeros(E * G, dtype=np.int64), x.ravel(), 1.0, E, E + budget, 1)  # replication budget
    return solve(p, limit, solver, gap)


def balanced_clusters(
    load: Array, clusters: int, time_limit_s: float, solver: str = "highs"
) -> tuple[IntArray, MilpResult]:
    """MoETuner's stage 1: each expert into one cluster, minimising sum_c |load_c - mean|.
    Returns the cluster of each expert."""
    E, C = len(load), clusters
    mean = float(load.sum()) / C
    p = Milp()
    z = p.add(E * C, high=1.0, integer=True).reshape(E, C)
    d = p.add(C, cost=1.0)  # d_c >= |load_c - mean|
    ci = np.broadcast_to(np.arange(C), (E, C))
    w = np.broadcast_to(load[:, None], (E, C)).ravel()
    p.row(np.arange(E).repeat(C), z.ravel(), 1.0, 1.0, 1.0, E)
    for sign in (1.0, -1.0):  # sign (load_c - mean) - d_c <= 0
        p.row(
            np.concatenate([ci.ravel(), np.arange(C)]),
            np.concatenate([z.ravel(), d]),
            np.concatenate([sign * w, -np.ones(C)]),
            -np.inf,
            sign * mean,
            C,
        )
    res = solve(p, time_limit_s, solver)
    cluster = np.argmax(res.x[: E * C].reshape(E, C), axis=1) if res.x is not None else np.arange(E) % C
    return cluster.astype(np.int64), res


def map_layers(
    groups: Array, gpus: int, nodes: int, internode_cost: float, time_limit_s: float, solver: str = "highs"
) -> tuple[IntArray, MilpResult]:
    """Stage 2 for one pair of layers. groups[g, c]: tokens from GPU g's experts in layer l to
    group c's experts in layer l + 1. Returns the GPU of each group c (a permutation) minimising
    the worst GPU's cross-GPU traffic cost."""
    G = gpus
    per_node = G // nodes
    node = np.arange(G) // per_node
    cost = np.where(node[:, None] == node[None, :], 1.0, internode_cost)
    np.fill_diagonal(cost, 0.0)
    p = Milp()
    a = p.add(G * G, high=1.0, integer=True).reshape(G, G)  # a[c, h]: group c on GPU h
    t = p.add(1, cost=1.0)[0]
    ci = np.broadcast_to(np.arange(G)[:, None], (G, G))
    hi = np.broadcast_to(np.arange(G), (G, G))
    p.row(ci.ravel(), a.ravel(), 1.0, 1.0, 1.0, G)  # each group on one GPU
    p.row(hi.ravel(), a.ravel(), 1.0, 1.0, 1.0, G)  # each GPU one group
    # sender g: sum_{c, h} groups[g, c] cost[g, h] a[c, h] - T <= 0
    rows, cols, vals = [], [], []
    for g in range(G):
        coef = groups[g][:, None] * cost[g][None, :]
        rows.append(np.full(G * G + 1, g))
        cols.append(np.concatenate([a.ravel(), [t]]))
        vals.append(np.concatenate([coef.ravel(), [-1.0]]))
    p.row(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), -np.inf, 0.0, G)
    res = solve(p, time_limit_s, solver)
    where = np.argmax(res.x[: G * G].reshape(G, G), axis=1) if res.x is not None else np.arange(G)
    return where.astype(np.int64), res


def cross_traffic(groups: Array, where: IntArray, gpus: int, nodes: int, internode_cost: float) -> Array:
    """Per sending GPU, the cost of its tokens that land on another GPU in the next layer."""
    node = np.arange(gpus) // (gpus // nodes)
    cost = np.where(node[:, None] == node[None, :], 1.0, internode_cost)
    np.fill_diagonal(cost, 0.0)
    return (groups * cost[:, where]).sum(axis=1)
