"""Which tensors live in which memory tier: the placement that minimises the time a step spends
reading them, under every tier's capacity.

A tensor class c holds b_c bytes and each step reads a_c of its bytes per byte stored (its access
intensity): a decode step reads every dense weight once (a = 1), every running sequence's KV cache
once (a = 1), only the routed experts the batch touches (a = their share), and one embedding row
per token (a = tokens / vocabulary). Activations are read many times per layer and are pinned to
the first tier. A tier t holds C_t bytes and is read at B_t bytes/s as the device sees it (the
slower of the tier and the link to it). Bytes x_ct of class c in tier t cost x_ct a_c / B_t per
step, whether the device reads them in place (vLLM's cpu_offload_gb over UVA, SN40L's DDR) or
streams them into the first tier ahead of use (the link carries the same bytes; see
`streamed_s`).

The cost matrix a_c / B_t is a product of a class factor and a tier factor, so it is a Monge
matrix once classes are sorted by intensity and tiers by bandwidth, and the greedy that fills the
fastest tier with the densest class first solves the transportation LP exactly (Hoffman 1963, "On
simple linear programming problems"; the rearrangement inequality). Some classes may only live in
some of the tiers (the KV cache in the first tier, or up to a named offload tier; not a
scratchpad): the greedy stays exact when a class allowed fewer tiers reads more per byte than
every class allowed more, and allowed tiers are a prefix of the bandwidth order; tests/test_tiers.py
checks it against scipy's LP solver. Classes try tiers fastest first, which may put an RDU's SRAM
scratchpad ahead of the first tier; where a restricted class skips such a faster tier (the KV
cache does not use the scratchpad), the greedy is a heuristic there. At equal
intensity the order given decides (the read time is the same either way): an offloaded KV cache is
listed after the dense weights, which take the first tier as engines allocate them, so the KV cache
is reported as not fitting only when its own tiers are full of weights that could have gone
further down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tier:
    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float  # as the device reads it: min(tier, link to it)


@dataclass(frozen=True)
class TensorClass:
    """`bytes_` and `reads_per_step` may be arrays (one per scenario of a sweep). `tiers`: how many
    of the fastest tiers the class may use (None: all; 1: pinned to the first). `remote`: the
    class may not use the first tier (weights that live in a memory pool and stream from it)."""

    name: str
    bytes_: Any
    reads_per_step: Any = 1.0
    tiers: int | None = None
    remote: bool = False


@dataclass(frozen=True)
class TierPlacement:
    """Bytes of each class in each tier: `bytes_[class, tier, *scenario]`."""

    classes: tuple[str, ...]
    tiers: tuple[Tier, ...]
    bytes_: Array
    unplaced_bytes: Array  # per class: what no allowed tier had room for
    reads_per_step: Array  # per class, broadcast to the scenarios

    @property
    def fits(self) -> Any:
        return _out(np.all(self.unplaced_bytes <= 1e-6 * np.maximum(self.total_bytes, 1.0), axis=0))

    @property
    def total_bytes(self) -> Array:
        return np.sum(self.bytes_, axis=1) + self.unplaced_bytes

    def in_tier(self, cls: str, tier: str) -> Any:
        return _out(self.bytes_[self.classes.index(cls), [t.name for t in self.tiers].index(tier)])

    def tier_bytes(self, tier_index: int) -> Any:
        return _out(np.sum(self.bytes_[:, tier_index], axis=0))

    def bandwidth(self, cls: str) -> Any:
        """The bandwidth the class's reads see: its bytes over the time to read each byte once from
        wherever it lies (the harmonic mix of its tiers; the first tier's when it holds nothing)."""
        i = self.classes.index(cls)
        x = self.bytes_[i]
        bw = np.array([t.bandwidth_bytes_per_s for t in self.tiers]).reshape((-1,) + (1,) * (x.ndim - 1))
        seconds = np.sum(x / bw, axis=0)
        held = np.sum(x, axis=0)
        first = self.tiers[0].bandwidth_bytes_per_s
        return _out(np.where(seconds > 0, held / np.where(seconds > 0, seconds, 1.0), first))

    def read_s(self, beyond_first: bool = False) -> Any:
        """Seconds per step to read what the placement holds at each tier's bandwidth (only the
        tiers past the first when `beyond_first`: what a link must carry while the first tier's
        reads run in the op roofline)."""
        bw = np.array([t.bandwidth_bytes_per_s for t in self.tiers])
        a = self.reads_per_step.reshape((*self.reads_per_step.shape[:1], 1, *self.reads_per_step.shape[1:]))
        per = self.bytes_ * a / bw.reshape((1, -1) + (1,) * (self.bytes_.ndim - 2))
        return _out(np.sum(per[:, 1:] if beyond_first else per, axis=(0, 1)))

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """{tier: {class: bytes}} for the classes a tier holds (the mean over a sweep's scenarios)."""
        means = self.bytes_.reshape(len(self.classes), len(self.tiers), -1).mean(axis=-1).tolist()
        out: dict[str, dict[str, Any]] = {}
        for t, tier in enumerate(self.tiers):
            held = {c: means[i][t] for i, c in enumerate(self.classes) if means[i][t] > 0}
            if held:
                out[tier.name] = held
        return out


def optimal_placement(classes: Sequence[TensorClass], tiers: Sequence[Tier]) -> TierPlacement:
    """The placement that minimises the step's read time: tiers sorted by bandwidth (stable), then
    classes taken densest first (pinned ones before all; ties in the order given), each filling
    its allowed tiers fastest first. Element by element over the classes' arrays."""
    if _fits_first(classes, tiers):  # the usual one-scenario case: nothing to choose
        b = np.array([float(c.bytes_) for c in classes])
        x = np.zeros((len(classes), len(tiers)))
        x[:, 0] = b
        reads = np.array([float(c.reads_per_step) for c in classes])
        return TierPlacement(tuple(c.name for c in classes), tuple(tiers), x, np.zeros(len(classes)), reads)
    order = sorted(range(len(tiers)), key=lambda t: -tiers[t].bandwidth_bytes_per_s)
    # the first tier stays first in the layout (pinned classes are defined against it); classes
    # try the tiers fastest first (a scratchpad may be faster than the first tier)
    order = [0] + [t for t in order if t != 0]
    sorted_tiers = [tiers[t] for t in order]
    fill = sorted(range(len(order)), key=lambda i: -sorted_tiers[i].bandwidth_bytes_per_s)
    limits = [_allowed(c, order) for c in classes]
    b, a = _stack(classes)
    key = np.where(np.array([c.tiers == 1 for c in classes]).reshape((-1,) + (1,) * (a.ndim - 1)), np.inf, a)
    first = np.argsort(-key.reshape(len(classes), -1)[:, 0], kind="stable")
    if b.ndim == 1:  # one scenario: the same greedy on Python floats (numpy's per-call cost dominates)
        return _fill_one(classes, sorted_tiers, limits, b, a, [int(i) for i in first], fill)
    ordered = key[first]
    if np.all(ordered[:-1] >= ordered[1:]):  # every scenario takes the classes in the same order
        return _fill_in_order(classes, sorted_tiers, limits, b, a, [int(i) for i in first], fill)
    return _fill(classes, sorted_tiers, limits, b, a, np.argsort(-key, axis=0, kind="stable"), fill)


def _fits_first(classes: Sequence[TensorClass], tiers: Sequence[Tier]) -> bool:
    """One scenario whose classes all fit the first tier, which is the fastest, and may live there."""
    values = [(c.bytes_, c.reads_per_step) for c in classes]
    if any(isinstance(v, np.ndarray) and v.ndim for pair in values for v in pair) or any(c.remote for c in classes):
        return False
    if any(t.bandwidth_bytes_per_s > tiers[0].bandwidth_bytes_per_s for t in tiers):
        return False
    return sum(float(c.bytes_) for c in classes) <= tiers[0].capacity_bytes


def ordered_placement(classes: Sequence[TensorClass], tiers: Sequence[Tier]) -> TierPlacement:
    """Classes placed in the order given, each filling its allowed tiers in the order given: the
    fixed policy the engine used before placement became an optimisation (activations and KV
    cache first, then weights spilling in tier order); kept as the baseline tests compare with."""
    b, a = _stack(classes)
    rank = np.broadcast_to(np.arange(len(classes)).reshape((-1,) + (1,) * (a.ndim - 1)), a.shape)
    limits = [_allowed(c, list(range(len(tiers)))) for c in classes]
    return _fill(classes, list(tiers), limits, b, a, rank, list(range(len(tiers))))


def _allowed(c: TensorClass, order: list[int]) -> list[bool]:
    """Which tiers of the sorted `order` a class may use: the first `c.tiers` of the catalogue
    order (all when None), the first tier excepted for a remote class."""
    allowed = range(len(order)) if c.tiers is None else range(c.tiers)
    return [t in allowed and not (c.remote and t == 0) for t in order]


def _stack(classes: Sequence[TensorClass]) -> tuple[Array, Array]:
    if all(not isinstance(x, np.ndarray) or x.ndim == 0 for c in classes for x in (c.bytes_, c.reads_per_step)):
        return np.array([float(c.bytes_) for c in classes]), np.array([float(c.reads_per_step) for c in classes])
    shape = np.broadcast_shapes(*(np.shape(c.bytes_) for c in classes), *(np.shape(c.reads_per_step) for c in classes))
    b = np.stack([np.broadcast_to(np.asarray(c.bytes_, dtype=np.float64), shape) for c in classes])
    a = np.stack([np.broadcast_to(np.asarray(c.reads_per_step, dtype=np.float64), shape) for c in classes])
    return b, a


def _fill_one(
    classes: Sequence[TensorClass],
    tiers: list[Tier],
    limits: list[list[bool]],
    b: Array,
    a: Array,
    rank: list[int],
    fill: list[int],
) -> TierPlacement:
    """`_fill` for one scenario (tied to it by tests/test_tiers.py's vectorised-equals-scalar test)."""
    room = [t.capacity_bytes for t in tiers]
    x = [[0.0] * len(tiers) for _ in classes]
    unplaced = [0.0] * len(classes)
    for c in rank:
        left = float(b[c])
        for t in fill:  # the tiers, fastest first
            if not limits[c][t]:
                continue
            take = min(max(room[t], 0.0), left)
            room[t] -= take
            left -= take
            x[c][t] = take
        unplaced[c] = left
    return TierPlacement(tuple(c.name for c in classes), tuple(tiers), np.array(x), np.array(unplaced), a)


def _fill_in_order(
    classes: Sequence[TensorClass],
    tiers: list[Tier],
    limits: list[list[bool]],
    b: Array,
    a: Array,
    order: list[int],
    fill: list[int],
) -> TierPlacement:
    """`_fill` when every scenario takes the classes in the same `order` (the usual case: only the
    experts' and the embedding's reads vary, and rarely cross)."""
    room = [np.full(b.shape[1:], t.capacity_bytes) for t in tiers]
    x = np.zeros((len(classes), len(tiers), *b.shape[1:]))
    unplaced = np.zeros_like(b)
    for c in order:
        left = b[c]
        if not left.any():  # a class with no bytes (a dense model's experts) takes no room
            continue
        for t in fill:  # the tiers, fastest first
            if not limits[c][t]:
                continue
            take = np.minimum(np.maximum(room[t], 0.0), left)
            room[t] = room[t] - take
            left = left - take
            x[c, t] = take
        unplaced[c] = left
    return TierPlacement(tuple(c.name for c in classes), tuple(tiers), x, unplaced, a)


def _fill(
    classes: Sequence[TensorClass],
    tiers: list[Tier],
    limits: list[list[bool]],
    b: Array,
    a: Array,
    rank: Any,
    fill: list[int],
) -> TierPlacement:
    """Take classes in `rank` order (per scenario); each fills the room left in its allowed tiers."""
    room = [np.full(b.shape[1:], t.capacity_bytes) for t in tiers]
    x = np.zeros((len(classes), len(tiers), *b.shape[1:]))
    unplaced = np.zeros_like(b)
    mask = np.array(limits)  # (classes, tiers)
    for step in range(len(classes)):
        c = rank[step]  # which class each scenario takes at this step
        left = np.take_along_axis(b, c[None], axis=0)[0]
        for t in fill:  # the tiers, fastest first
            ok = mask[c, t]
            take = np.where(ok, np.minimum(np.maximum(room[t], 0.0), left), 0.0)
            room[t] = room[t] - take
            left = left - take
            np.put_along_axis(x[:, t], c[None], np.take_along_axis(x[:, t], c[None], axis=0) + take[None], axis=0)
        np.put_along_axis(unplaced, c[None], left[None], axis=0)
    return TierPlacement(tuple(c.name for c in classes), tuple(tiers), x, unplaced, a)


def _out(x: Any) -> Any:
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x


@dataclass(frozen=True)
class ReadBandwidths:
    """The bandwidth each kind of read sees once its bytes are placed: dense weights, routed
    experts (None: as the dense weights) and the KV cache (None: the device's main memory)."""

    weights: Any
    experts: Any = None
    kv: Any = None
    # streamed weights (a memory pool with prefetch): the pool's bandwidth and the share of the
    # dense weights and of the experts that lie there; they are read from the first tier once
    # fetched, and a pass waits for the fetch only where it outlasts the compute
    stream_bandwidth: Any = None
    streamed_weights: Any = 0.0
    streamed_experts: Any = 0.0

    def _values(self) -> tuple[Any, ...]:
        return (
            self.weights,
            self.experts,
            self.kv,
            self.stream_bandwidth,
            self.streamed_weights,
            self.streamed_experts,
        )

    @property
    def varies(self) -> bool:
        """Whether any figure is one per scenario (an array)."""
        return any(isinstance(x, np.ndarray) for x in self._values())

    def trailing(self) -> ReadBandwidths:
        """The same with a trailing axis, to broadcast against per-shape values."""
        return ReadBandwidths(*(x[..., None] if isinstance(x, np.ndarray) else x for x in self._values()))

    def stream_s(self, ops: Sequence[Any]) -> Any:
        """Seconds to fetch a pass's streamed weights: each op's weight reads (op.count instances)
        times the share of its class in the pool, over the pool's bandwidth."""
        if self.stream_bandwidth is None:
            return 0.0
        share = {True: self.streamed_experts, False: self.streamed_weights}
        fetched = sum((op.weight_bytes * op.count * share[op.op_class == "moe"] for op in ops), 0.0)
        return fetched / self.stream_bandwidth
