"""Collective communication costed on a topology graph of the cluster.

The graph (networkx) has a node per device, one scale-up switch per domain (or direct device-to-
device edges for full-mesh and torus fabrics) and a scale-out network. Edge capacities are the
achieved bandwidth per direction (wire x the link's measured collective efficiency).

From the graph we derive, for a group of devices placed contiguously (packed into domains):
- ring bandwidth: NCCL-style rings run one channel per device of a domain, each channel leaving
  the domain through a different NIC; the busiest edge bounds the ring (edge load / capacity);
- bisection bandwidth: the minimum cut between the two halves of the group (networkx min-cut),
  which bounds all-to-all together with each device's injection bandwidth per tier.

Costs are alpha-beta: steps x (per-hop latency) + a software base per call + bytes / bandwidth.
Inside one domain a library collective is also held to its link's measured size ramp (nccl-tests
busbw at that buffer size over busbw at the largest): channels, chunk pipeline fill and protocol
switches make a 64 MiB all-reduce far slower than the wire rate, which alpha-beta alone misses.
Algorithms: ring, tree (double binary tree: log-depth latency, ring-like bandwidth), hierarchical
(reduce-scatter inside the domain, all-reduce across, all-gather inside), and in-network reduction
(NVLS/SHARP class) where the scale-up switch supports it. `auto` takes the fastest, as NCCL's tuner does.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from planner.cluster import Cluster, Tier, ceil_div, log2_ceil

Array = npt.NDArray[np.float64]
Op = Literal["all-reduce", "reduce-scatter", "all-gather", "all-to-all", "broadcast", "send-recv"]
OPS: tuple[str, ...] = ("all-reduce", "reduce-scatter", "all-gather", "all-to-all", "broadcast", "send-recv")
ALGORITHMS: tuple[str, ...] = ("auto", "ring", "tree", "hierarchical", "in-network")


# Links without their own collective measurement: the measured NVLink generations span 0.76-0.82
# of wire (nvlink3/4/5 in links.yaml), so 0.8 stands for "a well-tuned NCCL-class library".
UNMEASURED_LINK_FRACTION = 0.8


def achieved_bandwidth(tier: Tier) -> float:
    return tier.bandwidth_per_direction_bytes_per_s * (tier.link.achieved_fraction or UNMEASURED_LINK_FRACTION)


def in_network_bandwidth(tier: Tier) -> float | None:
    """Per-device bandwidth of an in-switch reduction (NVLS/SHARP), where the switch has one."""
    link = tier.link
    if not link.in_network_reduction:
        return None
    return tier.bandwidth_per_direction_bytes_per_s * (link.in_network_fraction or UNMEASURED_LINK_FRACTION)


def _pair_bandwidth(tier: Tier) -> float:
    """Bandwidth between two devices of the tier: a full mesh splits a device's links over its peers."""
    bw = achieved_bandwidth(tier)
    if tier.link.topology == "full-mesh" and tier.link.peers:
        return bw / tier.link.peers
    return bw


@dataclass(frozen=True)
class GroupShape:
    """A group of `size` devices packed into scale-up domains of `per_domain` devices."""

    size: int
    per_domain: int

    @property
    def domains(self) -> int:
        return ceil_div(self.size, self.per_domain)


def group_shape(cluster: Cluster, size: int, stride: int = 1) -> GroupShape:
    """`size` devices whose ranks are `stride` apart (TP groups are dense, DP groups strided)."""
    if size > cluster.devices:
        raise InvalidSpecError(f"a group of {size} devices does not fit in {cluster.devices} devices")
    per_domain = max(1, min(size, cluster.domain_size // max(1, stride)))
    return GroupShape(size, per_domain)


@dataclass(frozen=True)
class Fabric:
    """The hashable essentials of a cluster's network: graphs and cost models are cached on it."""

    topology: str  # of the scale-up tier: switched, full-mesh, torus, point-to-point
    up_bytes_per_s: float  # achieved, per device per direction
    pair_bytes_per_s: float  # between two devices of one domain
    out_bytes_per_s: float | None  # achieved scale-out per device per direction
    in_network_bytes_per_s: float | None  # in-switch reduction (NVLS/SHARP), when the switch has it
    up_latency_s: float
    out_latency_s: float
    base_latency_s: float  # software floor per collective call
    # the scale-up link's measured size ramp: (log bytes per rank, fraction of the large-buffer busbw)
    ramp: tuple[tuple[float, ...], tuple[float, ...]] | None = None


@functools.lru_cache(maxsize=256)
def fabric(cluster: Cluster) -> Fabric:
    up, out = cluster.scale_up, cluster.scale_out
    return Fabric(
        topology=up.link.topology,
        up_bytes_per_s=achieved_bandwidth(up),
        pair_bytes_per_s=_pair_bandwidth(up),
        out_bytes_per_s=achieved_bandwidth(out) if out is not None else None,
        in_network_bytes_per_s=in_network_bandwidth(up),
        up_latency_s=up.link.latency_s,
        out_latency_s=out.link.latency_s if out is not None else up.link.latency_s,
        base_latency_s=cluster.perf.efficiency.collective_base_latency_s or 0.0,
        ramp=_ramp(up.link.size_ramp),
    )


def _ramp(ramp: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if ramp is None:
        return None
    per_rank = tuple(float(np.log(size / ramp.devices)) for size, _ in ramp.points)
    return per_rank, tuple(fraction for _, fraction in ramp.points)


# Collectives whose size ramp the nccl-tests all-reduce sweep stands for: the ring/NVLS pipelines of
# reduce-scatter and all-gather fill the same way; all-to-all, broadcast and send/recv were not measured.
_RAMPED = ("all-reduce", "reduce-scatter", "all-gather")
# vLLM's CustomAllreduce (one-shot/two-shot over NVLink/xGMI peer access) takes tensor-parallel
# all-reduces up to max_size=8192*1024 bytes (vllm/distributed/device_communicators/custom_all_reduce.py);
# larger ones fall back to NCCL. TensorRT-LLM has one-shot/two-shot kernels of the same kind; its
# size threshold was not found, so vLLM's stands for both. Inference passes this so that NCCL's
# ramp applies only above it.
ENGINE_ALLREDUCE_MAX_BYTES = 8192 * 1024


def ramp_fraction(fab: Fabric, op: str, size: Any, n: int, domains: int) -> Any:
    """Share of the large-buffer bandwidth a library collective of `size` bytes over `n` devices
    reaches; None where the link has no measured ramp or the group spans domains (the scale-out
    models own that). Indexed by the bytes each rank holds, since the pipeline fills per rank."""
    if fab.ramp is None or domains > 1 or op not in _RAMPED:
        return None
    xs, fs = fab.ramp
    if np.ndim(size) == 0:  # one estimate: plain floats (numpy on 0-d arrays costs more than the math)
        x = math.log(max(float(size) / n, 1.0))
        i = bisect.bisect_right(xs, x)
        if i == 0 or i == len(xs):
            return fs[min(i, len(fs) - 1)]
        w = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
        return fs[i - 1] + w * (fs[i] - fs[i - 1])
    return np.interp(np.log(np.maximum(np.asarray(size, dtype=np.float64) / n, 1.0)), xs, fs)


def build_graph(fab: Fabric, shape: GroupShape) -> Any:
    """Directed graph of the group's devices, switches and network, capacities in bytes/s."""
    import networkx as nx  # ~0.2 s to import; graphs are built once per fabric and cached

    g = nx.DiGraph()
    for d in range(shape.domains):
        members = [("dev", d, i) for i in range(min(shape.per_domain, shape.size - d * shape.per_domain))]
        if fab.topology == "full-mesh":
            for a in members:
                for b in members:
                    if a != b:
                        g.add_edge(a, b, capacity=fab.pair_bytes_per_s)
        else:  # switched, and torus taken as its multi-dimensional rings' aggregate per chip
            for a in members:
                g.add_edge(a, ("sw", d), capacity=fab.up_bytes_per_s)
                g.add_edge(("sw", d), a, capacity=fab.up_bytes_per_s)
        if shape.domains > 1:
            if fab.out_bytes_per_s is None:
                raise InvalidSpecError(f"no scale-out network to span {shape.domains} scale-up domains")
            for a in members:
                g.add_edge(a, ("net",), capacity=fab.out_bytes_per_s)
                g.add_edge(("net",), a, capacity=fab.out_bytes_per_s)
    return g


def _ring_orders(shape: GroupShape) -> list[list[tuple[str, int, int]]]:
    """One ring per channel; channel c leaves every domain through its c-th device (rail-aligned)."""
    channels = shape.per_domain if shape.domains > 1 else 1
    rings = []
    for c in range(channels):
        order = []
        for d in range(shape.domains):
            local = list(range(min(shape.per_domain, shape.size - d * shape.per_domain)))
            rot = (c + 1) % len(local) if len(local) > 1 else 0
            order += [("dev", d, i) for i in local[rot:] + local[:rot]]
        rings.append(order)
    return rings


@functools.lru_cache(maxsize=4096)
def _ring_bandwidth_cached(fab: Fabric, shape: GroupShape) -> float:
    if shape.size < 2:
        return float("inf")
    if fab.topology == "full-mesh" and shape.domains == 1:
        # (size-1) edge-disjoint rings cover every mesh link once (RCCL's multi-ring): pair bw x (size-1)
        return fab.pair_bytes_per_s * (shape.size - 1)
    if shape.domains == 1:
        # one switch: every device's single ring edge is its own link (what the graph gives, unbuilt)
        return fab.up_bytes_per_s
    import networkx as nx

    graph = build_graph(fab, shape)
    load: dict[tuple[object, object], float] = {}
    rings = _ring_orders(shape)
    for ring in rings:
        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
            path = nx.shortest_path(graph, a, b)
            for u, v in itertools.pairwise(path):
                load[(u, v)] = load.get((u, v), 0.0) + 1.0 / len(rings)
    return min(graph.edges[e]["capacity"] / v for e, v in load.items())


def ring_bandwidth(fab: Fabric, shape: GroupShape) -> float:
    """Bytes/s each device moves to its ring successor, bounded by the busiest edge of the graph."""
    # The bound repeats every domain, so three domains stand for any larger count.
    small = GroupShape(min(shape.size, shape.per_domain * 3), shape.per_domain)
    return _ring_bandwidth_cached(fab, small)


def bisection_bandwidth(fab: Fabric, shape: GroupShape) -> float:
    """Min cut (bytes/s per direction) between the first and second half of the group."""
    return _bisection_cached(fab, shape)


@functools.lru_cache(maxsize=4096)
def _bisection_cached(fab: Fabric, shape: GroupShape) -> float:
    graph = build_graph(fab, shape)
    devices = [n for n in graph.nodes if n[0] == "dev"]
    half = len(devices) // 2
    if half == 0:
        return float("inf")
    for d in devices[:half]:
        graph.add_edge("S", d, capacity=float("inf"))
    for d in devices[half:]:
        graph.add_edge(d, "T", capacity=float("inf"))
    import networkx as nx

    value, _ = nx.minimum_cut(graph, "S", "T")
    return float(value)


@dataclass(frozen=True)
class CollectiveTime:
    op: str
    algorithm: str
    bytes: Any
    devices: int
    time_s: Any
    # the chosen algorithm's latency, or (costs, latencies) of every algorithm to pick it from when
    # asked: the per-size argmin costs more than the rest of a 100,000-size collective
    latency: Any
    bandwidth_bytes_per_s: float  # the bandwidth the chosen algorithm ran at

    @property
    def latency_s(self) -> Any:
        if isinstance(self.latency, tuple):
            costs, latencies = self.latency
            return latencies[costs.argmin(axis=0)]
        return self.latency

    @property
    def algbw_bytes_per_s(self) -> Array:
        return self.bytes / self.time_s

    @property
    def busbw_bytes_per_s(self) -> Array:
        """nccl-tests' bus bandwidth: algbw x the op's traffic factor, comparable across sizes."""
        return self.algbw_bytes_per_s * bus_factor(self.op, self.devices)


def bus_factor(op: str, n: int) -> float:
    if n < 2:
        return 1.0
    return {
        "all-reduce": 2 * (n - 1) / n,
        "reduce-scatter": (n - 1) / n,
        "all-gather": (n - 1) / n,
        "all-to-all": (n - 1) / n,
    }.get(op, 1.0)


@dataclass(frozen=True)
class Linear:
    """One algorithm's cost: time = latency_s + bytes x seconds_per_byte."""

    algorithm: str
    latency_s: float
    seconds_per_byte: float
    bandwidth_bytes_per_s: float  # the per-device link bandwidth the algorithm runs at


def collective_time(
    cluster: Cluster,
    op: str,
    bytes_: object,
    devices: int | None = None,
    algorithm: str = "auto",
    stride: int = 1,
    engine_max_bytes: float = 0.0,
    internode_share: float = 1.0,
) -> CollectiveTime:
    """Time of one collective over `devices` devices (default: the whole cluster) on `bytes_` bytes
    (the full buffer: the all-reduce input, the all-gather output). Vectorised over bytes_; with
    `auto` the fastest algorithm is taken per size, as NCCL's tuner does.

    Inside one scale-up domain the time is at least the bandwidth term over the link's measured
    size ramp (nccl-tests: a 64 MiB all-reduce on 8 A100 reaches 72% of the 8 GiB busbw). Buffers
    up to `engine_max_bytes` skip the ramp: an inference engine's own all-reduce kernel takes them.
    internode_share (all-to-all): the share of the cross-domain traffic that still crosses after
    the sender deduplicates it per destination domain (DeepEP's internode kernels)."""
    if op not in OPS:
        raise InvalidSpecError(f"unknown collective '{op}' (allowed: {', '.join(OPS)})")
    if algorithm not in ALGORITHMS:
        raise InvalidSpecError(f"unknown algorithm '{algorithm}' (allowed: {', '.join(ALGORITHMS)})")
    n = cluster.devices if devices is None else devices
    if n < 1:
        raise InvalidSpecError(f"a collective needs at least 1 device (got {n})")
    size = bytes_ if isinstance(bytes_, float) else np.asarray(bytes_, dtype=np.float64)
    scalar = isinstance(size, float)  # one estimate: plain comparisons (numpy's any/all cost ~5 us each)
    if (size < 0) if scalar else np.asarray(size < 0).any():
        raise InvalidSpecError("bytes must be >= 0")
    if n == 1:
        zero = size * 0.0
        return CollectiveTime(op, "local", size, 1, zero, zero, float("inf"))
    shape = group_shape(cluster, n, stride)
    fab = fabric(cluster)
    models = cost_models(fab, shape, op, algorithm, internode_share)
    if not models:
        raise InvalidSpecError(f"algorithm '{algorithm}' does not apply to {op} on {n} x {cluster.device.id}")
    # buffers the engine's own kernel takes skip the ramp; a ramp of 1 is no ramp at all
    engine_takes_all = bool(engine_max_bytes) and bool(
        (size <= engine_max_bytes) if scalar else np.asarray(size <= engine_max_bytes).all()
    )
    ramp = None if engine_takes_all else ramp_fraction(fab, op, size, n, shape.domains)
    if ramp is not None and engine_max_bytes:
        ramp = np.where(size <= engine_max_bytes, 1.0, ramp) if np.ndim(size) else ramp

    def cost(c: Linear) -> Any:
        wire = size * c.seconds_per_byte
        return c.latency_s + wire if ramp is None else np.maximum(c.latency_s + wire, wire / ramp)

    if len(models) == 1 or np.ndim(size) == 0:
        typical = float(np.mean(size)) if np.ndim(size) else float(size)
        best = min(models, key=lambda c: c.latency_s + typical * c.seconds_per_byte)
        latency = size * 0.0 + best.latency_s
        return CollectiveTime(op, best.algorithm, size, n, cost(best), latency, best.bandwidth_bytes_per_s)
    # per size, the fastest algorithm and its latency (argmin: the first listed wins ties)
    lats, per_byte = _stacked(models)
    axes = (len(models),) + (1,) * np.ndim(size)
    wire = size * per_byte.reshape(axes)
    t = lats.reshape(axes) + wire
    if ramp is not None:
        t = np.maximum(t, wire / ramp)
    return CollectiveTime(op, "auto", size, n, t.min(axis=0), (t, lats), models[0].bandwidth_bytes_per_s)


_STACKED: dict[int, tuple[tuple[Linear, ...], Array, Array]] = {}


def _stacked(models: tuple[Linear, ...]) -> tuple[Array, Array]:
    """The models' latencies and seconds per byte as arrays, to cost every size against all at once
    (kept per tuple: cost_models hands back the same tuple for the same group)."""
    hit = _STACKED.get(id(models))
    if hit is None or hit[0] is not models:
        hit = (models, np.array([c.latency_s for c in models]), np.array([c.seconds_per_byte for c in models]))
        if len(_STACKED) >= 4096:
            _STACKED.clear()
        _STACKED[id(models)] = hit
    return hit[1], hit[2]


@functools.lru_cache(maxsize=16384)
def cost_models(
    fab: Fabric, shape: GroupShape, op: str, algorithm: str, internode_share: float = 1.0
) -> tuple[Linear, ...]:
    """The alpha-beta model of every algorithm that applies (cached: the graph work happens once)."""
    n = shape.size
    hop = fab.out_latency_s if shape.domains > 1 else fab.up_latency_s
    base = fab.base_latency_s
    ring_bw = ring_bandwidth(fab, shape)
    out: list[Linear] = []

    def add(name: str, steps: float, traffic: float, bw: float, extra_latency: float = 0.0) -> None:
        if algorithm in ("auto", name):
            out.append(Linear(name, base + steps * hop + extra_latency, traffic / bw, bw))

    nvls = fab.in_network_bytes_per_s if shape.domains == 1 else None
    if op == "all-reduce":
        add("ring", 2 * (n - 1), 2 * (n - 1) / n, ring_bw)
        add("tree", 2 * log2_ceil(n), 2 * (n - 1) / n, ring_bw)
        if shape.domains > 1 and shape.per_domain > 1 and fab.out_bytes_per_s and algorithm in ("auto", "hierarchical"):
            out.append(_hierarchical(fab, shape))
        if nvls is not None:  # the switch reduces: each device sends its buffer once, receives the result once
            add("in-network", 2, 1.0, nvls)
    elif op in ("reduce-scatter", "all-gather"):
        add("ring", n - 1, (n - 1) / n, ring_bw)
        if nvls is not None:
            add("in-network", 1, (n - 1) / n, nvls)
    elif op == "broadcast":
        add("ring", n - 1, 1.0, ring_bw)  # pipelined chain: bandwidth-optimal for large buffers
        add("tree", log2_ceil(n), 1.0, ring_bw)
    elif op == "send-recv":
        pair = fab.pair_bytes_per_s if shape.domains == 1 else (fab.out_bytes_per_s or fab.pair_bytes_per_s)
        add("ring", 1, 1.0, pair)
    elif op == "all-to-all" and algorithm in ("auto", "ring"):
        out.append(_all_to_all(fab, shape, internode_share))
    return tuple(out)


def _all_to_all(fab: Fabric, shape: GroupShape, internode_share: float = 1.0) -> Linear:
    """Each device sends 1/n of its buffer to every peer: bounded by each tier's injection bandwidth
    and by the bisection (min cut of the graph), whichever is slowest. `internode_share` scales
    what crosses between domains (per-domain deduplication); the copies fan out inside the domain."""
    n, g = shape.size, shape.per_domain
    up = fab.pair_bytes_per_s * (g - 1) if fab.topology == "full-mesh" else fab.up_bytes_per_s
    per_byte = [(g - 1) / n / up] if g > 1 else []
    if n > g and fab.out_bytes_per_s:
        per_byte.append((n - g) / n * internode_share / fab.out_bytes_per_s)
    probe = GroupShape(min(n, g * 4), g)
    half = probe.size // 2
    if half:  # half the devices each send half their buffer across the cut
        per_byte.append((half / 2) * (internode_share if n > g else 1.0) / bisection_bandwidth(fab, probe))
    hop = fab.out_latency_s if shape.domains > 1 else fab.up_latency_s
    return Linear("pairwise", fab.base_latency_s + min(n - 1, 64) * hop, max(per_byte), 1.0 / max(per_byte))


def _hierarchical(fab: Fabric, shape: GroupShape) -> Linear:
    """Reduce-scatter inside each domain, all-reduce of 1/g of the buffer across domains, all-gather inside."""
    g, k = shape.per_domain, shape.domains
    inner_bw = max(ring_bandwidth(fab, GroupShape(g, g)), fab.in_network_bytes_per_s or 0.0)
    outer_bw = fab.out_bytes_per_s or fab.up_bytes_per_s
    per_byte = 2 * (g - 1) / g / inner_bw + 2 * (k - 1) / k / g / outer_bw
    latency = 3 * fab.base_latency_s + 2 * (g - 1) * fab.up_latency_s + 2 * (k - 1) * fab.out_latency_s
    return Linear("hierarchical", latency, per_byte, outer_bw)
