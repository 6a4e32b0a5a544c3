"""Disaggregated serving pools, one hardware type and TP at a time: what a prefill replica and a
decode replica each sustain within the SLO, and what the KV cache costs to cross between them.
Shared by the homogeneous disaggregated planner (solvers.inference_plan) and the cross-hardware
one (solvers.disaggregated_mix).

Prefill replica: an M/D/1 server (planner.queueing) whose TTFT is the KV transfer + its service
time (the prompt's prefill) + the queueing wait; its largest rate is the one that keeps TTFT
within target. Decode replica: undisturbed by prefills, it holds the most requests whose step
stays within the TPOT target; rate by Little's law, c / ((output - 1) x step).

The KV cache crosses the data-centre network between the pools' nodes (Mooncake, DistServe,
Dynamo's NIXL): the prompt's KV bytes at the prefill pool's KV precision, over min(tp_p, tp_d)
rank pairs in parallel, each at the slower side's NIC bandwidth. When the two sides store the KV
differently (another KV precision, another TP split of the heads, another vendor's paged layout)
the decode side rewrites it once it lands: one read and one write at its memory bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware_db.errors import PlannerError
from planner.catalog import Catalog
from planner.cluster import resolve_cluster
from planner.collectives import achieved_bandwidth
from planner.inference import estimate_inference
from planner.memory import kv_bytes_per_sequence
from planner.ops import Precisions, Sharding
from planner.queueing import md1_max_rate

CONCURRENCY_GRID = np.unique(np.round(np.geomspace(1, 4096, 40)).astype(int))


@dataclass(frozen=True)
class PoolSide:
    """One hardware type and TP on one side of a disaggregated deployment."""

    hardware: str
    vendor: str
    tp: int
    ep: int
    kv_precision: str
    price_per_device_usd: float | None
    nic_bytes_per_s: float  # per device, over the scale-out network (achieved)
    nic_latency_s: float
    memory_bytes_per_s: float  # achieved HBM bandwidth, for rewriting a KV cache that arrived
    # prefill: service time of one prompt, and its KV bytes; decode: rate, concurrency and step
    service_s: float = 0.0
    kv_bytes: float = 0.0
    same_hardware_transfer_s: float = 0.0  # the engine's KV transfer to a decode pool of this type (its link)
    rate_per_s: float = 0.0
    concurrency: int = 0
    tpot_s: float = 0.0

    @property
    def usd_per_hour(self) -> float | None:
        return None if self.price_per_device_usd is None else self.price_per_device_usd * self.tp


def _network(hw: str, cat: Catalog) -> tuple[str, float, float, float]:
    """Vendor, scale-out NIC bandwidth and latency per device, and achieved memory bandwidth."""
    one = resolve_cluster(hw, None, cat)
    wide = resolve_cluster(hw, 2 * max(one.domain_size, 1), cat)
    memory = one.perf.memory_bandwidth_bytes_per_s
    if wide.scale_out is None:  # no network in the catalogue: its KV cache cannot leave the node
        return one.device.vendor, 0.0, 0.0, memory
    tier = wide.scale_out
    return one.device.vendor, achieved_bandwidth(tier), tier.link.latency_s, memory


def ep_for(spec: Any, tp: int) -> int:
    """Experts spread over the replica's ranks when they divide evenly (vLLM's expert parallel)."""
    if spec.moe is None:
        return 1
    return tp if spec.moe.experts % tp == 0 else 1


def pool_sides(
    spec: Any,
    hw: str,
    tps: list[int],
    weight_precision: str,
    kv_precision: str | None,
    input_len: float,
    output_len: float,
    tpot_s: float,
    cat: Catalog,
    price: float | None,
    drafter: dict[str, Any] | None = None,
) -> tuple[list[PoolSide], list[PoolSide], list[str]]:
    """Prefill and decode options of one hardware type over its TP choices, and why others fail."""
    vendor, nic, latency, memory = _network(hw, cat)
    kv = kv_precision or "bf16"
    prefill: list[PoolSide] = []
    decode: list[PoolSide] = []
    reasons: list[str] = []
    for tp in tps:
        try:
            r = estimate_inference(
                spec,
                hw,
                2 * tp,
                tp=tp,
                ep=ep_for(spec, tp),
                weight_precision=weight_precision,
                kv_precision=kv_precision,
                catalog=cat,
                concurrency=np.asarray(CONCURRENCY_GRID),
                input_len=input_len,
                output_len=output_len,
                disaggregated=True,
                prefill_devices=tp,
                prefill_tp=tp,
                **(drafter or {}),
            )
        except PlannerError as e:
            reasons.append(f"{hw} tp={tp}: {e}")
            continue
        side = PoolSide(hw, vendor, tp, ep_for(spec, tp), kv, price, nic, latency, memory)
        kv_bytes = float(kv_bytes_per_sequence(spec, Sharding(), Precisions(weight_precision, "bf16", kv), input_len))
        transfer = float(np.ravel(r.kv_transfer_s)[0])
        prefill.append(
            _with(side, service_s=float(np.ravel(r.prefill_s)[0]), kv_bytes=kv_bytes, same_hardware_transfer_s=transfer)
        )
        step = np.broadcast_to(np.asarray(r.decode_step_s), CONCURRENCY_GRID.shape)
        ok = (step <= tpot_s) & (r.max_concurrency >= CONCURRENCY_GRID)
        if ok.any():
            c = int(CONCURRENCY_GRID[ok].max())
            tpot = float(step[c == CONCURRENCY_GRID][0])
            rate = c / ((output_len - 1) * tpot + 1e-12)
            decode.append(_with(side, rate_per_s=rate, concurrency=c, tpot_s=tpot))
        else:
            reasons.append(f"{hw} tp={tp}: decode step {float(step[0]) * 1e3:.1f} ms > TPOT {tpot_s * 1e3:.1f} ms")
    return prefill, decode, reasons


def _with(side: PoolSide, **fields: Any) -> PoolSide:
    return PoolSide(**{**side.__dict__, **fields})


def kv_transfer_s(p: PoolSide, d: PoolSide) -> float:
    """Seconds from the prompt's last prefill layer to its KV cache usable on the decode side. Two
    pools of one type: the engine's figure (planner.inference, over the link that joins them).
    Two types: their nodes differ, so the scale-out network, plus the rewrite when layouts differ."""
    if p.hardware == d.hardware:
        return p.same_hardware_transfer_s
    if min(p.nic_bytes_per_s, d.nic_bytes_per_s) <= 0:
        return float("inf")
    streams = min(p.tp, d.tp)
    network = p.kv_bytes / (min(p.nic_bytes_per_s, d.nic_bytes_per_s) * streams) + max(p.nic_latency_s, d.nic_latency_s)
    if p.vendor == d.vendor and p.tp == d.tp and p.kv_precision == d.kv_precision:
        return network
    out_bytes = p.kv_bytes * _kv_ratio(p.kv_precision, d.kv_precision)
    return network + (p.kv_bytes + out_bytes) / (d.memory_bytes_per_s * d.tp)


def _kv_ratio(src: str, dst: str) -> float:
    from workloads.derived import bytes_per_element

    return bytes_per_element(dst) / bytes_per_element(src)


def prefill_rate(p: PoolSide, d: PoolSide, ttft_s: float, percentile: float | None) -> float:
    """The largest rate one prefill replica of `p` sustains within TTFT when its KV goes to `d`."""
    return md1_max_rate(p.service_s, ttft_s, percentile, fixed_s=kv_transfer_s(p, d))
