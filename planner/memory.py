"""Memory per device, per tier: what a configuration needs against what each tier holds.

Weights, KV cache (paged: whole blocks per sequence), activations (inference workspace, or the
Korthikanti et al. 2022 training formulas for no/selective/full recompute with sequence
parallelism), gradients, optimizer states (mixed-precision Adam, ZeRO 1/2/3), and a framework
reserve. The tiers of a device (its HBM, its own DDR/LPDDR, the host's DRAM share, CXL, SSD) are
filled by planner.tiers's placement: what a decode step reads least (untouched experts, the
embedding table) spills first, and ops that read it pay that tier's bandwidth. `fits` is False,
with the reason, when the pinned tensors overflow their tiers or every tier together is too small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from planner.arrays import messages
from planner.catalog import Catalog
from planner.cluster import Cluster
from planner.ops import Precisions, Sharding
from planner.tiers import ReadBandwidths, TensorClass, Tier, TierPlacement, optimal_placement, ordered_placement
from workloads.derived import kv_cache_bytes, moe_layer_count, moe_layer_params, parameter_counts
from workloads.schema import ModelSpec

Array = npt.NDArray[np.float64]

# vLLM reserves 10% of device memory by default (gpu_memory_utilization=0.9, docs.vllm.ai "Engine
# Arguments"); Megatron-style training leaves a similar margin for the CUDA context, NCCL buffers
# and allocator fragmentation (PyTorch CUDA caching allocator, typically 5-10%).
RESERVE_FRACTION = 0.10
KV_BLOCK_TOKENS = 16  # vLLM's default paged-attention block size (docs.vllm.ai, --block-size)


@dataclass(frozen=True)
class MemoryTierUse:
    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float  # achieved, as seen by the device
    used_bytes: Array | float


@dataclass(frozen=True)
class WeightParts:
    """Weights on one device split by how often a decode step reads them (planner.tiers): the
    dense layers and output head every step, routed expert slots only when a token is routed to
    them, the input embedding table one row per token."""

    dense_bytes: float
    expert_bytes: float = 0.0
    embedding_bytes: float = 0.0

    @property
    def total_bytes(self) -> float:
        return self.dense_bytes + self.expert_bytes + self.embedding_bytes


def weight_bytes_per_device(spec: ModelSpec, s: Sharding, p: Precisions) -> float:
    """Weights on one device: dense parts split over TP x PP, routed expert slots (the experts and
    their redundant replicas) over EP x expert TP."""
    return weight_parts(spec, s, p).total_bytes


def weight_parts(spec: ModelSpec, s: Sharding, p: Precisions, extra_dense_bytes: float = 0.0) -> WeightParts:
    """The weights on one device split by how often a decode step reads them (a drafter's weights,
    `extra_dense_bytes`, count as dense)."""
    counts = parameter_counts(spec)
    m = moe_layer_params(spec)
    experts = slots = 0.0
    if m is not None and spec.moe is not None:
        per_expert = float(m.routed_expert.total * moe_layer_count(spec))
        experts, slots = per_expert * spec.moe.experts, per_expert * (spec.moe.experts + s.redundant_experts)
    dense = counts.total - experts
    # a quantised checkpoint keeps its embeddings and output head in 16 bits (ops.head_precisions)
    head = (counts.embedding + counts.lm_head) * max(2.0 - p.weight_bytes, 0.0) / (s.tp * s.pp)
    expert_bytes = slots / (s.ep * s.expert_tp * s.pp) * p.weight_bytes
    total = dense / (s.tp * s.pp) * p.weight_bytes + head + expert_bytes
    # an untied input table is only gathered from; a tied one is the output head, read whole
    embedding = 0.0 if spec.tied_embeddings else counts.embedding * max(2.0, p.weight_bytes) / (s.tp * s.pp)
    return WeightParts(total - expert_bytes - embedding + extra_dense_bytes, expert_bytes, embedding)


def kv_bytes_per_sequence(spec: ModelSpec, s: Sharding, p: Precisions, tokens: object) -> Array:
    """One sequence's KV cache on one device, rounded up to whole paged blocks."""
    blocks = np.ceil(np.asarray(tokens, dtype=np.float64) / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS
    full = np.asarray(kv_cache_bytes(spec, blocks, p.kv), dtype=np.float64)
    a = spec.attention
    # MLA's latent is shared by all heads: every TP rank holds all of it. GQA splits by KV head
    # (replicated when there are fewer KV heads than ranks).
    tp_share = 1.0 if a.mla is not None else max(a.kv_heads / s.tp, 1.0) / a.kv_heads
    return full * tp_share / (s.pp * s.cp)


def inference_activation_bytes(spec: ModelSpec, s: Sharding, p: Precisions, tokens: object) -> Array:
    """Peak workspace of one forward pass over `tokens` tokens: the widest live tensors of a layer
    (residual, normed input, FFN intermediate) plus the logits of the last stage."""
    t = np.asarray(tokens, dtype=np.float64)
    # the busiest EP rank holds expert_imbalance times the mean routed tokens' intermediates
    moe = 0 if spec.moe is None else spec.moe.expert_ffn_size * spec.moe.top_k * s.expert_imbalance
    ffn = max(spec.ffn.size, moe)
    width = 3 * spec.hidden_size + 2 * ffn / s.tp
    return t * width * p.act_bytes


def device_tiers(cluster: Cluster, catalog: Catalog) -> list[tuple[str, float, float]]:
    """(name, capacity, achieved bandwidth) of the tiers one device can hold data in, fastest first.

    The device's main tier, its own slower tiers (SN40L DDR, Grace LPDDR over NVLink-C2C), then its
    share of the node's host DRAM over the host link, attached CXL and SSD."""
    perf, dev = cluster.perf, cluster.device
    main = dev.main_memory
    tiers: list[tuple[str, float, float]] = [
        (main.tier, main.capacity_bytes * (1 - RESERVE_FRACTION), perf.memory_bandwidth_bytes_per_s)
    ]
    for t in dev.memory:
        if t is not main and t.tier not in ("sram",) and t.capacity_bytes > 0:
            tiers.append((t.tier, t.capacity_bytes, t.bandwidth_bytes_per_s * perf.memory_fraction))
    system = cluster.system
    host_bw = host_link_bandwidth(cluster)
    share = max(1, system.devices if system else 1)
    if system is not None and system.host is not None and host_bw > 0:
        tiers.append(("host-dram", system.host.dram_bytes / share, host_bw))
    if system is not None:
        for att in system.attached:
            d = catalog.devices.get(att.device)
            if d is None:
                continue
            tier = d.main_memory
            tiers.append(
                (
                    d.kind,
                    tier.capacity_bytes * att.count / share,
                    min(tier.bandwidth_bytes_per_s * att.count / share, host_bw or tier.bandwidth_bytes_per_s),
                )
            )
    return tiers


# what users call the tiers past a device's own (planner.memory.device_tiers names)
OFFLOAD_ALIASES = {"cpu": "host-dram", "host": "host-dram", "cxl": "cxl-memory", "nvme": "ssd"}


def offload_tiers(tiers: list[tuple[str, float, float]], offload: str | None) -> int:
    """How many of the fastest tiers the KV cache may use: the first alone, or every tier up to
    the named offload tier (one that can take the KV cache can take it in any faster tier)."""
    if offload is None or offload == "none":
        return 1
    names = [n for n, _, _ in tiers]
    want = OFFLOAD_ALIASES.get(offload, offload)
    if want not in names[1:]:
        have = ", ".join(names[1:]) or "none"
        raise InvalidSpecError(f"kv_offload '{offload}' is not a tier of this node (its tiers past {names[0]}: {have})")
    return names.index(want) + 1


def scratchpad_tier(cluster: Cluster, wanted_bytes: float) -> tuple[str, float, float]:
    """A software-managed on-chip SRAM (a dataflow device's scratchpad: SN40L's PMUs) as a tier
    for `wanted_bytes` of resident tensors. A GPU's or CPU's SRAM is a hardware cache that
    streaming evicts, so it is refused."""
    dev = cluster.device
    sram = dev.tier("sram")
    if dev.kind != "rdu" or sram is None:
        raise InvalidSpecError(
            f"scratchpad_bytes needs a software-managed on-chip SRAM (a dataflow RDU); '{dev.id}' is a {dev.kind}"
            + ("" if sram is None else " whose SRAM is a hardware cache")
        )
    if not 0 < wanted_bytes <= sram.capacity_bytes:
        raise InvalidSpecError(
            f"scratchpad_bytes must be in (0, {sram.capacity_bytes:.4g}] for {dev.id} (got {wanted_bytes:g})"
        )
    return ("sram", float(wanted_bytes), sram.bandwidth_bytes_per_s * cluster.perf.memory_fraction)


def host_link_bandwidth(cluster: Cluster) -> float:
    h = cluster.device.host_link
    if h is None:
        return 0.0
    if h.bandwidth_per_direction_bytes_per_s:
        return h.bandwidth_per_direction_bytes_per_s
    if h.kind == "pcie" and h.generation and h.lanes:
        # PCIe per lane per direction after 128b/130b encoding: gen3 0.985, gen4 1.969, gen5 3.938 GB/s
        per_lane = {3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.563e9}.get(h.generation, 0.985e9)
        return per_lane * h.lanes
    return 0.0


@dataclass(frozen=True)
class Placement:
    """Where a device's bytes lie over its tiers (planner.tiers.optimal_placement) and the
    bandwidth each kind of read then sees. Per scenario when the inputs are arrays (a sweep):
    `fits`, `spill_bytes` and the bandwidths are then arrays too (a bandwidth stays one number
    when every scenario shares it); `reason` then says, per scenario, why it does not fit or
    what spills."""

    fits: Any
    reason: Any  # a string, or one per scenario
    spill_bytes: Any  # bytes beyond the first tier
    weight_bandwidth_bytes_per_s: Any  # dense weights: the harmonic mix of the tiers they landed in
    tiers: tuple[MemoryTierUse, ...]
    expert_bandwidth_bytes_per_s: Any = None  # routed experts (None: as the dense weights)
    kv_bandwidth_bytes_per_s: Any = None  # the KV cache (None: the first tier's)
    layout: TierPlacement | None = None

    @property
    def bandwidths(self) -> ReadBandwidths:
        return ReadBandwidths(
            self.weight_bandwidth_bytes_per_s, self.expert_bandwidth_bytes_per_s, self.kv_bandwidth_bytes_per_s
        )

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {} if self.layout is None else self.layout.as_dict()


def place(
    weights: float | WeightParts,
    other: Any,
    tiers: list[tuple[str, float, float]],
    *,
    kv: Any = 0.0,
    kv_tiers: int = 1,
    expert_reads: Any = 1.0,
    embedding_reads: Any = 0.0,
    policy: str = "optimal",
    weights_remote: bool = False,
    staging: float = 0.0,
) -> Placement:
    """Place activations (`other`, pinned to the first tier), the KV cache (`kv`, in the first
    `kv_tiers` tiers: the first alone unless an offload tier is named) and the weights so that a
    decode step spends least time reading them (planner.tiers): classes a step reads less of
    (routed experts it does not touch: `expert_reads` of them per step; the embedding table:
    `embedding_reads`) spill first; `weights_remote` keeps every weight out of the first tier (a
    memory pool holds them and streams them through `staging` bytes pinned there). Element by
    element over the arrays. policy "ordered" is the fixed order this replaced: activations and
    KV cache first, then all weights as one class spilling in tier order (kept to compare)."""
    parts = weights if isinstance(weights, WeightParts) else WeightParts(float(weights))
    # a pinned KV cache goes before the weights, an offloaded one after them (tiers' docstring)
    cache = TensorClass("kv-cache", kv, 1.0, tiers=kv_tiers)
    classes = [
        TensorClass("activations", other, tiers=1),
        *([TensorClass("staging", staging, tiers=1)] if staging else []),
        *([cache] if kv_tiers == 1 else []),
        TensorClass("weights", parts.dense_bytes, 1.0, remote=weights_remote),
        *([] if kv_tiers == 1 else [cache]),
        TensorClass("experts", parts.expert_bytes, expert_reads, remote=weights_remote),
        TensorClass("embedding", parts.embedding_bytes, embedding_reads, remote=weights_remote),
    ]
    if policy == "ordered":  # pinned classes and the KV cache first, all weights as one
        kept = [c for c in classes if c.name in ("activations", "staging", "kv-cache")]
        classes = [*kept, TensorClass("weights", parts.total_bytes, 1.0, remote=weights_remote)]
        classes += [TensorClass("experts", 0.0), TensorClass("embedding", 0.0)]
        layout = ordered_placement(classes, [Tier(n, c, b) for n, c, b in tiers])
    elif policy == "optimal":
        layout = optimal_placement(classes, [Tier(n, c, b) for n, c, b in tiers])
    else:
        raise InvalidSpecError(f"unknown tier policy '{policy}' (allowed: optimal, ordered)")
    o = np.asarray(other, dtype=np.float64) + np.asarray(kv, dtype=np.float64) + staging
    w = parts.total_bytes
    name0, cap0, bw0 = tiers[0]
    if o.ndim == 0 and not layout.bytes_[:, 1:].any() and not layout.unplaced_bytes.any():  # all in the first tier
        held = layout.bytes_.sum(axis=0).tolist()
        uses = tuple(
            MemoryTierUse(t.name, t.capacity_bytes, t.bandwidth_bytes_per_s, held[i])
            for i, t in enumerate(layout.tiers)
        )
        return Placement(True, "fits", 0.0, bw0, uses, bw0, None, layout)
    unplaced = dict(zip(layout.classes, layout.unplaced_bytes, strict=True))
    # pinned bytes overflow their tiers
    crowded = (unplaced["activations"] + unplaced["kv-cache"] + unplaced.get("staging", 0.0)) > 1e-6 * np.maximum(
        o, 1.0
    )
    rest = unplaced["weights"] + unplaced["experts"] + unplaced["embedding"]
    short = rest > 1e-6 * max(w, 1.0)  # every tier together is too small
    fits = ~crowded & ~short
    spill = np.maximum(0.0, np.asarray(w + o) - cap0)
    kv_room = sum(c for _, c, _ in tiers[:kv_tiers])
    total = sum(c for _, c, _ in tiers)
    kv_where = name0 if kv_tiers == 1 else f"{name0} and {', '.join(n for n, _, _ in tiers[1:kv_tiers])}"
    templates = (
        (crowded, o, f"KV cache and activations need {{:.1f}} GB but {kv_where} hold {kv_room / 1e9:.1f} GB usable"),
        (
            short & ~crowded,
            w + o,
            f"needs {{:.1f}} GB per device but its tiers hold {total / 1e9:.1f} GB in all "
            f"({', '.join(n for n, _, _ in tiers)})",
        ),
        (fits & (spill > 0), spill, f"{{:.1f}} GB spill past {name0}"),
    )
    if o.ndim == 0:  # one scenario: the first case that holds
        reason: Any = next((t.format(float(v) / 1e9) for mask, v, t in templates if mask), "fits")
    else:  # each scenario's own figures, in the words of its case
        reason = messages(o.shape, [(mask, value / 1e9, template) for mask, value, template in templates])
    uses = tuple(
        MemoryTierUse(t.name, t.capacity_bytes, t.bandwidth_bytes_per_s, layout.tier_bytes(i))
        for i, t in enumerate(layout.tiers)
    )
    one = o.ndim == 0
    return Placement(
        bool(fits) if one else fits,
        reason,
        float(spill) if one else spill,
        _shared(layout.bandwidth("weights")),
        uses,
        _shared(layout.bandwidth("experts" if policy == "optimal" else "weights")),
        None
        if np.all(layout.bytes_[layout.classes.index("kv-cache"), 1:] == 0)
        else _shared(layout.bandwidth("kv-cache")),
        layout,
    )


def _shared(x: Any) -> Any:
    """One number when every scenario shares it (most sweeps spill nowhere)."""
    a = np.asarray(x)
    if a.ndim and a.size and np.all(a == a.flat[0]):
        return float(a.flat[0])
    return x
