"""Memory per device, per tier: what a configuration needs against what each tier holds.

Weights, KV cache (paged: whole blocks per sequence), activations (inference workspace, or the
Korthikanti et al. 2022 training formulas for no/selective/full recompute with sequence
parallelism), gradients, optimizer states (mixed-precision Adam, ZeRO 1/2/3), and a framework
reserve. Whatever overflows the device's first tier spills to the next tier of the node (the
device's own DDR/LPDDR, then the host's DRAM share, CXL, SSD); ops that read it pay that tier's
bandwidth. `fits` is False, with the reason, only when every tier together is too small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from planner.arrays import messages
from planner.catalog import Catalog
from planner.cluster import Cluster
from planner.ops import Precisions, Sharding
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


def weight_bytes_per_device(spec: ModelSpec, s: Sharding, p: Precisions) -> float:
    """Weights on one device: dense parts split over TP x PP, routed expert slots (the experts and
    their redundant replicas) over EP x expert TP."""
    counts = parameter_counts(spec)
    m = moe_layer_params(spec)
    experts = slots = 0.0
    if m is not None and spec.moe is not None:
        per_expert = float(m.routed_expert.total * moe_layer_count(spec))
        experts, slots = per_expert * spec.moe.experts, per_expert * (spec.moe.experts + s.redundant_experts)
    dense = counts.total - experts
    # a quantised checkpoint keeps its embeddings and output head in 16 bits (ops.head_precisions)
    head = (counts.embedding + counts.lm_head) * max(2.0 - p.weight_bytes, 0.0) / (s.tp * s.pp)
    return (dense / (s.tp * s.pp) + slots / (s.ep * s.expert_tp * s.pp)) * p.weight_bytes + head


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
    host_bw = _host_link_bandwidth(cluster)
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


def _host_link_bandwidth(cluster: Cluster) -> float:
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
    """How `needed` bytes spread over the tiers, and the bandwidth weight reads then see. Per
    scenario when the other bytes are an array (a sweep): `fits`, `spill_bytes` and the weight
    bandwidth are then arrays too (the bandwidth stays one number when every scenario shares it);
    `reason` then says, per scenario, why it does not fit or how much spills."""

    fits: Any
    reason: Any  # a string, or one per scenario
    spill_bytes: Any  # bytes beyond the first tier
    weight_bandwidth_bytes_per_s: Any  # harmonic mix of the tiers the weights landed in
    tiers: tuple[MemoryTierUse, ...]


def place(weights: float, other: Any, tiers: list[tuple[str, float, float]]) -> Placement:
    """KV cache and activations stay in the first tier (they are read every step at random);
    weights fill what is left and overflow, in order, to the slower tiers. Element by element
    over `other`."""
    o = np.asarray(other, dtype=np.float64)
    name0, cap0, bw0 = tiers[0]
    remaining = np.full_like(o, weights)
    uses = []
    time_per_byte = np.zeros_like(o)
    for i, (name, cap, tier_bw) in enumerate(tiers):
        room = cap - o if i == 0 else np.full_like(o, cap)
        take = np.minimum(np.maximum(room, 0.0), remaining)
        uses.append(MemoryTierUse(name, cap, tier_bw, take + (o if i == 0 else 0.0)))
        time_per_byte = time_per_byte + (take / tier_bw if weights > 0 else 0.0)
        remaining = remaining - take
    crowded = o > cap0  # the KV cache and activations alone overflow the first tier
    short = remaining > 1e-6 * max(weights, 1.0)  # every tier together is too small
    fits = ~crowded & ~short
    spill = np.maximum(0.0, weights + o - cap0)
    bw = np.where(fits & (time_per_byte > 0), weights / np.where(time_per_byte > 0, time_per_byte, 1.0), bw0)
    total = sum(c for _, c, _ in tiers)
    templates = (
        (crowded, o, f"KV cache and activations need {{:.1f}} GB but {name0} holds {cap0 / 1e9:.1f} GB usable"),
        (
            short & ~crowded,
            weights + o,
            f"needs {{:.1f}} GB per device but its tiers hold {total / 1e9:.1f} GB in all "
            f"({', '.join(n for n, _, _ in tiers)})",
        ),
        (fits & (spill > 0), spill, f"{{:.1f}} GB of weights spill past {name0}"),
    )
    if o.ndim == 0:  # one scenario: the first case that holds
        reason: Any = next((t.format(float(v) / 1e9) for mask, v, t in templates if mask), "fits")
    else:  # each scenario's own figures, in the words of its case
        reason = messages(o.shape, [(mask, value / 1e9, template) for mask, value, template in templates])
    one = o.ndim == 0
    shared_bw = bw.size and np.all(bw == bw.flat[0])
    return Placement(
        bool(fits) if one else fits,
        reason,
        float(spill) if one else spill,
        float(bw.flat[0]) if shared_bw else bw,
        tuple(uses),
    )
