"""What each stage of an agent workflow costs on each hardware class: latency per request, busy
device-seconds per request (the capacity it takes), and the transfer time of each edge between two
classes. Every figure comes from the engine; nothing here is fitted.

- LLM calls: `planner.estimate_inference` at static batch 1 (or a stated concurrency) on the fewest
  devices that hold the model (TP 1, 2, 4, 8 inside the class's scale-up domain). Latency is
  TTFT + (out - 1) x TPOT; throughput per instance comes from the same estimate.
- Encoders from the catalogue (an embedding or reranker with a catalogued decoder's architecture,
  e.g. Qwen3-Embedding-8B is Qwen3-8B's): the prefill of `items` sequences, output length 1.
- Encoders and speech models given as FLOPs and bytes: one roofline op (`planner.evaluate.op_time`,
  the family's achievable GEMM and memory fractions) over the whole call.
- CPU work (vector DB, tools): core-seconds on a CPU socket, or on the host cores that come with an
  accelerator in its standard node (DGX H100: 2 x 56 Xeon cores for 8 GPUs = 14 per GPU), a separate
  resource that the accelerator's own work does not use.
- Edges: free on one device; host <-> device over the host link; between classes over the
  data-centre network at the slower end's achieved bandwidth (`planner.collectives.achieved_bandwidth`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hardware_db.errors import InvalidSpecError, PlannerError
from hardware_db.schema import Device
from planner.catalog import Catalog, resolve_model
from planner.cluster import Cluster, Tier, resolve_cluster, standard_system
from planner.collectives import achieved_bandwidth
from planner.evaluate import op_time
from planner.inference import estimate_inference
from planner.ops import Op
from workloads.agent import CpuStage, EncoderStage, LlmStage, SpeechStage

TP_CHOICES = (1, 2, 4, 8)
# A server without a scale-out fabric in the catalogue (CPU sockets, PCIe cards) reaches the others
# over plain 100 GbE (the catalogue's `ethernet-100g`: AWS g6.48xlarge-class NICs).
DEFAULT_NETWORK_LINK = "ethernet-100g"


@dataclass(frozen=True)
class HardwareClass:
    """A candidate device type with its price and the links its stages' data crosses."""

    id: str
    kind: str
    usd_per_hour: float
    price_source: str
    cores: int  # CPU: cores per socket; accelerator: host cores per device in its standard node (0: unknown)
    network_bytes_per_s: float
    network_latency_s: float
    network_link: str
    host_bytes_per_s: float  # host <-> device, achieved (0 for a CPU: its work is on the host)
    host_latency_s: float

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"


@dataclass(frozen=True)
class StageCost:
    """One stage on one class, per request (all `repeats` calls)."""

    latency_s: float
    device_s: float  # busy device-seconds (TP devices x time, or a CPU's share of its cores)
    host_s: float  # busy host-core share of an accelerator (CPU work on its host), device-seconds
    on_host: bool  # runs on the accelerator's host CPU, not on the accelerator
    devices: int  # devices per instance (TP)
    bound: str


def hardware_class(cat: Catalog, device_id: str, prices: dict[str, float]) -> HardwareClass | str:
    """The class, or why it cannot be a candidate (no compute, no efficiency figures, no price)."""
    d = cat.device(device_id)
    if d.compute is None:
        return f"a {d.kind}, not a compute device"
    if d.family not in cat.efficiency:
        return f"no achievable-efficiency figures for its family '{d.family}' in the catalogue"
    price, source = _price(d, prices)
    if price is None:
        return "no $/h: the catalogue has no cloud price for it; give one (workflow `prices:` or --price ID=USD)"
    net = _network(cat, d)
    host_bw, host_lat = _host_link(cat, d)
    return HardwareClass(d.id, d.kind, price, source, _cores(cat, d), net[0], net[1], net[2], host_bw, host_lat)


def _price(d: Device, prices: dict[str, float]) -> tuple[float | None, str]:
    if d.id in prices:
        return prices[d.id], "given"
    cloud = sorted(d.prices.cloud, key=lambda c: c.usd_per_hour)
    if not cloud:
        return None, ""
    c = cloud[0]
    return c.usd_per_hour, f"{c.provider} {c.offer} ({c.seen})"


def _cpu_cores(cat: Catalog, cpu: Device) -> int:
    if cpu.compute is not None and cpu.compute.compute_units:
        return cpu.compute.compute_units
    eff = cat.efficiency.get(cpu.family)
    return eff.default_compute_units if eff is not None else 0


def _cores(cat: Catalog, d: Device) -> int:
    """A CPU's own cores, or the host cores per accelerator of its standard node (0: not known)."""
    if d.kind == "cpu":
        return _cpu_cores(cat, d)
    system = standard_system(cat, d)
    if system is None or system.host is None or system.host.cpus == 0:
        return 0
    per_socket = _cpu_cores(cat, cat.device(system.host.cpu))
    return per_socket * system.host.cpus // system.devices


def _network(cat: Catalog, d: Device) -> tuple[float, float, str]:
    """Achieved data-centre bandwidth per device, its latency and link: the standard node's NICs
    shared by its devices, else the device's own scale-out, else 100 GbE."""
    system = standard_system(cat, d)
    if system is not None and system.scale_out is not None:
        so = system.scale_out
        bw = so.nics * so.bandwidth_per_nic_per_direction_bytes_per_s / system.devices
        link = cat.link(so.link)
    elif d.scale_out is not None:
        link, bw = cat.link(d.scale_out.link), d.scale_out.bandwidth_per_direction_bytes_per_s
    else:
        link = cat.link(DEFAULT_NETWORK_LINK)
        bw = link.bandwidth_per_direction_bytes_per_s
    return achieved_bandwidth(Tier("scale-out", link, bw, 2)), link.latency_s, link.id


def _host_link(cat: Catalog, d: Device) -> tuple[float, float]:
    """Achieved host <-> device bandwidth and latency (PCIe generation or NVLink-C2C)."""
    h = d.host_link
    if d.kind == "cpu" or h is None:
        return 0.0, 0.0
    link_id = f"pcie{h.generation}" if h.kind == "pcie" else "nvlink-c2c" if h.kind == "nvlink-c2c" else None
    link = cat.links.get(link_id) if link_id else None
    if link is None:
        link = cat.link("pcie4")
    bw = h.bandwidth_per_direction_bytes_per_s or link.bandwidth_per_direction_bytes_per_s * (h.lanes or 16) / 16
    return achieved_bandwidth(Tier("host", link, bw, 2)), link.latency_s


class StageCoster:
    """Costs stages on classes, memoising the engine calls an evaluation repeats (same LLM call
    shape on the same class, one cluster per class)."""

    def __init__(self, cat: Catalog, percentile: str, llm_concurrency: int):
        self.cat = cat
        self.p90 = percentile == "p90"
        self.llm_concurrency = llm_concurrency
        self._clusters: dict[str, Cluster] = {}
        self._llm: dict[tuple[Any, ...], list[StageCost] | str] = {}

    def cost(self, stage: Any, cls: HardwareClass) -> list[StageCost] | str:
        """The stage's options on `cls` (TP sizes that fit, none dominated in both latency and busy
        time), or why it cannot run there (one phrase)."""
        if isinstance(stage, LlmStage):
            c = self._llm_costs(stage, cls)
        elif isinstance(stage, EncoderStage) and stage.model is not None:
            c = self._encoder_model(stage, cls)
        elif isinstance(stage, EncoderStage):
            assert stage.flops_per_item is not None
            f, b = stage.items * stage.flops_per_item, stage.weight_bytes + stage.items * stage.bytes_per_item
            c = self._roofline(cls, f, b, stage.weight_bytes, stage.precision)
        elif isinstance(stage, SpeechStage):
            f = stage.flops_per_call + stage.audio_s * stage.flops_per_audio_s
            b = stage.weight_bytes + stage.audio_s * stage.bytes_per_audio_s
            c = self._roofline(cls, f, b, stage.weight_bytes, stage.precision)
        else:
            c = self._cpu(stage, cls)
        if isinstance(c, str):
            return c
        r = stage.repeats
        return [StageCost(x.latency_s * r, x.device_s * r, x.host_s * r, x.on_host, x.devices, x.bound) for x in c]

    def _cluster(self, cls: HardwareClass) -> Cluster:
        if cls.id not in self._clusters:
            self._clusters[cls.id] = resolve_cluster(cls.id, 1, self.cat)
        return self._clusters[cls.id]

    def _llm_costs(self, s: LlmStage, cls: HardwareClass) -> list[StageCost] | str:
        conc = s.concurrency or self.llm_concurrency
        key = (s.model, cls.id, s.input_len, s.output_len, s.weight_precision, s.kv_precision, conc, s.tp)
        if key not in self._llm:
            self._llm[key] = self._over_tp(cls, s.tp, lambda tp: self._llm_call(s, cls, tp, conc))
        return self._llm[key]

    def _over_tp(self, cls: HardwareClass, fixed: int | None, run: Any) -> list[StageCost] | str:
        """Every TP size that fits (one engine call each), Pareto-filtered; else the last reason."""
        found: list[StageCost] = []
        why = "no TP size fits"
        for tp in (fixed,) if fixed else TP_CHOICES:
            try:
                c = run(tp)
            except PlannerError as e:
                c = str(e)
            if isinstance(c, str):
                why = c
            else:
                found.append(c)
        return pareto(found) if found else why

    def _llm_call(self, s: LlmStage, cls: HardwareClass, tp: int, conc: int) -> StageCost | str:
        spec = resolve_model(s.model, self.cat)
        r = estimate_inference(
            spec,
            cls.id,
            tp,
            tp=tp,
            batch=1 if conc == 1 else None,
            concurrency=conc if conc > 1 else None,
            arrival="poisson",  # requests of many users arrive independently, not as one burst
            input_len=s.input_len,
            output_len=s.output_len,
            weight_precision=s.weight_precision,
            kv_precision=s.kv_precision,
            ttft_percentile=0.9 if self.p90 and conc > 1 else None,
            catalog=self.cat,
        )
        if not bool(r.fits):
            return f"{spec.id} does not fit on {tp} x {cls.id} ({r.fit_reason})"
        ttft = r.ttft_percentile_s if self.p90 and conc > 1 else r.ttft_s
        latency = float(ttft + (s.output_len - 1) * r.tpot_s)
        requests_per_s = float(r.throughput_tokens_per_s) / s.output_len  # of one instance
        return StageCost(latency, tp / requests_per_s, 0.0, False, tp, str(r.bound))

    def _encoder_model(self, s: EncoderStage, cls: HardwareClass) -> list[StageCost] | str:
        return self._over_tp(cls, None, lambda tp: self._encoder_call(s, cls, tp))

    def _encoder_call(self, s: EncoderStage, cls: HardwareClass, tp: int) -> StageCost | str:
        spec = resolve_model(str(s.model), self.cat)
        r = estimate_inference(
            spec,
            cls.id,
            tp,
            tp=tp,
            batch=s.items,
            input_len=s.tokens_per_item,
            output_len=1,
            weight_precision=s.precision,
            catalog=self.cat,
        )
        if not bool(r.fits):
            return f"{spec.id} does not fit on {tp} x {cls.id} ({r.fit_reason})"
        t = float(r.ttft_s)
        return StageCost(t, tp * t, 0.0, False, tp, str(r.bound))

    def _roofline(
        self, cls: HardwareClass, flops: float, moved: float, resident: float, precision: str
    ) -> list[StageCost] | str:
        cluster = self._cluster(cls)
        capacity = cluster.device.main_memory.capacity_bytes
        if resident > capacity:
            return f"weights ({resident / 1e9:.3g} GB) exceed its memory ({capacity / 1e9:.3g} GB)"
        try:
            t = op_time(cluster, Op("stage", "gemm", 1, flops=flops, weight_bytes=moved), precision)
        except InvalidSpecError as e:
            return str(e)
        latency = float(t.time_s)
        return [StageCost(latency, latency, 0.0, False, 1, t.bound)]

    def _cpu(self, s: CpuStage, cls: HardwareClass) -> list[StageCost] | str:
        assert s.cpu_s is not None
        if cls.cores <= 0:
            return "no host CPU for it in the catalogue (no standard node with a host)"
        share = s.cpu_s / cls.cores
        if cls.is_cpu:
            return [StageCost(s.cpu_s, share, 0.0, False, 1, "cpu")]
        return [StageCost(s.cpu_s, 0.0, share, True, 1, "host cpu")]


def pareto(options: list[StageCost]) -> list[StageCost]:
    """Drop an option that another beats or equals in both latency and busy time."""

    def beaten(a: StageCost, b: StageCost) -> bool:
        busy_a, busy_b = a.device_s + a.host_s, b.device_s + b.host_s
        return b.latency_s <= a.latency_s and busy_b <= busy_a and (b.latency_s, busy_b) != (a.latency_s, busy_a)

    kept = [a for a in options if not any(beaten(a, b) for b in options)]
    return list({(k.latency_s, k.device_s + k.host_s): k for k in kept}.values())  # one of equal twins


def transfer_s(nbytes: float, a: HardwareClass, b: HardwareClass, a_host: bool, b_host: bool) -> float:
    """Time to move one edge's bytes from a stage on `a` to one on `b`."""
    if nbytes <= 0:
        return 0.0
    if a.id == b.id:
        if a_host == b_host or a.host_bytes_per_s <= 0:
            return 0.0  # one device (or one CPU): the data stays in its memory
        return a.host_latency_s + nbytes / a.host_bytes_per_s
    bw = min(a.network_bytes_per_s, b.network_bytes_per_s)
    return max(a.network_latency_s, b.network_latency_s) + nbytes / bw


def instances_needed(load_device_s: float, load_host_s: float, utilization: float) -> int:
    """Devices of one class that keep both its accelerators and its host cores under the cap."""
    need = max(load_device_s, load_host_s) / utilization
    return max(0, math.ceil(need - 1e-9))
