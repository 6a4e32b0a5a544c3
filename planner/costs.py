"""What hardware costs per hour: owned (capex recovered over its life, energy at the estimated draw,
facility, maintenance, network) or rented (the catalogue's cloud price), and per unit of work.

Owned, per device-hour:
  capex       capex x CRF(rate, life) / 8760, CRF = r / (1 - (1 + r)^-life) (straight-line 1 / life at r = 0)
  network     scale-out NIC, switch port and optics per device, recovered the same way
  energy      avg board power x (1 + host overhead) x PUE x $/kWh
  facility    provisioned IT power (TDP x (1 + rated host overhead)) x colocation $/kW-month
  maintenance capex x a yearly share / 8760
Rented: the cheapest on-demand cloud price in the catalogue, or a reserved price (on-demand x
(1 - discount)). Every default below names its source; every one can be overridden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from hardware_db.errors import InvalidSpecError

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class TcoAssumptions:
    """Owned-hardware cost assumptions, per accelerator unless named otherwise."""

    life_years: float
    pue: float
    usd_per_kwh: float
    colocation_usd_per_kw_month: float
    maintenance_fraction_per_year: float
    network_usd_per_device: float
    host_overhead_fraction: float  # node power beyond the accelerators, per accelerator watt, on average
    provisioned_overhead_fraction: float  # the same at the node's rated maximum (what the facility provisions)
    discount_rate: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            ("life_years", self.life_years, 0.0, 50.0),
            ("pue", self.pue, 1.0, 5.0),
            ("usd_per_kwh", self.usd_per_kwh, 0.0, 10.0),
            ("colocation_usd_per_kw_month", self.colocation_usd_per_kw_month, 0.0, 10_000.0),
            ("maintenance_fraction_per_year", self.maintenance_fraction_per_year, 0.0, 1.0),
            ("network_usd_per_device", self.network_usd_per_device, 0.0, 1e6),
            ("host_overhead_fraction", self.host_overhead_fraction, 0.0, 5.0),
            ("provisioned_overhead_fraction", self.provisioned_overhead_fraction, 0.0, 5.0),
            ("discount_rate", self.discount_rate, 0.0, 1.0),
        )
        for name, value, low, high in checks:
            if not (isinstance(value, (int, float)) and low <= value <= high) or (name == "life_years" and value <= 0):
                raise InvalidSpecError(f"--{name.replace('_', '-')} must be in [{low:g}, {high:g}] (got {value!r})")

    def with_(self, **changes: Any) -> TcoAssumptions:
        """These assumptions with the given ones replaced (None keeps the default)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class TcoBreakdown:
    """$ per hour of `devices` accelerators, by component."""

    ownership: str  # owned, on-demand, reserved
    devices: int
    capex_usd_per_hour: float
    network_usd_per_hour: float
    energy_usd_per_hour: float
    facility_usd_per_hour: float
    maintenance_usd_per_hour: float
    rent_usd_per_hour: float
    node_power_w: float  # accelerators at their average draw plus host overhead, all devices

    @property
    def total_usd_per_hour(self) -> float:
        return (
            self.capex_usd_per_hour
            + self.network_usd_per_hour
            + self.energy_usd_per_hour
            + self.facility_usd_per_hour
            + self.maintenance_usd_per_hour
            + self.rent_usd_per_hour
        )

    def per_million_tokens(self, tokens_per_s: float) -> float:
        return self.total_usd_per_hour / (tokens_per_s * 3600.0) * 1e6

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_usd_per_hour": self.total_usd_per_hour}


def capital_recovery_factor(rate: float, years: float) -> float:
    """Yearly payment that repays 1 $ over `years` at `rate` (1 / years at rate 0)."""
    if rate == 0:
        return 1.0 / years
    return rate / (1.0 - (1.0 + rate) ** -years)


def owned(
    capex_usd_per_device: float, devices: int, avg_power_w: float, tdp_w: float, a: TcoAssumptions
) -> TcoBreakdown:
    """$/h of owning `devices` accelerators that draw avg_power_w each on average."""
    if not capex_usd_per_device > 0:
        raise InvalidSpecError(f"capex per device must be > 0 $ (got {capex_usd_per_device})")
    crf = capital_recovery_factor(a.discount_rate, a.life_years) / HOURS_PER_YEAR
    node_w = avg_power_w * (1.0 + a.host_overhead_fraction) * devices
    provisioned_kw = tdp_w * (1.0 + a.provisioned_overhead_fraction) * devices / 1000.0
    return TcoBreakdown(
        ownership="owned",
        devices=devices,
        capex_usd_per_hour=capex_usd_per_device * devices * crf,
        network_usd_per_hour=a.network_usd_per_device * devices * crf,
        energy_usd_per_hour=node_w / 1000.0 * a.pue * a.usd_per_kwh,
        facility_usd_per_hour=provisioned_kw * a.colocation_usd_per_kw_month * 12.0 / HOURS_PER_YEAR,
        maintenance_usd_per_hour=capex_usd_per_device * devices * a.maintenance_fraction_per_year / HOURS_PER_YEAR,
        rent_usd_per_hour=0.0,
        node_power_w=node_w,
    )


def rented(usd_per_device_hour: float, devices: int, avg_power_w: float, a: TcoAssumptions, offer: str) -> TcoBreakdown:
    """$/h of renting: the price covers capex, energy and facility."""
    return TcoBreakdown(
        ownership=offer,
        devices=devices,
        capex_usd_per_hour=0.0,
        network_usd_per_hour=0.0,
        energy_usd_per_hour=0.0,
        facility_usd_per_hour=0.0,
        maintenance_usd_per_hour=0.0,
        rent_usd_per_hour=usd_per_device_hour * devices,
        node_power_w=avg_power_w * (1.0 + a.host_overhead_fraction) * devices,
    )


# Defaults for owned hardware, each overridable (planner tco --help):
# - life_years 6: Microsoft (servers and network equipment 4 -> 6 years from FY2023) and Alphabet
#   (servers 4 -> 6 years from 2023) in their 10-K/10-Q filings; Amazon moved a subset of AI servers
#   back to 5 years from 2025 and Meta uses 5.5 (2025), so 5 is the cautious alternative.
# - pue 1.3: new AI data halls aim below 1.3 (SemiAnalysis, quoted in Epoch's training-cost-trends
#   energy.py) and new large facilities reach about 1.3 (Uptime Institute 14th survey); the
#   industry's fleet average is 1.58 (Uptime, 2023) and Google's 1.10 (2024 Environmental Report).
# - usd_per_kwh 0.0806: US average industrial tariff, 2023 (EIA, 8.06 cents/kWh).
# - colocation_usd_per_kw_month 184.06: wholesale colocation, 250-500 kW, North American primary
#   markets, H2 2024 (CBRE North America Data Center Trends H2 2024); power is metered on top.
# - maintenance_fraction_per_year 0: no published figure was found; give one for a support contract.
# - network_usd_per_device 4250: scale-out InfiniBand (48 switches $1.73M, cables and optics $2.62M)
#   for 1,024 H100 in 128 nodes, a public cost sheet "H100 cluster cost" (Aug 2024): $4,247 per GPU,
#   9.9% of the hardware.
# - host_overhead_fraction 0.11: a DGX H100's CPUs, memory and network add ~600 W to its 8 x 700 W
#   in typical operation (lynx-cortex, in ../shared/reference/hardware-costs.csv).
# - provisioned_overhead_fraction 0.82: a DGX H100 is rated 10.2 kW for 8 x 700 W of GPUs (NVIDIA
#   DGX H100/H200 user guide); DGX A100 2.03 x and DGX B200 1.79 x their GPUs' TDP.
DEFAULT_TCO = TcoAssumptions(
    life_years=6.0,
    pue=1.3,
    usd_per_kwh=0.0806,
    colocation_usd_per_kw_month=184.06,
    maintenance_fraction_per_year=0.0,
    network_usd_per_device=4250.0,
    host_overhead_fraction=600.0 / 5600.0,
    provisioned_overhead_fraction=(10_200.0 - 5_600.0) / 5_600.0,
)

OWNERSHIP = ("owned", "on-demand", "reserved")


@dataclass(frozen=True)
class Tco:
    """What one estimate's deployment costs: the breakdown per hour, and per unit of its work."""

    model: str
    hardware: str
    kind: str  # inference or training
    breakdown: TcoBreakdown
    tokens_per_s: float  # generated tokens (inference) or trained tokens (training)
    usd_per_million_tokens: float
    avg_power_w: float
    train_s: float | None = None  # training with a token budget: the run's time and cost
    usd_per_run: float | None = None

    def to_dict(self) -> dict[str, Any]:
        head = {k: v for k, v in asdict(self).items() if k != "breakdown"}
        return {**head, **self.breakdown.to_dict()}

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([self.to_dict()])


def tco(
    result: Any,
    *,
    ownership: str = "owned",
    assumptions: TcoAssumptions = DEFAULT_TCO,
    capex_usd_per_device: float | None = None,
    reserved_discount: float | None = None,
    token_budget: float | None = None,
    catalog: Any = None,
) -> Tco:
    """The cost of the deployment an inference or training estimate describes, at its power draw.
    Owned: capex from the catalogue unless given. Rented: the cheapest on-demand cloud price, less
    `reserved_discount` (a share, e.g. 0.4) for a reserved offer."""
    from planner.catalog import load_catalog

    if ownership not in OWNERSHIP:
        raise InvalidSpecError(f"unknown ownership '{ownership}' (allowed: {', '.join(OWNERSHIP)})")
    cat = catalog if catalog is not None and not isinstance(catalog, str) else load_catalog(catalog)
    device = cat.device(result.hardware)
    power = float(result.avg_power_w)
    training = hasattr(result, "step_time_s")
    tokens_per_s = float(result.tokens_per_s if training else result.throughput_tokens_per_s)
    if ownership == "owned":
        capex = capex_usd_per_device if capex_usd_per_device is not None else device.prices.capex_usd
        if capex is None:
            raise InvalidSpecError(f"no capex for {device.id} in the catalogue: give --capex-usd (per device)")
        from planner.power import device_power

        b = owned(float(capex), result.devices, power, device_power(device).tdp_w, assumptions)
    else:
        price = min((c.usd_per_hour for c in device.prices.cloud), default=None)
        if price is None:
            raise InvalidSpecError(f"no cloud price for {device.id} in the catalogue: use --ownership owned")
        if ownership == "reserved":
            if reserved_discount is None or not 0 <= reserved_discount < 1:
                raise InvalidSpecError(f"--reserved-discount must be a share in [0, 1) (got {reserved_discount})")
            price *= 1.0 - reserved_discount
        b = rented(price, result.devices, power, assumptions, ownership)
    train_s = token_budget / tokens_per_s if training and token_budget else None
    return Tco(
        model=result.model,
        hardware=device.id,
        kind="training" if training else "inference",
        breakdown=b,
        tokens_per_s=tokens_per_s,
        usd_per_million_tokens=b.per_million_tokens(tokens_per_s),
        avg_power_w=power,
        train_s=train_s,
        usd_per_run=None if train_s is None else b.total_usd_per_hour * train_s / 3600.0,
    )


def owned_per_device_hour(
    device: Any, avg_power_w: float | None = None, a: TcoAssumptions = DEFAULT_TCO
) -> float | None:
    """Owned TCO of one device-hour (DEFAULT_TCO unless given), drawing avg_power_w on average, or
    its TDP when unknown (an upper bound on the energy share); None without a capex or a TDP."""
    if device.prices.capex_usd is None or device.power is None:
        return None
    tdp = float(device.power.tdp_w)
    return owned(device.prices.capex_usd, 1, tdp if avg_power_w is None else avg_power_w, tdp, a).total_usd_per_hour
