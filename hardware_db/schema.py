"""Pydantic schema of the hardware catalogue: devices, links, systems.

YAML writes quantities with units (`80 GB`, `3.35 TB/s`, `989 TFLOPS`); the models hold SI floats in
fields whose names carry the unit (`capacity_bytes`). Every group of numbers carries a `source`
(URL or document with page/table) and, where sources disagree, a `note` with the alternatives.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from hardware_db.units import Dimension, parse_quantity

PRECISIONS: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")
Precision = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]
DeviceKind = Literal["gpu", "npu", "tpu", "rdu", "cpu", "cxl-memory", "ssd", "memory-pool"]
TierKind = Literal["sram", "hbm", "gddr", "lpddr", "ddr", "cxl", "ssd", "pool"]
LinkKind = Literal[
    "nvlink",
    "nvswitch",
    "nvlink-c2c",
    "pcie",
    "cxl",
    "infiniband",
    "roce",
    "ethernet",
    "infinity-fabric",
    "ici",
    "hccs",
    "ub",
    "neuronlink",
    "gaudi-roce",
    "rdu-p2p",
]
LinkTopology = Literal["switched", "full-mesh", "torus", "point-to-point"]


def _q(dim: Dimension) -> BeforeValidator:
    return BeforeValidator(lambda v: parse_quantity(v, dim))


Bytes = Annotated[float, _q("bytes"), Field(gt=0)]
BytesPerS = Annotated[float, _q("bytes_per_s"), Field(gt=0)]
FlopsPerS = Annotated[float, _q("flops_per_s"), Field(gt=0)]
Watts = Annotated[float, _q("watts"), Field(gt=0)]
Seconds = Annotated[float, _q("seconds"), Field(ge=0)]
Hertz = Annotated[float, _q("hertz"), Field(gt=0)]
Source = Annotated[str, Field(min_length=8, description="URL or document with page/table")]
Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", min_length=2, max_length=64)]


class Spec(BaseModel):
    """Frozen, strict about unknown fields (a typo in YAML is an error, not silently ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Sourced(Spec):
    source: Source
    note: str | None = None


class Compute(Sourced):
    """Peak **dense** throughput per precision (a sparse figure is never entered here)."""

    peak_dense: dict[Precision, FlopsPerS]
    # Precisions the part runs only through a wider unit (e.g. fp8 weights on Ampere): not entered.
    compute_units: int | None = Field(default=None, ge=1, description="SMs / CUs / cores / PCUs")
    boost_clock_hz: Hertz | None = Field(default=None, alias="boost_clock")

    @field_validator("peak_dense")
    @classmethod
    def _non_empty(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one precision is needed")
        return v


class MemoryTier(Sourced):
    """One memory tier of a device: capacity, bandwidth (aggregate, per direction of reads) and latency."""

    tier: TierKind
    capacity_bytes: Bytes = Field(alias="capacity")
    bandwidth_bytes_per_s: BytesPerS = Field(alias="bandwidth")
    latency_s: Seconds | None = Field(default=None, alias="latency")
    capacity_note: str | None = None  # e.g. "usable 180 GB of 192 GB physical"


class Power(Sourced):
    tdp_w: Watts = Field(alias="tdp")
    idle_w: Watts | None = Field(default=None, alias="idle")


class ScaleUp(Sourced):
    """The scale-up link of a device: per-device bandwidth per direction, and the domain it spans."""

    link: Id  # a link ID in links.yaml
    bandwidth_per_direction_bytes_per_s: BytesPerS = Field(alias="bandwidth_per_direction")
    domain_size: int = Field(ge=1)


class ScaleOut(Sourced):
    """Scale-out network bandwidth available to one device (not per node)."""

    link: Id
    bandwidth_per_direction_bytes_per_s: BytesPerS = Field(alias="bandwidth_per_direction")


class HostLink(Sourced):
    kind: Literal["pcie", "nvlink-c2c", "cxl", "integrated", "other"]
    generation: int | None = Field(default=None, ge=1, le=7)
    lanes: int | None = Field(default=None, ge=1, le=32)
    bandwidth_per_direction_bytes_per_s: BytesPerS | None = Field(default=None, alias="bandwidth_per_direction")

    @model_validator(mode="after")
    def _pcie_needs_lanes(self) -> HostLink:
        if self.kind == "pcie" and (self.generation is None or self.lanes is None):
            raise ValueError("a pcie host link needs generation and lanes")
        return self


class CloudPrice(Spec):
    provider: str
    usd_per_hour: float = Field(gt=0, description="per device-hour, on demand unless `offer` says")
    seen: _dt.date
    offer: str = "on-demand"
    source: Source


class Prices(Spec):
    capex_usd: float | None = Field(default=None, gt=0)
    capex_source: Source | None = None
    capex_note: str | None = None
    cloud: tuple[CloudPrice, ...] = ()

    @model_validator(mode="after")
    def _capex_sourced(self) -> Prices:
        if self.capex_usd is not None and not self.capex_source:
            raise ValueError("capex_usd needs capex_source")
        return self


class Device(Spec):
    id: Id
    name: str
    vendor: str
    kind: DeviceKind
    family: str = Field(description="efficiency family, e.g. hopper, cdna3, tpu, rdu")
    launch_year: int = Field(ge=2010, le=2030)
    compute: Compute | None = None  # memory-only parts (cxl-memory, ssd) have none
    memory: tuple[MemoryTier, ...] = Field(min_length=1)
    power: Power | None = None
    scale_up: ScaleUp | None = None
    scale_out: ScaleOut | None = None
    host_link: HostLink | None = None
    prices: Prices = Prices()
    note: str | None = None

    @model_validator(mode="after")
    def _kind_rules(self) -> Device:
        if self.kind in ("gpu", "npu", "tpu", "rdu", "cpu") and self.compute is None:
            raise ValueError(f"a {self.kind} needs a compute block")
        if self.kind in ("gpu", "npu", "tpu", "rdu") and self.power is None:
            raise ValueError(f"a {self.kind} needs a power block (tdp)")
        return self

    def peak_flops(self, precision: str) -> float | None:
        return None if self.compute is None else self.compute.peak_dense.get(precision)  # type: ignore[call-overload]

    def tier(self, kind: str) -> MemoryTier | None:
        return next((t for t in self.memory if t.tier == kind), None)

    @property
    def main_memory(self) -> MemoryTier:
        """The tier weights live in first: HBM/GDDR for accelerators, DDR for CPUs, else the largest non-SRAM."""
        for kind in ("hbm", "gddr", "lpddr", "ddr", "cxl", "ssd"):
            t = self.tier(kind)
            if t is not None:
                return t
        return self.memory[0]


class SizeRamp(Spec):
    devices: int = Field(ge=2)
    points: list[tuple[Bytes, float]] = Field(
        min_length=2, description="(all-reduce buffer, busbw / busbw at the largest buffer)"
    )
    source: Source

    @model_validator(mode="after")
    def _ordered(self) -> SizeRamp:
        sizes = [b for b, _ in self.points]
        fractions = [f for _, f in self.points]
        if sizes != sorted(sizes) or any(not 0 < f <= 1.0 for f in fractions) or fractions[-1] != 1.0:
            raise ValueError("size_ramp points need increasing sizes and fractions in (0, 1], the last 1.0")
        return self


class Link(Sourced):
    """A link technology. Bandwidth is per device (or port) per direction; latency is the base one-hop alpha."""

    id: Id
    name: str
    kind: LinkKind
    bandwidth_per_direction_bytes_per_s: BytesPerS = Field(alias="bandwidth_per_direction")
    latency_s: Seconds = Field(alias="latency")
    topology: LinkTopology = "switched"
    # In a full mesh a device's bandwidth is split over `peers` links: a pair gets 1/peers of it
    # (AMD Infinity Fabric: 7 links per MI300X, so two GPUs alone see 1/7 of the 8-GPU figure).
    peers: int | None = Field(default=None, ge=1)
    in_network_reduction: bool = False  # NVLS / SHARP class
    # Achieved fraction of the wire bandwidth in a large collective (nccl-tests busbw / wire), and
    # where that measurement comes from. Protocol and encoding overheads live here, per link.
    achieved_fraction: float | None = Field(default=None, gt=0, le=1.0)
    achieved_source: Source | None = None
    # In-switch reduction (NVLS): the switch's reduction throughput, as a fraction of the per-device
    # link bandwidth, measured by an all-reduce with NCCL_ALGO=NVLS.
    in_network_fraction: float | None = Field(default=None, gt=0, le=1.0)
    # How a library collective's bandwidth ramps with message size inside one domain (NCCL's channel
    # count, chunk pipeline fill and protocol switches): nccl-tests all-reduce busbw at each buffer
    # size over busbw at the largest, measured on `devices` devices.
    size_ramp: SizeRamp | None = None

    @model_validator(mode="after")
    def _measured_needs_source(self) -> Link:
        if (self.achieved_fraction is not None or self.in_network_fraction is not None) and not self.achieved_source:
            raise ValueError("achieved_fraction / in_network_fraction need achieved_source")
        return self

    @model_validator(mode="after")
    def _mesh_peers(self) -> Link:
        if self.topology == "full-mesh" and self.peers is None:
            raise ValueError("a full-mesh link needs `peers`")
        return self


class HostSpec(Sourced):
    cpu: Id
    cpus: int = Field(ge=0)
    dram_bytes: Bytes = Field(alias="dram")


class AttachedMemory(Spec):
    device: Id  # a cxl-memory or ssd device ID
    count: int = Field(ge=1)


class SystemScaleOut(Sourced):
    link: Id
    nics: int = Field(ge=1)
    bandwidth_per_nic_per_direction_bytes_per_s: BytesPerS = Field(alias="bandwidth_per_nic_per_direction")


class SystemPower(Sourced):
    max_w: Watts = Field(alias="max")


class System(Sourced):
    """A node or scale-up domain: `devices` accelerators joined by `scale_up`, `scale_out` to the rest."""

    id: Id
    name: str
    device: Id
    devices: int = Field(ge=1)
    scale_up_link: Id
    scale_up_domain: int = Field(ge=1, description="devices that share the scale-up fabric")
    topology: str = Field(default="switched", description="e.g. switched, full-mesh, torus-3d 16x20x28")
    scale_out: SystemScaleOut | None = None
    host: HostSpec | None = None
    attached: tuple[AttachedMemory, ...] = ()
    power: SystemPower | None = None
    prices: Prices = Prices()


class GemmEfficiency(Sourced):
    """Largest fraction of dense peak a large, well-shaped matmul reaches (a microbenchmark, e.g. MAMF)."""

    peak_fraction: float = Field(gt=0, le=1)
    # Narrower types reach a smaller share of their (doubled) peak: measured per precision where a
    # microbenchmark exists (MAMF FP8 tables); precisions not listed use peak_fraction.
    precision_fractions: dict[Precision, float] = Field(default_factory=dict)
    tile_m: int = Field(default=128, ge=1, description="output tile rows: pads small m (wave/tile quantisation)")
    tile_n: int = Field(default=128, ge=1)
    # Share of a GEMM's output write that runs after its k loop instead of under it: 1 where the
    # accumulators live in the math warps' registers and a tile stores them once its loop is done
    # (Ampere, Ada, Hopper, CDNA); 0 where the store overlaps the next tile's math (Blackwell's
    # double-buffered tensor memory) or nothing was measured. planner.evaluate.op_time.
    epilogue_exposed: float = Field(default=0.0, ge=0, le=1)
    epilogue_source: Source | None = None


class MemoryEfficiency(Sourced):
    """Fraction of the datasheet bandwidth a streaming kernel sustains (STREAM-like microbenchmarks)."""

    bandwidth_fraction: float = Field(gt=0, le=1)


class SpecialFunctionRate(Sourced):
    """exp/MUFU results per clock per compute unit: the softmax ceiling of attention."""

    per_clock_per_unit: float = Field(gt=0)
    # Share of the softmax time hidden under the matmuls by the family's attention kernels:
    # 0 when softmax and MMA alternate (FlashAttention-2 on Ampere/CDNA), 1 with warp-specialised
    # ping-pong scheduling (FlashAttention-3 on Hopper, its successors on Blackwell).
    softmax_overlap: float = Field(default=0.0, ge=0, le=1)
    softmax_overlap_source: Source | None = None


class AttentionKernel(Sourced):
    """One fused attention kernel as it runs on a family: what its MMA instruction path and its
    schedule reach, relative to the family's large-GEMM figures.

    A kernel written for an older instruction set (FlashAttention-2's warp-level mma.sync on Hopper
    or Blackwell) cannot reach the peak that the family's asynchronous MMAs (wgmma, tcgen05) give.
    """

    # Fraction of dense peak the kernel's MMAs sustain, from a microbenchmark of the kernel (the
    # rate at which this model reproduces it) or of its instruction; None: the family's large-GEMM
    # fraction (the kernel uses the family's native MMA path).
    mma_fraction: float | None = Field(default=None, gt=0, le=1)
    # Share of the softmax hidden under the matmuls; None: the family's special_functions figure.
    softmax_overlap: float | None = Field(default=None, ge=0, le=1)
    # Achieved FLOP/s of the backward pass relative to the forward's: the backward runs five
    # matmuls per tile with dQ accumulated through atomics and smaller tiles (register pressure).
    backward_efficiency: float = Field(default=1.0, gt=0, le=1)


class DeviceEfficiency(Sourced):
    """A per-part override, only from a microbenchmark of that part."""

    gemm_peak_fraction: float | None = Field(default=None, gt=0, le=1)
    memory_bandwidth_fraction: float | None = Field(default=None, gt=0, le=1)


class Efficiency(Sourced):
    """Achievable fractions of the datasheet figures for one device family, each with its evidence.

    Set once per family from microbenchmarks and physics, never fitted to a validation row;
    `devices` holds a per-part override only where a microbenchmark of that part exists.
    """

    id: Id = Field(description="the device family these figures hold for (Device.family)")
    gemm: GemmEfficiency
    memory: MemoryEfficiency
    kernel_overhead_s: Seconds = Field(alias="kernel_overhead", description="launch + prologue/epilogue per kernel")
    kernel_overhead_source: Source
    special_functions: SpecialFunctionRate | None = None
    default_compute_units: int = Field(ge=1, description="used when a device does not give compute_units")
    # Software floor of one collective call (NCCL/RCCL/XLA launch and protocol setup), per family.
    collective_base_latency_s: Seconds | None = Field(default=None, alias="collective_base_latency")
    collective_base_latency_source: Source | None = None
    # Fused attention kernels available on the family; the first is the default (its best).
    # "unfused" (scores materialised in memory) is available everywhere and needs no entry.
    attention_kernels: dict[str, AttentionKernel] = Field(default_factory=dict)
    devices: dict[str, DeviceEfficiency] = Field(default_factory=dict)


class CatalogFile(Spec):
    """The shape of every catalogue YAML file, built-in or the user's."""

    devices: tuple[Device, ...] = ()
    links: tuple[Link, ...] = ()
    systems: tuple[System, ...] = ()
    efficiency: tuple[Efficiency, ...] = ()
