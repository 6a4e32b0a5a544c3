"""Offloaded training (ZeRO-Offload / ZeRO-Infinity) over host DRAM, CXL memory and NVMe.

What lives where (Ren et al., "ZeRO-Offload", USENIX ATC 2021, arXiv 2101.06840, §4.1 single-GPU
schedule): the 16-bit parameters stay on the GPU; fp32 master weights, Adam's momentum and variance
and fp32 gradients live on the host and the CPU runs the Adam step. Per step, 16-bit gradients
cross PCIe to the host during the backward (bucketed, so only the last bucket waits) and the
updated 16-bit parameters cross back after the CPU step; with the one-step delayed parameter
update (DPU, same paper) the CPU step and the upload run under the next step's forward and backward.
ZeRO-Infinity (Rajbhandari et al., SC21, arXiv 2104.07857) adds NVMe: its overlap-centric design
streams the state from the drives while the CPU computes, and bandwidth-centric partitioning lets
every GPU of a node pull its own shard, so each rank sees drives x drive bandwidth / GPUs per node.

CXL (Liaw and Chen, arXiv 2507.03305, "Analysis and Optimized CXL-Attached Memory Allocation for
Long-Context LLM Fine-Tuning"): placing the optimizer's data on higher-latency CXL memory slows the
CPU step ("~4x once data exceeds ~20M elements"); their CXL-aware allocator "pins latency-critical
tensors in local DRAM while ... striping latency-tolerant tensors across one or more CXL devices".
In their code (github.com/DandinPower/Long-Context-LLM-Finetuning-Study, utils/numa_allocation_patch.py)
the fp32 master weights, fp32 gradients, momentum and variance go to the DRAM node and the 16-bit
compute weights and gradients (the DMA buffers the GPU reads and writes) to the CXL node.

CPU memory model: a streaming optimizer loop keeps as many cache lines in flight as the cores' fill
buffers allow. That concurrency is taken as what saturates local DRAM (Little's law: DRAM
bandwidth x DRAM latency), so a tier of latency L serves the CPU at
min(its link bandwidth, DRAM bandwidth x DRAM latency / L); bytes in different tiers share the
same in-flight slots, so their times add. DMA (GPU <-> host) is not latency-bound: it runs at the
smaller of the GPU's host link and the bandwidth of the tiers its buffer is spread over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware_db.errors import InvalidSpecError, UnknownIdError
from planner.catalog import Catalog
from planner.cluster import Cluster
from planner.memory import host_link_bandwidth

TENSORS = ("optimizer", "master", "gradients")
TIERS = ("gpu", "cpu", "cxl", "nvme")
POLICIES = ("dram-only", "interleave", "cxl-aware")
HOST_TIERS = ("dram", "cxl", "nvme")  # names in host_bytes_per_tier
DEFAULT_CXL_DEVICE = "cxl-expander-ddr5"
# Host-resident bytes per parameter: Adam momentum + variance (fp32), fp32 master, fp32 gradients,
# and the 16-bit DMA buffers (gradients down, parameters up): ZeRO-Offload §3-4 (2 + 2 bytes of
# 16-bit copies, 16 bytes of fp32 state).
STORE_BYTES = {"optimizer": 8.0, "master": 4.0, "gradients": 4.0, "dma": 4.0}
# Like the data-parallel reduction in planner.training: the last gradient bucket always waits
LAST_BUCKET_FRACTION = 0.05


@dataclass(frozen=True)
class Offload:
    """Where each tensor lives: "gpu" (not offloaded), "cpu" (host DRAM), "cxl" or "nvme".
    `policy_applies`: the spec was the single word "cxl", so offload_policy places the tensors."""

    optimizer: str = "gpu"
    master: str = "gpu"
    gradients: str = "gpu"
    policy_applies: bool = False

    @property
    def active(self) -> bool:
        return self.optimizer != "gpu"


def parse_offload(spec: Any) -> Offload | None:
    """None/"none", "cpu", "cxl", "nvme", or a map {tensor: tier} (tensors optimizer, master,
    gradients; tiers gpu, cpu, cxl, nvme). The three move together: the CPU runs Adam on the
    master weights in place and needs the gradients beside them (ZeRO-Offload)."""
    if isinstance(spec, Offload):
        return spec if spec.active else None
    if spec is None or spec == "none":
        return None
    if isinstance(spec, str):
        if spec not in TIERS[1:]:
            raise InvalidSpecError(f"unknown offload '{spec}' (allowed: none, cpu, cxl, nvme, or a per-tensor map)")
        return Offload(spec, spec, spec, policy_applies=spec == "cxl")
    if not isinstance(spec, dict):
        raise InvalidSpecError(f"offload must be none, cpu, cxl, nvme or a map (got {spec!r})")
    bad = [k for k in spec if k not in TENSORS]
    if bad:
        raise InvalidSpecError(f"unknown offload tensor '{bad[0]}' (allowed: {', '.join(TENSORS)})")
    tiers = {k: str(spec.get(k, "gpu")) for k in TENSORS}
    wrong = [v for v in tiers.values() if v not in TIERS]
    if wrong:
        raise InvalidSpecError(f"unknown offload tier '{wrong[0]}' (allowed: {', '.join(TIERS)})")
    on_gpu = [k for k, v in tiers.items() if v == "gpu"]
    if on_gpu and len(on_gpu) < len(TENSORS):
        raise InvalidSpecError(
            f"offload moves optimizer, master and gradients together (the CPU runs Adam on them); "
            f"{', '.join(on_gpu)} left on the gpu"
        )
    return Offload(tiers["optimizer"], tiers["master"], tiers["gradients"]) if not on_gpu else None


@dataclass(frozen=True)
class HostMemory:
    """One rank's share of its node's host memory: the node's figures divided by the GPUs that
    share the host (capacities, bandwidths), latencies as they are."""

    dram_bytes: float
    dram_bw_bytes_per_s: float
    dram_latency_s: float
    cxl_cards: int  # on the node
    cxl_bytes: float
    cxl_bw_bytes_per_s: float  # the cards' links together
    cxl_latency_s: float
    nvme_bytes: float
    nvme_bw_bytes_per_s: float
    gpu_link_bw_bytes_per_s: float  # the GPU's host link, per direction
    ranks_per_node: int

    def cpu_bw(self, tier: str) -> float:
        """Bandwidth the CPU optimizer loop sees from a tier (module docstring: Little's law)."""
        if tier == "dram":
            return self.dram_bw_bytes_per_s
        if tier == "cxl":
            in_flight_bytes = self.dram_bw_bytes_per_s * self.dram_latency_s
            return min(self.cxl_bw_bytes_per_s, in_flight_bytes / self.cxl_latency_s)
        return self.nvme_bw_bytes_per_s

    def dma_bw(self, tier: str) -> float:
        """Bandwidth a GPU copy engine sees to or from a tier (bounded by the GPU's host link)."""
        own = {"dram": self.dram_bw_bytes_per_s, "cxl": self.cxl_bw_bytes_per_s, "nvme": self.nvme_bw_bytes_per_s}
        return min(self.gpu_link_bw_bytes_per_s, own[tier])

    def capacity(self, tier: str) -> float:
        return {"dram": self.dram_bytes, "cxl": self.cxl_bytes, "nvme": self.nvme_bytes}[tier]


def host_memory(
    cluster: Cluster,
    catalog: Catalog,
    cxl_cards: int | None = None,
    cxl_device: str | None = None,
    host_dram_bytes: float | None = None,
) -> HostMemory:
    """The host memory one rank sees: the system's host CPUs (DDR/LPDDR bandwidth and latency x
    sockets, installed DRAM), its attached CXL expanders (or `cxl_cards` of `cxl_device`) and NVMe
    drives, shared by the GPUs of the node."""
    system = cluster.system
    if system is None or system.host is None:
        raise InvalidSpecError(
            f"offload needs the host of a node: '{cluster.device.id}' has no system with a host CPU in the catalogue"
        )
    cpu = catalog.device(system.host.cpu)
    ddr = next((t for t in cpu.memory if t.tier in ("ddr", "lpddr")), cpu.main_memory)
    ranks = max(1, min(system.devices, cluster.devices))
    sockets = max(1, system.host.cpus)
    cxl_id, cards = _cxl_cards(system.attached, catalog, cxl_cards, cxl_device)
    cxl = catalog.device(cxl_id).main_memory
    link = catalog.device(cxl_id).host_link
    link_bw = link.bandwidth_per_direction_bytes_per_s if link is not None else None
    card_bw = min(cxl.bandwidth_bytes_per_s, link_bw or np.inf)
    nvme_bytes = nvme_bw = 0.0
    for att in system.attached:
        d = catalog.devices.get(att.device)
        if d is not None and d.kind == "ssd":
            nvme_bytes += d.main_memory.capacity_bytes * att.count
            nvme_bw += d.main_memory.bandwidth_bytes_per_s * att.count
    return HostMemory(
        dram_bytes=(host_dram_bytes if host_dram_bytes is not None else system.host.dram_bytes) / ranks,
        dram_bw_bytes_per_s=ddr.bandwidth_bytes_per_s * sockets / ranks,
        dram_latency_s=_figure(ddr.latency_s, f"{cpu.id} memory latency"),
        cxl_cards=cards,
        cxl_bytes=cxl.capacity_bytes * cards / ranks,
        cxl_bw_bytes_per_s=card_bw * cards / ranks,
        cxl_latency_s=_figure(cxl.latency_s, f"{cxl_id} latency"),
        nvme_bytes=nvme_bytes / ranks,
        nvme_bw_bytes_per_s=nvme_bw / ranks,
        gpu_link_bw_bytes_per_s=_figure(host_link_bandwidth(cluster), f"{cluster.device.id} host link"),
        ranks_per_node=ranks,
    )


def _figure(value: float | None, what: str) -> float:
    """A catalogue figure the offload model needs (a user's catalogue may leave it out)."""
    if not value:
        raise InvalidSpecError(f"offload needs the {what}, which the catalogue does not give")
    return float(value)


def _cxl_cards(attached: Any, catalog: Catalog, cards: int | None, device: str | None) -> tuple[str, int]:
    """The CXL expander ID and how many the node has: given, or the system's attached ones."""
    found = [
        (a.device, a.count)
        for a in attached
        if a.device in catalog.devices and catalog.devices[a.device].kind == "cxl-memory"
    ]
    dev = device or (found[0][0] if found else DEFAULT_CXL_DEVICE)
    if dev not in catalog.devices or catalog.devices[dev].kind != "cxl-memory":
        raise UnknownIdError(
            f"'{dev}' is not a CXL memory device in the catalogue (`planner hardware list --kind cxl-memory`)"
        )
    n = cards if cards is not None else sum(c for d, c in found if d == dev)
    if n < 0:
        raise InvalidSpecError(f"cxl_cards must be >= 0 (got {n})")
    return dev, int(n)


def placement(off: Offload, policy: str, host: HostMemory, params: Any) -> dict[str, dict[str, Any]]:
    """Fraction of each host tensor (optimizer, master, gradients and the 16-bit "dma" buffers) in
    each host tier. A per-tensor map or "cpu"/"nvme" places tensors as named (DMA buffers pinned in
    DRAM); "cxl" follows `policy`: dram-only ignores the cards, interleave spreads every page evenly
    over DRAM and the cards (numactl --interleave), cxl-aware fills DRAM with the tensors the CPU
    optimizer touches, stripes the DMA buffers over the cards, and spills either way when full."""
    if policy not in POLICIES:
        raise InvalidSpecError(f"unknown offload policy '{policy}' (allowed: {', '.join(POLICIES)})")
    named = {"cpu": "dram", "cxl": "cxl", "nvme": "nvme"}
    wants_cxl = "cxl" in (off.optimizer, off.master, off.gradients) and not (
        off.policy_applies and policy == "dram-only"
    )
    if wants_cxl and host.cxl_cards == 0:
        raise InvalidSpecError("offload to cxl needs CXL memory: the node has none attached (pass cxl_cards)")
    if not off.policy_applies:
        where = {t: named[getattr(off, t)] for t in TENSORS} | {"dma": "dram"}
        return {t: {tier: 1.0} for t, tier in where.items()}
    if policy == "dram-only":
        return {t: {"dram": 1.0} for t in STORE_BYTES}
    if policy == "interleave":
        share = 1.0 / (host.cxl_cards + 1)
        return {t: {"dram": share, "cxl": 1.0 - share} for t in STORE_BYTES}
    critical = sum(STORE_BYTES[t] for t in TENSORS) * np.asarray(params, dtype=np.float64)
    in_dram = np.clip(host.dram_bytes / critical, 0.0, 1.0)
    dma = STORE_BYTES["dma"] * np.asarray(params, dtype=np.float64)
    cxl_left = np.maximum(host.cxl_bytes - (1.0 - in_dram) * critical, 0.0)
    on_cxl = np.clip(cxl_left / dma, 0.0, 1.0)
    return {t: {"dram": in_dram, "cxl": 1.0 - in_dram} for t in TENSORS} | {
        "dma": {"cxl": on_cxl, "dram": 1.0 - on_cxl}
    }


def host_bytes_per_tier(where: dict[str, dict[str, Any]], params: Any) -> dict[str, Any]:
    """Bytes one rank keeps in each host tier (tiers it does not use are left out)."""
    return {tier: sum(held.values()) for tier, held in host_layout(where, params).items()}


def host_layout(where: dict[str, dict[str, Any]], params: Any) -> dict[str, dict[str, Any]]:
    """{host tier: {tensor: bytes}} one rank keeps there, tiers in HOST_TIERS order."""
    out: dict[str, dict[str, Any]] = {}
    for t, tiers in where.items():
        for tier, frac in tiers.items():
            held = out.setdefault(tier, {})
            held[t] = held.get(t, 0.0) + STORE_BYTES[t] * np.asarray(params, dtype=np.float64) * frac
    return {k: out[k] for k in HOST_TIERS if k in out}


def check_capacity(per_tier: dict[str, Any], host: HostMemory) -> tuple[Any, Any]:
    """Whether every host tier holds what is placed in it, and per scenario the first tier that
    does not ("fits" otherwise)."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in per_tier.values()))
    fits = np.ones(shape, dtype=bool)
    reason = np.full(shape, "fits", dtype=object)
    for tier in reversed(HOST_TIERS):
        if tier not in per_tier:
            continue
        need = np.broadcast_to(np.asarray(per_tier[tier], dtype=np.float64), shape)
        over = need > host.capacity(tier) * (1 + 1e-9)
        fits &= ~over
        if over.any():
            reason[over] = [
                f"offload needs {x / 1e9:.1f} GB of host {tier} per GPU but it holds "
                f"{host.capacity(tier) / 1e9:.1f} GB "
                f"({host.ranks_per_node} GPUs share the node): add CXL/NVMe, offload less or shard more (zero)"
                for x in need[over]
            ]
    return (fits.item(), reason.item()) if not shape else (fits, reason)


def cpu_s(where: dict[str, dict[str, Any]], host: HostMemory, params: Any, traffic: dict[str, Any]) -> Any:
    """CPU time to touch `traffic[tensor]` bytes per parameter of each tensor where it lives: bytes
    in each tier over the bandwidth the CPU sees there. NVMe streams overlap the CPU's memory work
    (ZeRO-Infinity's overlap-centric design), so the slower of the two counts."""
    memory: Any = 0.0
    nvme: Any = 0.0
    for t, tiers in where.items():
        for tier, frac in tiers.items():
            s = traffic.get(t, 0.0) * np.asarray(params, dtype=np.float64) * frac / host.cpu_bw(tier)
            if tier == "nvme":
                nvme = nvme + s
            else:
                memory = memory + s
    return np.maximum(memory, nvme)


def cpu_optimizer_s(where: dict[str, dict[str, Any]], host: HostMemory, params: Any) -> Any:
    """The CPU Adam step of one rank: momentum + variance read and written (16 B per parameter),
    the fp32 master read and written (8 B), the fp32 gradients read (4 B) and the new 16-bit
    parameters written into the upload buffer (2 B): 30 B, planner.training's GPU figure."""
    return cpu_s(where, host, params, {"optimizer": 16.0, "master": 8.0, "gradients": 4.0, "dma": 2.0})


def gradient_copy_s(where: dict[str, dict[str, Any]], host: HostMemory, params: Any, micro_batches: Any) -> Any:
    """One micro-batch's gradients to the host: the 16-bit copy (DMA) and the CPU adding it into the
    fp32 gradients (reads the 2 B copy; writes 4 B on the first micro-batch, reads and writes 8 B
    on later ones) run bucket by bucket, so the slower of the two paces them."""
    m = np.asarray(micro_batches, dtype=np.float64)
    copy = dma_s(2.0 * np.asarray(params, dtype=np.float64), where["dma"], host)
    fold = cpu_s(where, host, params, {"dma": 2.0, "gradients": 8.0 - 4.0 / m})
    return np.maximum(copy, fold)


def dma_s(nbytes: Any, tiers: dict[str, Any], host: HostMemory) -> Any:
    """A GPU copy of a buffer spread over host tiers: the GPU link, or the slowest tier's part."""
    t = np.asarray(nbytes, dtype=np.float64) / host.gpu_link_bw_bytes_per_s
    for tier, frac in tiers.items():
        t = np.maximum(t, np.asarray(nbytes, dtype=np.float64) * frac / host.dma_bw(tier))
    return t


@dataclass(frozen=True)
class OffloadStep:
    cpu_optimizer_s: Any  # the CPU Adam step
    gradients_exposed_s: Any  # 16-bit gradient copies to the host that the backward does not hide
    parameters_up_s: Any  # the 16-bit parameters back to the GPU after the step
    offload_s: Any  # what the offload adds to the step (exposed)
    host_bytes_per_tier: dict[str, Any]
    fits: Any
    reason: Any
    layout: dict[str, dict[str, Any]]  # {host tier: {tensor: bytes}}


def offload_step(
    off: Offload,
    policy: str,
    host: HostMemory,
    params: Any,
    micro_batches: Any,
    forward_s: Any,
    backward_s: Any,
    dpu: bool = False,
) -> OffloadStep:
    """One rank's offload timeline for a step over `params` parameters (its ZeRO shard). Each
    micro-batch's gradients go down (and are added up on the CPU) under its backward, the last
    bucket waiting, and under the next micro-batch; the CPU step and the upload follow the last
    backward, or, with DPU, overlap the next step's forward and backward."""
    where = placement(off, policy, host, params)
    per_tier = host_bytes_per_tier(where, params)
    fits, reason = check_capacity(per_tier, host)
    m = np.asarray(micro_batches, dtype=np.float64)
    down = gradient_copy_s(where, host, params, m)
    exposed = np.maximum(down - backward_s, LAST_BUCKET_FRACTION * down) + (m - 1) * np.maximum(
        down - forward_s - backward_s, 0.0
    )
    cpu = cpu_optimizer_s(where, host, params)
    up = dma_s(2.0 * np.asarray(params, dtype=np.float64), where["dma"], host)
    tail = np.maximum(cpu + up - m * (forward_s + backward_s), 0.0) if dpu else cpu + up
    return OffloadStep(cpu, exposed, up, exposed + tail, per_tier, fits, reason, host_layout(where, params))


def compare_policies(
    models: tuple[str, ...] = ("llama2-7b", "llama2-13b"),
    seq_lens: tuple[int, ...] = (4096, 8192, 16384, 32768),
    hardware: str = "dgx-h100",
    cxl_cards: tuple[int, ...] = (1, 2),
    **training: Any,
) -> list[dict[str, Any]]:
    """DRAM-only vs naive interleaving vs CXL-aware placement of an offloaded fine-tuning step on
    one GPU (Liaw and Chen's comparison, arXiv 2507.03305): one row per model, sequence length,
    card count and policy with the step time, tokens/s, the share of DRAM-only throughput, the
    CPU Adam time and the host bytes per tier. `training` goes to estimate_training."""
    from planner.training import estimate_training  # planner.training imports this module

    options: dict[str, Any] = {"micro_batch": 1, "global_batch": 8, "recompute": "full", "zero": 1} | training
    rows: list[dict[str, Any]] = []
    for model in models:
        for seq in seq_lens:
            for cards in cxl_cards:
                runs = {
                    policy: estimate_training(
                        model,
                        hardware,
                        1,
                        seq_len=seq,
                        offload="cxl",
                        offload_policy=policy,
                        cxl_cards=cards,
                        **options,
                    )
                    for policy in POLICIES
                }
                base = runs["dram-only"].tokens_per_s
                rows += [_row(model, seq, cards, policy, r, base) for policy, r in runs.items()]
    return rows


def _row(model: str, seq: int, cards: int, policy: str, r: Any, base: float) -> dict[str, Any]:
    return {
        "model": model,
        "seq_len": seq,
        "cxl_cards": cards,
        "policy": policy,
        "step_time_s": r.step_time_s,
        "tokens_per_s": r.tokens_per_s,
        "of_dram_only": r.tokens_per_s / base,
        "cpu_optimizer_s": r.cpu_optimizer_s,
        "offload_s": r.offload_s,
        "fits": r.fits,
        **{f"host_{k}_bytes": v for k, v in r.host_bytes_per_tier.items()},
    }
