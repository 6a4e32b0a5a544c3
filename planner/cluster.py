"""The hardware an estimate runs on: one device kind, its achievable figures, and how N of them connect.

`resolve_cluster("h100-sxm", 64)` builds the usual cluster for a device (its standard node from the
catalogue, the standard scale-out network); a system ID (`dgx-h100`, `gb200-nvl72`) names the node.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any

from hardware_db.errors import InvalidSpecError
from hardware_db.schema import Device, Efficiency, Link, MemoryTier, System
from planner.catalog import Catalog, load_catalog

UNFUSED_ATTENTION = "unfused"


@dataclass(frozen=True)
class AttentionKernelPerf:
    """A resolved attention kernel: the share of dense peak its MMAs reach, the share of softmax
    it hides under them, and its backward's achieved rate relative to its forward's."""

    name: str
    gemm_fraction: float
    softmax_overlap: float
    backward_efficiency: float


@dataclass(frozen=True)
class DevicePerf:
    """One device with the achievable fractions of its family: everything the roofline needs."""

    device: Device
    efficiency: Efficiency
    # the math units' clock over their rated one: below 1 under a power cap (planner.power);
    # memory and links keep their own clocks
    clock_scale: float = 1.0

    @property
    def id(self) -> str:
        return self.device.id

    def unit_precision(self, precision: str) -> str:
        """The matrix unit `precision` runs on: its own, or the next wider one the part has (fp8
        weights on A100 are dequantised to bf16; fp4 on Hopper runs on the fp8 units)."""
        compute = self.device.compute
        if compute is None:
            raise InvalidSpecError(f"hardware '{self.id}' has no compute (it is a {self.device.kind})")
        for p in _FALLBACK.get(precision, (precision,)):
            if p in compute.peak_dense:
                return p
        raise InvalidSpecError(
            f"hardware '{self.id}' has no {precision} or wider matrix unit (has: {', '.join(compute.peak_dense)})"
        )

    def peak_flops(self, precision: str) -> float:
        """Dense peak of the unit `precision` runs on (unit_precision)."""
        assert self.device.compute is not None
        unit: Any = self.unit_precision(precision)
        return self.device.compute.peak_dense[unit]

    def clocked_peak_flops(self, precision: str) -> float:
        """Dense peak at the clock the math units run at (the rated peak unless power-capped)."""
        return self.peak_flops(precision) * self.clock_scale

    def achieved_flops(self, precision: str) -> float:
        """Peak x large-GEMM fraction of the unit `precision` runs on (memoised: every op asks)."""
        cache = self._achieved
        if precision not in cache:
            unit = self.unit_precision(precision)
            cache[precision] = self.clocked_peak_flops(unit) * self.gemm_fraction(unit)
        return cache[precision]

    @functools.cached_property
    def _achieved(self) -> dict[str, float]:
        return {}

    def gemm_fraction(self, precision: str = "bf16") -> float:
        """Large-GEMM share of dense peak: the family's (per precision), scaled by a per-part measurement."""
        g = self.efficiency.gemm
        family = g.precision_fractions.get(precision, g.peak_fraction)  # type: ignore[call-overload]
        o = self.efficiency.devices.get(self.id)
        if o is not None and o.gemm_peak_fraction:
            return family * o.gemm_peak_fraction / g.peak_fraction
        return family

    @functools.cached_property
    def memory_fraction(self) -> float:
        o = self.efficiency.devices.get(self.id)
        explicit = o.memory_bandwidth_fraction if o else None
        return explicit or self.efficiency.memory.bandwidth_fraction

    @functools.cached_property
    def memory(self) -> MemoryTier:
        return self.device.main_memory

    @functools.cached_property
    def memory_bandwidth_bytes_per_s(self) -> float:
        """Achievable bandwidth of the tier weights and KV cache stream from."""
        return self.memory.bandwidth_bytes_per_s * self.memory_fraction

    @functools.cached_property
    def compute_units(self) -> int:
        c = self.device.compute
        return (c.compute_units if c and c.compute_units else None) or self.efficiency.default_compute_units

    @functools.cached_property
    def kernel_overhead_s(self) -> float:
        return self.efficiency.kernel_overhead_s

    def attention_kernel(self, name: str | None, precision: str = "bf16") -> AttentionKernelPerf:
        """The named kernel on this family (None: the family's default, its first listed); unfused
        attention runs its two batched matmuls at the large-GEMM fraction and hides no softmax."""
        cache = self._kernels
        if (name, precision) not in cache:
            cache[(name, precision)] = self._attention_kernel(name, precision)
        return cache[(name, precision)]

    @functools.cached_property
    def _kernels(self) -> dict[tuple[str | None, str], AttentionKernelPerf]:
        return {}

    def _attention_kernel(self, name: str | None, precision: str) -> AttentionKernelPerf:
        kernels = self.efficiency.attention_kernels
        family = self.gemm_fraction(precision)
        sf = self.efficiency.special_functions
        overlap = sf.softmax_overlap if sf is not None else 0.0
        if name == UNFUSED_ATTENTION:
            return AttentionKernelPerf(UNFUSED_ATTENTION, family, 0.0, 1.0)
        if name is None and not kernels:  # the family lists none: a fused kernel at its own figures
            return AttentionKernelPerf("fused", family, overlap, 1.0)
        key = name if name is not None else next(iter(kernels))
        k = kernels.get(key)
        if k is None:
            from hardware_db.loader import suggest

            allowed = ", ".join([*kernels, UNFUSED_ATTENTION])
            close = suggest(key, [*kernels, UNFUSED_ATTENTION])
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise InvalidSpecError(
                f"attention kernel '{key}' is not modelled on {self.id} (family {self.efficiency.id}){hint}; "
                f"allowed: {allowed}"
            )
        mma = min(k.mma_fraction, family) if k.mma_fraction is not None else family
        ov = k.softmax_overlap if k.softmax_overlap is not None else overlap
        return AttentionKernelPerf(key, mma, ov, k.backward_efficiency)

    @functools.cached_property
    def exp_per_s(self) -> float | None:
        """Special-function (exp) results per second: the softmax ceiling, when the family publishes it."""
        sf, c = self.efficiency.special_functions, self.device.compute
        if sf is None or c is None or c.boost_clock_hz is None:
            return None
        return self.compute_units * sf.per_clock_per_unit * c.boost_clock_hz * self.clock_scale


# A precision the part lacks runs on the next wider unit (fp8 weights on A100 are upcast to bf16).
_FALLBACK = {
    "fp4": ("fp4", "fp8", "bf16", "fp16"),
    "int4": ("int4", "int8", "fp8", "bf16", "fp16"),
    "fp8": ("fp8", "bf16", "fp16"),
    "int8": ("int8", "fp8", "bf16", "fp16"),
    "bf16": ("bf16", "fp16", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "tf32": ("tf32", "fp32"),
    "fp32": ("fp32",),
}


@dataclass(frozen=True)
class Tier:
    """One level of the network: `group` devices share it, each with this bandwidth per direction."""

    name: str  # "scale-up" or "scale-out"
    link: Link
    bandwidth_per_direction_bytes_per_s: float
    group: int  # devices reachable at this tier (domain size, or all devices for scale-out)


@dataclass(frozen=True, eq=False)  # identity hash: cost models are cached per cluster object
class Cluster:
    perf: DevicePerf
    devices: int
    system: System | None
    scale_up: Tier
    scale_out: Tier | None  # None when every device sits in one scale-up domain

    @property
    def device(self) -> Device:
        return self.perf.device

    @property
    def domain_size(self) -> int:
        return self.scale_up.group

    def tier_spanning(self, devices: int) -> Tier:
        """The tier that joins `devices` contiguous devices: scale-up if they fit in one domain."""
        if devices <= self.domain_size or self.scale_out is None:
            return self.scale_up
        return self.scale_out


def standard_system(catalog: Catalog, device: Device) -> System | None:
    """The catalogue's first system built from this device (its usual node), if any."""
    return next((s for s in catalog.systems.values() if s.device == device.id), None)


# Clusters already built, per (catalogue object, hardware, devices, power cap). A Cluster hashes by
# identity and its DevicePerf memoises the achieved rates, so handing back the same object lets
# every estimate on that hardware reuse them and the collective cost models cached on it.
_CLUSTERS: dict[tuple[int, str, int | None, float | None], tuple[Catalog, Cluster]] = {}


def resolve_cluster(
    hardware: str, devices: int | None = None, catalog: Catalog | None = None, power_cap_w: float | None = None
) -> Cluster:
    """The devices and the networks joining them; power_cap_w caps each device's board power
    (planner.power: the math units' clock drops, memory and links keep theirs)."""
    cat = catalog or load_catalog()
    if power_cap_w is not None:
        if not isinstance(power_cap_w, numbers.Real) or not math.isfinite(power_cap_w):
            raise InvalidSpecError(f"a power cap is one finite number of watts per device (got {power_cap_w!r})")
        power_cap_w = float(power_cap_w)
    key = (id(cat), hardware, devices, power_cap_w)
    hit = _CLUSTERS.get(key)
    if hit is not None and hit[0] is cat:  # the catalogue itself is held, so its id is not reused
        return hit[1]
    cluster = _build_cluster(cat, hardware, devices, power_cap_w)
    if len(_CLUSTERS) >= 64:
        _CLUSTERS.pop(next(iter(_CLUSTERS)))
    _CLUSTERS[key] = (cat, cluster)
    return cluster


def _build_cluster(cat: Catalog, hardware: str, devices: int | None, power_cap_w: float | None) -> Cluster:
    system: System | None
    if hardware in cat.systems:
        system = cat.systems[hardware]
        device = cat.device(system.device)
    else:
        device = cat.device(hardware)
        system = standard_system(cat, device)
    if device.compute is None:
        raise InvalidSpecError(
            f"'{device.id}' is a {device.kind}, not a compute device: name a GPU, NPU, TPU, RDU or CPU "
            "(`planner hardware list`)"
        )
    n = devices if devices is not None else (system.devices if system else 1)
    if n < 1:
        raise InvalidSpecError(f"--devices must be >= 1 (got {n})")
    perf = DevicePerf(device, cat.efficiency_for(device))
    if power_cap_w is not None:
        from planner.power import clock_scale, device_power

        perf = DevicePerf(device, perf.efficiency, clock_scale(device_power(device), power_cap_w))
    up = _scale_up_tier(cat, device, system, n)
    out = _scale_out_tier(cat, device, system, n) if n > up.group else None
    if n > up.group and out is None:
        raise InvalidSpecError(
            f"hardware '{hardware}' has no scale-out network in the catalogue: at most {up.group} devices"
        )
    return Cluster(perf=perf, devices=n, system=system, scale_up=up, scale_out=out)


def _scale_up_tier(cat: Catalog, device: Device, system: System | None, n: int) -> Tier:
    if system is not None:
        link = cat.link(system.scale_up_link)
        domain = system.scale_up_domain
    elif device.scale_up is not None:
        link, domain = cat.link(device.scale_up.link), device.scale_up.domain_size
    else:
        link, domain = cat.link("pcie4"), 1
    bw = (
        device.scale_up.bandwidth_per_direction_bytes_per_s
        if device.scale_up
        else link.bandwidth_per_direction_bytes_per_s
    )
    return Tier("scale-up", link, bw, min(domain, n))


def _scale_out_tier(cat: Catalog, device: Device, system: System | None, n: int) -> Tier | None:
    if system is not None and system.scale_out is not None:
        so = system.scale_out
        per_device = so.nics * so.bandwidth_per_nic_per_direction_bytes_per_s / system.devices
        return Tier("scale-out", cat.link(so.link), per_device, n)
    if device.scale_out is not None:
        return Tier(
            "scale-out", cat.link(device.scale_out.link), device.scale_out.bandwidth_per_direction_bytes_per_s, n
        )
    return None


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def log2_ceil(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0
