"""Many models on one node: which stay resident in the fast tier, what a switch costs, and the
latency a request then sees (issue 15 point 2; the SN40L Composition of Experts, Prabhakar et al.,
arXiv:2405.07518 sec. VI-C).

A node's fast tier (HBM over all its devices, less the framework reserve) caches models; every model
also keeps a copy in the slower tiers (weights are read-only, so an eviction writes nothing back, as
the paper's CoE runtime does), the most popular first. A miss copies the model's weights into the
fast tier at the node's slow-to-fast bandwidth. Residency is either LRU (the SN40L runtime's policy;
Che's approximation, checked against a trace simulation) or the static optimum (a 0/1 knapsack on
request probability). A request's latency is router + (switch on a miss) + the model's own prefill
and decode, so its distribution is a mixture over (model, hit or miss); percentiles are exact.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import Bounds, LinearConstraint, brentq, milp

from hardware_db.errors import InvalidSpecError
from planner.catalog import Catalog
from planner.cluster import Cluster
from planner.memory import RESERVE_FRACTION, device_tiers, host_link_bandwidth

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class NodeTier:
    name: str
    capacity_bytes: float  # the whole node
    copy_bandwidth_bytes_per_s: float  # into the fast tier, the whole node


@dataclass(frozen=True)
class NodeMemory:
    """A node's memory as a model cache: the fast tier and the slower tiers models are copied from."""

    hardware: str
    devices: int
    fast: NodeTier  # copy_bandwidth here is the fast tier's own read bandwidth
    slow: tuple[NodeTier, ...]

    @property
    def slow_capacity_bytes(self) -> float:
        return sum(t.capacity_bytes for t in self.slow)

    def backing_tiers(self, sizes: Array) -> npt.NDArray[np.int64]:
        """Index into `slow` of the tier each model's copy lives in, filling tiers in the given
        order (callers pass the models most popular first); -1 when the slow tiers are full."""
        ends, filled = np.cumsum([t.capacity_bytes for t in self.slow]), np.cumsum(sizes)
        return np.where(filled <= (ends[-1] if len(ends) else 0.0), np.searchsorted(ends, filled), -1)


def node_memory(
    cluster: Cluster,
    catalog: Catalog,
    *,
    hardware: str = "",
    reserve_fraction: float = RESERVE_FRACTION,
    host_links: int | None = 1,
) -> NodeMemory:
    """The node view of planner.memory.device_tiers. Copies use the catalogue's peak figures, as the
    SN40L paper's comparison does: a device's own slower tier (SN40L DDR) feeds every device at once;
    tiers behind the host (DRAM, CXL, SSD) go through `host_links` host links (1: the paper's DGX
    assumption, 32 GB/s on a DGX A100; None: every device's link in parallel, an upper bound)."""
    if not 0 <= reserve_fraction < 1:
        raise InvalidSpecError(f"reserve_fraction must be in [0, 1) (got {reserve_fraction})")
    dev, n = cluster.device, cluster.devices
    main = dev.main_memory
    fast = NodeTier(main.tier, main.capacity_bytes * (1 - reserve_fraction) * n, main.bandwidth_bytes_per_s * n)
    host_bw = host_link_bandwidth(cluster) * (n if host_links is None else min(host_links, n))
    own = {t.tier: t for t in dev.memory}
    slow = []
    for name, cap, bw in device_tiers(cluster, catalog)[1:]:
        node_bw = own[name].bandwidth_bytes_per_s * n if name in own else min(bw * n, host_bw)
        slow.append(NodeTier(name, cap * n, node_bw))
    return NodeMemory(hardware or dev.id, n, fast, tuple(slow))


def popularity(spec: Any, n: int) -> Array:
    """Request probability per model: "uniform", "zipf:<s>" (rank r gets r^-s, in the given order)
    or one non-negative count per model."""
    if isinstance(spec, str):
        if spec == "uniform":
            return np.full(n, 1.0 / n)
        if spec.startswith("zipf:"):
            try:
                s = float(spec[5:])
            except ValueError:
                s = float("nan")
            if not math.isfinite(s) or s < 0:
                raise InvalidSpecError(f"popularity '{spec}': the Zipf exponent must be a number >= 0")
            w = np.arange(1, n + 1, dtype=np.float64) ** -s
            return w / w.sum()
        raise InvalidSpecError(f"popularity '{spec}': use 'uniform', 'zipf:<s>' or one count per model")
    w = np.asarray(spec, dtype=np.float64).ravel()
    if w.size != n:
        raise InvalidSpecError(f"popularity has {w.size} counts for {n} models")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InvalidSpecError("popularity counts must be finite, >= 0 and not all zero")
    return w / w.sum()


def best_resident_set(sizes: Array, probs: Array, capacity: float, time_limit_s: float = 10.0) -> npt.NDArray[np.bool_]:
    """The models to keep resident that carry the most request probability within `capacity` (0/1
    knapsack). Equal sizes: the top k by probability; otherwise an exact ILP (HiGHS)."""
    sizes, probs = np.asarray(sizes, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    if sizes.sum() <= capacity:
        return np.ones(sizes.size, dtype=bool)
    keep = np.zeros(sizes.size, dtype=bool)
    if capacity <= 0:
        return keep
    if np.allclose(sizes, sizes[0]):
        k = int(capacity // sizes[0] + 1e-9)
        keep[np.argsort(-probs, kind="stable")[:k]] = True
        return keep
    res = milp(
        -probs,
        constraints=LinearConstraint(sizes[None, :] / capacity, -np.inf, 1.0),
        integrality=np.ones(sizes.size),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit_s, "mip_rel_gap": 0.0},  # exact: HiGHS's default gap is 1e-4
    )
    if res.x is None:
        raise InvalidSpecError(f"the residency knapsack found no solution in {time_limit_s} s ({res.message})")
    keep = res.x > 0.5
    # HiGHS drops items worth less than its 1e-7 tolerances: add back, most probable first, any
    # that still fit (never worse)
    room = capacity - sizes[keep].sum()
    for i in np.argsort(-probs, kind="stable"):
        if not keep[i] and probs[i] > 0 and sizes[i] <= room + 1e-9:
            keep[i], room = True, room - sizes[i]
    return keep


def static_hit_rates(sizes: Array, probs: Array, capacity: float) -> Array:
    """Static residency: when not every model fits, a slot as large as the largest model stays
    free for the non-resident one a request needs (conservative when sizes differ)."""
    if sizes.sum() <= capacity:
        return np.ones(sizes.size)
    return best_resident_set(sizes, probs, capacity - sizes.max()).astype(np.float64)


def lru_hit_rates(sizes: Array, probs: Array, capacity: float) -> Array:
    """Che's approximation of LRU (Che, Tung and Wang, IEEE JSAC 20(7), 2002), with sizes: a model
    stays for a characteristic time T after its last request, where sum_i s_i (1 - e^(-p_i T)) = C;
    its hit rate is 1 - e^(-p_i T). Models larger than the cache never hit."""
    sizes, probs = np.asarray(sizes, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    ok = (sizes <= capacity) & (probs > 0)
    if sizes[ok].sum() <= capacity:
        return ok.astype(np.float64)

    def excess(log_t: float) -> float:
        return float(np.sum(sizes[ok] * -np.expm1(-probs[ok] * math.exp(log_t)))) - capacity

    log_t = brentq(excess, -50.0, 50.0, xtol=1e-10)
    return np.where(ok, np.minimum(-np.expm1(-probs * math.exp(log_t)), 1.0), 0.0)


def simulate_lru(sizes: Array, probs: Array, capacity: float, requests: int = 20000, seed: int = 0) -> Array:
    """Hit rate per model of a byte-capacity LRU cache on a seeded independent-request trace; the
    first tenth warms the cache and is not counted."""
    rng = np.random.default_rng(seed)
    trace = rng.choice(sizes.size, size=requests, p=probs)
    cache: OrderedDict[int, None] = OrderedDict()
    used, warm = 0.0, requests // 10
    hits, seen = np.zeros(sizes.size), np.zeros(sizes.size)
    for t, m in enumerate(trace.tolist()):
        hit = m in cache
        if t >= warm:
            seen[m] += 1
            hits[m] += hit
        if hit:
            cache.move_to_end(m)
            continue
        if sizes[m] > capacity:
            continue
        cache[m] = None
        used += sizes[m]
        while used > capacity:
            used -= sizes[cache.popitem(last=False)[0]]
    return np.divide(hits, seen, out=np.zeros_like(hits), where=seen > 0)


def hit_rates(policy: str, sizes: Array, probs: Array, capacity: float) -> Array:
    if policy == "lru":
        return lru_hit_rates(sizes, probs, capacity)
    if policy == "static":
        return static_hit_rates(sizes, probs, capacity)
    raise InvalidSpecError(f"policy '{policy}': use 'lru' or 'static'")


@dataclass(frozen=True)
class LatencyStats:
    mean_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    hit_rate: float  # request-weighted


def latency_stats(probs: Array, hits: Array, base_s: Array, switch_s: Array) -> LatencyStats:
    """The request latency mixture: model i hits with probability p_i h_i (base_i) and misses with
    p_i (1 - h_i) (base_i + switch_i). Quantile q: the smallest latency whose mass reaches q."""
    values = np.concatenate([base_s, base_s + switch_s])
    weights = np.concatenate([probs * hits, probs * (1 - hits)])
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order]) / weights.sum()

    def q(level: float) -> float:
        return float(values[order][min(np.searchsorted(cum, level - 1e-12), cum.size - 1)])

    mean = float(np.dot(weights, values) / weights.sum())
    return LatencyStats(mean, q(0.5), q(0.9), q(0.99), float(np.dot(probs, hits) / probs.sum()))


def switch_times(node: NodeMemory, sizes: Array, order: npt.NDArray[np.int64]) -> Array:
    """Seconds to copy each model into the fast tier from the tier its copy lives in; `order` ranks
    the models (most popular first) for filling the slow tiers. NaN where no slow tier holds it."""
    if not node.slow:
        return np.full(sizes.size, np.nan)
    tier = np.empty(sizes.size, dtype=np.int64)
    tier[order] = node.backing_tiers(sizes[order])
    bw = np.array([t.copy_bandwidth_bytes_per_s for t in node.slow])
    return np.where(tier >= 0, sizes / bw[np.maximum(tier, 0)], np.nan)


def execution_s(
    spec: Any,
    hardware: str,
    devices: int,
    *,
    batch: int,
    input_len: int,
    output_len: int,
    weight_precision: str = "bf16",
    catalog: Catalog | None = None,
) -> float:
    """One model's prefill + decode of a static batch on one node (planner.estimate_inference),
    tensor-parallel over as many of the node's devices as its heads allow (the paper maps every
    expert and the router TP8)."""
    from planner.inference import estimate_inference

    tp = devices
    while True:
        try:
            r = estimate_inference(
                spec,
                hardware,
                devices,
                tp=tp,
                batch=batch,
                input_len=input_len,
                output_len=output_len,
                weight_precision=weight_precision,
                catalog=catalog,
            )
            return float(r.e2e_latency_s)
        except InvalidSpecError:
            if tp == 1:
                raise
            tp //= 2


@dataclass(frozen=True)
class Served:
    """Models spread over `nodes` nodes, each caching its own share in `free_bytes` of fast tier."""

    stats: LatencyStats
    hits: Array
    switch_s: Array
    held: bool  # every node's slow tiers hold its share (else the switch times are NaN)


def serve(
    node: NodeMemory,
    free_bytes: float,
    sizes: Array,
    probs: Array,
    base_s: Array,
    nodes: int = 1,
    policy: str = "lru",
) -> Served:
    """Model k in popularity order lives on node k mod `nodes` (round robin spreads the load); each
    node runs the policy over its own share. Models larger than `free_bytes` never become resident:
    they stream from the slow tier, which their execution time already counts, so no switch."""
    order = np.argsort(-probs, kind="stable")
    hits, switch = np.zeros(sizes.size), np.zeros(sizes.size)
    for j in range(nodes):
        share = order[j::nodes]
        s, p = sizes[share], probs[share]
        cacheable = s <= free_bytes
        h = hit_rates(policy, np.where(cacheable, s, 0.0), p / p.sum(), free_bytes) if p.sum() > 0 else p
        hits[share] = np.where(cacheable, h, 0.0)
        sw = switch_times(node, s, np.arange(s.size)) if node.slow else np.where(cacheable, 0.0, np.nan)
        switch[share] = np.where(cacheable, sw, 0.0 if node.slow else np.nan)
    held = not np.any(np.isnan(switch))
    inf = math.inf
    stats = latency_stats(probs, hits, base_s, switch) if held else LatencyStats(inf, inf, inf, inf, 0.0)
    return Served(stats, hits, switch, held)


def nodes_to_hold(sizes: Array, probs: Array, capacity: float) -> int:
    """Fewest nodes whose round-robin shares each fit in `capacity` bytes (0 when one model alone
    is larger)."""
    if sizes.max() > capacity:
        return 0
    order = np.argsort(-probs, kind="stable")
    n = max(1, math.ceil(sizes.sum() / capacity))
    while any(sizes[order[j::n]].sum() > capacity for j in range(n)):
        n += 1
    return n
